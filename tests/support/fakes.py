"""Small fakes for unit tests of the delivery guarantees: a Kafka partition log behind a real GuardedConsumer,
Faust messages and events with only what the guard and the consumer read, a clock, an SSE transport that
records what was written, and a Redis that keeps streams and hashes in dicts (XRANGE, HGET, pipelines)."""

import asyncio
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, cast

from faust.types import TP, EventT, Message

from streams.app import FeastFlowApp
from streams.delivery import TRANSPORT_SCHEME, DeliveryGuard, GuardedConsumer

# ---- Kafka and Faust ----


@dataclass(eq=False)  # identity hash: Faust keeps unacked messages in a WeakSet
class FakeMessage:
    """The attributes of a Faust message the guard and the consumer read."""

    tp: TP
    offset: int
    generation_id: int = 1
    acked: bool = False

    @property
    def topic(self) -> str:
        return self.tp.topic

    @property
    def partition(self) -> int:
        return self.tp.partition


@dataclass(eq=False)
class FakeEvent:
    message: FakeMessage


def fake_message(tp: TP, offset: int, generation: int = 1) -> Message:
    """A FakeMessage, typed as what it stands in for."""
    return cast(Message, FakeMessage(tp, offset, generation))


def fake_event(message: Message) -> EventT[Any]:
    return cast(EventT[Any], FakeEvent(cast(FakeMessage, message)))


@dataclass
class FakeClock:
    """Stands in for the `time` module of the code under test: only monotonic(), moved by the test."""

    now: float = 1_000.0

    def monotonic(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class PartitionLog:
    """One partition as the broker holds it."""

    earliest: int = 0
    end: int = 0  # the high-water mark: the offset the next record will get
    committed: int | None = None  # the group's committed offset
    position: int = 0  # where the next fetch reads (moved by seeks)


@dataclass
class FakeKafka:
    """The broker side the guarded consumer talks to through its thread: logs, commits, seeks."""

    logs: dict[TP, PartitionLog] = field(default_factory=dict)
    assigned: set[TP] = field(default_factory=set)
    seeks: list[tuple[TP, int]] = field(default_factory=list)

    def partition(self, tp: TP, *, end: int = 0, earliest: int = 0, committed: int | None = None) -> PartitionLog:
        log = PartitionLog(earliest, end, committed, position=earliest if committed is None else committed)
        self.logs[tp] = log
        self.assigned.add(tp)
        return log


class FakeConsumerThread:
    """The consumer thread's calls the guarded consumer makes, answered from FakeKafka instead of aiokafka."""

    beacon = None  # a mode Service attaches its children's beacons; this one has none

    def __init__(self, kafka: FakeKafka) -> None:
        self.kafka = kafka

    async def committed_offset(self, tp: TP) -> int | None:
        return self.kafka.logs[tp].committed

    async def seek_in_thread(self, tp: TP, offset: int) -> None:
        self.kafka.seeks.append((tp, offset))
        self.kafka.logs[tp].position = offset

    async def earliest_offsets(self, *tps: TP) -> dict[TP, int]:
        return {tp: self.kafka.logs[tp].earliest for tp in tps}

    async def highwaters(self, *tps: TP) -> dict[TP, int]:
        return {tp: self.kafka.logs[tp].end for tp in tps}

    def assignment(self) -> set[TP]:
        return set(self.kafka.assigned)


class LogBackedConsumer(GuardedConsumer):
    """The real GuardedConsumer (acks, commits, read positions, rewinds) with FakeKafka behind its thread."""

    def __init__(self, app: FeastFlowApp, kafka: FakeKafka) -> None:
        self.kafka = kafka  # read by _new_consumer_thread, which the base __init__ calls
        super().__init__(
            app.transport,
            callback=_never_called,
            on_partitions_revoked=_never_called,
            on_partitions_assigned=_never_called,
        )

    def _new_consumer_thread(self) -> Any:
        return FakeConsumerThread(self.kafka)


async def _never_called(*args: Any) -> None:
    raise AssertionError("the fake consumer never fetches nor rebalances")


@dataclass
class GuardedPipeline:
    """A FeastFlowApp whose consumer is a LogBackedConsumer, with its DeliveryGuard."""

    app: FeastFlowApp
    consumer: LogBackedConsumer
    guard: DeliveryGuard
    kafka: FakeKafka

    @property
    def recovery_completed(self) -> asyncio.Event:
        return cast(asyncio.Event, cast(Any, self.app.tables).recovery.completed)

    def commit(self, tp: TP) -> int | None:
        """What Faust's commit does with the offset the consumer offers: store it in Kafka and in memory."""
        offset = self.consumer._new_offset(tp)
        if offset is not None:
            self.kafka.logs[tp].committed = offset
            self.consumer._committed_offset[tp] = offset
        return offset

    def reassign(self, tp: TP) -> int:
        """What Faust does to a partition revoked and assigned again: forget its bookkeeping, then seek to the
        committed offset. Returns where the partition's log is read from."""
        consumer, log = self.consumer, self.kafka.logs[tp]
        for bookkeeping in (consumer._acked, consumer._acked_index, consumer._read_offset, consumer._committed_offset):
            bookkeeping.pop(tp, None)
        log.position = log.earliest if log.committed is None else log.committed
        consumer._read_offset.update({tp: log.committed})
        if log.committed is not None:
            consumer._committed_offset[tp] = log.committed
        return log.position

    def acked(self, tp: TP) -> list[int]:
        return sorted(self.consumer._acked[tp])

    async def handle(self, tp: TP, offset: int, generation: int = 1, *, fails: bool = False) -> bool:
        """What the guarded agent (streams.guarded_agent) does with a record: admit, process (unless that `fails`),
        and ack it in a `finally`. True when it was admitted."""
        message = fake_message(tp, offset, generation)
        admitted = await self.guard.admit(self.app, fake_event(message))
        if admitted and not fails:
            self.guard.processed(message)
        self.consumer.ack(message)
        return admitted


def guarded_pipeline(guarded_topics: Iterable[str], acking_topics: Iterable[str] = ()) -> GuardedPipeline:
    """No network: the broker URL is never dialled, the consumer thread is FakeConsumerThread."""
    guarded = set(guarded_topics)
    app = FeastFlowApp("unit-guarantees", broker=f"{TRANSPORT_SCHEME}://127.0.0.1:9")
    app.consumer_generation_id = 1  # what fake messages carry unless told otherwise
    guard = DeliveryGuard(guarded)
    app.delivery_guard = guard
    # What subscribing an agent's topic does: its acks count toward commits.
    app.topics.acking_topics.update(guarded | set(acking_topics))
    kafka = FakeKafka()
    consumer = LogBackedConsumer(app, kafka)
    app.consumer = consumer
    return GuardedPipeline(app, consumer, guard, kafka)


# ---- SSE ----


@dataclass
class RecordingTransport:
    """An asyncio write transport that keeps every write; its unsent buffer size is set by the test."""

    writes: list[bytes] = field(default_factory=list)
    buffered: int = 0
    closing: bool = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def writelines(self, list_of_data: Iterable[bytes]) -> None:
        """One send of all of them, as a socket's writev."""
        self.writes.append(b"".join(list_of_data))

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def is_closing(self) -> bool:
        return self.closing

    @property
    def written(self) -> bytes:
        return b"".join(self.writes)


# ---- Redis ----


def _bytes(value: str | bytes | int) -> bytes:
    if isinstance(value, bytes):
        return value
    return str(value).encode()


def _id_order(entry_id: bytes | str) -> tuple[int, int]:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    high, _, low = text.partition("-")
    return int(high), int(low or 0)


StreamEntry = tuple[bytes, dict[bytes, bytes]]


@dataclass
class FakeRedis:
    """Streams and hashes in dicts, answering as redis-py does without decode_responses (bytes out)."""

    streams: dict[str, list[StreamEntry]] = field(default_factory=dict)
    hashes: dict[str, dict[bytes, bytes]] = field(default_factory=dict)

    async def hget(self, key: str, name: str) -> bytes | None:
        return self.hashes.get(key, {}).get(_bytes(name))

    async def hgetall(self, key: str) -> dict[bytes, bytes]:
        return dict(self.hashes.get(key, {}))

    async def xrange(self, key: str, min: str = "-", max: str = "+", count: int | None = None) -> list[StreamEntry]:
        entries = [entry for entry in self.streams.get(key, []) if _in_range(entry[0], min, max)]
        return entries if count is None else entries[:count]

    @asynccontextmanager
    async def pipeline(self, transaction: bool = True) -> AsyncIterator["FakePipeline"]:
        yield FakePipeline(self)

    # Writes, as the stream workers' projection makes them.

    def hset(self, key: str, mapping: Mapping[str, str | int]) -> None:
        self.hashes.setdefault(key, {}).update({_bytes(k): _bytes(v) for k, v in mapping.items()})

    def xadd(self, key: str, entry_id: str, fields: Mapping[str, str], maxlen: int | None = None) -> None:
        stream = self.streams.setdefault(key, [])
        if stream and _id_order(stream[-1][0]) >= _id_order(entry_id):
            raise ValueError("ERR The ID specified in XADD is equal or smaller than the target stream top item")
        stream.append((entry_id.encode(), {_bytes(k): _bytes(v) for k, v in fields.items()}))
        if maxlen is not None and len(stream) > maxlen:
            del stream[: len(stream) - maxlen]

    def delete(self, key: str) -> None:
        self.streams.pop(key, None)
        self.hashes.pop(key, None)


def _in_range(entry_id: bytes, low: str, high: str) -> bool:
    order = _id_order(entry_id)
    if low != "-":
        exclusive = low.startswith("(")
        bound = _id_order(low.lstrip("("))
        if order < bound or (exclusive and order == bound):
            return False
    if high != "+":
        exclusive = high.startswith("(")
        bound = _id_order(high.lstrip("("))
        if order > bound or (exclusive and order == bound):
            return False
    return True


class FakePipeline:
    """Queues reads and answers them together, as a MULTI/EXEC pipeline does."""

    def __init__(self, redis: FakeRedis) -> None:
        self._redis = redis
        self._calls: list[Any] = []

    def xrange(self, key: str, min: str = "-", max: str = "+", count: int | None = None) -> None:
        self._calls.append(self._redis.xrange(key, min=min, max=max, count=count))

    def hget(self, key: str, name: str) -> None:
        self._calls.append(self._redis.hget(key, name))

    def hgetall(self, key: str) -> None:
        self._calls.append(self._redis.hgetall(key))

    async def execute(self) -> list[Any]:
        calls, self._calls = self._calls, []
        return [await call for call in calls]


class FeedProjection:
    """Writes a city's menu feed into a FakeRedis the way streams.projection's Lua script does: a batch at Kafka
    position p appends entries '<p+1>-<n>', each naming the entry before it in `prev`, and moves the meta cursor;
    a rebuild deletes the feed and starts it again with one `snapshot` entry whose `prev` is empty."""

    def __init__(self, redis: FakeRedis, keys: Any, maxlen: int) -> None:
        self.redis, self.keys, self.maxlen = redis, keys, maxlen
        self.position = 0

    def apply(self, types: list[str]) -> list[str]:
        return self._write(types, prev=self._cursor())

    def rebuild(self) -> list[str]:
        self.redis.delete(self.keys.feed)
        return self._write(["snapshot"], prev="")

    def _cursor(self) -> str:
        cursor = self.redis.hashes.get(self.keys.meta, {}).get(b"cursor", b"")
        return cursor.decode()

    def _write(self, types: list[str], prev: str) -> list[str]:
        self.position += 1
        ids = []
        for n, kind in enumerate(types):
            entry_id = f"{self.position + 1}-{n}"
            self.redis.xadd(self.keys.feed, entry_id, {"type": kind, "data": "{}", "prev": prev}, self.maxlen)
            ids.append(entry_id)
            prev = entry_id
        self.redis.hset(self.keys.meta, {"position": self.position, "cursor": prev})
        return ids
