"""At-least-once delivery that holds: no event is committed, or skipped, unless the agent processed it.

faust-streaming can lose events in a few ways (see shared/notes/FAUST.md): agent queues cleared when flow
resumes after recovery while the fetch position has already moved past them; any jump in offsets taken
for a legitimate gap and committed; events skipped while flow is paused acked as if processed. This
module closes those paths for the topics it guards:

- the agent processes a partition's events strictly in offset order from the committed position; an
  event past the next expected offset means something was dropped, so the partition is rewound to the
  missing offset and read again (a watchdog does the same when the missing event was the last one);
- the consumer records an ack only for an offset the agent marked processed, never fills gaps, and
  commits only a run of acked offsets that starts exactly at the committed offset.

Holes become re-reads, and re-reads become duplicates, which the versioned projections absorb.
"""

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from faust.transport.drivers import TRANSPORTS
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, AppT, EventT, Message
from faust.utils.functional import consecutive_numbers

from streams.metrics import REWINDS

logger = logging.getLogger(__name__)

TRANSPORT_SCHEME = "feastflow-kafka"
STALL_REWIND_AFTER_S = 2.0
REWIND_DEBOUNCE_S = 0.5


class ReplayWouldSkip(Exception):
    """A replay from past the next offset to process would skip the records before it, not process any again."""


class DeliveryGuard:
    def __init__(self, guarded_topics: set[str]) -> None:
        self.guarded_topics = guarded_topics
        self._generation: int | None = None
        self._expected: dict[TP, int] = {}
        self._processed: dict[TP, set[int]] = defaultdict(set)
        self._last_rewind: dict[TP, tuple[int, float]] = {}
        self._last_activity = time.monotonic()
        self._working = 0  # agents processing records right now
        self.rewinds = 0

    async def admit(self, app: AppT, event: EventT[Any]) -> bool:
        """True when this event is the next one to process on its partition."""
        message = event.message
        tp, offset = message.tp, message.offset
        self._enter_generation(message.generation_id)
        expected = self._expected.get(tp)
        if expected is None:
            expected = await _start_position(app, tp)
            self._expected[tp] = expected
        self._last_activity = time.monotonic()
        if offset == expected:
            return True
        if offset > expected:
            await self.rewind(app, tp, expected, f"offset hole: got {offset}")
        return False

    def _enter_generation(self, generation: int | None) -> None:
        """After a rebalance every partition starts over from its committed offset."""
        if generation != self._generation:
            self._generation = generation
            self._expected.clear()

    def processed(self, message: Message) -> None:
        self._last_activity = time.monotonic()
        self._processed[message.tp].add(message.offset)
        self._expected[message.tp] = message.offset + 1

    def staged(self, message: Message) -> None:
        """Admitted into a group of records written together: the next offset may be admitted too, but this one
        may not be committed until the group is `processed` (or is read again after `unstaged`)."""
        self._last_activity = time.monotonic()
        self._expected[message.tp] = message.offset + 1

    def unstaged(self, messages: list[Message]) -> None:
        """The group was not written: its partitions expect its first records again (what was read after them
        is refused by `admit`, which rewinds the partition to them)."""
        for message in reversed(messages):
            if self._expected.get(message.tp, -1) > message.offset:
                self._expected[message.tp] = message.offset

    def may_ack(self, message: Message) -> bool:
        if message.topic not in self.guarded_topics:
            return True
        processed = self._processed.get(message.tp)
        if processed is None or message.offset not in processed:
            return False
        processed.discard(message.offset)
        return True

    async def replay(self, app: AppT, tp: TP, offset: int) -> None:
        """Process a partition again from `offset` (an operator's request): versioned projections make it safe."""
        # In the consumer's current generation, which no record may have come from yet: its first must not undo this.
        self._enter_generation(app.consumer_generation_id)
        next_offset = self._expected.get(tp)
        if next_offset is None:
            next_offset = await _start_position(app, tp)
        if offset > next_offset:
            raise ReplayWouldSkip(f"offset {offset} is past {next_offset}, the next to process on {tp.partition}")
        self._expected[tp] = offset
        self._last_rewind.pop(tp, None)
        await self.rewind(app, tp, offset, "replay requested")

    async def rewind(self, app: AppT, tp: TP, offset: int, reason: str) -> None:
        last = self._last_rewind.get(tp)
        now = time.monotonic()
        if last is not None and last[0] == offset and now - last[1] < REWIND_DEBOUNCE_S:
            return
        self._last_rewind[tp] = (offset, now)
        self.rewinds += 1
        REWINDS.labels(reason=reason.split(":")[0]).inc()
        logger.warning("rewinding %s to offset %d (%s)", tp, offset, reason, extra={"partition": tp.partition})
        consumer: Any = app.consumer
        await consumer.rewind(tp, offset)

    @contextlib.contextmanager
    def working(self) -> Iterator[None]:
        """An agent processing records (a group of them may take seconds to write) is not sitting idle: the
        records behind them are waiting, not lost."""
        self._working += 1
        try:
            yield
        finally:
            self._working -= 1
            self._last_activity = time.monotonic()

    async def rewind_stalled(self, app: AppT) -> None:
        """Rewind partitions that hold events the agent never received while it sat idle.

        Covers a hole at the very end of a partition (no later event reveals it) and a partition whose
        fetching never resumed after a rebalance.
        """
        now = time.monotonic()
        if producer_backlogged(app):
            self._last_activity = now  # the bound starts again once it ebbs
            return
        if self._working or now - self._last_activity < STALL_REWIND_AFTER_S or not recovery_completed(app):
            return
        for tp, (expected, end) in (await self.positions(app)).items():
            if expected < end:
                await self.rewind(app, tp, expected, f"stalled: offsets up to {end - 1} never arrived")
                self._last_activity = now

    async def positions(self, app: AppT) -> dict[TP, tuple[int, int]]:
        """Per guarded partition assigned here: (the next offset to process, the end of the log).
        The difference is the partition's lag."""
        consumer: Any = app.consumer
        tps = [tp for tp in consumer.assignment() if tp.topic in self.guarded_topics]
        if not tps:
            return {}
        ends = await consumer.highwaters(*tps)
        positions = {}
        for tp in tps:
            expected = self._expected.get(tp)
            if expected is None:
                expected = await _start_position(app, tp)
            end = ends.get(tp)
            if end is not None:
                positions[tp] = (expected, end)
        return positions


async def _start_position(app: AppT, tp: TP) -> int:
    """Where processing of a partition resumes in this generation: the group's committed offset."""
    consumer: Any = app.consumer
    committed = consumer._committed_offset.get(tp)
    if committed is None:
        # Faust may not have read it yet (events can arrive before its post-rebalance seek): ask Kafka.
        committed = await consumer.committed_offset(tp)
    if committed is not None:
        return int(committed)
    earliest = await consumer.earliest_offsets(tp)
    return int(earliest.get(tp) or 0)


def producer_backlogged(app: AppT) -> bool:
    """Faust hands a record to its agent only once the producer's buffer is back under its bound (a catch-up writes
    table changelogs faster than they are sent): records held back for that are late, not lost, and rewinding
    to them would only fetch them again."""
    buffer: Any = app.producer.buffer
    return bool(buffer.size > buffer.max_messages)


def recovery_completed(app: AppT) -> bool:
    tables: Any = app.tables
    return bool(tables.recovery.completed.is_set())


def guard_of(app: AppT) -> DeliveryGuard:
    guard = getattr(app, "delivery_guard", None)
    if not isinstance(guard, DeliveryGuard):
        raise RuntimeError("the app has no DeliveryGuard; create it with streams.app.create_app")
    return guard


class ReadPositions(defaultdict[TP, int | None]):
    """Faust's record of how far each partition has been read: its fetch loop drops any record below it.

    After a rewind, records fetched before the seek are still on their way; if they moved the position
    forward again, the re-read records would be dropped as already read (and the rewind would achieve
    nothing until the pipeline ran dry). So until the rewind target itself comes through, the position
    stays at the target."""

    def __init__(self) -> None:
        super().__init__(lambda: None)
        self.rewound_to: dict[TP, int] = {}

    def __setitem__(self, tp: TP, offset: int | None) -> None:
        target = self.rewound_to.get(tp)
        if target is not None and offset is not None:
            if offset > target:
                return
            del self.rewound_to[tp]
        super().__setitem__(tp, offset)

    def update(self, *args: Any, **kwargs: Any) -> None:  # Faust's own seek to committed offsets
        for tp in dict(*args, **kwargs):
            self.rewound_to.pop(tp, None)
        super().update(*args, **kwargs)

    def pop(self, tp: TP, *default: Any) -> Any:  # the partition was revoked
        self.rewound_to.pop(tp, None)
        return super().pop(tp, *default)


class GuardedConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # Faust hard-codes a 1.5 s fetch wait; the wait bounds how long a new event can sit in the
        # broker before the next fetch returns it, so it comes from settings instead.
        consumer._fetch_max_wait_ms = int(getattr(self.app, "fetch_max_wait_ms", 1500))
        return consumer

    async def committed_offset(self, tp: TP) -> int | None:
        offset = await self.call_thread(self._ensure_consumer().committed, tp)
        return None if offset is None else int(offset)

    async def seek_in_thread(self, tp: TP, offset: int) -> None:
        """aiokafka's seek, run on the consumer's own thread so it cannot race a fetch in progress."""

        async def seek() -> None:
            self._ensure_consumer().seek(tp, offset)

        await self.call_thread(seek)


class GuardedConsumer(faust_aiokafka.Consumer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_offset = ReadPositions()

    def _new_consumer_thread(self) -> GuardedConsumerThread:
        return GuardedConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def rewind(self, tp: TP, offset: int) -> None:
        """Read a partition again from `offset`, and keep records already in flight from undoing that."""
        thread: GuardedConsumerThread = self._thread  # type: ignore[assignment]
        await thread.seek_in_thread(tp, offset)
        positions: ReadPositions = self._read_offset  # type: ignore[assignment]
        positions.rewound_to.pop(tp, None)  # the newest seek is the one that counts, above a pending one or below
        positions[tp] = offset
        positions.rewound_to[tp] = offset

    async def committed_offset(self, tp: TP) -> int | None:
        thread: GuardedConsumerThread = self._thread  # type: ignore[assignment]
        return await thread.committed_offset(tp)

    def ack(self, message: Message) -> bool:
        if not message.acked and not guard_of(self.app).may_ack(message):
            # Released, not acknowledged: the offset stays uncommitted and will be read again.
            message.acked = True
            self._unacked_messages.discard(message)
            return False
        return bool(super().ack(message))

    async def _add_gap(self, tp: TP, offset_from: int, offset_to: int) -> None:
        # Our topics are neither compacted nor transactional, so a jump in offsets is never a real gap.
        logger.warning("not filling offset gap %s [%d, %d]", tp, offset_from, offset_to)
        await asyncio.sleep(0)

    def _new_offset(self, tp: TP) -> int | None:
        acked = self._acked[tp]
        if not acked:
            return None
        acked.sort()
        committed = self._committed_offset[tp]
        if committed is not None and acked[0] != committed:
            return None
        batch = next(consecutive_numbers(acked))
        acked[: len(batch)] = []
        self._acked_index[tp].difference_update(batch)
        return int(batch[-1]) + 1


class GuardedProducer(faust_aiokafka.Producer):
    def _settings_extra(self) -> dict[str, Any]:
        return {"acks": "all", "enable_idempotence": True}


class GuardedTransport(faust_aiokafka.Transport):
    Consumer = GuardedConsumer
    Producer = GuardedProducer


TRANSPORTS.aliases[TRANSPORT_SCHEME] = f"{__name__}:GuardedTransport"
