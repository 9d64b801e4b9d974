"""Catalog events: the versioned envelope that travels on Kafka, and the declaration of every admin event.

Each payload below is declared once, with the field rules of models.fields; pydantic derives from the
declarations the validation of admin input (strict: unknown fields refused), the validation of records
read back from Kafka (tolerant: unknown fields ignored, missing optional ones defaulted, every other rule
the same) and the JSON Schema of /v1/openapi.json.
"""

import uuid
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, ClassVar

import orjson
from pydantic import ConfigDict, Field, Strict, TypeAdapter

from models.errors import InvalidEvent
from models.fields import (
    MAX_PRICE_CENTS as MAX_PRICE_CENTS,
)
from models.fields import (
    Absent,
    Actor,
    Category,
    CityCode,
    Description,
    Flag,
    Id,
    Multiplier,
    Name,
    PriceCents,
    RecordTimestamp,
    RequestId,
    RuleName,
    Timestamp,
    Version,
)
from models.fields import (
    format_timestamp as format_timestamp,
)
from models.validation import field_path, validated

SCHEMA_VERSION = 1
MAX_EVENTS_PER_BATCH = 1000
DECLARED = ConfigDict(extra="forbid")  # as published; records read back from Kafka pass extra="ignore"


class EventType(StrEnum):
    RESTAURANT_UPSERTED = "restaurant.upserted"
    ITEM_UPSERTED = "item.upserted"
    ITEM_REMOVED = "item.removed"
    ITEM_AVAILABILITY_SET = "item.availability_set"
    PRICE_SET = "price.set"
    PRICING_RULE_SET = "pricing.rule_set"
    # Produced by the system, never accepted from admins:
    PRICING_RULE_TICK = "pricing.rule_tick"
    PRICING_REPRICE = "pricing.reprice"
    PROJECTION_REBUILD = "projection.rebuild"


ADMIN_EVENT_TYPES = frozenset(
    {
        EventType.RESTAURANT_UPSERTED,
        EventType.ITEM_UPSERTED,
        EventType.ITEM_REMOVED,
        EventType.ITEM_AVAILABILITY_SET,
        EventType.PRICE_SET,
        EventType.PRICING_RULE_SET,
    }
)


@dataclass(frozen=True, slots=True)
class PricingRule:
    """A city-wide multiplier on base prices, in basis points (12_500 = x1.25), optionally time-boxed."""

    multiplier_bp: int
    effective_at: str | None = None
    until: str | None = None
    name: str = ""

    def is_active(self, at: str) -> bool:
        if self.effective_at is not None and at < self.effective_at:
            return False
        return self.until is None or at < self.until

    def as_json(self) -> dict[str, Any]:
        return {
            "multiplier": self.multiplier_bp / 10_000,
            "effective_at": self.effective_at,
            "until": self.until,
            "name": self.name,
        }


def utc_now() -> str:
    return format_timestamp(datetime.now(UTC))


def parse_timestamp(value: str) -> float:
    """Seconds since the epoch of a timestamp this module wrote."""
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


# ---- payloads: one frozen record per event type, its fields declared with their rules ----


@dataclass(frozen=True, slots=True)
class RestaurantUpserted:
    __pydantic_config__: ClassVar[ConfigDict] = DECLARED
    restaurant_id: Id
    name: Name
    open: Flag = True


@dataclass(frozen=True, slots=True)
class ItemUpserted:
    __pydantic_config__: ClassVar[ConfigDict] = DECLARED
    restaurant_id: Id
    item_id: Id
    name: Name
    description: Description | None = None
    category: Category | None = None
    available: Flag | None = None
    price_cents: PriceCents | None = None


@dataclass(frozen=True, slots=True)
class ItemRemoved:
    __pydantic_config__: ClassVar[ConfigDict] = DECLARED
    restaurant_id: Id
    item_id: Id


@dataclass(frozen=True, slots=True)
class ItemAvailabilitySet:
    __pydantic_config__: ClassVar[ConfigDict] = DECLARED
    restaurant_id: Id
    item_id: Id
    available: Flag


@dataclass(frozen=True, slots=True)
class PriceSet:
    __pydantic_config__: ClassVar[ConfigDict] = DECLARED
    restaurant_id: Id
    item_id: Id
    price_cents: PriceCents


@dataclass(frozen=True, slots=True)
class PricingRuleSet:
    rule: PricingRule | None


@dataclass(frozen=True, slots=True)
class PricingRuleTick:
    """The clock reached a rule's effective_at or until: re-price the city."""

    __pydantic_config__: ClassVar[ConfigDict] = DECLARED


@dataclass(frozen=True, slots=True)
class PricingReprice:
    """A new pricing algorithm was promoted: compute every item's effective price again, with it."""

    __pydantic_config__: ClassVar[ConfigDict] = DECLARED


@dataclass(frozen=True, slots=True)
class ProjectionRebuild:
    """Rewrite the city's read model in Redis from the tables (after Redis lost data, or on request)."""

    __pydantic_config__: ClassVar[ConfigDict] = DECLARED


Payload = (
    RestaurantUpserted
    | ItemUpserted
    | ItemRemoved
    | ItemAvailabilitySet
    | PriceSet
    | PricingRuleSet
    | PricingRuleTick
    | PricingReprice
    | ProjectionRebuild
)


@dataclass(frozen=True, slots=True)
class RuleSpec:
    """A pricing rule as admins and the log write it: the multiplier as a number (1.25), not basis points."""

    __pydantic_config__: ClassVar[ConfigDict] = DECLARED
    multiplier: Multiplier
    effective_at: Timestamp | None = None
    until: Timestamp | None = None
    name: RuleName = ""


@dataclass(frozen=True, slots=True)
class PricingRuleSetSpec:
    """pricing.rule_set as written: `rule` is required, and null clears the city's rule."""

    __pydantic_config__: ClassVar[ConfigDict] = DECLARED
    rule: RuleSpec | None


def _rule_payload(spec: PricingRuleSetSpec, path: str) -> PricingRuleSet:
    rule = spec.rule
    if rule is None:
        return PricingRuleSet(None)
    if rule.effective_at is not None and rule.until is not None and rule.until <= rule.effective_at:
        raise InvalidEvent("must be later than effective_at", field=field_path(path, "rule", "until"))
    return PricingRuleSet(PricingRule(round(rule.multiplier * 10_000), rule.effective_at, rule.until, rule.name))


# What each type's data looks like on the wire (only pricing.rule_set differs from its payload).
WIRE_TYPES: dict[EventType, type] = {
    EventType.RESTAURANT_UPSERTED: RestaurantUpserted,
    EventType.ITEM_UPSERTED: ItemUpserted,
    EventType.ITEM_REMOVED: ItemRemoved,
    EventType.ITEM_AVAILABILITY_SET: ItemAvailabilitySet,
    EventType.PRICE_SET: PriceSet,
    EventType.PRICING_RULE_SET: PricingRuleSetSpec,
    EventType.PRICING_RULE_TICK: PricingRuleTick,
    EventType.PRICING_REPRICE: PricingReprice,
    EventType.PROJECTION_REBUILD: ProjectionRebuild,
}
_WIRE: dict[EventType, TypeAdapter[Any]] = {kind: TypeAdapter(wire) for kind, wire in WIRE_TYPES.items()}


def payload_from_wire(kind: EventType, wire: Any, path: str) -> Payload:
    if isinstance(wire, PricingRuleSetSpec):
        return _rule_payload(wire, path)
    payload_type = WIRE_TYPES[kind]
    payload: Payload = payload_type(**{f.name: getattr(wire, f.name) for f in fields(payload_type)})
    return payload


# ---- the envelope ----


@dataclass(frozen=True, slots=True)
class Event:
    event_id: str
    type: EventType
    city: str
    occurred_at: str
    actor: str
    payload: Payload
    expected_version: int | None = None
    request_id: str | None = None
    schema_version: int = SCHEMA_VERSION

    def as_json(self) -> dict[str, Any]:
        data = {f.name: getattr(self.payload, f.name) for f in fields(self.payload)}
        if isinstance(self.payload, PricingRuleSet) and self.payload.rule is not None:
            data["rule"] = self.payload.rule.as_json()
        return {
            "event_id": self.event_id,
            "type": self.type.value,
            "schema_version": self.schema_version,
            "city": self.city,
            "occurred_at": self.occurred_at,
            "actor": self.actor,
            "expected_version": self.expected_version,
            "request_id": self.request_id,
            "data": data,
        }


@dataclass(frozen=True, slots=True)
class EventBatch:
    """What one Kafka record carries: one or more events of one city, applied all or nothing."""

    city: str
    events: tuple[Event, ...]
    batch_id: str = field(default="")

    def encode(self) -> bytes:
        return orjson.dumps(
            {"batch_id": self.batch_id, "city": self.city, "events": [e.as_json() for e in self.events]}
        )


@dataclass(frozen=True, slots=True)
class EventRecord:
    """One event as it travels in a batch record; everything but `type` is defaulted when absent."""

    __pydantic_config__: ClassVar[ConfigDict] = DECLARED
    type: EventType
    event_id: Absent[Id] = None
    city: CityCode | None = None
    occurred_at: RecordTimestamp = ""
    actor: Absent[Actor] = None
    expected_version: Version | None = None
    request_id: RequestId | None = None
    schema_version: Annotated[int, Strict(), Field(ge=1, le=1_000)] = SCHEMA_VERSION
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class BatchRecord:
    __pydantic_config__: ClassVar[ConfigDict] = DECLARED
    city: CityCode
    events: Annotated[list[Any], Field(min_length=1)]
    batch_id: Absent[Id] = None


_EVENT_RECORD = TypeAdapter(EventRecord)
_BATCH_RECORD = TypeAdapter(BatchRecord)


SystemPayload = PricingRuleTick | PricingReprice | ProjectionRebuild
SYSTEM_EVENT_TYPES: dict[type[SystemPayload], EventType] = {
    PricingRuleTick: EventType.PRICING_RULE_TICK,
    PricingReprice: EventType.PRICING_REPRICE,
    ProjectionRebuild: EventType.PROJECTION_REBUILD,
}


def system_batch(city: str, payload: SystemPayload, actor: str, now: str) -> EventBatch:
    """A one-event batch the system itself puts on a city's log (a pricing tick, a reprice, a rebuild request)."""
    kind = SYSTEM_EVENT_TYPES[type(payload)]
    event = Event(event_id=uuid.uuid4().hex, type=kind, city=city, occurred_at=now, actor=actor, payload=payload)
    return EventBatch(city=city, events=(event,), batch_id=event.event_id)


def decode_batch(raw: bytes) -> EventBatch:
    """Read a Kafka record tolerantly; raise InvalidEvent when it cannot be understood or breaks a field rule
    (the worker then dead-letters it)."""
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent(f"not JSON: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("events"), list):
        raise InvalidEvent("not an event batch: no 'events' list")
    batch = validated(_BATCH_RECORD, document, tolerant=True)
    events = tuple(_decode_event(item, batch.city, f"events[{i}]") for i, item in enumerate(batch.events))
    return EventBatch(city=batch.city, events=events, batch_id=batch.batch_id or "")


def _decode_event(item: Any, city: str, path: str) -> Event:
    record = validated(_EVENT_RECORD, item, (path,), tolerant=True)
    if record.city not in (None, city):
        raise InvalidEvent("event city differs from its batch", field=field_path(path, "city"))
    data_path = field_path(path, "data")
    wire = validated(_WIRE[record.type], record.data, (data_path,), tolerant=True)
    return Event(
        event_id=record.event_id or "",
        type=record.type,
        city=city,
        occurred_at=record.occurred_at,
        actor=record.actor or "",
        payload=payload_from_wire(record.type, wire, data_path),
        expected_version=record.expected_version,
        request_id=record.request_id,
        schema_version=record.schema_version,
    )
