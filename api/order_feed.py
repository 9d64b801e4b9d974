"""Per-pod fan-out of order status events: one reader of the all-orders stream, dispatching by order id."""

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any, cast

from redis.asyncio import Redis

from api.feed import BLOCK_MS, READ_COUNT, Delivery, Subscriber, until_started
from api.readmodel import FeedEntry
from core.redis_keys import orders_feed_key

logger = logging.getLogger(__name__)


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
        last_id = await self._start_position()
        self._started.set()
        while True:
            try:
                response = await self._redis.xread({self._stream: last_id}, block=BLOCK_MS, count=READ_COUNT)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("order feed reader failed (%r); retrying", exc)
                await asyncio.sleep(0.5)
                continue
            for _stream, entries in cast(list[Any], response or []):
                for entry_id, fields in entries:
                    last_id = entry_id
                    order_id = fields[b"order_id"].decode()
                    for subscriber in tuple(self._subscribers.get(order_id, ())):
                        entry = FeedEntry(fields[b"id"].decode(), "status", fields[b"data"].decode())
                        subscriber.deliver(Delivery([entry]))

    async def _start_position(self) -> str:
        while True:
            try:
                newest = await self._redis.xrevrange(self._stream, count=1)
                if not newest:
                    return "0-0"
                entry_id = newest[0][0]
                return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
            except Exception as exc:
                logger.warning("cannot read the order feed position (%r); retrying", exc)
                await asyncio.sleep(0.5)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
