"""The loop every agent runs: take records in offset order through the delivery guard, process each, ack.

An ack commits the offset only if the record was processed; otherwise it releases the record, which will be
read again. On shutdown the agent stops with the current record unprocessed rather than half-done.
"""

import logging
from collections.abc import Awaitable, Callable
from typing import Any, cast

import faust

from streams.app import Worker
from streams.delivery import guard_of
from streams.metrics import PROCESSING
from streams.retry import ShuttingDown

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
            try:
                if await guard.admit(app, event):
                    with PROCESSING.labels(name).time():
                        await process(worker, event.message)
                    guard.processed(event.message)
            except ShuttingDown:
                logger.info("%s stopping with offset %d unprocessed; it will be read again", name, event.message.offset)
                return
            finally:
                await events.ack(event)


def register_stall_watchdog(worker: Worker) -> None:
    """Once a second: rewind any guarded partition whose records never reached its agent."""
    app = worker.app
    guard = guard_of(app)

    @app.timer(interval=1.0)  # type: ignore[untyped-decorator]
    async def rewind_stalled_partitions() -> None:
        await guard.rewind_stalled(app)
