"""Benchmark: admin change -> SSE delivery latency under fan-out load, and menu GET throughput.

Runs against the local stack (`make run`): N SSE clients spread over the API pods, admin price changes at a
fixed rate through the gateway, every change timed from just before its POST to its arrival at probe
clients. Prints a table and writes bench/results/<timestamp>.json.

    .venv/bin/python -m bench.latency [--clients 1000] [--rate 100] [--duration 60] [--probes 50]
"""

import argparse
import asyncio
import contextlib
import resource
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bench.machine import LoopLag, cpu_times, load_between, machine_rows, problems, verdict_row
from bench.report import percentile, report_result
from core.settings import Settings
from core.tokens import Role, issue_token
from ops.sse_client import EventSource, count_events

CITY = "blr"
RESTAURANT = "bench-r"
ITEMS = 100
PRICE_BASE = 1_000_000


@dataclass
class Results:
    sent_at: dict[int, float] = field(default_factory=dict)
    answered_at: dict[int, float] = field(default_factory=dict)  # when its POST was answered 202
    latencies: list[float] = field(default_factory=list)
    post_failures: int = 0
    failed: set[int] = field(default_factory=set)  # the changes whose POST was not answered 202
    drained_item_events: int = 0
    probe_item_events: int = 0
    dropped_clients: int = 0


async def prepare(session: aiohttp.ClientSession, gateway: str, headers: dict[str, str]) -> None:
    events: list[dict[str, Any]] = [
        {"type": "restaurant.upserted", "city": CITY, "restaurant_id": RESTAURANT, "name": "Benchmark Bistro"}
    ]
    events += [
        {
            "type": "item.upserted",
            "city": CITY,
            "restaurant_id": RESTAURANT,
            "item_id": f"{RESTAURANT}-{n}",
            "name": f"Bench dish {n}",
            "price_cents": 500,
        }
        for n in range(ITEMS)
    ]
    async with session.post(f"{gateway}/v1/admin/events", json={"events": events}, headers=headers) as response:
        response.raise_for_status()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # until the menu has the restaurant, so that every change applies
        async with session.get(f"{gateway}/v1/cities/{CITY}/menu") as response:
            menu = await response.json() if response.status == 200 else {}
        if any(r["restaurant_id"] == RESTAURANT and len(r["items"]) == ITEMS for r in menu.get("restaurants", ())):
            return
        await asyncio.sleep(0.2)
    raise RuntimeError(f"the benchmark's restaurant did not reach the {CITY} menu within 30 s")


async def counted_drop(client: Any, results: Results, stop: asyncio.Event, *args: Any) -> None:
    """Runs one client; a stream that fails or ends before the benchmark does counts as dropped."""
    try:
        await client(*args)
    except asyncio.CancelledError:
        raise
    except Exception:
        pass
    if not stop.is_set():
        results.dropped_clients += 1


async def probe_client(source: EventSource, results: Results, stop: asyncio.Event) -> None:
    """Times every change it receives, parsing the stream in full."""
    async with contextlib.aclosing(source.events()) as events:
        async for event in events:
            if stop.is_set():
                return
            if event.type != "item":
                continue
            sent = results.sent_at.get(event.json()["base_price_cents"] - PRICE_BASE)
            if sent is not None:
                results.latencies.append(event.received_at - sent)
                results.probe_item_events += 1


async def publish_changes(gateway: str, headers: dict[str, str], rate: float, duration: float, results: Results) -> int:
    interval = 1.0 / rate
    seq = 0
    in_flight: set[asyncio.Task[None]] = set()
    async with aiohttp.ClientSession() as session:

        async def post(n: int) -> None:
            body = {
                "type": "price.set",
                "city": CITY,
                "restaurant_id": RESTAURANT,
                "item_id": f"{RESTAURANT}-{n % ITEMS}",
                "price_cents": PRICE_BASE + n,
            }
            results.sent_at[n] = time.monotonic()  # the clock of an event's received_at
            try:
                async with session.post(f"{gateway}/v1/admin/events", json=body, headers=headers) as response:
                    answered = response.status == 202
            except aiohttp.ClientError:  # e.g. the connection reset while the pods drain: failed, as a 5xx is
                answered = False
            if answered:
                results.answered_at[n] = time.monotonic()
            else:
                results.post_failures += 1
                results.failed.add(n)

        started = time.perf_counter()
        while time.perf_counter() - started < duration:
            task = asyncio.create_task(post(seq))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
            seq += 1
            await asyncio.sleep(max(0.0, started + seq * interval - time.perf_counter()))
        await asyncio.gather(*in_flight)
    return seq


async def menu_reads(gateway: str, concurrency: int, duration: float) -> dict[str, float]:
    latencies: list[float] = []
    failures = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        deadline = time.perf_counter() + duration

        async def reader() -> None:
            nonlocal failures
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                async with session.get(f"{gateway}/v1/cities/{CITY}/menu") as response:
                    await response.read()
                    if response.status != 200:
                        failures += 1
                latencies.append(time.perf_counter() - started)

        await asyncio.gather(*(reader() for _ in range(concurrency)))
    return {
        "requests": len(latencies),
        "rps": len(latencies) / duration,
        "failures": failures,
        "p50_ms": percentile(latencies, 0.5) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
    }


async def worker_settings(worker_url: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session, session.get(f"{worker_url}/feastflow/assignment/") as response:
        settings: dict[str, Any] = (await response.json())["settings"]
        return settings


async def run(args: argparse.Namespace) -> dict[str, Any]:
    settings = Settings.from_env()
    headers = {"Authorization": f"Bearer {issue_token(settings.jwt_secret, Role.ADMIN, 'bench')}"}
    pods = [f"http://127.0.0.1:{port}" for port in args.pods.split(",")]
    results = Results()
    stop = asyncio.Event()
    async with aiohttp.ClientSession() as session:
        await prepare(session, args.gateway, headers)
    # Probes parse every event with the package's client (one pooled session without a limit: each holds its
    # stream the whole run); the others only count, with the client's cheap mode (a protocol on the socket).
    probe_session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=None, sock_read=120)
    )
    tasks = []
    counted: list[int] = []  # each counting client's item events, added when it stops
    connected = []
    for n in range(args.clients):
        url = f"{pods[n % len(pods)]}/v1/cities/{CITY}/menu/stream"
        if n < args.probes:
            source = EventSource(probe_session, url, backoff=None)
            connected.append(source.opened)
            client = counted_drop(probe_client, results, stop, source, results, stop)
        else:
            event = asyncio.Event()
            connected.append(event)
            client = counted_drop(count_events, results, stop, url, "item", event, counted)
        tasks.append(asyncio.create_task(client))
    await asyncio.wait_for(asyncio.gather(*(e.wait() for e in connected)), timeout=60)
    await asyncio.sleep(1)
    before, started, loop_lag = cpu_times(), time.perf_counter(), LoopLag()
    loop_lag.start()
    sent = await publish_changes(args.gateway, headers, args.rate, args.duration, results)
    await asyncio.sleep(3)
    load, lag = load_between(before, cpu_times(), time.perf_counter() - started), loop_lag.stop()
    stop.set()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await probe_session.close()
    results.drained_item_events = sum(counted)
    reads = await menu_reads(args.gateway, args.read_concurrency, args.read_duration)
    expected_probe = sent * args.probes
    expected_drained = sent * (args.clients - args.probes)
    lat = results.latencies
    return {
        "clients": args.clients,
        "rate_per_s": args.rate,
        "duration_s": args.duration,
        "changes_sent": sent,
        "post_failures": results.post_failures,
        "dropped_clients": results.dropped_clients,
        "probe_delivery_ratio": results.probe_item_events / expected_probe if expected_probe else 1.0,
        "drained_delivery_ratio": results.drained_item_events / expected_drained if expected_drained else 1.0,
        "latency_ms": {
            "p50": percentile(lat, 0.5) * 1000,
            "p95": percentile(lat, 0.95) * 1000,
            "p99": percentile(lat, 0.99) * 1000,
            "max": max(lat, default=float("nan")) * 1000,
            "mean": (statistics.fmean(lat) * 1000) if lat else float("nan"),
        },
        "menu_get": reads,
        "worker_settings": await worker_settings(args.worker),
        "machine_load": load,
        "client_loop_lag": lag,
        "not_comparable": problems(sent=sent, asked_rate=args.rate, duration_s=args.duration, load=load),
    }


def report_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    lat = report["latency_ms"]
    reads = report["menu_get"]
    rows = [
        ("SSE clients (over the API pods)", f"{report['clients']}"),
        (
            "admin changes sent",
            f"{report['changes_sent']} in {report['duration_s']} s"
            f" ({report['changes_sent'] / report['duration_s']:.1f}/s of {report['rate_per_s']}/s asked)",
        ),
        ("admin POST failures", f"{report['post_failures']}"),
        ("SSE clients dropped", f"{report['dropped_clients']}"),
        ("submit -> SSE p50 / p95 / p99", f"{lat['p50']:.1f} / {lat['p95']:.1f} / {lat['p99']:.1f} ms"),
        ("submit -> SSE max / mean", f"{lat['max']:.1f} / {lat['mean']:.1f} ms"),
        ("delivered to probe clients", f"{report['probe_delivery_ratio']:.2%}"),
        ("delivered to other clients", f"{report['drained_delivery_ratio']:.2%}"),
        (
            "menu GET via gateway",
            f"{reads['rps']:.0f} req/s, p50 {reads['p50_ms']:.1f} ms, p99 {reads['p99_ms']:.1f} ms,"
            f" {reads['failures']} failed",
        ),
        (
            "worker fetch wait / commit interval",
            f"{report['worker_settings']['fetch_max_wait_ms']} ms / {report['worker_settings']['commit_interval_s']} s",
        ),
        *machine_rows(report["machine_load"], report["client_loop_lag"]),
        verdict_row(report["not_comparable"]),
    ]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--probes", type=int, default=50, help="clients that time every event (others count bytes)")
    parser.add_argument("--rate", type=float, default=100.0, help="admin changes per second")
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--gateway", default="http://127.0.0.1:8080")
    parser.add_argument("--pods", default="8081,8082", help="API pod ports the SSE clients spread over")
    parser.add_argument("--worker", default="http://127.0.0.1:6066", help="the worker's web address")
    parser.add_argument("--read-concurrency", type=int, default=32)
    parser.add_argument("--read-duration", type=float, default=15.0)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, args.clients * 2 + 512)), hard))
    report = asyncio.run(run(args))
    print(f"\n(written to {report_result('latency', report, report_rows(report))})")
    for problem in report["not_comparable"]:
        print(f"warning: not comparable: {problem}", file=sys.stderr)


if __name__ == "__main__":
    main()
