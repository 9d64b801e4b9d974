"""Benchmark: sustained orders per second, from POST /v1/orders to `accepted` on the order's status stream.

Runs against the local stack (`make run`): C concurrent customers each place orders back to back at the
menu's current prices, through the gateway; each order is timed from just before its POST until the
`accepted` event arrives on GET /v1/orders/{id}/stream. Prints a table, saves bench/results/orders-*.json.

    .venv/bin/python -m bench.orders [--customers 20] [--duration 30]
"""

import argparse
import asyncio
import contextlib
import itertools
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bench.machine import cpu_times, load_between, machine_rows, problems, verdict_row
from bench.report import percentile, report_result
from core.settings import Settings
from core.tokens import Role, issue_token
from ops.sse_client import EventSource

CITY = "blr"


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    placed: int = 0
    failures: dict[str, int] = field(default_factory=dict)

    def fail(self, why: str) -> None:
        self.failures[why] = self.failures.get(why, 0) + 1


async def menu_lines(session: aiohttp.ClientSession, gateway: str) -> tuple[str, list[dict[str, Any]]]:
    async with session.get(f"{gateway}/v1/cities/{CITY}/menu") as response:
        menu = await response.json()
    restaurant = next(r for r in menu["restaurants"] if r["open"] and any(i["available"] for i in r["items"]))
    items = [i for i in restaurant["items"] if i["available"]][:3]
    return restaurant["restaurant_id"], [
        {"item_id": i["item_id"], "quantity": 1, "price_cents": i["price_cents"]} for i in items
    ]


async def one_order(
    session: aiohttp.ClientSession, gateway: str, token: str, body: dict[str, Any], tally: Tally
) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    started = time.monotonic()  # the clock of an event's received_at
    async with session.post(f"{gateway}/v1/orders", json=body, headers=headers) as response:
        if response.status != 202:
            tally.fail(f"POST {response.status}")
            return
        order_id = (await response.json())["order_id"]
    tally.placed += 1
    source = EventSource(session, f"{gateway}/v1/orders/{order_id}/stream?access_token={token}", backoff=None)
    async with asyncio.timeout(30), contextlib.aclosing(source.events()) as events:
        async for event in events:
            status = event.json().get("status") if event.type == "status" else None
            if status == "accepted":
                tally.latencies.append(event.received_at - started)
                return
            if status == "rejected":
                tally.fail("rejected")
                return
    tally.fail("stream ended")


async def ordering_slot(
    gateway: str,
    secret: str,
    slot: int,
    restaurant_id: str,
    lines: list[dict[str, Any]],
    deadline: float,
    tally: Tally,
) -> None:
    """Orders back to back, each from another customer as in real traffic, so the per-customer rate limit
    (a few orders a second) is not what gets measured."""
    async with aiohttp.ClientSession() as session:
        for n in itertools.count():
            if time.perf_counter() > deadline:
                return
            token = issue_token(secret, Role.CUSTOMER, f"bench-customer-{slot}-{n}")
            body = {
                "idempotency_key": f"bench-{uuid.uuid4().hex}-{n}",
                "city": CITY,
                "restaurant_id": restaurant_id,
                "lines": lines,
            }
            try:
                await one_order(session, gateway, token, body, tally)
            except (aiohttp.ClientError, TimeoutError) as exc:
                tally.fail(type(exc).__name__)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    settings = Settings.from_env()
    async with aiohttp.ClientSession() as session:
        restaurant_id, lines = await menu_lines(session, args.gateway)
    tally = Tally()
    before, started = cpu_times(), time.perf_counter()
    deadline = started + args.duration
    await asyncio.gather(
        *(
            ordering_slot(args.gateway, settings.jwt_secret, slot, restaurant_id, lines, deadline, tally)
            for slot in range(args.customers)
        )
    )
    elapsed = time.perf_counter() - started
    load = load_between(before, cpu_times(), elapsed)
    lat = tally.latencies
    return {
        "customers": args.customers,
        "duration_s": round(elapsed, 1),
        "orders_accepted": len(lat),
        "orders_placed": tally.placed,
        "orders_per_s": len(lat) / elapsed,
        "failures": tally.failures,
        "latency_ms": {q: percentile(lat, p) * 1000 for q, p in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))},
        "max_ms": max(lat, default=float("nan")) * 1000,
        "machine_load": load,
        # Closed-loop slots have no pace to keep: only a saturated machine makes a run not comparable.
        "not_comparable": problems(sent=0, asked_rate=0.0, duration_s=elapsed, load=load),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=20, help="concurrent slots, each ordering back to back")
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--gateway", default="http://127.0.0.1:8080")
    args = parser.parse_args()
    report = asyncio.run(run(args))
    lat = report["latency_ms"]
    rows = [
        ("concurrent ordering slots", str(report["customers"])),
        (
            "orders accepted / placed",
            f"{report['orders_accepted']} / {report['orders_placed']} in {report['duration_s']} s",
        ),
        ("sustained orders/s", f"{report['orders_per_s']:.1f}"),
        (
            "POST -> accepted on stream p50 / p95 / p99",
            f"{lat['p50']:.1f} / {lat['p95']:.1f} / {lat['p99']:.1f} ms",
        ),
        ("max", f"{report['max_ms']:.1f} ms"),
        ("failures", str(report["failures"] or 0)),
        *machine_rows(report["machine_load"]),
        verdict_row(report["not_comparable"]),
    ]
    print(f"\n(written to {report_result('orders', report, rows)})")


if __name__ == "__main__":
    main()
