"""An admin's change reaches connected customers and the menu GET, through real Kafka, worker and Redis."""

import time
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest

from core.redis_keys import city_keys
from tests.support.catalog import price_set, publish, restaurant_batch, wait_applied
from tests.support.polling import poll_until
from tests.support.sse import SseClient
from tests.support.stack import Stack, items_by_id


@pytest.fixture(scope="module", autouse=True)
async def seeded(stack: Stack) -> None:
    async with aiohttp.ClientSession() as session:
        await wait_applied(stack, await publish(stack, session, restaurant_batch("blr", "dosa", items=5)))
        await wait_applied(
            stack, await publish(stack, session, restaurant_batch("ams", "pizza", items=5, price_cents=900))
        )


async def test_price_change_reaches_connected_clients_and_the_menu_within_a_second(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    async with (
        SseClient(f"{stack.api_url(0)}/v1/cities/blr/menu/stream") as first,
        SseClient(f"{stack.api_url(1)}/v1/cities/blr/menu/stream") as second,
    ):
        assert first.events[0].type == "snapshot"
        assert "dosa-0" in items_by_id(first.events[0].json())
        sent_at = time.monotonic()  # the clock of an event's received_at
        await publish(stack, http, price_set("blr", "dosa", "dosa-0", 4321))
        for client in (first, second):
            events = await client.wait_for(
                lambda evs: any(e.type == "item" and e.json()["price_cents"] == 4321 for e in evs), timeout=1.0
            )
            change = next(e for e in events if e.type == "item" and e.json()["price_cents"] == 4321)
            assert change.received_at - sent_at < 1.0
            assert change.json()["item_id"] == "dosa-0" and change.id
        menu = await stack.menu(http, "blr", index=1)
        assert items_by_id(menu)["dosa-0"]["price_cents"] == 4321


async def test_menu_changes_reach_clients_in_order(stack: Stack, http: aiohttp.ClientSession) -> None:
    async with SseClient(f"{stack.api_url(0)}/v1/cities/blr/menu/stream") as client:
        await publish(
            stack,
            http,
            {
                "type": "item.upserted",
                "city": "blr",
                "restaurant_id": "dosa",
                "item_id": "dosa-new",
                "name": "Rava Dosa",
                "price_cents": 1500,
            },
        )
        await publish(
            stack,
            http,
            {
                "type": "item.availability_set",
                "city": "blr",
                "restaurant_id": "dosa",
                "item_id": "dosa-1",
                "available": False,
            },
        )
        await publish(
            stack, http, {"type": "item.removed", "city": "blr", "restaurant_id": "dosa", "item_id": "dosa-2"}
        )
        await publish(
            stack,
            http,
            {
                "type": "restaurant.upserted",
                "city": "blr",
                "restaurant_id": "dosa",
                "name": "Dosa Corner",
                "open": False,
            },
        )
        events = await client.wait_for(lambda evs: any(e.type == "restaurant" for e in evs), timeout=2.0)
        changes = [(e.type, e.json().get("item_id") or e.json().get("name")) for e in events[1:]]
        assert changes == [
            ("item", "dosa-new"),
            ("item", "dosa-1"),
            ("item_removed", "dosa-2"),
            ("restaurant", "Dosa Corner"),
        ]
        assert events[2].json()["available"] is False
    menu = await stack.menu(http, "blr")
    items = items_by_id(menu)
    assert "dosa-new" in items and "dosa-2" not in items and items["dosa-1"]["available"] is False
    assert menu["restaurants"][0]["name"] == "Dosa Corner"
    assert menu["cursor"] == events[-1].id


async def test_pricing_rule_reprices_every_item_of_the_city_only(stack: Stack, http: aiohttp.ClientSession) -> None:
    before = items_by_id(await stack.menu(http, "ams"))
    async with SseClient(f"{stack.api_url(1)}/v1/cities/ams/menu/stream") as client:
        await publish(stack, http, {"type": "pricing.rule_set", "city": "ams", "rule": {"multiplier": 1.25}})
        events = await client.wait_for(lambda evs: len(evs) >= 1 + len(before), timeout=2.0)
        repriced = {e.json()["item_id"]: e.json()["price_cents"] for e in events if e.type == "item"}
    assert repriced == {item_id: round(item["base_price_cents"] * 1.25) for item_id, item in before.items()}
    blr = items_by_id(await stack.menu(http, "blr"))
    assert all(item["price_cents"] == item["base_price_cents"] for item in blr.values())
    await publish(stack, http, {"type": "pricing.rule_set", "city": "ams", "rule": None})
    base = {k: v["base_price_cents"] for k, v in before.items()}

    async def restored() -> bool:
        return {k: v["price_cents"] for k, v in items_by_id(await stack.menu(http, "ams")).items()} == base

    await poll_until(restored, 0.5, message="the rule's removal did not restore base prices")


async def test_reconnect_with_last_event_id_gets_exactly_the_missed_events(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    async with SseClient(f"{stack.api_url(0)}/v1/cities/blr/menu/stream") as client:
        position = client.events[0].id
    missed = [4000 + n for n in range(7)]
    for price in missed:
        await publish(stack, http, price_set("blr", "dosa", "dosa-3", price))
    async with SseClient(f"{stack.api_url(1)}/v1/cities/blr/menu/stream", last_event_id=position) as resumed:
        await resumed.wait_for(lambda evs: len(evs) >= len(missed), timeout=2.0)
        # One change more: the feed is in order, so once it arrived nothing from before it can arrive any more.
        await publish(stack, http, price_set("blr", "dosa", "dosa-3", 4100))
        await resumed.wait_for(lambda evs: any(e.json().get("price_cents") == 4100 for e in evs), timeout=2.0)
        assert [e.json()["price_cents"] for e in resumed.events] == [*missed, 4100]
        assert all(e.type == "item" for e in resumed.events)
        ids = [e.id for e in resumed.events]
        assert len(set(ids)) == len(ids)


async def test_a_position_no_longer_retained_gets_a_fresh_snapshot(stack: Stack, http: aiohttp.ClientSession) -> None:
    async with SseClient(f"{stack.api_url(0)}/v1/cities/blr/menu/stream") as client:
        old_position = client.events[0].id
    for price in (5001, 5002, 5003):
        await wait_applied(stack, await publish(stack, http, price_set("blr", "dosa", "dosa-4", price)))
    redis = stack.redis()
    try:  # retention: keep only the newest entry, as MAXLEN does over time
        await redis.xtrim(city_keys(stack.namespace, "blr").feed, maxlen=1, approximate=False)
    finally:
        await redis.aclose()
    # A malformed id is no position at all: a 400 (tests/hostile/test_sse_resume_ids.py), not a snapshot.
    for stale in (old_position, "3-7", "999999999-0"):
        async with SseClient(f"{stack.api_url(0)}/v1/cities/blr/menu/stream", last_event_id=stale) as resumed:
            snapshot = resumed.events[0]
            assert snapshot.type == "snapshot", stale
            assert snapshot.id == snapshot.json()["cursor"]
            assert items_by_id(snapshot.json())["dosa-4"]["price_cents"] == 5003


async def test_unknown_city_is_a_404_with_the_error_body(stack: Stack, http: aiohttp.ClientSession) -> None:
    for path in ("/v1/cities/xyz/menu", "/v1/cities/xyz/menu/stream"):
        async with http.get(f"{stack.api_url(0)}{path}") as response:
            assert response.status == 404
            assert (await response.json())["error"]["code"] == "unknown_city"


async def test_a_rule_scheduled_for_later_reprices_when_its_time_comes_and_ends(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    base = {k: v["base_price_cents"] for k, v in items_by_id(await stack.menu(http, "ams")).items()}
    now = datetime.now(UTC)
    effective_at = now + timedelta(seconds=2)
    rule = {
        "multiplier": 2,
        "effective_at": effective_at.isoformat(),
        "until": (now + timedelta(seconds=4)).isoformat(),
    }
    async with SseClient(f"{stack.api_url(0)}/v1/cities/ams/menu/stream") as client:
        await wait_applied(stack, await publish(stack, http, {"type": "pricing.rule_set", "city": "ams", "rule": rule}))
        # The worker took the rule in: the menu (read straight from Redis) still shows base prices before its time.
        shown = {k: v["price_cents"] for k, v in items_by_id(await stack.menu(http, "ams")).items()}
        assert datetime.now(UTC) < effective_at, "too slow to see the time before the rule (not a finding)"
        assert shown == base and client.of_type("item") == [], "the rule applied before its time"
        doubled = await client.wait_for(lambda evs: len([e for e in evs if e.type == "item"]) >= len(base), 5.0)
        assert {e.json()["item_id"]: e.json()["price_cents"] for e in doubled if e.type == "item"} == {
            k: 2 * v for k, v in base.items()
        }
        restored = await client.wait_for(lambda evs: len([e for e in evs if e.type == "item"]) >= 2 * len(base), 5.0)
        assert {e.json()["item_id"]: e.json()["price_cents"] for e in restored[-len(base) :]} == base


async def test_heartbeats_keep_quiet_streams_alive(stack: Stack) -> None:
    pod = await stack.start_api(FEASTFLOW_SSE_PING_S="0.3")
    try:
        url = pod.ready_url.removesuffix("/readyz")
        async with SseClient(f"{url}/v1/cities/mum/menu/stream") as client:
            await poll_until(lambda: client.comments >= 3, 1.2, message="fewer than 3 heartbeats in 1.2 s")
    finally:
        pod.terminate()
        stack.apis.remove(pod)


async def test_writes_beyond_the_rate_limit_get_429_with_retry_after(stack: Stack, http: aiohttp.ClientSession) -> None:
    pod = await stack.start_api(FEASTFLOW_ADMIN_RATE="3")
    try:
        url = pod.ready_url.removesuffix("/readyz")
        before = await stack.end_offsets()
        statuses = []
        for n in range(8):
            async with http.post(
                f"{url}/v1/admin/events",
                json=price_set("blr", "dosa", "dosa-3", 100 + n),
                headers=stack.admin_headers(),
            ) as response:
                statuses.append(response.status)
                if response.status == 429:
                    assert int(response.headers["Retry-After"]) >= 1
                    assert (await response.json())["error"]["code"] == "rate_limited"
        accepted = statuses.count(202)
        assert 3 <= accepted < 8 and statuses.count(429) == 8 - accepted
        after = await stack.end_offsets()
        assert sum(after.values()) - sum(before.values()) == accepted
    finally:
        pod.terminate()
        stack.apis.remove(pod)


async def test_a_menu_read_again_is_a_304_until_it_changes_and_comes_gzipped_to_clients_that_accept_it(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    url = f"{stack.api_url(0)}/v1/cities/ams/menu"
    async with http.get(url, headers={"Accept-Encoding": "identity"}) as response:
        assert response.status == 200 and "Content-Encoding" not in response.headers
        etag, plain = response.headers["ETag"], await response.read()
    async with http.get(url, headers={"If-None-Match": etag}) as response:
        assert response.status == 304 and await response.read() == b""
    async with http.get(url, headers={"Accept-Encoding": "gzip"}) as response:  # aiohttp inflates it
        assert response.headers["Content-Encoding"] == "gzip" and await response.read() == plain
    await wait_applied(stack, await publish(stack, http, price_set("ams", "pizza", "pizza-1", 1234)))
    async with http.get(url, headers={"If-None-Match": etag}) as response:
        assert response.status == 200 and response.headers["ETag"] != etag
        assert items_by_id(await response.json())["pizza-1"]["price_cents"] == 1234
