"""The rollout rehearsal: customer and admin traffic against the local stack while every unit is rolled.

Traffic goes through the gateway: menu reads, admin price changes, order placements, SSE menu clients that
reconnect with Last-Event-ID whenever their pod goes away, and a status stream per order. Meanwhile every
API pod and the worker are rolled `rolls` times. The run fails unless every count of the report is zero:
failed reads, acknowledged changes a client never received (or received out of order or twice), orders
that never reached a decision or have other than one row.
"""

import asyncio
import contextlib
import functools
import itertools
import random
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import aiopg

from core.settings import Settings
from core.tokens import Role, issue_token
from ops.rollout import Say, rollout
from ops.sse_client import Backoff, EventSource, ServerSentEvent

CITY = "blr"
RESTAURANT = "rehearsal"
ITEMS = 20
PREPARED_WITHIN_S = 30.0  # for the rehearsal's restaurant to be applied and every client to have its menu


@dataclass
class Sizes:
    menu_readers: int = 8
    admin_per_s: float = 10.0
    orders_per_s: float = 5.0
    sse_clients: int = 500
    rolls: int = 2
    settle_s: float = 60.0
    only: str | None = None  # roll only the API pods ("api") or only the worker ("worker")


@dataclass
class Ledger:
    sizes: Sizes
    read_ok: int = 0
    read_failed: int = 0
    admin_failed: int = 0
    order_failed: int = 0
    changes: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    submitted_at: dict[int, float] = field(default_factory=dict)
    orders: list[tuple[str, str]] = field(default_factory=list)
    decided: dict[str, str] = field(default_factory=dict)
    latency_rolling: list[float] = field(default_factory=list)
    latency_steady: list[float] = field(default_factory=list)
    rolling: bool = False
    traffic_s: float = 0.0
    failure_reasons: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def fail(self, kind: str, why: str) -> None:
        if kind == "read":
            self.read_failed += 1
        elif kind == "admin":
            self.admin_failed += 1
        else:
            self.order_failed += 1
        self.failure_reasons[f"{kind}: {why}"] += 1


# The rehearsal's clients come back 0.2 s after losing a stream whatever the server's hint, as they always
# have, so its reconnect gaps stay comparable from run to run.
COME_BACK = Backoff(first_s=0.2, cap_s=0.2)


@dataclass
class MenuClient:
    """Follows the menu stream through the gateway; reconnects with Last-Event-ID, like EventSource."""

    url: str
    ledger: Ledger
    seen: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    source: EventSource | None = None
    has_menu: asyncio.Event = field(default_factory=asyncio.Event)  # its first snapshot arrived

    async def run(self) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_read=30)) as session:
            self.source = EventSource(session, self.url, backoff=COME_BACK)
            async for event in self.source.events():
                if event.type == "item":
                    self._record(event)
                elif event.type == "snapshot":
                    self.has_menu.set()

    def _record(self, event: ServerSentEvent) -> None:
        item = event.json()
        if item["restaurant_id"] != RESTAURANT:
            return
        self.seen[item["item_id"]].append(item["base_price_cents"])
        sent = self.ledger.submitted_at.get(item["base_price_cents"])
        if sent is not None:
            latencies = self.ledger.latency_rolling if self.ledger.rolling else self.ledger.latency_steady
            latencies.append(event.received_at - sent)


async def post_as_a_client_would(
    session: aiohttp.ClientSession, url: str, body: Any, headers: dict[str, str]
) -> tuple[int, Any]:
    """A keep-alive connection the gateway closes just as a request goes out (its old workers do when a
    deploy reloads it) fails before any answer. Clients send such a request again, which these two are
    built for: an order carries its idempotency key, and setting a price twice changes it once."""
    for attempt in range(3):
        try:
            async with session.post(url, json=body, headers=headers) as response:
                return response.status, await response.json()
        except (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError):
            if attempt == 2:
                raise
            await asyncio.sleep(0.05)
    raise AssertionError("unreachable")


async def read_menus(gateway: str, ledger: Ledger, stop: asyncio.Event) -> None:
    async with aiohttp.ClientSession() as session:
        while not stop.is_set():
            try:
                async with session.get(f"{gateway}/v1/cities/{CITY}/menu") as response:
                    await response.read()
                    ok = response.status == 200
            except aiohttp.ClientError:
                ok = False
            if ok:
                ledger.read_ok += 1
            else:
                ledger.fail("read", "menu GET failed")
            await asyncio.sleep(0.02)


async def _pace(started: float, n: int, per_second: float) -> None:
    """Wait for the n-th slot of a steady rate (so slow answers do not lower the rate)."""
    await asyncio.sleep(max(0.0, started + n / per_second - time.perf_counter()))


async def change_prices(gateway: str, token: str, ledger: Ledger, stop: asyncio.Event) -> None:
    prices = itertools.count(2_000_000)
    rng = random.Random(11)
    started = time.perf_counter()
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as session:
        for n in itertools.count():
            if stop.is_set():
                return
            await _pace(started, n, ledger.sizes.admin_per_s)
            item = f"{RESTAURANT}-{rng.randrange(ITEMS)}"
            price = next(prices)
            ledger.submitted_at[price] = time.monotonic()  # the clock of an event's received_at
            body = {
                "type": "price.set",
                "city": CITY,
                "restaurant_id": RESTAURANT,
                "item_id": item,
                "price_cents": price,
            }
            try:
                status, answer = await post_as_a_client_would(session, f"{gateway}/v1/admin/events", body, {})
                if status == 202:
                    ledger.changes[item].append(price)
                else:
                    ledger.fail("admin", f"HTTP {status}: {str(answer)[:120]}")
            except aiohttp.ClientError as exc:
                ledger.fail("admin", repr(exc))


async def place_orders(gateway: str, secret: str, ledger: Ledger, stop: asyncio.Event) -> None:
    """Places orders at a steady rate, each from a new customer; each one is then followed to its decision."""
    following: set[asyncio.Task[None]] = set()
    started = time.perf_counter()
    async with aiohttp.ClientSession() as session:
        try:
            for n in itertools.count():
                await _pace(started, n, ledger.sizes.orders_per_s)
                if stop.is_set():
                    break
                customer = f"rehearsal-{time.time_ns()}-{n}"
                token = issue_token(secret, Role.CUSTOMER, customer)
                task = asyncio.create_task(one_order(session, gateway, token, n, ledger))
                following.add(task)
                task.add_done_callback(following.discard)
            await asyncio.gather(*following)
        finally:
            for task in following:
                task.cancel()


async def one_order(session: aiohttp.ClientSession, gateway: str, token: str, n: int, ledger: Ledger) -> None:
    try:
        async with session.get(f"{gateway}/v1/cities/{CITY}/menu") as response:
            menu = await response.json()
    except (aiohttp.ClientError, ValueError) as exc:
        ledger.fail("read", repr(exc))
        return
    item = next(i for r in menu["restaurants"] if r["restaurant_id"] == "blr-r01" for i in r["items"])
    body = {
        "idempotency_key": f"rehearsal-{n}",
        "city": CITY,
        "restaurant_id": "blr-r01",
        "lines": [{"item_id": item["item_id"], "quantity": 1, "price_cents": item["price_cents"]}],
    }
    try:
        status, answer = await post_as_a_client_would(
            session, f"{gateway}/v1/orders", body, {"Authorization": f"Bearer {token}"}
        )
    except aiohttp.ClientError as exc:
        ledger.fail("order", repr(exc))
        return
    if status != 202:
        ledger.fail("order", f"HTTP {status}: {str(answer)[:120]}")
        return
    order_id = answer["order_id"]
    ledger.orders.append((token, order_id))
    await follow_order(session, gateway, token, order_id, ledger)


async def follow_order(session: aiohttp.ClientSession, gateway: str, token: str, order_id: str, ledger: Ledger) -> None:
    """The order's status stream, reconnecting through rollouts, until the decision arrives."""
    source = EventSource(session, f"{gateway}/v1/orders/{order_id}/stream?access_token={token}", backoff=COME_BACK)
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(ledger.sizes.settle_s + 120), contextlib.aclosing(source.events()) as events:
            async for event in events:
                status = event.json().get("status") if event.type == "status" else None
                if status in ("accepted", "rejected"):
                    ledger.decided[order_id] = status
                    return


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else float("nan")


async def prepare(gateway: str, token: str) -> None:
    events: list[dict[str, Any]] = [
        {"type": "restaurant.upserted", "city": CITY, "restaurant_id": RESTAURANT, "name": "Rehearsal Rooms"}
    ] + [
        {
            "type": "item.upserted",
            "city": CITY,
            "restaurant_id": RESTAURANT,
            "item_id": f"{RESTAURANT}-{n}",
            "name": f"Rehearsal dish {n}",
            "price_cents": 1000,
        }
        for n in range(ITEMS)
    ]
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as session:
        async with session.post(f"{gateway}/v1/admin/events", json={"events": events}) as response:
            response.raise_for_status()
            last = (await response.json())["event_ids"][-1]
        deadline = time.monotonic() + PREPARED_WITHIN_S  # orders and menu reads need the restaurant
        while await _status(session, f"{gateway}/v1/admin/events/{last}") != "applied":
            if time.monotonic() > deadline:
                raise TimeoutError(f"the rehearsal's restaurant was not applied within {PREPARED_WITHIN_S:.0f}s")
            await asyncio.sleep(0.1)


async def _status(session: aiohttp.ClientSession, url: str) -> str | None:
    async with session.get(url) as response:
        return (await response.json()).get("status") if response.status == 200 else None


Deploy = Callable[[], Awaitable[object]]


async def rehearse(
    settings: Settings, sizes: Sizes, gateway: str = "http://127.0.0.1:8080", deploy: Deploy | None = None
) -> dict[str, Any]:
    """Traffic against the local stack while it is deployed: `sizes.rolls` rollouts of this checkout, or the
    given `deploy` (a rollout expected to fail, a rollback...). The report counts every failure and loss."""
    say = Say()
    admin = issue_token(settings.jwt_secret, Role.ADMIN, "rehearsal")
    await prepare(gateway, admin)
    ledger = Ledger(sizes)
    stop = asyncio.Event()  # ends the traffic; clients keep listening until everything settled
    clients = [MenuClient(f"{gateway}/v1/cities/{CITY}/menu/stream", ledger) for _ in range(sizes.sse_clients)]
    tasks = [asyncio.create_task(c.run()) for c in clients]
    with contextlib.suppress(TimeoutError):  # one that never connects shows as missing every change
        async with asyncio.timeout(PREPARED_WITHIN_S):
            await asyncio.gather(*(c.has_menu.wait() for c in clients))
    tasks += [asyncio.create_task(read_menus(gateway, ledger, stop)) for _ in range(sizes.menu_readers)]
    tasks.append(asyncio.create_task(change_prices(gateway, admin, ledger, stop)))
    tasks.append(asyncio.create_task(place_orders(gateway, settings.jwt_secret, ledger, stop)))
    traffic_started = time.perf_counter()
    await asyncio.sleep(5)
    started = time.perf_counter()
    deploys: list[Deploy] = (
        [deploy] if deploy else [functools.partial(rollout, settings, None, None, sizes.only)] * sizes.rolls
    )
    for number, run in enumerate(deploys, start=1):
        ledger.rolling = True
        say(f"deploy {number} of {len(deploys)}")
        await run()
        ledger.rolling = False
        await asyncio.sleep(5)
    rolled_s = time.perf_counter() - started
    stop.set()
    ledger.traffic_s = time.perf_counter() - traffic_started
    await settle(ledger, clients, sizes.settle_s)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return await report(settings, ledger, clients, rolled_s)


async def settle(ledger: Ledger, clients: list[MenuClient], timeout: float) -> None:
    """Give every client and order the time to catch up (each client still resumes if it must)."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        complete = all(dict(c.seen) == dict(ledger.changes) for c in clients)
        if complete and len(ledger.decided) == len(ledger.orders):
            return
        await asyncio.sleep(0.5)


async def report(settings: Settings, ledger: Ledger, clients: list[MenuClient], rolled_s: float) -> dict[str, Any]:
    acknowledged = sum(len(p) for p in ledger.changes.values())
    seen = [{item: set(prices) for item, prices in c.seen.items()} for c in clients]
    missing = sum(
        len([p for p in prices if p not in received.get(item, set())])
        for received in seen
        for item, prices in ledger.changes.items()
    )
    misordered = sum(
        1
        for c in clients
        for item, prices in c.seen.items()
        if [p for p in prices if p in set(ledger.changes.get(item, []))] != ledger.changes.get(item, [])
    )
    order_ids = [order_id for _, order_id in ledger.orders]
    gaps = [gap for c in clients if c.source for gap in c.source.gaps_s]
    rows: dict[str, int] = {}
    async with aiopg.connect(settings.pg_dsn) as conn, conn.cursor() as cur:
        await cur.execute("SELECT order_id, count(*) FROM orders WHERE order_id = ANY(%s) GROUP BY 1", (order_ids,))
        rows = {order_id: count for order_id, count in await cur.fetchall()}
    return {
        "rollout_s": round(rolled_s, 1),
        "menu_reads": ledger.read_ok,
        "traffic_s": round(ledger.traffic_s, 1),
        "failures": {
            "failed_menu_reads": ledger.read_failed,
            "failed_admin_changes": ledger.admin_failed,
            "failed_order_placements": ledger.order_failed,
            "acknowledged_changes_a_client_never_received": missing,
            "clients_with_changes_out_of_order_or_twice": misordered,
            "orders_never_decided": len([o for o in order_ids if o not in ledger.decided]),
            "orders_without_exactly_one_row": len([o for o in order_ids if rows.get(o) != 1]),
        },
        "failure_reasons": dict(ledger.failure_reasons),
        "admin_changes_acknowledged": acknowledged,
        "orders_placed": len(order_ids),
        "sse_clients": len(clients),
        "reconnects": len(gaps),
        "reconnect_gap_ms": {
            "p50": percentile(gaps, 0.5),
            "p99": percentile(gaps, 0.99),
        },
        "change_latency_ms": {
            "during_rollout": {
                "p50": percentile(ledger.latency_rolling, 0.5),
                "p99": percentile(ledger.latency_rolling, 0.99),
                "max": max(ledger.latency_rolling, default=0.0) * 1000,
                "count": len(ledger.latency_rolling),
            },
            "outside_rollout": {
                "p50": percentile(ledger.latency_steady, 0.5),
                "p99": percentile(ledger.latency_steady, 0.99),
                "max": max(ledger.latency_steady, default=0.0) * 1000,
                "count": len(ledger.latency_steady),
            },
        },
    }


def _rate(count: int, seconds: float) -> str:
    return f"{count} ({count / seconds:.1f}/s over {seconds:.0f} s of traffic)"


def report_rows(result: dict[str, Any]) -> list[tuple[str, str]]:
    rows = [(name.replace("_", " "), str(count)) for name, count in result["failures"].items()]
    rows += [
        ("admin changes acknowledged", _rate(result["admin_changes_acknowledged"], result["traffic_s"])),
        ("menu reads (2xx)", _rate(result["menu_reads"], result["traffic_s"])),
        ("orders placed", _rate(result["orders_placed"], result["traffic_s"])),
        ("SSE clients / reconnects", f"{result['sse_clients']} / {result['reconnects']}"),
        ("reconnect gap p50 / p99", "{p50:.0f} / {p99:.0f} ms".format(**result["reconnect_gap_ms"])),
        (
            "change latency during rollout p50 / p99 / max (changes)",
            "{p50:.0f} / {p99:.0f} / {max:.0f} ms ({count})".format(**result["change_latency_ms"]["during_rollout"]),
        ),
        (
            "change latency outside rollout p50 / p99 / max (changes)",
            "{p50:.0f} / {p99:.0f} / {max:.0f} ms ({count})".format(**result["change_latency_ms"]["outside_rollout"]),
        ),
        ("time spent rolling", f"{result['rollout_s']} s"),
    ]
    return rows
