"""Per-pod fan-out of order status events: one reader of the all-orders stream, dispatching by order id."""

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import AsyncIterator

from redis.asyncio import Redis

from api.feed import Delivery, Subscriber, until_started
from api.readmodel import FeedEntry, as_text
from api.stream_follow import RawEntries, follow_stream
from core.redis_keys import orders_feed_key


class OrderFeedHub:
    def __init__(self, redis: Redis, namespace: str, max_pending_bytes: int) -> None:
        self._redis = redis
        self._stream = orders_feed_key(namespace)
        self._max_pending_bytes = max_pending_bytes
        self._subscribers: dict[str, set[Subscriber]] = defaultdict(set)
        self._task: asyncio.Task[None] | None = None
        self._started = asyncio.Event()

    @contextlib.asynccontextmanager
    async def subscribe(self, order_id: str) -> AsyncIterator[Subscriber]:
        if self._task is None:
            self._task = asyncio.create_task(self._follow(), name="order-feed")
        await until_started(self._started)
        subscriber = Subscriber(self._max_pending_bytes, kind="order")
        self._subscribers[order_id].add(subscriber)
        try:
            yield subscriber
        finally:
            subscribers = self._subscribers[order_id]
            subscribers.discard(subscriber)
            if not subscribers:
                del self._subscribers[order_id]

    async def _follow(self) -> None:
        await follow_stream(
            self._redis, self._stream, self._start_position, self._dispatch, self._started, "order feed"
        )

    async def _start_position(self) -> str:
        """New subscribers start from their order's state in PostgreSQL/Redis; the feed needs only what is new."""
        newest = await self._redis.xrevrange(self._stream, count=1)
        return as_text(newest[0][0]) if newest else "0-0"

    async def _dispatch(self, raw_entries: RawEntries) -> None:
        for _entry_id, fields in raw_entries:
            subscribers = self._subscribers.get(fields[b"order_id"].decode(), ())
            if subscribers:
                delivery = Delivery([FeedEntry(fields[b"id"].decode(), "status", fields[b"data"].decode())])
                for subscriber in tuple(subscribers):
                    subscriber.deliver(delivery)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
