"""Admin writes: bad input is refused with the contract's error body and publishes nothing; stale versions are
refused visibly; every accepted event can be followed to `applied`, and into the item's history."""

import asyncio
import io
from typing import Any

import aiohttp
import pytest

from core.tokens import Role
from tests.support.catalog import price_set, publish, restaurant_batch, wait_applied
from tests.support.stack import Stack, items_by_id


@pytest.fixture(scope="module", autouse=True)
async def seeded(stack: Stack) -> None:
    async with aiohttp.ClientSession() as session:
        await wait_applied(stack, await publish(stack, session, restaurant_batch("blr", "thali", items=3)))


def _item(**fields: Any) -> dict[str, Any]:
    return {
        "type": "item.upserted",
        "city": "blr",
        "restaurant_id": "thali",
        "item_id": "thali-9",
        "name": "Veg Thali",
        "price_cents": 25000,
        **fields,
    }


BAD_BODIES = [
    pytest.param(b"{not json", 400, "malformed_json", None, id="malformed-json"),
    pytest.param(b"", 400, "malformed_json", None, id="empty-body"),
    pytest.param({"type": "item.exploded", "city": "blr"}, 422, "unknown_type", "type", id="unknown-type"),
    pytest.param(_item(name=None), 422, "invalid_event", "name", id="missing-name"),
    pytest.param(_item(price_cents=-5), 422, "invalid_event", "price_cents", id="negative-price"),
    pytest.param(_item(price_cents="12"), 422, "invalid_event", "price_cents", id="price-as-string"),
    pytest.param(_item(price_cents=12.5), 422, "invalid_event", "price_cents", id="fractional-price"),
    pytest.param(_item(available="yes"), 422, "invalid_event", "available", id="wrong-type"),
    pytest.param(_item(colour="red"), 422, "invalid_event", "colour", id="unknown-field"),
    pytest.param(_item(item_id="Has Spaces"), 422, "invalid_event", "item_id", id="bad-id"),
    pytest.param(_item(city="atlantis"), 422, "unknown_city", "city", id="unknown-city"),
    pytest.param(
        {"type": "pricing.rule_set", "city": "blr", "rule": {"multiplier": 50}},
        422,
        "invalid_event",
        "rule.multiplier",
        id="absurd-multiplier",
    ),
    pytest.param({"events": []}, 422, "invalid", "events", id="empty-batch"),
    pytest.param(
        {"events": [_item(), _item(price_cents=-1)]},
        422,
        "invalid_event",
        "events[1].price_cents",
        id="batch-with-one-bad-event",
    ),
    pytest.param({"events": [_item(), _item(city="mum")]}, 422, "batch_spans_cities", "events", id="batch-two-cities"),
    pytest.param(
        b'{"type": "price.set", "pad": "' + b"x" * (3 * 1024 * 1024) + b'"}',
        413,
        "payload_too_large",
        None,
        id="oversized-body",
    ),
]


@pytest.mark.parametrize(("body", "status", "code", "field"), BAD_BODIES)
async def test_bad_input_is_refused_and_publishes_nothing(
    stack: Stack, http: aiohttp.ClientSession, body: Any, status: int, code: str, field: str | None
) -> None:
    before = await stack.end_offsets()
    # Raw bytes go as JSON too: what is refused here is their content, not their media type (that is a 415).
    kwargs: dict[str, Any] = {"data": io.BytesIO(body)} if isinstance(body, bytes) else {"json": body}
    headers = {**stack.admin_headers(), "Content-Type": "application/json"}
    async with http.post(f"{stack.api_url(0)}/v1/admin/events", headers=headers, **kwargs) as response:
        assert response.status == status, await response.text()
        error = (await response.json())["error"]
    assert error["code"] == code
    assert error["message"]
    assert error.get("field") == field
    assert await stack.end_offsets() == before


@pytest.mark.parametrize(
    ("headers_for", "status", "code"),
    [
        pytest.param(lambda s: {}, 401, "missing_token", id="no-token"),
        pytest.param(lambda s: {"Authorization": "Bearer not.a.jwt"}, 401, "invalid_token", id="garbage-token"),
        pytest.param(
            lambda s: {"Authorization": f"Bearer {s.token(Role.ADMIN, ttl_s=-10)}"},
            401,
            "token_expired",
            id="expired-token",
        ),
        pytest.param(
            lambda s: {"Authorization": f"Bearer {s.token(Role.CUSTOMER)}"}, 403, "forbidden", id="customer-token"
        ),
    ],
)
async def test_credentials_are_checked_before_anything_is_published(
    stack: Stack, http: aiohttp.ClientSession, headers_for: Any, status: int, code: str
) -> None:
    before = await stack.end_offsets()
    async with http.post(
        f"{stack.api_url(1)}/v1/admin/events", json=price_set("blr", "thali", "thali-0", 1), headers=headers_for(stack)
    ) as response:
        assert response.status == status
        assert (await response.json())["error"]["code"] == code
    assert await stack.end_offsets() == before


async def test_stale_expected_version_is_rejected_and_changes_nothing(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    item = items_by_id(await stack.menu(http, "blr"))["thali-1"]
    await wait_applied(
        stack, await publish(stack, http, price_set("blr", "thali", "thali-1", 3100, expected_version=item["version"]))
    )
    before = await stack.end_offsets()
    response = await stack.post_events(
        http, price_set("blr", "thali", "thali-1", 9999, expected_version=item["version"])
    )
    assert response.status == 409
    error = (await response.json())["error"]
    assert error["code"] == "version_conflict" and error["field"] == "expected_version"
    assert str(item["version"] + 1) in error["message"]
    assert await stack.end_offsets() == before
    current = items_by_id(await stack.menu(http, "blr"))["thali-1"]
    assert (current["price_cents"], current["version"]) == (3100, item["version"] + 1)


async def test_a_race_lost_in_the_worker_is_rejected_visibly(stack: Stack, http: aiohttp.ClientSession) -> None:
    """Two writers with the same expected version: one change is applied, the other is refused visibly — by
    the worker when both passed the API's early check, or by the API when the first was already applied."""
    for attempt in range(5):
        version = items_by_id(await stack.menu(http, "blr"))["thali-2"]["version"]
        responses = await asyncio.gather(
            stack.post_events(http, price_set("blr", "thali", "thali-2", 1111 + attempt, expected_version=version)),
            stack.post_events(http, price_set("blr", "thali", "thali-2", 2222 + attempt, expected_version=version), 1),
        )
        bodies = [await r.json() for r in responses]
        accepted = [b["event_ids"][0] for r, b in zip(responses, bodies, strict=True) if r.status == 202]
        refused = [b for r, b in zip(responses, bodies, strict=True) if r.status == 409]
        assert len(accepted) + len(refused) == 2, bodies
        await wait_applied(stack, accepted, allow_rejected=True)  # the worker refuses the race's loser
        results = {}
        for event_id in accepted:
            async with http.get(f"{stack.api_url(0)}/v1/admin/events/{event_id}", headers=stack.admin_headers()) as r:
                assert r.status == 200
                results[event_id] = await r.json()
        statuses = sorted(r["status"] for r in results.values())
        if refused:
            assert statuses == ["applied"] and refused[0]["error"]["code"] == "version_conflict"
            continue  # the API won the race this time; try for the worker's side again
        assert statuses == ["applied", "rejected"]
        rejected = next(r for r in results.values() if r["status"] == "rejected")
        assert rejected["reason"].startswith("version_conflict")
        winner = next(r for r in results.values() if r["status"] == "applied")
        assert winner["version"] == version + 1
        assert items_by_id(await stack.menu(http, "blr"))["thali-2"]["version"] == version + 1
        return
    pytest.fail("in five tries both writers never passed the API's check together")


async def test_a_batch_is_all_or_nothing_in_the_worker_too(stack: Stack, http: aiohttp.ClientSession) -> None:
    body = {"events": [price_set("blr", "thali", "thali-0", 777), price_set("blr", "thali", "no-such-item", 1)]}
    event_ids = await publish(stack, http, body)
    assert await wait_applied(stack, event_ids, allow_rejected=True) == dict.fromkeys(event_ids, "rejected")
    async with http.get(f"{stack.api_url(0)}/v1/admin/events/{event_ids[1]}", headers=stack.admin_headers()) as r:
        assert (await r.json())["reason"] == "unknown_item"
    assert items_by_id(await stack.menu(http, "blr"))["thali-0"]["price_cents"] != 777


async def test_event_status_and_item_history(stack: Stack, http: aiohttp.ClientSession) -> None:
    await publish(stack, http, price_set("blr", "thali", "thali-0", 4100))
    event_ids = await publish(stack, http, price_set("blr", "thali", "thali-0", 4200))
    await wait_applied(stack, event_ids)
    async with http.get(f"{stack.api_url(1)}/v1/admin/events/{event_ids[0]}", headers=stack.admin_headers()) as r:
        status = await r.json()
    assert status["status"] == "applied" and status["applied_at"] and status["version"] >= 2
    async with http.get(f"{stack.api_url(0)}/v1/admin/items/blr/thali-0/history", headers=stack.admin_headers()) as r:
        assert r.status == 200
        history = (await r.json())["history"]
    assert history[0]["type"] == "item.upserted"
    assert history[-1]["old"]["price_cents"] == 4100 and history[-1]["new"]["price_cents"] == 4200
    assert history[-1]["actor"] == "tester" and history[-1]["event_id"] == event_ids[0]
    assert [h["version"] for h in history] == sorted(h["version"] for h in history)
    async with http.get(f"{stack.api_url(0)}/v1/admin/events/nope", headers=stack.admin_headers()) as r:
        assert r.status == 404 and (await r.json())["error"]["code"] == "unknown_event"


async def test_openapi_document_describes_the_admin_contract(stack: Stack, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{stack.api_url(0)}/v1/openapi.json") as response:
        document = await response.json()
    assert document["openapi"].startswith("3.")
    kinds = {
        variant["properties"]["type"]["const"] for variant in document["components"]["schemas"]["AdminEvent"]["oneOf"]
    }
    assert kinds == {
        "restaurant.upserted",
        "item.upserted",
        "item.removed",
        "item.availability_set",
        "price.set",
        "pricing.rule_set",
    }
