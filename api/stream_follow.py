"""Following one Redis Stream from a pod: the loop both live feeds share (a city's menu changes in api.feed,
every order's status in api.order_feed).

The follower finds its start position, says it has started, then reads on with a blocking XREAD. Redis may
blink at any step; the follower never dies of it: it logs, pauses and tries again from the last position it
handed on, so a failed read or a failed hand-over (the menu feed reads a snapshot from Redis while handling
one) is read again, never skipped. Subscribers drop what they already have (api.feed.Subscriber), which makes
that redelivery harmless.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast

from redis.asyncio import Redis

from api.readmodel import as_text

logger = logging.getLogger(__name__)

BLOCK_MS = 2_000
READ_COUNT = 500
FEED_SOCKET_TIMEOUT_S = BLOCK_MS / 1000 + 10  # outlasts the XREAD block (see api.main's feed connections)
RETRY_PAUSE_S = 0.5

RawEntries = Sequence[tuple[bytes, dict[bytes, bytes]]]


async def follow_stream(
    redis: Redis,
    stream: str,
    start: Callable[[], Awaitable[str]],
    handle: Callable[[RawEntries], Awaitable[None]],
    started: asyncio.Event,
    name: str,
    settle: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Run until cancelled: hand every entry of `stream` after the start position to `handle`, in order.

    `settle`, awaited after each read that handed entries on, may hold the next read back while earlier writes
    are still on their way, so the entries that arrive meanwhile reach a client in one write.
    """
    last_id = await _retrying(start, name, "finding its start position")
    started.set()
    while True:
        try:
            response = await redis.xread({stream: last_id}, block=BLOCK_MS, count=READ_COUNT)
            streams = cast(list[Any], response or [])
            for _stream, entries in streams:
                if entries:
                    await handle(entries)
                    last_id = as_text(entries[-1][0])
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.warning("%s: following %s failed (%r); retrying from %s", name, stream, exc, last_id)
            await asyncio.sleep(RETRY_PAUSE_S)
            continue
        if streams and settle is not None:
            await settle()


async def _retrying(step: Callable[[], Awaitable[str]], name: str, doing: str) -> str:
    while True:
        try:
            return await step()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.warning("%s: %s failed (%r); retrying", name, doing, exc)
            await asyncio.sleep(RETRY_PAUSE_S)
