"""Per-pod fan-out of each city's change feed.

One reader per city per pod follows the city's Redis Stream. Each batch of entries it reads is framed once
(SSE frames, then the HTTP chunk around them) and the same bytes are written to every live client of the
city, straight to its transport: no per-client task wakes up, no per-client encoding. A client whose unsent
bytes pass a bound is cut loose and told to reconnect (it resumes from history), so it never delays others.
"""

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

from prometheus_client.metrics import Counter
from redis.asyncio import Redis

from api.errors import Unavailable
from api.gzip_stream import GzipFraming, deflate_piece
from api.metrics import SSE_EVENTS_SENT
from api.readmodel import NO_CURSOR, FeedEntry, MenuReader, stream_order, to_entry
from api.sse import SEPARATOR
from api.stream_follow import RawEntries, follow_stream

logger = logging.getLogger(__name__)

START_TIMEOUT_S = 5.0  # a stream waits this long for a feed reader to find its position, then answers 503
SETTLE_STEP_S = 0.002  # how often a feed looks again whether its clients' earlier writes have gone out


async def until_started(started: asyncio.Event) -> None:
    """A reader that cannot find its position (Redis unreachable) keeps trying in the background; a client
    asking meanwhile gets a 503 rather than a request that hangs until Redis returns."""
    if started.is_set():  # the usual case: no timer and no task for each client of a running feed
        return
    try:
        await asyncio.wait_for(started.wait(), START_TIMEOUT_S)
    except TimeoutError:
        raise Unavailable("the live feed is not available yet; retry shortly", code="dependency_unavailable") from None


@functools.cache
def events_sent(kind: str) -> Counter:
    """The labelled counter, looked up once per kind: `labels()` per client per batch was a tenth of a pod's
    fan-out time (py-spy, 1,000 clients)."""
    return SSE_EVENTS_SENT.labels(kind=kind)


def chunk(body: bytes, chunked: bool) -> bytes:
    """The body as one HTTP/1.1 chunk (or as is, for a response without chunked encoding)."""
    return b"%x\r\n%b\r\n" % (len(body), body) if chunked else body


@dataclass(frozen=True)
class Piece:
    """Bytes written alike to many clients, built once in each form a client may take (plain or gzip)."""

    body: bytes

    @functools.cached_property
    def chunked_body(self) -> bytes:
        return chunk(self.body, chunked=True)

    @functools.cached_property
    def deflated(self) -> bytes:
        """The body as a piece of a gzip stream, made once on the first gzip client's use."""
        return deflate_piece(self.body)

    @functools.cached_property
    def chunked_deflated(self) -> bytes:
        return chunk(self.deflated, chunked=True)


# The keep-alive comment (the one aiohttp-sse sends), written by a feed to its clients when it had nothing else
# for them lately: one timer per city feed instead of a task waking per client.
HEARTBEAT = Piece(b": ping" + SEPARATOR.encode() * 2)


@dataclass(frozen=True)
class Delivery:
    """One batch of entries, with its bytes built once for every client."""

    entries: Sequence[FeedEntry]

    @functools.cached_property
    def piece(self) -> Piece:
        return Piece(b"".join(entry.frame for entry in self.entries))

    @property
    def newest(self) -> tuple[int, int]:
        return self.entries[-1].order


@dataclass(eq=False)
class Subscriber:
    """One client of a city feed. Buffers while its first data (snapshot or history) is being written,
    then goes live: from then on the feed writes to its transport directly."""

    max_pending_bytes: int
    kind: str = "menu"  # the metric label of what it streams
    pending: list[FeedEntry] = field(default_factory=list)
    pending_bytes: int = 0
    transport: asyncio.WriteTransport | None = None
    chunked: bool = True
    gzip: GzipFraming | None = None  # the client's gzip stream, when it takes one
    last_order: tuple[int, int] = (-1, -1)
    overflowed: bool = False
    # What ends the client's stream once it is cut loose (api.streaming sets it when the stream starts; a client
    # cut loose before that is found `overflowed`).
    on_cut_loose: Callable[[], None] | None = None

    def deliver(self, delivery: Delivery) -> bool:
        """Write the delivery to the client (or keep it until the client is live). True when some of its bytes
        still wait for the client's socket: the feed then coalesces what comes next (CityFeed._settle)."""
        if self.overflowed:
            return False
        if self.transport is None:
            self.pending.extend(delivery.entries)
            self.pending_bytes += len(delivery.piece.body)
            if self.pending_bytes > self.max_pending_bytes:
                self._overflow()
            return False
        if delivery.newest <= self.last_order:
            return self.unsent()
        if delivery.entries[0].order > self.last_order:
            self.transport.write(self._shared_bytes(delivery.piece))
        else:  # rare: the batch straddles what this client already has
            self._write([e for e in delivery.entries if e.order > self.last_order])
        self.last_order = delivery.newest
        events_sent(self.kind).inc(len(delivery.entries))
        waiting = self.transport.get_write_buffer_size()
        if waiting > self.max_pending_bytes:
            self._overflow()
            return False
        return waiting > 0 and not self.transport.is_closing()

    def unsent(self) -> bool:
        """Whether bytes written to this live client are still waiting for its socket to take them."""
        transport = self._open_transport()
        return transport is not None and transport.get_write_buffer_size() > 0

    def _open_transport(self) -> asyncio.WriteTransport | None:
        """The live client's connection, unless it was cut loose or is closing."""
        if self.transport is None or self.overflowed or self.transport.is_closing():
            return None
        return self.transport

    def go_live(self, transport: asyncio.WriteTransport, chunked: bool, gzip: GzipFraming | None = None) -> None:
        """Called once the initial data is written; no await between flushing and going live."""
        self.chunked = chunked
        self.gzip = gzip
        self.transport = transport
        # Newer than everything before it, as deliver() does once live: a batch the feed read again is in here
        # twice, and after a rebuild the feed's snapshot (at the menu's cursor) comes before changes it includes.
        fresh: list[FeedEntry] = []
        for entry in self.pending:
            if entry.order > (fresh[-1].order if fresh else self.last_order):
                fresh.append(entry)
        self.pending, self.pending_bytes = [], 0
        if fresh:
            self._write(fresh)
            self.last_order = fresh[-1].order
            events_sent(self.kind).inc(len(fresh))

    def beat(self) -> None:
        """The keep-alive comment, to a live client the feed had nothing for lately."""
        transport = self._open_transport()
        if transport is not None:
            transport.write(self._shared_bytes(HEARTBEAT))

    def _shared_bytes(self, piece: Piece) -> bytes:
        """The piece's bytes as built once for every client of this kind (plain or gzip, chunked or not)."""
        if self.gzip is None:
            return piece.chunked_body if self.chunked else piece.body
        self.gzip.piece(piece.body, piece.deflated)
        return piece.chunked_deflated if self.chunked else piece.deflated

    def _write(self, entries: list[FeedEntry]) -> None:
        assert self.transport is not None
        body = b"".join(entry.frame for entry in entries)
        self.transport.write(chunk(body if self.gzip is None else self.gzip.piece(body), self.chunked))

    def _overflow(self) -> None:
        if self.overflowed:
            return
        self.overflowed = True
        self.pending, self.pending_bytes = [], 0
        if self.on_cut_loose is not None:
            self.on_cut_loose()


@dataclass(eq=False)
class CityFeed:
    city: str
    redis: Redis
    reader: MenuReader
    max_pending_bytes: int
    coalesce_s: float
    ping_s: float  # a client gets at least a heartbeat this often
    subscribers: set[Subscriber] = field(default_factory=set)
    behind: set[Subscriber] = field(default_factory=set)  # clients the last delivery could not go out to at once
    # Where the feed is: every entry up to here was handed out already or came before its start, and a client
    # subscribing now gets every entry after it; so a menu reflecting `position` is a complete start for that
    # client (MenuReader.menu's `covering`). None until the feed knows its start.
    position: tuple[int, int] | None = None
    task: asyncio.Task[None] | None = None
    heartbeats: asyncio.Task[None] | None = None
    last_sent: float = 0.0  # when the feed last wrote to its clients (time.monotonic())
    started: asyncio.Event = field(default_factory=asyncio.Event)

    async def ensure_running(self) -> None:
        if self.task is None:
            self.task = asyncio.create_task(self._follow(), name=f"feed-{self.city}")
            self.heartbeats = asyncio.create_task(self._beat(), name=f"feed-{self.city}-heartbeats")
        await until_started(self.started)

    def tasks(self) -> list[asyncio.Task[None]]:
        return [task for task in (self.task, self.heartbeats) if task is not None]

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[Subscriber]:
        await self.ensure_running()
        subscriber = Subscriber(self.max_pending_bytes)
        self.subscribers.add(subscriber)
        try:
            yield subscriber
        finally:
            self.subscribers.discard(subscriber)

    async def _follow(self) -> None:
        await follow_stream(
            self.redis,
            self.reader.keys(self.city).feed,
            self._start_position,
            self._publish,
            self.started,
            f"feed of {self.city}",
            settle=self._settle,
        )

    async def _beat(self) -> None:
        """A heartbeat to every live client once the feed has written nothing for `ping_s`: keeps quiet streams
        open through proxies, and a write to a vanished client is what finds it gone (TCP_USER_TIMEOUT, set by
        aiohttp-sse). One timer per city, not one task waking per client (50,000 clients at 10 s: 5,000 a second)."""
        self.last_sent = time.monotonic()
        while True:
            await asyncio.sleep(max(0.0, self.last_sent + self.ping_s - time.monotonic()))
            if time.monotonic() - self.last_sent < self.ping_s:
                continue  # the feed delivered meanwhile
            self.last_sent = time.monotonic()
            self._each(Subscriber.beat)

    async def _start_position(self) -> str:
        cursor = await self.reader.cursor(self.city)
        self.position = None if cursor == NO_CURSOR else stream_order(cursor)
        return cursor

    async def _settle(self) -> None:
        """Coalesce only while a write is still pending: when every client's socket took the last delivery at
        once, the next change is read and sent at once too. While some client's earlier bytes are still waiting
        (a slow reader, or a pod busy writing to thousands), the feed waits for them, at most `coalesce_s`, and the
        changes arriving meanwhile go out together in one write instead of one write each."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.coalesce_s
        while self.behind and loop.time() < deadline:
            await asyncio.sleep(SETTLE_STEP_S)
            self.behind = {subscriber for subscriber in self.behind if subscriber.unsent()}
        self.behind = set()

    async def _publish(self, raw_entries: RawEntries) -> None:
        batch: list[FeedEntry] = []
        for entry in (to_entry(entry_id, fields) for entry_id, fields in raw_entries):
            if entry.type != "snapshot":
                batch.append(entry)
                continue
            # The read model was rewritten from scratch: everyone starts over from a fresh snapshot.
            self._deliver(batch)
            batch = []
            menu = await self.reader.menu(self.city)
            cursor = menu.cursor if menu.cursor != NO_CURSOR else entry.id
            self._deliver([FeedEntry(cursor, "snapshot", menu.body.decode())])
        self._deliver(batch)

    def _deliver(self, entries: list[FeedEntry]) -> None:
        if not entries:
            return
        delivery = Delivery(entries)
        self.position = delivery.newest
        self.last_sent = time.monotonic()

        def deliver(subscriber: Subscriber) -> None:
            if subscriber.deliver(delivery):
                self.behind.add(subscriber)

        self._each(deliver)

    def _each(self, write: Callable[[Subscriber], object]) -> None:
        for subscriber in tuple(self.subscribers):
            try:
                write(subscriber)
            except Exception:  # one broken connection never stops the broadcast
                logger.exception("dropping a subscriber of %s", self.city)
                subscriber._overflow()


class FeedHub:
    def __init__(
        self, redis: Redis, reader: MenuReader, max_pending_bytes: int, coalesce_s: float, ping_s: float
    ) -> None:
        self._redis = redis
        self._reader = reader
        self._max_pending_bytes = max_pending_bytes
        self._coalesce_s = coalesce_s
        self._ping_s = ping_s
        self._feeds: dict[str, CityFeed] = {}

    def city(self, city: str) -> CityFeed:
        feed = self._feeds.get(city)
        if feed is None:
            feed = CityFeed(city, self._redis, self._reader, self._max_pending_bytes, self._coalesce_s, self._ping_s)
            self._feeds[city] = feed
        return feed

    async def close(self) -> None:
        tasks = [task for feed in self._feeds.values() for task in feed.tasks()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
