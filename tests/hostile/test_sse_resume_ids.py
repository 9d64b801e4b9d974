"""Last-Event-ID on both streams, as header and as ?last_event_id=: only the feed's id form (ASCII digits,
within 64 bits) is accepted; anything else is the contract's 400, and a well-formed id older than the
retained history starts over from a snapshot (menu) or from the order's first event."""

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest

from core.tokens import Role
from tests.support.catalog import publish, restaurant_batch, wait_applied
from tests.support.contract import assert_contract_answer
from tests.support.sse import SseClient
from tests.support.stack import Stack

HOSTILE_IDS = [
    "99999999999999999999-0",  # past 64 bits
    "0-99999999999999999999",
    "18446744073709551615-18446744073709551615",  # the one id Redis cannot start a range after
    "123456789012345678901",
    "²",  # a Unicode digit
    "١٢٣-٤",  # Arabic-Indic digits
    "\uff11\uff12\uff13-0",  # fullwidth digits
    "-1",
    "-1-0",
    "1--1",
    "1-0-0",
    "1-",
    "abc",
    "1.5-0",
    "0x10-0",
    " 1-0",
    "1-0 ",
    "+1-0",
    "1e5-0",
    "$",
    "(1-0",
    "+",
    "-",
    "*",
    "1" * 5000,
]


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    running = await Stack(Path(tmp_path_factory.mktemp("resume")), extra_env={"FEASTFLOW_ORDER_RATE": "100"}).start()
    async with aiohttp.ClientSession() as session:
        await wait_applied(running, await publish(running, session, restaurant_batch("blr", "resume", 3, 2500)))
    yield running
    running.stop()


@pytest.fixture(scope="module")
async def order_id(stack: Stack) -> str:
    body = {
        "idempotency_key": "resume-ids-1",
        "city": "blr",
        "restaurant_id": "resume",
        "lines": [{"item_id": "resume-0", "quantity": 1, "price_cents": 2500}],
    }
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{stack.api_url()}/v1/orders", json=body, headers=_customer(stack)) as response,
    ):
        assert response.status in (200, 201, 202), await response.text()
        placed: dict[str, Any] = await response.json()
        return str(placed["order_id"])


def _customer(stack: Stack) -> dict[str, str]:
    return {"Authorization": f"Bearer {stack.token(Role.CUSTOMER, 'resumer')}"}


async def _assert_refused(response: aiohttp.ClientResponse) -> None:
    error = await assert_contract_answer(response)
    assert response.status == 400, response.status
    assert error is not None
    assert error == {
        "code": "invalid_last_event_id",
        "message": error["message"],
        "field": "Last-Event-ID",
    }, error


@pytest.mark.parametrize("hostile", HOSTILE_IDS)
async def test_a_malformed_menu_resume_id_is_a_contract_400(
    stack: Stack, http: aiohttp.ClientSession, hostile: str
) -> None:
    url = f"{stack.api_url()}/v1/cities/blr/menu/stream"
    if hostile.isascii() and hostile.isprintable() and hostile == hostile.strip():
        async with http.get(url, headers={"Last-Event-ID": hostile}) as response:
            await _assert_refused(response)
    async with http.get(f"{url}?last_event_id={quote(hostile)}") as response:
        await _assert_refused(response)


@pytest.mark.parametrize("hostile", HOSTILE_IDS)
async def test_a_malformed_order_resume_id_is_a_contract_400(
    stack: Stack, http: aiohttp.ClientSession, order_id: str, hostile: str
) -> None:
    url = f"{stack.api_url()}/v1/orders/{order_id}/stream"
    if hostile.isascii() and hostile.isprintable() and hostile == hostile.strip():
        async with http.get(url, headers={**_customer(stack), "Last-Event-ID": hostile}) as response:
            await _assert_refused(response)
    async with http.get(f"{url}?last_event_id={quote(hostile)}", headers=_customer(stack)) as response:
        await _assert_refused(response)


async def test_unicode_in_the_header_is_refused_too(stack: Stack) -> None:
    """aiohttp's client will not send non-ASCII header values; a raw UTF-8 header is what a hostile client sends."""
    from tests.support.raw_http import assert_raw_contract_answer, raw_request

    host = stack.api_url().removeprefix("http://").encode()
    for value in ("²".encode(), "١٢٣-٤".encode(), b"\xff\xfe-0"):
        data = (
            b"GET /v1/cities/blr/menu/stream HTTP/1.1\r\nHost: " + host + b"\r\nLast-Event-ID: " + value + b"\r\n\r\n"
        )
        answer = await raw_request(stack.api_url(), data)
        error = assert_raw_contract_answer(answer)
        assert answer.status == 400 and error is not None and error["code"] == "invalid_last_event_id", answer


@pytest.mark.parametrize("how", ["header", "query"])
async def test_a_well_formed_id_older_than_the_history_gets_a_snapshot(stack: Stack, how: str) -> None:
    url = f"{stack.api_url()}/v1/cities/blr/menu/stream"
    # The feed's first entry follows no position at all; any id before it is no longer (or never was) retained.
    for too_old in ("0-1", "0-9", "0-18446744073709551614"):
        client = SseClient(f"{url}?last_event_id={too_old}") if how == "query" else SseClient(url, too_old)
        async with client:
            assert client.status == 200
            first = client.events[0]
            assert first.type == "snapshot", first
            assert "resume-0" in first.data


async def test_an_empty_resume_id_means_none(stack: Stack) -> None:
    async with SseClient(f"{stack.api_url()}/v1/cities/blr/menu/stream?last_event_id=") as client:
        assert client.status == 200 and client.events[0].type == "snapshot"


async def test_a_well_formed_order_resume_id_streams_the_order(stack: Stack, order_id: str) -> None:
    url = f"{stack.api_url()}/v1/orders/{order_id}/stream"
    for last_event_id in ("0-1", "0"):
        client = SseClient(f"{url}?last_event_id={last_event_id}&access_token={stack.token(Role.CUSTOMER, 'resumer')}")
        async with client:
            assert client.status == 200
            assert client.events[0].type == "status", client.events[0]
