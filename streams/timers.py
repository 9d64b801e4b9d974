"""The worker's timers, made to ride out failures.

Faust runs a timer as an app task, and mode crashes the whole app when a task raises
(`Service._execute_task` -> `crash`): one Redis ConnectionError in a timer that reads Redis, or a Kafka
timeout in one that asks for offsets, stopped the worker for good ("Crashed reason=ConnectionError").
Here a failing run is logged and counted, the worker reports not ready while a timer keeps failing for a
dependency, and the next run comes at the usual interval.
"""

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from streams.app import Worker
from streams.failures import is_transient
from streams.metrics import TIMER_FAILURES
from streams.retry import ShuttingDown

logger = logging.getLogger(__name__)

TimerBody = Callable[[], Awaitable[None]]


def worker_timer(worker: Worker, interval: float) -> Callable[[TimerBody], TimerBody]:
    def register(body: TimerBody) -> TimerBody:
        ridden_out = ride_out_failures(worker, body)
        timer: Callable[[TimerBody], TimerBody] = worker.app.timer(interval=interval)
        return timer(ridden_out)

    return register


def ride_out_failures(worker: Worker, body: TimerBody) -> TimerBody:
    name = body.__name__

    @functools.wraps(body)
    async def run(*args: Any) -> None:
        try:
            await body(*args)
        except ShuttingDown:
            return
        except Exception as exc:
            if is_transient(exc):
                TIMER_FAILURES.labels(name, "transient").inc()
                worker.health.degraded(name, f"{type(exc).__name__}: {exc}")
                logger.warning("timer %s: a dependency failed (%r); trying again next run", name, exc)
            else:
                TIMER_FAILURES.labels(name, "bug").inc()
                logger.exception("timer %s failed; trying again next run", name)
            return
        worker.health.recovered(name)

    return run
