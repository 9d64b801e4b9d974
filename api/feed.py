"""Per-pod fan-out of each city's change feed.

One reader per city per pod follows the city's Redis Stream and hands each entry, encoded once, to every
subscriber of that city. A subscriber's queue is bounded: a client that cannot keep up is told to
reconnect (and then resumes from history) instead of slowing the others down.
"""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, cast

from redis.asyncio import Redis

from api.readmodel import NO_CURSOR, FeedEntry, MenuReader, to_entry

logger = logging.getLogger(__name__)

BLOCK_MS = 5_000
READ_COUNT = 500


class Overflowed(Exception):
    """The subscriber fell too far behind; it should reconnect and resume from history."""


class Closed(Exception):
    """The client went away, or the pod is shutting down."""


@dataclass(eq=False)
class Subscriber:
    """One client's view of a city feed: entries pile up while it writes, and go out together."""

    limit: int
    pending: list[FeedEntry] = field(default_factory=list)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    overflowed: bool = False
    closed: bool = False
    last_order: tuple[int, int] = (-1, -1)

    def close(self) -> None:
        self.closed = True
        self.wake.set()

    def offer(self, entry: FeedEntry) -> None:
        if self.overflowed:
            return
        if len(self.pending) >= self.limit:
            self.overflowed = True
            self.pending = []
        else:
            self.pending.append(entry)
        self.wake.set()

    async def take(self) -> list[FeedEntry]:
        """Every entry newer than what this subscriber already sent (at least one), oldest first."""
        while True:
            await self.wake.wait()
            self.wake.clear()
            if self.closed:
                raise Closed()
            if self.overflowed:
                raise Overflowed()
            entries, self.pending = self.pending, []
            fresh = [entry for entry in entries if entry.order > self.last_order]
            if fresh:
                return fresh


@dataclass(eq=False)
class CityFeed:
    city: str
    redis: Redis
    reader: MenuReader
    queue_size: int
    subscribers: set[Subscriber] = field(default_factory=set)
    task: asyncio.Task[None] | None = None
    started: asyncio.Event = field(default_factory=asyncio.Event)

    async def ensure_running(self) -> None:
        if self.task is None:
            self.task = asyncio.create_task(self._follow(), name=f"feed-{self.city}")
        await self.started.wait()

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[Subscriber]:
        await self.ensure_running()
        subscriber = Subscriber(self.queue_size)
        self.subscribers.add(subscriber)
        try:
            yield subscriber
        finally:
            self.subscribers.discard(subscriber)

    async def _follow(self) -> None:
        keys = self.reader.keys(self.city)
        last_id = await self._start_position()
        self.started.set()
        while True:
            try:
                response = await self.redis.xread({keys.feed: last_id}, block=BLOCK_MS, count=READ_COUNT)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("feed reader for %s failed (%r); retrying", self.city, exc, extra={"city": self.city})
                await asyncio.sleep(0.5)
                continue
            streams = cast(list[Any], response or [])
            for _stream, entries in streams:
                for entry_id, fields in entries:
                    entry = to_entry(entry_id, fields)
                    last_id = entry.id
                    await self._publish(entry)

    async def _start_position(self) -> str:
        while True:
            try:
                return await self.reader.cursor(self.city)
            except Exception as exc:
                logger.warning("cannot read feed position of %s (%r); retrying", self.city, exc)
                await asyncio.sleep(0.5)

    async def _publish(self, entry: FeedEntry) -> None:
        if entry.type == "snapshot":
            # The read model was rewritten from scratch: everyone starts over from a fresh snapshot.
            menu = await self.reader.menu(self.city)
            entry = FeedEntry(menu.cursor if menu.cursor != NO_CURSOR else entry.id, "snapshot", menu.body.decode())
        for subscriber in tuple(self.subscribers):
            subscriber.offer(entry)


class FeedHub:
    def __init__(self, redis: Redis, reader: MenuReader, queue_size: int) -> None:
        self._redis = redis
        self._reader = reader
        self._queue_size = queue_size
        self._feeds: dict[str, CityFeed] = {}

    def city(self, city: str) -> CityFeed:
        feed = self._feeds.get(city)
        if feed is None:
            feed = self._feeds[city] = CityFeed(city, self._redis, self._reader, self._queue_size)
        return feed

    def subscriber_count(self) -> int:
        return sum(len(feed.subscribers) for feed in self._feeds.values())

    async def close(self) -> None:
        tasks = [feed.task for feed in self._feeds.values() if feed.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
