"""Retry with capped back-off, for writes whose loss is not an option (the event waits meanwhile).

Only transient failures (a dependency unreachable: streams.failures.is_transient) are retried, for as long as
they last; while they do, the worker reports not ready. A permanent failure is raised at once: retrying a value
that a store refuses would stall its partition forever.
"""

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from streams.failures import is_transient
from streams.health import WorkerHealth
from streams.metrics import RETRIES

logger = logging.getLogger(__name__)

T = TypeVar("T")
FIRST_BACKOFF_S = 0.05
MAX_BACKOFF_S = 5.0


class ShuttingDown(Exception):
    """The process is stopping: leave the event unprocessed, it will be read again."""


async def retry_forever(
    what: str,
    attempt: Callable[[], Awaitable[T]],
    stopping: Callable[[], bool] = lambda: False,
    health: WorkerHealth | None = None,
) -> T:
    delay = FIRST_BACKOFF_S
    with contextlib.ExitStack() as marks:
        while True:
            try:
                return await attempt()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not is_transient(exc):
                    raise
                RETRIES.labels(what).inc()
                if stopping():
                    raise ShuttingDown(what) from exc
                if health is not None and delay == FIRST_BACKOFF_S:
                    marks.enter_context(health.retrying(what))  # not ready until this write goes through
                logger.warning("%s failed (%s: %s); retrying in %.2fs", what, type(exc).__name__, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF_S)
