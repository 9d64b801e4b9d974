"""The loop every agent runs: take records in offset order through the delivery guard, process each, ack.

An ack commits the offset only if the record was processed; otherwise it releases the record, which will be
read again. On shutdown the agent stops with the current record unprocessed rather than half-done.

An agent may process records in groups (the catalog agent writes a group in one unit): a reader task takes
records from Faust as they arrive and the agent takes, each time, the first waiting record and every record
already waiting behind it, up to `MAX_GROUP`. It never waits for a group to fill: a record that arrives alone
is processed alone, at once; records that arrive while a group is being written form the next group. So a
worker that falls behind writes more records per unit and catches up, instead of falling further behind.
"""

import asyncio
import contextlib
import functools
import logging
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, cast

import faust
from faust.streams import _current_event

from streams.app import Worker
from streams.dead_letters import dead_letter
from streams.delivery import DeliveryGuard, guard_of
from streams.failures import DeadLetterKind, describe, is_transient
from streams.metrics import PROCESSING
from streams.retry import ShuttingDown
from streams.timers import worker_timer

logger = logging.getLogger(__name__)

MAX_GROUP = 64  # records written in one unit at most; also how far the reader reads ahead

Process = Callable[[Worker, Any], Awaitable[None]]  # one record's message
ProcessGroup = Callable[[Worker, list[Any]], Awaitable[None]]  # consecutive records' events


@contextlib.contextmanager
def record_context(event: Any | None) -> Iterator[None]:
    """Faust's tables send a change to the changelog partition of the record being processed, which they read
    from a context variable that Faust's own iteration sets. A record processed outside that iteration (in a
    group) sets it here; None leaves it as it is."""
    if event is None:
        yield
        return
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)


def register_guarded_agent(
    worker: Worker, topic: faust.TopicT, name: str, process: Process, process_group: ProcessGroup | None = None
) -> None:
    """`process` handles one record; `process_group`, when given, handles several consecutive ones (in offset
    order per partition) and must leave each of them processed, or raise."""
    app = worker.app
    guard = guard_of(app)

    @app.agent(topic, name=name)
    async def agent(stream: faust.StreamT[bytes]) -> None:
        events = cast(faust.Stream[bytes], stream).noack()
        if process_group is None:
            await _one_by_one(worker, guard, name, process, events)
        else:
            await _in_groups(worker, guard, name, process, process_group, events)


async def _one_by_one(worker: Worker, guard: DeliveryGuard, name: str, process: Process, events: Any) -> None:
    app = worker.app
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


async def _in_groups(
    worker: Worker, guard: DeliveryGuard, name: str, process: Process, process_group: ProcessGroup, events: Any
) -> None:
    waiting: asyncio.Queue[Any] = asyncio.Queue(MAX_GROUP)
    reader = asyncio.create_task(_read_ahead(events, waiting), name=f"{name}-reader")
    try:
        async for group in _groups(waiting, reader):
            if not await _process_group(worker, guard, name, process, process_group, events, group):
                return
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        while not waiting.empty():  # read but never admitted: released, to be read again
            await events.ack(waiting.get_nowait())


async def _read_ahead(events: Any, waiting: "asyncio.Queue[Any]") -> None:
    async for event in events.events():
        await waiting.put(event)


async def _groups(waiting: "asyncio.Queue[Any]", reader: "asyncio.Task[None]") -> AsyncIterator[list[Any]]:
    """The first waiting record and all that wait behind it; ends (or raises) with the reader."""
    while True:
        first = asyncio.ensure_future(waiting.get())
        try:
            await asyncio.wait({first, reader}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            first.cancel()  # cancelled or ended meanwhile: the record it may not have taken stays queued
        if not first.done() or first.cancelled():
            reader.result()  # the reader's error, if it failed
            return
        group = [first.result()]
        while len(group) < MAX_GROUP and not waiting.empty():
            group.append(waiting.get_nowait())
        yield group


async def _process_group(
    worker: Worker,
    guard: DeliveryGuard,
    name: str,
    process: Process,
    process_group: ProcessGroup,
    events: Any,
    group: list[Any],
) -> bool:
    """Admit the group's records through the guard, process the admitted ones together, ack every one.
    False when the worker is shutting down."""
    app = worker.app
    admitted: list[Any] = []
    try:
        for event in group:
            if event.message.generation_id != app.consumer_generation_id:
                continue  # read before a rebalance: released, as Faust itself skips it
            if await worker.retry("reading committed offsets", functools.partial(guard.admit, app, event)):
                guard.staged(event.message)
                admitted.append(event)
        if admitted:
            first, last = admitted[0].message, admitted[-1].message
            lane, records = f"{name}[{first.partition}]", f"offsets {first.offset}..{last.offset} ({len(admitted)})"
            started = time.perf_counter()
            with worker.health.processing(lane, records), guard.working():
                await _process_group_or_each(worker, name, process, process_group, admitted)
            per_record = (time.perf_counter() - started) / len(admitted)
            for event in admitted:
                PROCESSING.labels(name).observe(per_record)
                guard.processed(event.message)
            admitted = []
    except ShuttingDown:
        logger.info("%s stopping with %d records unprocessed; they will be read again", name, len(admitted))
        return False
    except Exception as exc:  # transient and escaped the agent's own retries: leave them to be read again
        logger.warning("%s left %d records unprocessed (%r); they will be read again", name, len(admitted), exc)
    finally:
        guard.unstaged([event.message for event in admitted])
        for event in group:
            await events.ack(event)
    return True


async def _process_group_or_each(
    worker: Worker, name: str, process: Process, process_group: ProcessGroup, events: list[Any]
) -> None:
    """A group is processed alone (it is only ever one record) or together; an exception the group lets through
    that is not transient (a bug) has each record processed alone, under the same net as ever."""
    if len(events) == 1:
        with record_context(events[0]):
            await _process_or_park(worker, name, process, events[0].message)
        return
    try:
        await process_group(worker, events)
    except ShuttingDown:
        raise
    except Exception as exc:
        if is_transient(exc):
            raise
        first, last = events[0].message.offset, events[-1].message.offset
        logger.exception("%s failed on offsets %d..%d together: processing each alone", name, first, last)
        for event in events:
            with record_context(event):
                await _process_or_park(worker, name, process, event.message)


async def _process_or_park(worker: Worker, name: str, process: Process, message: Any) -> None:
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
