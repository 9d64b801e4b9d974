"""The catalog agent's write unit, the dead-letter path, the timers and the stuck bound, with fakes for Kafka,
Redis and PostgreSQL: a refusal leaves nothing visible and parks the record; an outage is waited out."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from types import SimpleNamespace
from typing import Any, cast

import orjson
import psycopg2.errors
import pytest
from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError
from faust.exceptions import ProducerSendError
from redis import exceptions as redis_errors

from core.settings import Settings
from streams import catalog_agent, guarded_agent, order_agent
from streams.app import Worker, WorkerService, written_lanes
from streams.dead_letters import TRUNCATED_VALUE_CHARS, dead_letter
from streams.failures import DeadLetterKind
from streams.handover_state import Handover
from streams.health import WorkerHealth
from streams.projection import ProjectionResult
from streams.state import CatalogTables
from streams.timers import ride_out_failures
from tests.support.fakes import FakeEvent

# ---- fakes ----


@dataclass
class Journal:
    """Every write, in the order it happened, across the fake stores."""

    entries: list[str] = field(default_factory=list)


@dataclass
class FakeCursor:
    journal: Journal
    refuse_insert: Exception | None

    async def execute(self, sql: str, params: Any = None) -> None:
        verb = sql.split()[0]
        if verb == "INSERT" and self.refuse_insert is not None:
            raise self.refuse_insert
        self.journal.entries.append(f"pg {verb}")


@dataclass
class FakePool:
    journal: Journal
    refuse_insert: Exception | None = None

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator["FakePool"]:
        yield self

    @asynccontextmanager
    async def cursor(self) -> AsyncIterator[FakeCursor]:
        yield FakeCursor(self.journal, self.refuse_insert)

    closed = False


@dataclass
class FakeProjection:
    journal: Journal
    failures: list[Exception] = field(default_factory=list)
    refused: list[tuple[list[str], str]] = field(default_factory=list)
    refuse_positions: set[int] = field(default_factory=set)  # what Redis refuses every time

    async def apply(self, city: str, currency: str, position: int, *rest: Any) -> ProjectionResult:
        if self.failures:
            raise self.failures.pop(0)
        if position in self.refuse_positions:
            raise redis_errors.ResponseError("ERR Error running script")
        self.journal.entries.append("redis projection")
        return ProjectionResult.APPLIED

    replace = apply

    async def mark_refused(self, event_ids: list[str], reason: str) -> None:
        self.refused.append((event_ids, reason))


@dataclass
class FakeProducer:
    failures: list[Exception] = field(default_factory=list)
    sent: list[dict[str, Any]] = field(default_factory=list)

    async def send_and_wait(self, topic: str, key: bytes, value: bytes, *rest: Any) -> None:
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append(orjson.loads(value))


def fake_worker(pool: FakePool, projection: FakeProjection, producer: FakeProducer) -> Worker:
    async def pg_pool() -> FakePool:
        return pool

    tables = CatalogTables({}, {}, {})
    topic = SimpleNamespace(get_topic_name=lambda: "ns.dead-letters")
    app = SimpleNamespace(producer=producer, should_stop=False)
    resources = SimpleNamespace(pg_pool=pg_pool)
    settings = replace(Settings(), namespace="ns")
    worker = Worker(
        settings, WorkerService.CATALOG, cast(Any, app), tables, cast(Any, None), cast(Any, None), cast(Any, topic),
        cast(Any, resources), WorkerHealth(),
        Handover.holding("ns-catalog", written_lanes(settings, WorkerService.ALL)),
    )  # fmt: skip
    worker.__dict__["projection"] = projection  # the cached property, faked
    return worker


def item_upserted_record(name: str = "Masala Dosa") -> SimpleNamespace:
    """A restaurant and one of its dishes, in one record as the API writes it."""
    dish = {"restaurant_id": "dosa", "item_id": "dosa-1", "name": name, "category": "Mains", "price_cents": 900}
    return record(
        41, event("restaurant.upserted", {"restaurant_id": "dosa", "name": "Dosa Corner"}), event("item.upserted", dish)
    )


def price_set_record(offset: int, price_cents: int) -> SimpleNamespace:
    """A new price for the dish of item_upserted_record."""
    return record(
        offset, event("price.set", {"restaurant_id": "dosa", "item_id": "dosa-1", "price_cents": price_cents})
    )


def event(kind: str, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "event_id": uuid.uuid4().hex,
        "type": kind,
        "schema_version": 1,
        "city": "blr",
        "occurred_at": "2026-11-30T10:00:00.000000Z",
        "actor": "admin:test",
        "expected_version": None,
        "request_id": None,
        "data": data,
    }


def record(offset: int, *events: dict[str, Any], value: bytes | None = None) -> SimpleNamespace:
    value = value or orjson.dumps({"batch_id": uuid.uuid4().hex, "city": "blr", "events": list(events)})
    return SimpleNamespace(topic="ns.catalog-events", partition=2, offset=offset, key=b"blr", value=value)


def as_events(*records: SimpleNamespace) -> list[Any]:
    """Records as the agent hands a group over: Faust events."""
    return [FakeEvent(cast(Any, record)) for record in records]


def dish(worker: Worker) -> dict[str, Any]:
    return dict(orjson.loads(worker.tables.items[b"blr/dosa-1"]))


# ---- the catalog agent's write unit ----


async def test_a_batch_is_audited_projected_and_tabled_inside_one_transaction() -> None:
    journal = Journal()
    worker = fake_worker(FakePool(journal), FakeProjection(journal), producer := FakeProducer())
    await catalog_agent.process_record(worker, item_upserted_record())
    assert journal.entries == ["pg BEGIN", "pg INSERT", "pg INSERT", "redis projection", "pg COMMIT"]
    assert worker.tables.items and not producer.sent


async def test_a_nul_in_a_name_is_dead_lettered_before_any_store_is_touched() -> None:
    journal = Journal()
    worker = fake_worker(FakePool(journal), FakeProjection(journal), producer := FakeProducer())
    await catalog_agent.process_record(worker, item_upserted_record("Masala\x00Dosa"))
    assert journal.entries == []
    [letter] = producer.sent
    assert letter["kind"] == "undecodable" and "control characters" in letter["reason"], letter
    assert not worker.tables.items


async def test_a_value_the_store_refuses_is_dead_lettered_with_nothing_shown() -> None:
    journal = Journal()
    refusal = psycopg2.errors.UntranslatableCharacter("unsupported Unicode escape sequence")
    projection = FakeProjection(journal)
    worker = fake_worker(FakePool(journal, refuse_insert=refusal), projection, producer := FakeProducer())
    # The model accepts the name; the (fake) store refuses it, as PostgreSQL refuses values no model foresaw.
    await catalog_agent.process_record(worker, item_upserted_record())
    assert journal.entries == ["pg BEGIN", "pg ROLLBACK"]  # Redis never written
    assert not worker.tables.items
    [letter] = producer.sent
    assert letter["kind"] == "store_refused" and "UntranslatableCharacter" in letter["reason"]
    assert (letter["topic"], letter["partition"], letter["offset"]) == ("ns.catalog-events", 2, 41)
    assert projection.refused[0][1] == "dead_lettered: store_refused"
    assert worker.health.retries() == []


async def test_a_batch_redis_refuses_rolls_the_audit_back_and_is_dead_lettered() -> None:
    journal = Journal()
    projection = FakeProjection(journal, [redis_errors.ResponseError("ERR Error running script")])
    worker = fake_worker(FakePool(journal), projection, producer := FakeProducer())
    await catalog_agent.process_record(worker, item_upserted_record())
    assert journal.entries == ["pg BEGIN", "pg INSERT", "pg INSERT", "pg ROLLBACK"]
    assert not worker.tables.items
    assert [letter["kind"] for letter in producer.sent] == ["projection_refused"]


async def test_a_redis_outage_is_waited_out_and_the_unit_written_once_it_is_back() -> None:
    journal = Journal()
    projection = FakeProjection(journal, [redis_errors.ConnectionError("refused")] * 2)
    worker = fake_worker(FakePool(journal), projection, producer := FakeProducer())
    await catalog_agent.process_record(worker, item_upserted_record())
    audit = ["pg BEGIN", "pg INSERT", "pg INSERT"]
    assert journal.entries == [*audit, "pg ROLLBACK", *audit, "pg ROLLBACK", *audit, "redis projection", "pg COMMIT"]
    assert worker.tables.items and not producer.sent and worker.health.retries() == []


# ---- records written together (streams.guarded_agent reads them in groups) ----


async def test_records_waiting_behind_each_other_are_written_in_one_unit_each_on_top_of_the_last() -> None:
    journal = Journal()
    worker = fake_worker(FakePool(journal), FakeProjection(journal), producer := FakeProducer())
    await catalog_agent.process_group(
        worker, as_events(item_upserted_record(), price_set_record(42, 1000), price_set_record(43, 1100))
    )
    audit = ["pg INSERT"] * 4
    assert journal.entries == ["pg BEGIN", *audit, *["redis projection"] * 3, "pg COMMIT"]
    assert (dish(worker)["base_price_cents"], dish(worker)["version"]) == (1100, 3)
    assert worker.applied_positions["blr"] == 43 and not producer.sent


async def test_a_record_refused_inside_a_unit_is_parked_alone_and_the_others_are_written() -> None:
    journal = Journal()
    projection = FakeProjection(journal, refuse_positions={42})
    worker = fake_worker(FakePool(journal), projection, producer := FakeProducer())
    await catalog_agent.process_group(
        worker, as_events(item_upserted_record(), price_set_record(42, 1000), price_set_record(43, 1100))
    )
    assert journal.entries == [
        *["pg BEGIN", *["pg INSERT"] * 4, "redis projection", "pg ROLLBACK"],  # the unit: refused at 42
        *["pg BEGIN", "pg INSERT", "pg INSERT", "redis projection", "pg COMMIT"],  # 41 again, alone
        *["pg BEGIN", "pg INSERT", "pg ROLLBACK"],  # 42 alone: refused again
        *["pg BEGIN", "pg INSERT", "redis projection", "pg COMMIT"],  # 43, applied on what 41 left
    ]
    assert [(letter["kind"], letter["offset"]) for letter in producer.sent] == [("projection_refused", 42)]
    assert (dish(worker)["base_price_cents"], dish(worker)["version"]) == (1100, 2)  # 42 never happened


async def test_a_record_that_cannot_be_used_ends_the_unit_before_it() -> None:
    journal = Journal()
    worker = fake_worker(FakePool(journal), FakeProjection(journal), producer := FakeProducer())
    garbage = record(42, value=b"{not json")
    await catalog_agent.process_group(worker, as_events(item_upserted_record(), garbage, price_set_record(43, 1100)))
    assert journal.entries == [
        *["pg BEGIN", "pg INSERT", "pg INSERT", "redis projection", "pg COMMIT"],
        *["pg BEGIN", "pg INSERT", "redis projection", "pg COMMIT"],
    ]
    assert [(letter["kind"], letter["offset"]) for letter in producer.sent] == [("undecodable", 42)]
    assert dish(worker)["base_price_cents"] == 1100


async def test_the_agent_takes_every_record_already_waiting_and_never_waits_for_more() -> None:
    waiting: asyncio.Queue[int] = asyncio.Queue()
    for n in range(guarded_agent.MAX_GROUP + 3):
        waiting.put_nowait(n)
    reader = asyncio.create_task(asyncio.sleep(3600))
    groups = guarded_agent._groups(cast(Any, waiting), reader)
    assert await anext(groups) == list(range(guarded_agent.MAX_GROUP))
    assert await anext(groups) == [guarded_agent.MAX_GROUP, guarded_agent.MAX_GROUP + 1, guarded_agent.MAX_GROUP + 2]
    waiting.put_nowait(99)
    assert await anext(groups) == [99]
    reader.cancel()
    with pytest.raises(asyncio.CancelledError):  # the reader ended: so do the groups, with its outcome
        await anext(groups)


# ---- the dead-letter path on Kafka errors ----


async def test_a_dead_letter_waits_out_a_kafka_outage() -> None:
    down = ProducerSendError("Error while sending")
    down.__cause__ = KafkaConnectionError("Unable to bootstrap")
    producer = FakeProducer([down, KafkaConnectionError("down")])
    worker = fake_worker(FakePool(Journal()), FakeProjection(Journal()), producer)
    await dead_letter(worker, item_upserted_record(), DeadLetterKind.BUG, "bug: x")
    assert len(producer.sent) == 1 and producer.sent[0]["kind"] == "bug"


async def test_a_dead_letter_the_broker_refuses_is_parked_truncated() -> None:
    too_large = ProducerSendError("Error while sending")
    too_large.__cause__ = MessageSizeTooLargeError()
    producer = FakeProducer([too_large])
    worker = fake_worker(FakePool(Journal()), FakeProjection(Journal()), producer)
    record = item_upserted_record("x" * (3 * TRUNCATED_VALUE_CHARS))
    await dead_letter(worker, record, DeadLetterKind.UNDECODABLE, "undecodable: too long")
    [letter] = producer.sent
    assert letter["value_truncated"] is True and len(letter["value"]) == TRUNCATED_VALUE_CHARS


# ---- the net under every agent ----


async def test_an_exception_an_agent_lets_through_is_parked_as_a_bug(monkeypatch: pytest.MonkeyPatch) -> None:
    parked: list[tuple[DeadLetterKind, str]] = []

    async def fake_dead_letter(worker: Worker, message: Any, kind: DeadLetterKind, reason: str) -> None:
        parked.append((kind, reason))

    async def buggy(worker: Worker, message: Any) -> None:
        raise KeyError("price_cents")

    monkeypatch.setattr(guarded_agent, "dead_letter", fake_dead_letter)
    worker = fake_worker(FakePool(Journal()), FakeProjection(Journal()), FakeProducer())
    await guarded_agent._process_or_park(worker, "catalog", buggy, item_upserted_record())
    assert parked == [(DeadLetterKind.BUG, "bug: KeyError: 'price_cents'")]


async def test_a_transient_error_an_agent_lets_through_leaves_the_record_to_be_read_again() -> None:
    async def outage(worker: Worker, message: Any) -> None:
        raise redis_errors.ConnectionError("refused")

    worker = fake_worker(FakePool(Journal()), FakeProjection(Journal()), FakeProducer())
    with pytest.raises(redis_errors.ConnectionError):
        await guarded_agent._process_or_park(worker, "catalog", outage, item_upserted_record())


# ---- timers ----


async def test_a_timer_rides_out_an_outage_not_ready_until_it_runs_cleanly() -> None:
    worker = fake_worker(FakePool(Journal()), FakeProjection(Journal()), FakeProducer())
    failures = [redis_errors.ConnectionError("refused"), RuntimeError("a bug")]

    async def rebuild_lost_read_models() -> None:
        if failures:
            raise failures.pop(0)

    run = ride_out_failures(worker, rebuild_lost_read_models)
    await run()  # would have crashed the Faust app (mode's Service._execute_task)
    assert worker.health.retries() == ["rebuild_lost_read_models (ConnectionError: refused)"]
    await run()  # a bug: logged and counted, the timer goes on
    await run()
    assert worker.health.retries() == []


# ---- the stuck bound ----


def test_a_record_in_processing_past_the_bound_makes_the_worker_not_live() -> None:
    now = [100.0]
    health = WorkerHealth(stuck_after_s=60, clock=lambda: now[0])
    with health.processing("catalog[2]", "offset 41"):
        now[0] += 59
        assert health.live() == (True, "alive") and health.oldest_record_age() == 59
        now[0] += 2
        assert health.live() == (False, "stuck: catalog[2] offset 41 for 61s")
    assert health.live()[0] and health.oldest_record_age() == 0


# ---- the order agent ----


def place_order_record() -> SimpleNamespace:
    command = {
        "type": "order.place",
        "order_id": uuid.uuid4().hex,
        "customer": "alice",
        "city": "blr",
        "restaurant_id": "dosa",
        "lines": [{"item_id": "dosa-1", "quantity": 1, "price_cents": 900}],
        "idempotency_key": "k1",
        "placed_at": "2026-11-30T10:00:00.000000Z",
    }
    return SimpleNamespace(topic="ns.order-commands", partition=1, offset=9, key=b"blr", value=orjson.dumps(command))


async def test_an_order_the_store_refuses_is_dead_lettered_and_never_projected() -> None:
    journal = Journal()
    refusal = psycopg2.errors.CheckViolation("new row violates check constraint")
    worker = fake_worker(FakePool(journal, refuse_insert=refusal), FakeProjection(journal), producer := FakeProducer())
    projected: list[Any] = []
    worker.__dict__["order_projection"] = SimpleNamespace(project=projected.append)
    await order_agent.process_command(worker, place_order_record())
    assert journal.entries == ["pg BEGIN", "pg ROLLBACK"] and projected == []
    [letter] = producer.sent
    assert (letter["kind"], letter["topic"], letter["offset"]) == ("store_refused", "ns.order-commands", 9)
    assert "CheckViolation" in letter["reason"]
