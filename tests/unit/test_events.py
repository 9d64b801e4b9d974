"""Reading events: strict for admin input, tolerant for what comes back from Kafka."""

import orjson
import pytest

from models.errors import InvalidEvent
from models.events import (
    Event,
    EventBatch,
    EventType,
    ItemUpserted,
    PriceSet,
    PricingRuleSet,
    decode_batch,
    parse_admin_event,
    read_timestamp,
)

CITIES = ("blr", "ams")


def test_admin_event_is_parsed_into_a_typed_payload() -> None:
    parsed = parse_admin_event(
        {
            "type": "price.set",
            "city": "blr",
            "restaurant_id": "r1",
            "item_id": "i1",
            "price_cents": 450,
            "expected_version": 3,
        },
        "",
        CITIES,
    )
    assert parsed.type is EventType.PRICE_SET
    assert parsed.payload == PriceSet("r1", "i1", 450)
    assert parsed.expected_version == 3


@pytest.mark.parametrize(
    ("source", "field", "code"),
    [
        ({"type": "price.set", "city": "blr", "restaurant_id": "r1", "item_id": "i1"}, "price_cents", "invalid_event"),
        (
            {"type": "price.set", "city": "blr", "restaurant_id": "r1", "item_id": "i1", "price_cents": True},
            "price_cents",
            "invalid_event",
        ),
        (
            {"type": "price.set", "city": "nowhere", "restaurant_id": "r1", "item_id": "i1", "price_cents": 1},
            "city",
            "unknown_city",
        ),
        ({"type": "pricing.rule_tick", "city": "blr"}, "type", "unknown_type"),
        ({"type": "pricing.rule_set", "city": "blr"}, "rule", "invalid_event"),
        (
            {"type": "pricing.rule_set", "city": "blr", "rule": {"multiplier": 1.1, "surge": True}},
            "rule.surge",
            "invalid_event",
        ),
        (
            {
                "type": "pricing.rule_set",
                "city": "blr",
                "rule": {"multiplier": 1.1, "effective_at": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"},
            },
            "rule.until",
            "invalid_event",
        ),
        (
            {"type": "pricing.rule_set", "city": "blr", "rule": {"multiplier": 1.1, "effective_at": "tomorrow"}},
            "rule.effective_at",
            "invalid_event",
        ),
        (
            {"type": "item.upserted", "city": "blr", "restaurant_id": "r1", "item_id": "i1", "name": "   "},
            "name",
            "invalid_event",
        ),
        (
            {
                "type": "price.set",
                "city": "blr",
                "restaurant_id": "r1",
                "item_id": "i1",
                "price_cents": 1,
                "expected_version": -1,
            },
            "expected_version",
            "invalid_event",
        ),
    ],
)
def test_admin_input_errors_name_the_field(source: dict[str, object], field: str, code: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        parse_admin_event(source, "", CITIES)
    assert caught.value.field == field
    assert caught.value.code == code


def test_field_paths_include_the_batch_position() -> None:
    with pytest.raises(InvalidEvent) as caught:
        parse_admin_event(
            {"type": "price.set", "city": "blr", "restaurant_id": "r1", "item_id": "i1"}, "events[4]", CITIES
        )
    assert caught.value.field == "events[4].price_cents"


def test_rule_multiplier_becomes_basis_points_and_times_are_normalised() -> None:
    parsed = parse_admin_event(
        {
            "type": "pricing.rule_set",
            "city": "ams",
            "rule": {"multiplier": 1.2, "effective_at": "2026-11-26T20:00:00+01:00"},
        },
        "",
        CITIES,
    )
    assert isinstance(parsed.payload, PricingRuleSet) and parsed.payload.rule is not None
    assert parsed.payload.rule.multiplier_bp == 12_000
    assert parsed.payload.rule.effective_at == "2026-11-26T19:00:00.000000Z"


def test_a_batch_survives_the_round_trip_through_kafka() -> None:
    event = Event(
        "e1",
        EventType.ITEM_UPSERTED,
        "blr",
        "2026-11-26T10:00:00.000000Z",
        "admin",
        ItemUpserted("r1", "i1", "Dosa", price_cents=300),
    )
    decoded = decode_batch(EventBatch("blr", (event,), "b1").encode())
    assert decoded.events[0] == event and decoded.batch_id == "b1"


def test_kafka_reader_ignores_unknown_fields_and_defaults_missing_optional_ones() -> None:
    raw = orjson.dumps(
        {
            "city": "blr",
            "schema_version": 2,
            "future_envelope_field": 1,
            "events": [
                {
                    "event_id": "e9",
                    "type": "item.upserted",
                    "schema_version": 2,
                    "occurred_at": "x",
                    "data": {"restaurant_id": "r1", "item_id": "i1", "name": "Idli", "spice_level": 3},
                }
            ],
        }
    )
    (event,) = decode_batch(raw).events
    assert event.payload == ItemUpserted("r1", "i1", "Idli")
    assert event.schema_version == 2


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"[]",
        b'{"events": []}',
        b'{"city": "blr", "events": [{"type": "mystery"}]}',
        b'{"city": "blr", "events": [{"type": "price.set", "data": {}}]}',
    ],
)
def test_undecodable_records_raise_so_the_worker_can_dead_letter_them(raw: bytes) -> None:
    with pytest.raises(InvalidEvent):
        decode_batch(raw)


def test_timestamps_without_a_zone_are_refused() -> None:
    with pytest.raises(InvalidEvent):
        read_timestamp("2026-11-26T10:00:00", "at")
