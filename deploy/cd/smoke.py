"""Post-deploy smoke check through the public URL: `python3 deploy/cd/smoke.py BASE_URL [--timeout S]`.

Passes when, within the timeout, the city list answers, the first city's menu answers, and its live menu
stream (SSE) opens with a snapshot event. Exits 1 with the last failure otherwise. Standard library only.
"""

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from typing import Any

REQUEST_TIMEOUT_S = 10.0


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=REQUEST_TIMEOUT_S) as response:
        if response.status != 200:
            raise RuntimeError(f"GET {url}: HTTP {response.status}")
        return json.load(response)


def _first_sse_event(url: str) -> str:
    request = urllib.request.Request(url, headers={"Accept": "text/event-stream"})
    with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as response:
        for raw in response:
            line = raw.decode().rstrip("\r\n")
            if line.startswith("event:"):
                return line.partition(":")[2].strip()
    raise RuntimeError(f"GET {url}: the stream closed before its first event")


def check(base_url: str) -> str:
    base = base_url.rstrip("/")
    cities = _get_json(f"{base}/v1/cities")
    if not isinstance(cities, list) or not cities:
        raise RuntimeError(f"GET {base}/v1/cities: no cities in {cities!r}")
    city = cities[0]["city"]
    menu = _get_json(f"{base}/v1/cities/{city}/menu")
    if not isinstance(menu, dict):
        raise RuntimeError(f"GET {base}/v1/cities/{city}/menu: not a menu: {menu!r}")
    first = _first_sse_event(f"{base}/v1/cities/{city}/menu/stream")
    if first != "snapshot":
        raise RuntimeError(f"menu stream of {city} opened with {first!r}, not a snapshot")
    return f"{len(cities)} cities; {city}: menu and live stream answer"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("base_url")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to keep retrying")
    args = parser.parse_args(argv)
    deadline = time.monotonic() + args.timeout
    while True:
        try:
            print(f"smoke passed: {check(args.base_url)}")
            return 0
        except (OSError, RuntimeError, ValueError, KeyError, urllib.error.URLError) as failure:
            if time.monotonic() >= deadline:
                print(f"smoke FAILED: {failure}", file=sys.stderr)
                return 1
            time.sleep(2)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
