"""Hostile order input: whatever a customer, restaurant or admin token sends to the order routes, the answer is
2xx or the contract's 4xx, a refused write appends nothing to any topic, and an order id that is not an order
id is looked up nowhere. (A line price of 2**63 once reached Kafka and then failed the answer with a 500;
`/v1/orders/{id}:feed` once read another key before the ownership check.)"""

import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from core.tokens import Role
from core.topics import order_topic_name
from models.fields import MAX_PRICE_CENTS
from models.orders import MAX_LINES
from tests.support.catalog import publish, restaurant_batch, wait_applied
from tests.support.contract import KafkaUnchanged, assert_contract_answer
from tests.support.polling import poll_until
from tests.support.stack import Stack

JSON = "application/json"


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    """A private stack whose order rate limit stays out of the way: these tests send many bodies a second."""
    running = await Stack(
        Path(tmp_path_factory.mktemp("order-input")), extra_env={"FEASTFLOW_ORDER_RATE": "1000"}
    ).start()
    async with aiohttp.ClientSession() as session:
        await wait_applied(running, await publish(running, session, restaurant_batch("blr", "tiffin", 2, 1000)))
    yield running
    running.stop()


@pytest.fixture(scope="module")
async def order_id(stack: Stack) -> str:
    """asha's order, decided by the worker."""
    async with aiohttp.ClientSession() as session:
        return await _placed(stack, session, "asha-1")


def _auth(stack: Stack, role: Role = Role.CUSTOMER, who: str = "asha") -> dict[str, str]:
    return {"Authorization": f"Bearer {stack.token(role, who)}"}


def _order(key: Any = "h-1", **fields: Any) -> dict[str, Any]:
    line = {"item_id": "tiffin-0", "quantity": 1, "price_cents": 1000, **fields.pop("line", {})}
    return {"idempotency_key": key, "city": "blr", "restaurant_id": "tiffin", "lines": [line], **fields}


async def _placed(stack: Stack, http: aiohttp.ClientSession, key: str, who: str = "asha") -> str:
    async with http.post(f"{stack.api_url()}/v1/orders", json=_order(key), headers=_auth(stack, who=who)) as response:
        assert response.status == 202, await response.text()
        order_id: str = (await response.json())["order_id"]

    async def decided() -> bool:
        async with http.get(f"{stack.api_url()}/v1/orders/{order_id}", headers=_auth(stack, who=who)) as response:
            return response.status == 200 and (await response.json())["status"] != "pending"

    await poll_until(decided, 30, 0.05, f"order {order_id} never decided")
    return order_id


def _topics(stack: Stack) -> KafkaUnchanged:
    return KafkaUnchanged(stack, stack.topic, order_topic_name(stack.namespace))


REFUSED = [
    pytest.param(_order(line={"price_cents": 2**63}), "lines[0].price_cents", id="price-2-63"),
    pytest.param(_order(line={"price_cents": 2**64 + 7}), "lines[0].price_cents", id="price-beyond-64-bits"),
    pytest.param(_order(line={"price_cents": MAX_PRICE_CENTS + 1}), "lines[0].price_cents", id="price-over-max"),
    pytest.param(_order(line={"price_cents": 1.7e308}), "lines[0].price_cents", id="price-1.7e308"),
    pytest.param(_order(line={"price_cents": -1}), "lines[0].price_cents", id="negative-price"),
    pytest.param(_order(line={"price_cents": 1000.0}), "lines[0].price_cents", id="float-price"),
    pytest.param(_order(line={"quantity": 2**63}), "lines[0].quantity", id="quantity-2-63"),
    pytest.param(_order(line={"quantity": 1.5}), "lines[0].quantity", id="float-quantity"),
    pytest.param(_order(line={"quantity": True}), "lines[0].quantity", id="bool-quantity"),
    pytest.param(_order(line={"quantity": [1]}), "lines[0].quantity", id="list-quantity"),
    pytest.param(_order(line={"item_id": "tiffin-0\n"}), "lines[0].item_id", id="trailing-newline-item"),
    pytest.param(_order(line={"item_id": "tiffin\u00000"}), "lines[0].item_id", id="nul-in-item"),
    pytest.param(_order(line={"item_id": {"$ne": None}}), "lines[0].item_id", id="object-as-item"),
    pytest.param(_order(line={"coupon": "FREE"}), "lines[0].coupon", id="unknown-line-field"),
    pytest.param(_order(restaurant_id="tiffin\n"), "restaurant_id", id="trailing-newline-restaurant"),
    pytest.param(_order(restaurant_id=["tiffin"]), "restaurant_id", id="list-as-restaurant"),
    pytest.param(_order("k\u0000"), "idempotency_key", id="nul-in-key"),
    pytest.param(_order("k\n"), "idempotency_key", id="newline-in-key"),
    pytest.param(_order("k" * 129), "idempotency_key", id="long-key"),
    pytest.param(_order(12345), "idempotency_key", id="number-as-key"),
    pytest.param(_order(tip=5), "tip", id="unknown-field"),
    pytest.param(_order(lines=[]), "lines", id="no-lines"),
    pytest.param(_order(lines={"item_id": "tiffin-0"}), "lines", id="object-as-lines"),
    pytest.param(
        _order(lines=[{"item_id": f"x{n}", "quantity": 1, "price_cents": 1} for n in range(MAX_LINES + 1)]),
        "lines",
        id="too-many-lines",
    ),
    pytest.param(_order(lines=["tiffin-0"]), "lines[0]", id="string-as-line"),
    pytest.param([], None, id="list-body"),
    pytest.param(None, None, id="null-body"),
]


@pytest.mark.parametrize(("body", "field"), REFUSED)
async def test_hostile_orders_are_refused_naming_the_field_and_publish_nothing(
    stack: Stack, http: aiohttp.ClientSession, body: Any, field: str | None
) -> None:
    async with (
        _topics(stack),
        http.post(
            f"{stack.api_url()}/v1/orders",
            data=json.dumps(body).encode(),  # json, not orjson: it writes integers beyond 64 bits
            headers={**_auth(stack), "Content-Type": JSON},
        ) as response,
    ):
        error = await assert_contract_answer(response)
    assert error is not None
    assert (response.status, error["code"], error.get("field")) == (422, "invalid_event", field), error


async def test_an_unknown_city_is_named(stack: Stack, http: aiohttp.ClientSession) -> None:
    async with (
        _topics(stack),
        http.post(f"{stack.api_url()}/v1/orders", json=_order(city="blr\n"), headers=_auth(stack)) as response,
    ):
        error = await assert_contract_answer(response)
    assert error is not None and (error["code"], error["field"]) == ("unknown_city", "city")


RAW = [
    pytest.param(b"", JSON, 400, id="empty-body"),
    pytest.param(b'{"lines": [' * 3000, JSON, 400, id="deeply-nested"),
    pytest.param(b'{"idempotency_key": "\\udc00"}', JSON, 400, id="lone-surrogate"),
    pytest.param(json.dumps(_order()).encode(), "text/plain", 415, id="text-plain"),
    pytest.param(json.dumps(_order()).encode(), None, 415, id="no-content-type"),
    pytest.param(json.dumps(_order()).encode(), "multipart/form-data; boundary=x", 415, id="multipart"),
]


@pytest.mark.parametrize(("raw", "content_type", "status"), RAW)
async def test_order_bodies_that_are_not_json_are_refused(
    stack: Stack, http: aiohttp.ClientSession, raw: bytes, content_type: str | None, status: int
) -> None:
    headers = _auth(stack)
    if content_type is not None:
        headers["Content-Type"] = content_type
    async with (
        _topics(stack),
        http.post(
            f"{stack.api_url()}/v1/orders",
            data=io.BytesIO(raw),
            headers=headers,
            skip_auto_headers=["Content-Type"],
        ) as response,
    ):
        error = await assert_contract_answer(response)
    assert error is not None and response.status == status


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"status": ["preparing"]}, id="list"),
        pytest.param({"status": {"to": "preparing"}}, id="object"),
        pytest.param({"status": 3}, id="number"),
        pytest.param({"status": None}, id="null"),
        pytest.param({"status": "pending"}, id="not-advanceable"),
        pytest.param({"status": "preparing\n"}, id="trailing-newline"),
        pytest.param({"status": "preparing", "eta": 5}, id="unknown-field"),
        pytest.param(["preparing"], id="list-body"),
    ],
)
async def test_a_status_change_that_is_not_one_status_is_a_422_and_publishes_nothing(
    stack: Stack, http: aiohttp.ClientSession, order_id: str, body: Any
) -> None:
    async with (
        _topics(stack),
        http.post(
            f"{stack.api_url()}/v1/orders/{order_id}/status",
            json=body,
            headers=_auth(stack, Role.RESTAURANT, "tiffin"),
        ) as response,
    ):
        error = await assert_contract_answer(response)
    assert response.status == 422 and error is not None and error["field"] in ("status", "eta")


ODD_IDS = ["{id}:feed", "{id}%00", "%00", "{id}%0A", "..%2F{id}", "{id}:x:y", "{id}%20", "{id}" + "0" * 40]


@pytest.mark.parametrize("template", ODD_IDS)
@pytest.mark.parametrize("suffix", ["", "/stream"])
async def test_an_id_that_is_no_order_id_is_unknown_to_everyone_even_the_owner(
    stack: Stack, http: aiohttp.ClientSession, order_id: str, template: str, suffix: str
) -> None:
    path = f"/v1/orders/{template.format(id=order_id)}{suffix}"
    answers = []
    for who in ("asha", "mallory"):
        async with http.get(f"{stack.api_url()}{path}", headers=_auth(stack, who=who)) as response:
            answers.append((response.status, await assert_contract_answer(response)))
    assert answers[0] == answers[1] == (404, {"code": "unknown_order", "message": "no such order"})


async def test_someone_elses_order_looks_exactly_like_no_order(
    stack: Stack, http: aiohttp.ClientSession, order_id: str
) -> None:
    answers = []
    for path in (f"/v1/orders/{order_id}", f"/v1/orders/{'0' * 32}"):
        async with http.get(f"{stack.api_url()}{path}", headers=_auth(stack, who="mallory")) as response:
            answers.append((response.status, await response.read()))
    assert answers[0] == answers[1] and answers[0][0] == 404


@pytest.mark.parametrize("path", ["/v1/orders/%00", "/v1/orders/x:feed", "/v1/orders/%00/stream"])
async def test_credentials_come_before_any_lookup(stack: Stack, http: aiohttp.ClientSession, path: str) -> None:
    async with http.get(f"{stack.api_url()}{path}") as response:
        error = await assert_contract_answer(response)
    assert response.status == 401 and error is not None


@pytest.mark.parametrize("last_event_id", ["99999999999999999999-0", "\u00b2", "1-\u0661", "-1", "1-0-0", "x" * 100])
async def test_a_malformed_resume_id_on_an_order_stream_is_refused(
    stack: Stack, http: aiohttp.ClientSession, order_id: str, last_event_id: str
) -> None:
    headers = {**_auth(stack), "Last-Event-ID": last_event_id}
    async with http.get(f"{stack.api_url()}/v1/orders/{order_id}/stream", headers=headers) as response:
        error = await assert_contract_answer(response)
    assert response.status == 400 and error is not None and error["code"] == "invalid_last_event_id"
