"""Benchmark: menu reads through the gateway, as many as it answers, with wrk (a C load generator: the Python
clients of the other benchmarks top out near 1,000 requests/s on this machine).

Runs against the local stack (`make run`). Three kinds of read of one seeded city's menu (~80 KB of JSON):
a client that takes it plain, one that accepts gzip (the pods send the body gzipped once per menu version),
and one that already holds the current version (`If-None-Match`: a 304 with no body). The pods mark a menu
shareable for a second (`s-maxage=1`), so the gateway answers most reads from its copy; the table says how many
reached the pods.

    .venv/bin/python -m bench.menu_reads [--city blr] [--connections 16] [--duration 15]

It prints a table and writes docs/benchmarks/menu-reads.{json,md}: requests per second, latency p50/p99 from wrk's
own distribution, and answers other than 200/304. wrk comes from Debian's packages (`apt-get install wrk`).
"""

import argparse
import asyncio
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from bench.machine import cpu_times, load_between, machine_rows, problems, verdict_row
from bench.report import report_result
from core.settings import Settings
from ops.stack import LocalStack

THREADS = 2
MENU_ROUTE = "/v1/cities/{city}/menu"
UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def parse_wrk(output: str) -> dict[str, Any]:
    """Requests/s, latency percentiles (ms) and non-2xx/3xx answers from `wrk --latency` output."""
    percentiles = {
        f"p{q}": float(value) * UNITS_MS[unit]
        for q, value, unit in re.findall(r"^\s+(50|99)%\s+([0-9.]+)(us|ms|s)\s*$", output, re.MULTILINE)
    }
    rate = re.search(r"^Requests/sec:\s+([0-9.]+)", output, re.MULTILINE)
    total = re.search(r"^\s+(\d+) requests in", output, re.MULTILINE)
    other = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    if rate is None or total is None or set(percentiles) != {"p50", "p99"}:
        raise RuntimeError(f"cannot read wrk's output:\n{output}")
    return {
        "requests_per_s": float(rate.group(1)),
        "requests": int(total.group(1)),
        "latency_ms": percentiles,
        "not_2xx_3xx": int(other.group(1)) if other else 0,
        "socket_errors": sum(int(n) for n in errors.groups()) if errors else 0,
    }


def run_wrk(url: str, headers: dict[str, str], connections: int, duration: float) -> dict[str, Any]:
    command = ["wrk", f"-t{THREADS}", f"-c{connections}", f"-d{duration:g}s", "--latency"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    finished = subprocess.run([*command, url], capture_output=True, text=True, check=True, timeout=duration + 60)
    return parse_wrk(finished.stdout)


async def current_etag(url: str) -> str:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        response.raise_for_status()
        return response.headers["ETag"]


def pod_menu_reads(ports: list[int]) -> int:
    """Menu reads the API pods answered so far (their request counter): the rest the gateway answered itself."""
    total = 0.0
    for port in ports:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            text = response.read().decode()
        for family in text_string_to_metric_families(text):
            total += sum(
                sample.value
                for sample in family.samples
                if sample.name == "feastflow_api_requests_total" and sample.labels.get("route") == MENU_ROUTE
            )
    return int(total)


def run(args: argparse.Namespace) -> dict[str, Any]:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk")
    url = f"{args.gateway}/v1/cities/{args.city}/menu"
    etag = asyncio.run(current_etag(url))
    kinds = {
        "plain": {"Accept-Encoding": "identity"},
        "gzip": {"Accept-Encoding": "gzip"},
        "304": {"Accept-Encoding": "gzip", "If-None-Match": etag},
    }
    ports = [unit.port for unit in LocalStack(Settings.from_env()).api_units()]
    before, started = cpu_times(), time.perf_counter()
    results = {}
    for kind, headers in kinds.items():
        reads_before = pod_menu_reads(ports)
        results[kind] = run_wrk(url, headers, args.connections, args.duration)
        results[kind]["answered_by_pods"] = pod_menu_reads(ports) - reads_before
    load = load_between(before, cpu_times(), time.perf_counter() - started)
    return {
        "url": url,
        "connections": args.connections,
        "duration_s": args.duration,
        "reads": results,
        "machine_load": load,
        "not_comparable": problems(sent=0, asked_rate=0, duration_s=args.duration, load=load),
    }


def report_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    rows = [("reads", f"GET {report['url']}, {report['connections']} connections, {report['duration_s']:g} s each")]
    for kind, result in report["reads"].items():
        lat = result["latency_ms"]
        rows.append(
            (
                f"{kind}: requests/s, p50 / p99",
                f"{result['requests_per_s']:,.0f}/s, {lat['p50']:.2f} / {lat['p99']:.2f} ms"
                f" ({result['not_2xx_3xx']} other answers, {result['socket_errors']} socket errors;"
                f" {result['answered_by_pods']:,} of {result['requests']:,} answered by the pods)",
            )
        )
    return [*rows, *machine_rows(report["machine_load"]), verdict_row(report["not_comparable"])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--city", default="blr")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--gateway", default="http://127.0.0.1:8080")
    args = parser.parse_args()
    report = run(args)
    print(f"\n(written to {report_result('menu-reads', report, report_rows(report), module='menu_reads')})")
    for problem in report["not_comparable"]:
        print(f"warning: not comparable: {problem}", file=sys.stderr)


if __name__ == "__main__":
    main()
