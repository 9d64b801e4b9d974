"""Reading events: strict for admin input, tolerant for what comes back from Kafka, the same field rules for both."""

from datetime import datetime
from typing import Any

import jsonschema
import jsonschema.protocols
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api.openapi import build_document
from models.admin_events import parse_admin_body, parse_admin_event
from models.errors import InvalidEvent
from models.events import (
    MAX_EVENTS_PER_BATCH,
    Event,
    EventBatch,
    EventType,
    ItemUpserted,
    PriceSet,
    PricingRuleSet,
    decode_batch,
)
from models.fields import MAX_PRICE_CENTS

CITIES = ("blr", "ams")


def _price(**fields: Any) -> dict[str, Any]:
    return {"type": "price.set", "city": "blr", "restaurant_id": "r1", "item_id": "i1", "price_cents": 450, **fields}


def _item(**fields: Any) -> dict[str, Any]:
    return {"type": "item.upserted", "city": "blr", "restaurant_id": "r1", "item_id": "i1", "name": "Dosa", **fields}


def _rule(**rule: Any) -> dict[str, Any]:
    return {"type": "pricing.rule_set", "city": "blr", "rule": {"multiplier": 1.1, **rule}}


def _refusal(source: Any, path: str = "") -> InvalidEvent:
    with pytest.raises(InvalidEvent) as caught:
        parse_admin_event(source, path, CITIES)
    return caught.value


def test_admin_event_is_parsed_into_a_typed_payload() -> None:
    parsed = parse_admin_event(_price(expected_version=3), "", CITIES)
    assert parsed.type is EventType.PRICE_SET
    assert parsed.payload == PriceSet("r1", "i1", 450)
    assert parsed.expected_version == 3


@pytest.mark.parametrize(
    ("source", "field", "code"),
    [
        ({"type": "price.set", "city": "blr", "restaurant_id": "r1", "item_id": "i1"}, "price_cents", "invalid_event"),
        (_price(price_cents=True), "price_cents", "invalid_event"),
        (_price(city="nowhere"), "city", "unknown_city"),
        ({"type": "pricing.rule_tick", "city": "blr"}, "type", "unknown_type"),
        ({"type": ["price.set"], "city": "blr"}, "type", "unknown_type"),
        ({"type": "pricing.rule_set", "city": "blr"}, "rule", "invalid_event"),
        (_rule(surge=True), "rule.surge", "invalid_event"),
        (_rule(effective_at="2026-01-02T00:00:00Z", until="2026-01-01T00:00:00Z"), "rule.until", "invalid_event"),
        (_rule(effective_at="tomorrow"), "rule.effective_at", "invalid_event"),
        (_item(name="   "), "name", "invalid_event"),
        (_price(expected_version=-1), "expected_version", "invalid_event"),
        (_item(colour="red"), "colour", "invalid_event"),
    ],
)
def test_admin_input_errors_name_the_field(source: dict[str, object], field: str, code: str) -> None:
    refusal = _refusal(source)
    assert (refusal.field, refusal.code) == (field, code)
    assert refusal.message


@pytest.mark.parametrize(
    "item_id",
    ["i1\n", "\ni1", "I1", "", "-i1", "i" * 65, "i 1", "i1\x00", "\u01311", "i1\u2028", "\uff11"],
)
def test_ids_must_match_their_pattern_entirely(item_id: str) -> None:
    assert _refusal(_price(item_id=item_id)).field == "item_id"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("price_cents", 2**63),
        ("price_cents", MAX_PRICE_CENTS + 1),
        ("price_cents", -1),
        ("price_cents", 12.0),
        ("price_cents", "12"),
        ("price_cents", [12]),
        ("price_cents", {"value": 12}),
        ("expected_version", 2**31),
        ("expected_version", 1.5),
        ("expected_version", False),
    ],
)
def test_numbers_are_whole_and_within_their_range(field: str, value: Any) -> None:
    assert _refusal(_price(**{field: value})).field == field


@pytest.mark.parametrize("multiplier", [1.7e308, 0.0, -1, 10.5, 0.09, True, "1.2", None, [1.2]])
def test_the_multiplier_is_a_number_from_a_tenth_to_ten(multiplier: Any) -> None:
    assert _refusal(_rule(multiplier=multiplier)).field == "rule.multiplier"


def test_the_multiplier_may_be_written_as_a_whole_number() -> None:
    parsed = parse_admin_event(_rule(multiplier=2), "", CITIES)
    assert isinstance(parsed.payload, PricingRuleSet) and parsed.payload.rule is not None
    assert parsed.payload.rule.multiplier_bp == 20_000


@pytest.mark.parametrize(
    "moment",
    [
        "9999-12-31T23:59:59-01:00",  # converting it to UTC overflows
        "0001-01-01T00:00:00+01:00",
        "1999-12-31T23:59:59Z",
        "2101-01-01T00:00:00Z",
        "2026-11-26T10:00:00",  # no zone
        "2026-13-01T00:00:00Z",
        "",
    ],
)
def test_timestamps_are_refused_outside_a_sane_window_or_without_a_zone(moment: str) -> None:
    assert _refusal(_rule(effective_at=moment)).field == "rule.effective_at"


@pytest.mark.parametrize("available", [1, 0, "true", None])
def test_booleans_are_booleans(available: Any) -> None:
    source = {"type": "item.availability_set", "city": "blr", "restaurant_id": "r1", "item_id": "i1"}
    assert _refusal({**source, "available": available}).field == "available"


@pytest.mark.parametrize(
    "name",
    ["Do\x00sa", "Dosa\x1b[31m", "Do\u0085sa", "Do\u2028sa", "Do\u202esa", "Do\nsa", "\x7f", "x" * 201],
)
def test_names_refuse_control_characters_and_oversize(name: str) -> None:
    assert _refusal(_item(name=name)).field == "name"


def test_text_is_stripped_and_nfc() -> None:
    parsed = parse_admin_event(_item(name="  Cafe\u0301 Dosa\u200d ", description="Crisp\r\nand hot"), "", CITIES)
    assert isinstance(parsed.payload, ItemUpserted)
    assert parsed.payload.name == "Caf\u00e9 Dosa\u200d"
    assert parsed.payload.description == "Crisp\nand hot"  # descriptions are multi-line: the dashboard's textarea


def test_description_and_rule_name_refuse_control_characters_too() -> None:
    assert _refusal(_item(description="a\x00b")).field == "description"
    assert _refusal(_item(description="a\x0cb")).field == "description"
    assert _refusal(_rule(name="surge\x00")).field == "rule.name"
    assert _refusal(_item(category="c" * 65)).field == "category"


def test_field_paths_include_the_batch_position() -> None:
    refusal = _refusal({"type": "price.set", "city": "blr", "restaurant_id": "r1", "item_id": "i1"}, "events[4]")
    assert refusal.field == "events[4].price_cents"
    assert _refusal(_rule(multiplier=50), "events[0]").field == "events[0].rule.multiplier"


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


@pytest.mark.parametrize(
    ("body", "field", "code"),
    [
        ({"events": []}, "events", "invalid"),
        ({"events": "x"}, "events", "invalid"),
        ({"events": [_price()] * (MAX_EVENTS_PER_BATCH + 1)}, "events", "invalid"),
        ({"events": [_price()], "dry_run": True}, "dry_run", "invalid"),
        ({"events": [_price(), _price(city="ams")]}, "events", "batch_spans_cities"),
        ({"events": [_price(), _price(price_cents=-1)]}, "events[1].price_cents", "invalid_event"),
        ({"events": [_price(), "x"]}, "events[1]", "invalid_event"),
        ([], None, "invalid_event"),
    ],
)
def test_batches_are_one_city_and_bounded(body: Any, field: str | None, code: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        parse_admin_body(body, CITIES)
    assert (caught.value.field, caught.value.code) == (field, code)


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
                    "future_event_field": {"x": 1},
                    "data": {"restaurant_id": "r1", "item_id": "i1", "name": "Idli", "spice_level": 3},
                }
            ],
        }
    )
    (event,) = decode_batch(raw).events
    assert event.payload == ItemUpserted("r1", "i1", "Idli")
    assert event.schema_version == 2 and event.occurred_at == "" and event.actor == ""


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"[]",
        b'{"events": []}',
        b'{"city": "blr", "events": []}',
        b'{"city": "blr", "events": [{"type": "mystery"}]}',
        b'{"city": "blr", "events": [{"type": "price.set", "data": {}}]}',
        b'{"city": "blr", "events": [{"type": "price.set", "city": "ams", "data": {}}]}',
    ],
)
def test_undecodable_records_raise_so_the_worker_can_dead_letter_them(raw: bytes) -> None:
    with pytest.raises(InvalidEvent):
        decode_batch(raw)


@pytest.mark.parametrize(
    ("data", "envelope", "field"),
    [
        ({"restaurant_id": "r1", "item_id": "i1", "name": "Do\u0000sa"}, {}, "events[0].data.name"),
        ({"restaurant_id": "r1", "item_id": "i1\n", "name": "Dosa"}, {}, "events[0].data.item_id"),
        (
            {"restaurant_id": "r1", "item_id": "i1", "name": "Dosa", "price_cents": 2**63},
            {},
            "events[0].data.price_cents",
        ),
        (
            {"restaurant_id": "r1", "item_id": "i1", "name": "Dosa"},
            {"occurred_at": "9999-12-31T23:59:59-01:00"},
            "events[0].occurred_at",
        ),
        ({"restaurant_id": "r1", "item_id": "i1", "name": "Dosa"}, {"actor": "a\u0000"}, "events[0].actor"),
        (
            {"restaurant_id": "r1", "item_id": "i1", "name": "Dosa"},
            {"expected_version": "3"},
            "events[0].expected_version",
        ),
    ],
)
def test_records_breaking_a_field_rule_are_refused_by_the_tolerant_reader_too(
    data: dict[str, Any], envelope: dict[str, Any], field: str
) -> None:
    raw = orjson.dumps({"city": "blr", "events": [{"type": "item.upserted", "data": data, **envelope}]})
    with pytest.raises(InvalidEvent) as caught:
        decode_batch(raw)
    assert caught.value.field == field


# ---- properties ----

ids = st.from_regex(r"[a-z0-9][a-z0-9_-]{0,63}", fullmatch=True)
names = st.text(st.characters(codec="utf-8", exclude_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1, max_size=200)
prices = st.integers(0, MAX_PRICE_CENTS)
moments = st.datetimes(min_value=datetime(2000, 1, 2), max_value=datetime(2099, 12, 30)).map(
    lambda moment: moment.isoformat() + "Z"
)
admin_events = st.one_of(
    st.builds(
        lambda r, n, o: {"type": "restaurant.upserted", "city": "blr", "restaurant_id": r, "name": n, "open": o},
        ids,
        names,
        st.booleans(),
    ),
    st.builds(
        lambda r, i, n, d, p: {
            "type": "item.upserted",
            "city": "blr",
            "restaurant_id": r,
            "item_id": i,
            "name": n,
            "description": d,
            "price_cents": p,
        },
        ids,
        ids,
        names,
        names | st.none(),
        prices | st.none(),
    ),
    st.builds(
        lambda r, i, p: {"type": "price.set", "city": "ams", "restaurant_id": r, "item_id": i, "price_cents": p},
        ids,
        ids,
        prices,
    ),
    st.builds(
        lambda m, at: {"type": "pricing.rule_set", "city": "blr", "rule": {"multiplier": m, "effective_at": at}},
        st.floats(0.1, 10),
        moments | st.none(),
    ),
)


@settings(max_examples=300, deadline=None)
@given(admin_events)
def test_valid_admin_events_round_trip_through_kafka(source: dict[str, Any]) -> None:
    try:
        parsed = parse_admin_event(source, "", CITIES)
    except InvalidEvent as refusal:
        assert refusal.field in ("name", "description")  # only text that is blank once stripped is refused
        return
    event = Event("e1", parsed.type, parsed.city, "2026-11-26T10:00:00.000000Z", "admin", parsed.payload)
    assert decode_batch(EventBatch(parsed.city, (event,), "b1").encode()).events == (event,)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(
        [
            "restaurant_id",
            "item_id",
            "name",
            "description",
            "price_cents",
            "available",
            "rule",
            "expected_version",
            "city",
            "extra",
        ]
    ),
    json_values,
)
def test_any_value_in_any_field_is_accepted_or_refused_naming_a_field(field: str, value: Any) -> None:
    source = {"type": "pricing.rule_set", "city": "blr"} if field == "rule" else _item(price_cents=1)
    try:
        parse_admin_event({**source, field: value}, "events[0]", CITIES)
    except InvalidEvent as refusal:
        assert refusal.field is not None and refusal.field.startswith(f"events[0].{field}")


def _published_admin_event_schema() -> jsonschema.protocols.Validator:
    document = build_document(CITIES)
    schema = {"$ref": "#/components/schemas/AdminEvent", "components": document["components"]}
    validator: jsonschema.protocols.Validator = jsonschema.Draft202012Validator(schema)
    return validator


@settings(max_examples=100, deadline=None)
@given(admin_events)
def test_the_published_schema_accepts_what_the_api_accepts(source: dict[str, Any]) -> None:
    try:
        parse_admin_event(source, "", CITIES)
    except InvalidEvent:
        return
    assert not list(_published_admin_event_schema().iter_errors(source))


@pytest.mark.parametrize(
    "source",
    [
        _item(name="Do\x00sa"),
        # Not `_item(item_id="i1\n")`: JSON Schema patterns are ECMA-262, where `$` is the very end (so does the
        # Rust engine the API validates with), but the Python validator used here reads `$` the Python way.
        _item(name="x" * 201),
        _item(colour="red"),
        _price(price_cents=2**63),
        _price(city="nowhere"),
        _price(expected_version=-1),
        _rule(multiplier=1.7e308),
        _rule(surge=True),
        {"type": "pricing.rule_tick", "city": "blr"},
    ],
)
def test_the_published_schema_refuses_what_the_api_refuses(source: dict[str, Any]) -> None:
    with pytest.raises(InvalidEvent):
        parse_admin_event(source, "", CITIES)
    assert list(_published_admin_event_schema().iter_errors(source))


def test_a_misspelt_field_is_named_rather_than_the_one_it_misses() -> None:
    source = {"type": "price.set", "city": "blr", "restaurant_id": "r1", "item_id": "i1", "price": 450}
    refusal = _refusal(source)
    assert (refusal.field, refusal.message) == ("price", "unknown field")
