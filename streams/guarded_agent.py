"""The loop every agent runs: take records in offset order through the delivery guard, process each, ack.

An ack commits the offset only if the record was processed; otherwise it releases the record, which will be
read again. On shutdown the agent stops with the current record unprocessed rather than half-done.
"""

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, cast

import faust

from streams.app import Worker
from streams.dead_letters import dead_letter
from streams.delivery import guard_of
from streams.failures import DeadLetterKind, describe, is_transient
from streams.metrics import PROCESSING
from streams.retry import ShuttingDown
from streams.timers import worker_timer

logger = logging.getLogger(__name__)


def register_guarded_agent(
    worker: Worker, topic: faust.TopicT, name: str, process: Callable[[Worker, Any], Awaitable[None]]
) -> None:
    app = worker.app
    guard = guard_of(app)

    @app.agent(topic, name=name)
    async def agent(stream: faust.StreamT[bytes]) -> None:
        events = cast(faust.Stream[bytes], stream).noack()
        async for event in events.events():
            message = event.message
            try:
                if await worker.retry("reading committed offsets", functools.partial(guard.admit, app, event)):
                    lane, record = f"{name}[{message.partition}]", f"offset {message.offset}"
                    with worker.health.processing(lane, record), PROCESSING.labels(name).time():
                        await _process_or_park(worker, name, process, message)
                    guard.processed(message)
            except ShuttingDown:
                logger.info("%s stopping with offset %d unprocessed; it will be read again", name, message.offset)
                return
            except Exception as exc:  # transient and escaped the agent's own retries: leave it to be read again
                logger.warning("%s left offset %d unprocessed (%r); it will be read again", name, message.offset, exc)
            finally:
                await events.ack(event)


async def _process_or_park(
    worker: Worker, name: str, process: Callable[[Worker, Any], Awaitable[None]], message: Any
) -> None:
    """The agents park what they cannot use themselves; this is the net under them, so that no exception an
    event causes ends the agent (Faust would restart it and ack the event unprocessed) or stalls the partition."""
    try:
        await process(worker, message)
    except ShuttingDown:
        raise
    except Exception as exc:
        if is_transient(exc):
            raise
        logger.exception("%s failed on offset %d", name, message.offset)
        await dead_letter(worker, message, DeadLetterKind.BUG, f"bug: {describe(exc)}")


def register_stall_watchdog(worker: Worker) -> None:
    """Once a second: rewind any guarded partition whose records never reached its agent."""
    app = worker.app
    guard = guard_of(app)

    @worker_timer(worker, 1.0)
    async def rewind_stalled_partitions() -> None:
        await guard.rewind_stalled(app)
