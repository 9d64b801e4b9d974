"""What the chaos test drives and watches: paced admin price changes that remember every answer, and menu
SSE clients that reconnect and resume by Last-Event-ID like a browser's EventSource."""

import asyncio
import contextlib
import itertools
import random
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from functools import partial

import aiohttp

from api.sse import RECONNECT_EVENT
from ops.sse_client import Backoff, EventSource, ServerSentEvent
from tests.support.catalog import price_set
from tests.support.stack import Stack

Item = tuple[str, str, str]  # city, restaurant_id, item_id


@dataclass
class Answers:
    """Every admin write's outcome. A 503 or a timeout leaves the change's fate unknown: it may still apply."""

    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)  # no HTTP answer at all
    without_retry_after: int = 0  # 503s lacking Retry-After
    acked: dict[tuple[str, str], list[int]] = field(default_factory=lambda: defaultdict(list))
    unknown: dict[tuple[str, str], set[int]] = field(default_factory=lambda: defaultdict(set))
    sent_at: dict[int, float] = field(default_factory=dict)  # price -> when it was sent (monotonic)
    bodies_5xx: list[str] = field(default_factory=list)
    by_phase: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))  # phase -> outcomes
    slowest_s: dict[str, float] = field(default_factory=lambda: defaultdict(float))  # phase -> longest answer

    @property
    def acked_total(self) -> int:
        return sum(len(prices) for prices in self.acked.values())


@dataclass
class PacedPriceChanges:
    """price.set with a unique, growing price each, paced to `rate_per_s`, over the API pods."""

    stack: Stack
    items: list[Item]
    rate_per_s: float = 25.0
    # Past the API's own bound on a Kafka write (core/publisher.py: 10 s for the acknowledgement): a client that gave up
    # sooner would report its own impatience, not the answer the API gives during an outage.
    timeout_s: float = 30.0
    answers: Answers = field(default_factory=Answers)
    phase: str = "steady"  # what the test is doing to the stack meanwhile, to tell which outage caused what
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Idempotent: the test stops it before its checks, the fixture again on the way out."""
        self._stop.set()
        assert self._task is not None
        await self._task

    async def _run(self) -> None:
        """Open loop: a change every 1/rate s whatever the answers take, to an item with none in flight (so each
        item's changes are acknowledged in the order they were sent); a tick with every item busy is skipped."""
        prices = itertools.count(10_000)
        rng = random.Random(13)
        pods = itertools.cycle(range(len(self.stack.apis)))
        busy: set[Item] = set()
        in_flight: set[asyncio.Task[None]] = set()
        next_at = time.monotonic()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout_s)) as session:
            while not self._stop.is_set():
                idle = [item for item in self.items if item not in busy]
                if idle:
                    item = rng.choice(idle)
                    price = next(prices)
                    self.answers.sent_at[price] = time.monotonic()
                    busy.add(item)
                    task = asyncio.create_task(self._send(session, next(pods), item, price))
                    in_flight.add(task)
                    task.add_done_callback(in_flight.discard)
                    task.add_done_callback(partial(_release, busy, item))
                next_at = max(next_at + 1 / self.rate_per_s, time.monotonic())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), next_at - time.monotonic())
            await asyncio.gather(*in_flight)

    async def _send(self, session: aiohttp.ClientSession, pod: int, item: Item, price: int) -> None:
        city, restaurant_id, item_id = item
        key = (city, item_id)
        phase, started = self.phase, time.monotonic()
        try:
            async with session.post(
                f"{self.stack.api_url(pod)}/v1/admin/events",
                json=price_set(city, restaurant_id, item_id, price),
                headers=self.stack.admin_headers(),
            ) as response:
                body = await response.text()
                self.answers.slowest_s[phase] = max(self.answers.slowest_s[phase], time.monotonic() - started)
                self.answers.statuses[response.status] += 1
                self.answers.by_phase[phase][str(response.status)] += 1
                if response.status == 202:
                    self.answers.acked[key].append(price)
                    return
                self.answers.unknown[key].add(price)
                if response.status == 503 and "Retry-After" not in response.headers:
                    self.answers.without_retry_after += 1
                if response.status >= 500 and response.status != 503:
                    self.answers.bodies_5xx.append(f"{response.status} {body[:300]}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.answers.errors[type(exc).__name__] += 1
            self.answers.by_phase[phase][type(exc).__name__] += 1
            self.answers.unknown[key].add(price)


def _release(busy: set[Item], item: Item, _done: "asyncio.Task[None]") -> None:
    busy.discard(item)


@dataclass
class ResumingSse:
    """One menu stream, followed for the whole test: on any end or error it reconnects after the server's
    retry hint (0.5 s, never longer: the test times how soon changes flow again) with the last id it saw,
    as EventSource does."""

    url: str
    events: list[ServerSentEvent] = field(default_factory=list)  # the `reconnect` events left out
    _source: EventSource | None = None
    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        timeout = aiohttp.ClientTimeout(total=None, connect=5, sock_read=30)  # heartbeats every 10 s
        self._session = aiohttp.ClientSession(timeout=timeout)
        self._source = EventSource(self._session, self.url, backoff=Backoff(first_s=0.5, cap_s=0.5))
        self._task = asyncio.create_task(self._follow(self._source))

    async def stop(self) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await self._session.close()

    @property
    def statuses(self) -> Counter[int]:
        """Per (re)connection."""
        return self._source.statuses if self._source else Counter()

    @property
    def errors(self) -> Counter[str]:
        return self._source.errors if self._source else Counter()

    @property
    def connections(self) -> int:
        return sum(self.statuses.values())

    def snapshots(self) -> int:
        return sum(1 for e in self.events if e.type == "snapshot")

    def prices(self) -> dict[str, list[int]]:
        seen: dict[str, list[int]] = defaultdict(list)
        for event in self.events:
            if event.type == "item":
                change = event.json()
                seen[change["item_id"]].append(change["price_cents"])
        return seen

    async def _follow(self, source: EventSource) -> None:
        async for event in source.events():
            if event.type != RECONNECT_EVENT:
                self.events.append(event)
