"""Catalog events: the versioned envelope that travels on Kafka, and the rules every field obeys.

Admin input is read strictly (unknown fields are refused so a typo never passes silently); events read
back from Kafka are read tolerantly (unknown fields ignored, missing optional ones defaulted), so two
versions of a service can run side by side during a rollout.
"""

import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import orjson

from models.errors import InvalidEvent

SCHEMA_VERSION = 1
MAX_EVENTS_PER_BATCH = 1000


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

_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
MAX_PRICE_CENTS = 100_000_000
MIN_MULTIPLIER_BP, MAX_MULTIPLIER_BP = 1_000, 100_000  # 0.1x .. 10x


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


# ---- field readers: each returns the clean value or raises InvalidEvent naming the field ----


def read_id(value: Any, path: str) -> str:
    if not isinstance(value, str) or not _ID.match(value):
        raise InvalidEvent(
            "must be 1-64 characters of a-z, 0-9, '_' or '-', starting with a letter or digit",
            field=path,
        )
    return value


def _text(max_len: int, *, allow_empty: bool) -> Callable[[Any, str], str]:
    def read(value: Any, path: str) -> str:
        if not isinstance(value, str):
            raise InvalidEvent("must be a string", field=path)
        stripped = value.strip()
        if not stripped and not allow_empty:
            raise InvalidEvent("must not be empty", field=path)
        if len(stripped) > max_len:
            raise InvalidEvent(f"must be at most {max_len} characters", field=path)
        return stripped

    return read


def _read_bool(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidEvent("must be true or false", field=path)
    return value


def _read_price(value: Any, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidEvent("must be an integer number of minor units", field=path)
    if value < 0:
        raise InvalidEvent("must not be negative", field=path)
    if value > MAX_PRICE_CENTS:
        raise InvalidEvent(f"must be at most {MAX_PRICE_CENTS}", field=path)
    return value


def read_timestamp(value: Any, path: str) -> str:
    """RFC 3339 in, normalised UTC `YYYY-MM-DDTHH:MM:SS.ffffffZ` out, so strings compare as times."""
    if not isinstance(value, str):
        raise InvalidEvent("must be an RFC 3339 timestamp", field=path)
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidEvent("must be an RFC 3339 timestamp", field=path) from None
    if parsed.tzinfo is None:
        raise InvalidEvent("must carry a time zone (e.g. a trailing Z)", field=path)
    return format_timestamp(parsed)


def format_timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_timestamp(value: str) -> float:
    """Seconds since the epoch of a timestamp this module wrote."""
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def utc_now() -> str:
    return format_timestamp(datetime.now(UTC))


def _read_rule(value: Any, path: str) -> PricingRule | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise InvalidEvent('must be an object like {"multiplier": 1.2} or null', field=path)
    multiplier = value.get("multiplier")
    if isinstance(multiplier, bool) or not isinstance(multiplier, int | float):
        raise InvalidEvent("must be a number", field=f"{path}.multiplier")
    multiplier_bp = round(multiplier * 10_000)
    if not MIN_MULTIPLIER_BP <= multiplier_bp <= MAX_MULTIPLIER_BP:
        raise InvalidEvent("must be between 0.1 and 10", field=f"{path}.multiplier")
    effective_at = _optional(value, "effective_at", read_timestamp, path)
    until = _optional(value, "until", read_timestamp, path)
    if effective_at is not None and until is not None and until <= effective_at:
        raise InvalidEvent("must be later than effective_at", field=f"{path}.until")
    name = _optional(value, "name", _text(100, allow_empty=True), path) or ""
    return PricingRule(multiplier_bp, effective_at, until, name)


def _optional(source: Mapping[str, Any], key: str, reader: Callable[[Any, str], Any], path: str) -> Any:
    if source.get(key) is None:
        return None
    return reader(source[key], f"{path}.{key}")


# ---- payloads: one frozen record per event type ----


@dataclass(frozen=True, slots=True)
class RestaurantUpserted:
    restaurant_id: str
    name: str
    open: bool = True


@dataclass(frozen=True, slots=True)
class ItemUpserted:
    restaurant_id: str
    item_id: str
    name: str
    description: str | None = None
    category: str | None = None
    available: bool | None = None
    price_cents: int | None = None


@dataclass(frozen=True, slots=True)
class ItemRemoved:
    restaurant_id: str
    item_id: str


@dataclass(frozen=True, slots=True)
class ItemAvailabilitySet:
    restaurant_id: str
    item_id: str
    available: bool


@dataclass(frozen=True, slots=True)
class PriceSet:
    restaurant_id: str
    item_id: str
    price_cents: int


@dataclass(frozen=True, slots=True)
class PricingRuleSet:
    rule: PricingRule | None


@dataclass(frozen=True, slots=True)
class PricingRuleTick:
    """The clock reached a rule's effective_at or until: re-price the city."""


@dataclass(frozen=True, slots=True)
class PricingReprice:
    """A new pricing algorithm was promoted: compute every item's effective price again, with it."""


@dataclass(frozen=True, slots=True)
class ProjectionRebuild:
    """Rewrite the city's read model in Redis from the tables (after Redis lost data, or on request)."""


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

_READERS: dict[str, Callable[[Any, str], Any]] = {
    "restaurant_id": read_id,
    "item_id": read_id,
    "name": _text(200, allow_empty=False),
    "description": _text(2000, allow_empty=True),
    "category": _text(64, allow_empty=True),
    "open": _read_bool,
    "available": _read_bool,
    "price_cents": _read_price,
    "rule": _read_rule,
}

PAYLOAD_TYPES: dict[EventType, type[Payload]] = {
    EventType.RESTAURANT_UPSERTED: RestaurantUpserted,
    EventType.ITEM_UPSERTED: ItemUpserted,
    EventType.ITEM_REMOVED: ItemRemoved,
    EventType.ITEM_AVAILABILITY_SET: ItemAvailabilitySet,
    EventType.PRICE_SET: PriceSet,
    EventType.PRICING_RULE_SET: PricingRuleSet,
    EventType.PRICING_RULE_TICK: PricingRuleTick,
    EventType.PRICING_REPRICE: PricingReprice,
    EventType.PROJECTION_REBUILD: ProjectionRebuild,
}

RULE_FIELDS = frozenset({"multiplier", "effective_at", "until", "name"})
ENVELOPE_INPUT_FIELDS = frozenset({"type", "city", "expected_version"})


def _payload_from(kind: EventType, source: Mapping[str, Any], path: str, *, strict: bool) -> Payload:
    payload_type = PAYLOAD_TYPES[kind]
    names = [f.name for f in fields(payload_type)]
    if strict:
        unknown = sorted(set(source) - set(names) - ENVELOPE_INPUT_FIELDS)
        if unknown:
            raise InvalidEvent(f"unknown field for {kind.value}", field=_join(path, unknown[0]))
        rule = source.get("rule")
        if isinstance(rule, Mapping):
            unknown = sorted(set(rule) - RULE_FIELDS)
            if unknown:
                raise InvalidEvent("unknown field of a pricing rule", field=_join(path, f"rule.{unknown[0]}"))
    values: dict[str, Any] = {}
    for spec in fields(payload_type):
        value = source.get(spec.name)
        required = spec.default is MISSING and spec.default_factory is MISSING
        if value is None:
            if required and payload_type is not PricingRuleSet:
                raise InvalidEvent("is required", field=_join(path, spec.name))
            continue
        values[spec.name] = _READERS[spec.name](value, _join(path, spec.name))
    if payload_type is PricingRuleSet:
        if "rule" not in source:
            raise InvalidEvent("is required (null clears the rule)", field=_join(path, "rule"))
        values.setdefault("rule", None)
    return payload_type(**values)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


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
class AdminEventInput:
    """An admin's event after validation, before it gets an id, a time and an actor."""

    type: EventType
    city: str
    payload: Payload
    expected_version: int | None


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


def parse_admin_event(source: Any, path: str, known_cities: Sequence[str]) -> AdminEventInput:
    if not isinstance(source, Mapping):
        raise InvalidEvent("each event must be a JSON object", field=path or None)
    raw_type = source.get("type")
    try:
        kind = EventType(str(raw_type))
    except ValueError:
        kind = None
    if kind is None or kind not in ADMIN_EVENT_TYPES:
        allowed = ", ".join(sorted(t.value for t in ADMIN_EVENT_TYPES))
        raise InvalidEvent(f"unknown event type; one of: {allowed}", field=_join(path, "type"), code="unknown_type")
    city = source.get("city")
    if not isinstance(city, str) or city not in known_cities:
        raise InvalidEvent("unknown city", field=_join(path, "city"), code="unknown_city")
    expected = source.get("expected_version")
    if expected is not None and (isinstance(expected, bool) or not isinstance(expected, int) or expected < 0):
        raise InvalidEvent("must be a non-negative integer", field=_join(path, "expected_version"))
    payload = _payload_from(kind, source, path, strict=True)
    return AdminEventInput(kind, city, payload, expected)


def decode_batch(raw: bytes) -> EventBatch:
    """Read a Kafka record tolerantly; raise InvalidEvent when it cannot be understood at all."""
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent(f"not JSON: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("events"), list):
        raise InvalidEvent("not an event batch: no 'events' list")
    city = document.get("city")
    if not isinstance(city, str):
        raise InvalidEvent("event batch without a city")
    events = tuple(_decode_event(item, city, f"events[{i}]") for i, item in enumerate(document["events"]))
    if not events:
        raise InvalidEvent("empty event batch")
    return EventBatch(city=city, events=events, batch_id=str(document.get("batch_id") or ""))


def _decode_event(item: Any, city: str, path: str) -> Event:
    if not isinstance(item, dict):
        raise InvalidEvent("event is not an object", field=path)
    try:
        kind = EventType(str(item.get("type")))
    except ValueError:
        raise InvalidEvent(f"unknown event type {item.get('type')!r}", field=_join(path, "type")) from None
    if item.get("city", city) != city:
        raise InvalidEvent("event city differs from its batch", field=_join(path, "city"))
    data = item.get("data")
    payload = _payload_from(kind, data if isinstance(data, dict) else {}, _join(path, "data"), strict=False)
    expected = item.get("expected_version")
    return Event(
        event_id=str(item.get("event_id") or ""),
        type=kind,
        city=city,
        occurred_at=str(item.get("occurred_at") or ""),
        actor=str(item.get("actor") or ""),
        payload=payload,
        expected_version=expected if isinstance(expected, int) and not isinstance(expected, bool) else None,
        request_id=item.get("request_id") if isinstance(item.get("request_id"), str) else None,
        schema_version=int(item.get("schema_version") or SCHEMA_VERSION),
    )
