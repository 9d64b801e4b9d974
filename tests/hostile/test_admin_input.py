"""Hostile admin input: whatever an admin token sends, the answer is 2xx or the contract's 4xx naming the field,
and a refused write appends nothing to any topic. (An admin event with a NUL in its name once reached Kafka,
then stalled its partition for good: refused here, it never gets there.)"""

import io
import json
from typing import Any

import aiohttp
import orjson
import pytest

from core.topics import order_topic_name
from models.events import MAX_EVENTS_PER_BATCH
from models.fields import MAX_PRICE_CENTS, MAX_VERSION
from tests.support.catalog import publish, restaurant_batch, wait_applied
from tests.support.contract import KafkaUnchanged, assert_contract_answer
from tests.support.stack import Stack, items_by_id

JSON = "application/json"


@pytest.fixture(scope="module", autouse=True)
async def seeded(stack: Stack) -> None:
    async with aiohttp.ClientSession() as session:
        await wait_applied(stack, await publish(stack, session, restaurant_batch("blr", "dhaba", items=2)))


def _item(**fields: Any) -> dict[str, Any]:
    return {
        "type": "item.upserted",
        "city": "blr",
        "restaurant_id": "dhaba",
        "item_id": "dhaba-0",
        "name": "Dal",
        "price_cents": 1000,
        **fields,
    }


def _price(**fields: Any) -> dict[str, Any]:
    return {
        "type": "price.set",
        "city": "blr",
        "restaurant_id": "dhaba",
        "item_id": "dhaba-0",
        "price_cents": 1,
        **fields,
    }


def _rule(**rule: Any) -> dict[str, Any]:
    return {"type": "pricing.rule_set", "city": "blr", "rule": {"multiplier": 1.2, **rule}}


def _nested(depth: int) -> bytes:
    return orjson.dumps(_item(name="x"))[:-1] + b', "description": ' + b"[" * depth + b"]" * depth + b"}"


REFUSED = [
    # control characters, in every text field
    pytest.param(_item(name="Dal\u0000Makhani"), 422, "invalid_event", "name", id="nul-in-name"),
    pytest.param(_item(name="Dal\x1b[31m"), 422, "invalid_event", "name", id="escape-in-name"),
    pytest.param(_item(name="Dal\u2028Makhani"), 422, "invalid_event", "name", id="line-separator-in-name"),
    pytest.param(_item(name="\u202eDal"), 422, "invalid_event", "name", id="bidi-override-in-name"),
    pytest.param(_item(description="x\u0000"), 422, "invalid_event", "description", id="nul-in-description"),
    pytest.param(_item(category="Mains\u0007"), 422, "invalid_event", "category", id="bell-in-category"),
    pytest.param(_rule(name="surge\u0000"), 422, "invalid_event", "rule.name", id="nul-in-rule-name"),
    pytest.param(
        {"type": "restaurant.upserted", "city": "blr", "restaurant_id": "dhaba", "name": "\u0085"},
        422,
        "invalid_event",
        "name",
        id="c1-control-as-restaurant-name",
    ),
    # ids match their pattern entirely
    pytest.param(_item(item_id="dhaba-0\n"), 422, "invalid_event", "item_id", id="trailing-newline-id"),
    pytest.param(_item(restaurant_id="dhaba\n"), 422, "invalid_event", "restaurant_id", id="trailing-newline-rid"),
    pytest.param(_item(item_id="dhaba:0"), 422, "invalid_event", "item_id", id="colon-in-id"),
    pytest.param(_item(item_id="x" * 65), 422, "invalid_event", "item_id", id="long-id"),
    pytest.param(_item(city="blr\n"), 422, "unknown_city", "city", id="trailing-newline-city"),
    # numbers: whole, bounded
    pytest.param(_price(price_cents=2**63), 422, "invalid_event", "price_cents", id="price-2-63"),
    pytest.param(_price(price_cents=2**64 + 1), 422, "invalid_event", "price_cents", id="price-beyond-64-bits"),
    pytest.param(_price(price_cents=MAX_PRICE_CENTS + 1), 422, "invalid_event", "price_cents", id="price-over-max"),
    pytest.param(_price(price_cents=-1), 422, "invalid_event", "price_cents", id="negative-price"),
    pytest.param(_price(price_cents=1.7e308), 422, "invalid_event", "price_cents", id="price-1.7e308"),
    pytest.param(_price(price_cents=10.0), 422, "invalid_event", "price_cents", id="float-price"),
    pytest.param(_price(price_cents=True), 422, "invalid_event", "price_cents", id="bool-price"),
    pytest.param(_price(expected_version=MAX_VERSION + 1), 422, "invalid_event", "expected_version", id="huge-version"),
    pytest.param(_price(expected_version=1.5), 422, "invalid_event", "expected_version", id="float-version"),
    pytest.param(_rule(multiplier=1.7e308), 422, "invalid_event", "rule.multiplier", id="multiplier-1.7e308"),
    pytest.param(_rule(multiplier=-1), 422, "invalid_event", "rule.multiplier", id="negative-multiplier"),
    pytest.param(_rule(multiplier=0), 422, "invalid_event", "rule.multiplier", id="zero-multiplier"),
    # timestamps in a sane window
    pytest.param(
        _rule(effective_at="9999-12-31T23:59:59-01:00"), 422, "invalid_event", "rule.effective_at", id="year-9999"
    ),
    pytest.param(_rule(until="0001-01-01T00:00:00+01:00"), 422, "invalid_event", "rule.until", id="year-1"),
    pytest.param(_rule(until="2026-11-26T10:00:00"), 422, "invalid_event", "rule.until", id="no-zone"),
    pytest.param(_rule(until=1764151200), 422, "invalid_event", "rule.until", id="epoch-number"),
    # lists and objects where scalars go
    pytest.param(_item(name=["Dal"]), 422, "invalid_event", "name", id="list-as-name"),
    pytest.param(_price(price_cents={"value": 1}), 422, "invalid_event", "price_cents", id="object-as-price"),
    pytest.param(_item(available=[True]), 422, "invalid_event", "available", id="list-as-boolean"),
    pytest.param(_item(available=1), 422, "invalid_event", "available", id="one-as-boolean"),
    pytest.param(_item(city=["blr"]), 422, "invalid_event", "city", id="list-as-city"),
    pytest.param({**_item(), "type": {"t": 1}}, 422, "unknown_type", "type", id="object-as-type"),
    pytest.param(_rule(multiplier=[1.2]), 422, "invalid_event", "rule.multiplier", id="list-as-multiplier"),
    pytest.param(
        {"type": "pricing.rule_set", "city": "blr", "rule": "surge"}, 422, "invalid_event", "rule", id="str-rule"
    ),
    # unknown fields, named
    pytest.param(_item(colour="red"), 422, "invalid_event", "colour", id="unknown-field"),
    pytest.param(_rule(surge=True), 422, "invalid_event", "rule.surge", id="unknown-rule-field"),
    pytest.param({"events": [_item()], "dry_run": True}, 422, "invalid", "dry_run", id="unknown-batch-field"),
    # oversize text
    pytest.param(_item(name="x" * 201), 422, "invalid_event", "name", id="long-name"),
    pytest.param(_item(description="x" * 2001), 422, "invalid_event", "description", id="long-description"),
    pytest.param(_item(category="x" * 65), 422, "invalid_event", "category", id="long-category"),
    pytest.param(_rule(name="x" * 101), 422, "invalid_event", "rule.name", id="long-rule-name"),
    # batches
    pytest.param({"events": [_item(), _price(city="mum")]}, 422, "batch_spans_cities", "events", id="mixed-cities"),
    pytest.param({"events": [_price()] * (MAX_EVENTS_PER_BATCH + 1)}, 422, "invalid", "events", id="too-many-events"),
    pytest.param({"events": [_price(), ["x"]]}, 422, "invalid_event", "events[1]", id="list-as-event"),
    pytest.param({"events": {"0": _price()}}, 422, "invalid", "events", id="object-as-events"),
    # bodies that are not one event
    pytest.param([], 422, "invalid_event", None, id="list-body"),
    pytest.param("price.set", 422, "invalid_event", None, id="string-body"),
    pytest.param(None, 422, "invalid_event", None, id="null-body"),
]


@pytest.mark.parametrize(("body", "status", "code", "field"), REFUSED)
async def test_hostile_admin_events_are_refused_naming_the_field_and_publish_nothing(
    stack: Stack, http: aiohttp.ClientSession, body: Any, status: int, code: str, field: str | None
) -> None:
    async with (
        KafkaUnchanged(stack, stack.topic, order_topic_name(stack.namespace)),
        http.post(
            f"{stack.api_url()}/v1/admin/events",
            data=json.dumps(body).encode(),  # json, not orjson: it writes integers beyond 64 bits
            headers={**stack.admin_headers(), "Content-Type": JSON},
        ) as response,
    ):
        error = await assert_contract_answer(response)
    assert error is not None
    assert (response.status, error["code"], error.get("field")) == (status, code, field), error


RAW = [
    pytest.param(b"", JSON, 400, "malformed_json", id="empty-body"),
    pytest.param(b"{", JSON, 400, "malformed_json", id="truncated"),
    pytest.param(b'{"type": "price.set", "price_cents": 1e400}', JSON, 400, "malformed_json", id="infinite-number"),
    pytest.param(b'{"type": "price.set", "price_cents": NaN}', JSON, 400, "malformed_json", id="nan"),
    pytest.param(b'{"name": "\\ud800"}', JSON, 400, "malformed_json", id="lone-surrogate"),
    pytest.param(b'{"name": "\xff\xfe"}', JSON, 400, "malformed_json", id="invalid-utf8"),
    pytest.param(_nested(5000), JSON, 400, "malformed_json", id="nested-5000-deep"),
    pytest.param(_nested(500), JSON, 422, "invalid_event", id="nested-500-deep"),
    pytest.param(orjson.dumps(_price()), "text/plain", 415, "unsupported_media_type", id="text-plain"),
    pytest.param(orjson.dumps(_price()), None, 415, "unsupported_media_type", id="no-content-type"),
    pytest.param(orjson.dumps(_price()), "application/x-www-form-urlencoded", 415, "unsupported_media_type", id="form"),
    pytest.param(
        orjson.dumps(_price()), "application/json; charset=latin-1", 415, "unsupported_media_type", id="latin1"
    ),
    pytest.param(orjson.dumps(_price()), "application/jsonx", 415, "unsupported_media_type", id="near-json"),
    pytest.param(b"x" * (3 * 1024 * 1024), JSON, 413, "payload_too_large", id="oversize-body"),
]


@pytest.mark.parametrize(("raw", "content_type", "status", "code"), RAW)
async def test_bodies_that_are_not_json_are_refused_and_publish_nothing(
    stack: Stack, http: aiohttp.ClientSession, raw: bytes, content_type: str | None, status: int, code: str
) -> None:
    headers = stack.admin_headers()
    if content_type is not None:
        headers["Content-Type"] = content_type
    # skip_auto_headers: aiohttp would otherwise label the bytes application/octet-stream
    async with (
        KafkaUnchanged(stack, stack.topic, order_topic_name(stack.namespace)),
        http.post(
            f"{stack.api_url()}/v1/admin/events",
            data=io.BytesIO(raw),
            headers=headers,
            skip_auto_headers=["Content-Type"],
        ) as response,
    ):
        error = await assert_contract_answer(response)
    assert error is not None
    assert (response.status, error["code"]) == (status, code), error


@pytest.mark.parametrize(
    "path",
    [
        "/v1/admin/events/%00",
        "/v1/admin/events/x:y",
        "/v1/admin/events/" + "a" * 65,
        "/v1/admin/items/blr/a%0A/history",
        "/v1/admin/items/blr/dhaba-0:x/history",
        "/v1/admin/items/blr%00/dhaba-0/history",
    ],
)
async def test_malformed_ids_in_admin_paths_are_unknown(stack: Stack, http: aiohttp.ClientSession, path: str) -> None:
    async with http.get(f"{stack.api_url()}{path}", headers=stack.admin_headers()) as response:
        error = await assert_contract_answer(response)
    assert response.status == 404 and error is not None


async def test_json_with_a_charset_is_json(stack: Stack, http: aiohttp.ClientSession) -> None:
    async with http.post(
        f"{stack.api_url()}/v1/admin/events",
        data=orjson.dumps(_price(price_cents=1234)),
        headers={**stack.admin_headers(), "Content-Type": "application/json; charset=UTF-8"},
    ) as response:
        assert response.status == 202, await response.text()
        await wait_applied(stack, (await response.json())["event_ids"])


async def test_unusual_but_valid_text_is_stored_normalised(stack: Stack, http: aiohttp.ClientSession) -> None:
    """NFC, stripped; joiners kept (Indic scripts need them); a description keeps its line breaks."""
    event = _item(
        item_id="dhaba-1",
        name="  Cafe\u0301 \u0915\u094d\u200d\u0937 \U0001f468\u200d\U0001f373 ",
        description="Slow-cooked.\r\nServes two.",
    )
    await wait_applied(stack, await publish(stack, http, event))
    item = items_by_id(await stack.menu(http, "blr"))["dhaba-1"]
    assert item["name"] == "Caf\u00e9 \u0915\u094d\u200d\u0937 \U0001f468\u200d\U0001f373"
    assert item["description"] == "Slow-cooked.\nServes two."
