"""Retry-forever with capped back-off, for writes whose loss is not an option (the event waits meanwhile)."""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from streams.metrics import RETRIES

logger = logging.getLogger(__name__)

T = TypeVar("T")
MAX_BACKOFF_S = 5.0


class ShuttingDown(Exception):
    """The process is stopping: leave the event unprocessed, it will be read again."""


async def retry_forever(
    what: str, attempt: Callable[[], Awaitable[T]], stopping: Callable[[], bool] = lambda: False
) -> T:
    delay = 0.05
    while True:
        try:
            return await attempt()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            RETRIES.labels(what).inc()
            if stopping():
                raise ShuttingDown(what) from exc
            logger.warning("%s failed (%s: %s); retrying in %.2fs", what, type(exc).__name__, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_BACKOFF_S)
