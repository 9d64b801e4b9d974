"""System events (pricing ticks, reprices, rebuild requests) go onto each city's catalog log as one-event
batches keyed by the city, through one function, from the worker's producer and from the operations tools."""

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, cast

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError

import core.system_events
from core.publisher import EventPublisher
from core.settings import Settings
from core.system_events import publish_system_event, send_system_event
from core.topics import catalog_topic_name
from models.events import (
    EventType,
    PricingReprice,
    PricingRuleTick,
    ProjectionRebuild,
    SystemPayload,
    decode_batch,
)
from streams.app import Worker, WorkerService, written_lanes
from streams.handover_state import Handover
from streams.health import WorkerHealth
from streams.state import CatalogTables

NOW = "2026-11-30T10:00:00.000000Z"


@dataclass
class Records:
    """A fake Kafka: every record tried and every record sent, in order; the next tries raise `failures` first."""

    sent: list[tuple[str, bytes, bytes]] = field(default_factory=list)
    failures: list[Exception] = field(default_factory=list)
    tried: list[tuple[str, bytes, bytes]] = field(default_factory=list)

    async def send(self, topic: str, key: bytes, value: bytes) -> None:
        self.tried.append((topic, key, value))
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append((topic, key, value))


@pytest.mark.parametrize(
    ("payload", "kind"),
    [
        (PricingRuleTick(), EventType.PRICING_RULE_TICK),
        (PricingReprice(), EventType.PRICING_REPRICE),
        (ProjectionRebuild(), EventType.PROJECTION_REBUILD),
    ],
)
async def test_one_batch_per_city_keyed_by_the_city(payload: SystemPayload, kind: EventType) -> None:
    records = Records()
    sent = await send_system_event(records.send, "ns.catalog", ["blr", "ams"], payload, "system:test", NOW)
    assert [(topic, key) for topic, key, _ in records.sent] == [("ns.catalog", b"blr"), ("ns.catalog", b"ams")]
    batches = [decode_batch(value) for _, _, value in records.sent]
    assert batches == sent
    for city, batch in zip(["blr", "ams"], batches, strict=True):
        (event,) = batch.events
        assert (batch.city, event.city, event.type, event.payload) == (city, city, kind, payload)
        assert (event.actor, event.occurred_at, batch.batch_id) == ("system:test", NOW, event.event_id)
    assert len({b.batch_id for b in batches}) == 2


async def test_without_a_time_the_events_carry_the_time_they_were_sent() -> None:
    records = Records()
    (batch,) = await send_system_event(records.send, "ns.catalog", ["blr"], PricingReprice(), "system:test")
    assert batch.events[0].occurred_at > NOW


async def test_a_failed_send_stops_before_the_next_city() -> None:
    records = Records(failures=[KafkaConnectionError()])
    with pytest.raises(KafkaConnectionError):
        await send_system_event(records.send, "ns.catalog", ["blr", "ams"], PricingReprice(), "system:test")
    assert [key for _, key, _ in records.tried] == [b"blr"] and records.sent == []


@dataclass
class FakeKafkaProducer:
    """aiokafka's producer as EventPublisher drives it."""

    records: Records = field(default_factory=Records)
    running: bool = False
    started: int = 0

    async def start(self) -> None:
        self.running, self.started = True, self.started + 1

    async def stop(self) -> None:
        self.running = False

    async def send_and_wait(self, topic: str, value: bytes, key: bytes) -> Any:
        assert self.running, "sent outside start/stop"
        await self.records.send(topic, key, value)
        return SimpleNamespace(offset=len(self.records.sent) - 1)


def _publishers(monkeypatch: pytest.MonkeyPatch, producer: FakeKafkaProducer) -> None:
    def publisher(bootstrap: str, namespace: str) -> EventPublisher:
        return EventPublisher(bootstrap, namespace, producer=cast(AIOKafkaProducer, producer))

    monkeypatch.setattr(core.system_events, "EventPublisher", publisher)


async def test_an_operations_tool_publishes_with_a_producer_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    producer = FakeKafkaProducer()
    _publishers(monkeypatch, producer)
    settings = Settings(namespace="ns")
    await publish_system_event(settings, settings.city_codes, PricingReprice(), "system:canary")
    assert [(topic, key) for topic, key, _ in producer.records.sent] == [
        (catalog_topic_name("ns"), city.encode()) for city in settings.city_codes
    ]
    assert {decode_batch(value).events[0].actor for _, _, value in producer.records.sent} == {"system:canary"}
    assert producer.started == 1 and not producer.running


async def test_the_tools_producer_is_stopped_when_a_send_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    producer = FakeKafkaProducer(Records(failures=[KafkaConnectionError()]))
    _publishers(monkeypatch, producer)
    with pytest.raises(KafkaConnectionError):
        await publish_system_event(Settings(namespace="ns"), ["blr"], ProjectionRebuild(), "system:test")
    assert producer.started == 1 and not producer.running


@dataclass
class FakeFaustProducer:
    records: Records

    async def send_and_wait(self, topic: str, key: bytes, value: bytes, *partition_timestamp_headers: Any) -> None:
        await self.records.send(topic, key, value)


async def test_the_worker_retries_the_same_batch_through_an_outage() -> None:
    records = Records(failures=[KafkaConnectionError()])
    app = SimpleNamespace(producer=FakeFaustProducer(records), should_stop=False)
    catalog = SimpleNamespace(get_topic_name=lambda: "ns.catalog")
    worker = Worker(
        Settings(namespace="ns"), WorkerService.CATALOG, cast(Any, app), CatalogTables({}, {}, {}),
        cast(Any, catalog), cast(Any, None), cast(Any, None), cast(Any, None), WorkerHealth(),
        Handover.holding("ns-catalog", written_lanes(Settings(namespace="ns"), WorkerService.CATALOG)),
    )  # fmt: skip
    await worker.send_system_event("pricing tick", ["blr"], PricingRuleTick(), "system:pricing-clock", NOW)
    ((topic, key, value),) = records.sent
    assert records.tried == [(topic, key, value)] * 2, "the retry sends the batch it first tried, event id and all"
    (event,) = decode_batch(value).events
    assert (topic, key, event.actor, event.occurred_at) == ("ns.catalog", b"blr", "system:pricing-clock", NOW)
