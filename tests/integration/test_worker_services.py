"""Workers split by service, as the cluster runs them: a catalog worker (menu and pricing) and an orders worker
with its own consumer group and its own copy of the catalog tables."""

import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from core.tokens import Role
from core.topics import catalog_topic_name, order_topic_name
from tests.support.catalog import price_set, publish, restaurant_batch, wait_applied
from tests.support.polling import poll_until
from tests.support.stack import Stack, items_by_id


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    running = await Stack(Path(tmp_path_factory.mktemp("services"))).start(api_count=1, worker_names=())
    await running.start_worker("catalog", FEASTFLOW_WORKER_SERVICE="catalog")
    await running.start_worker("orders", FEASTFLOW_WORKER_SERVICE="orders")
    yield running
    running.stop()


async def assignment(http: aiohttp.ClientSession, stack: Stack, worker: str) -> dict[str, Any]:
    async with http.get(f"{stack.worker_url(worker)}/feastflow/assignment/") as response:
        body: dict[str, Any] = await response.json()
        return body


async def place(http: aiohttp.ClientSession, stack: Stack, key: str, item: str, price: int) -> str:
    body = {
        "idempotency_key": key,
        "city": "blr",
        "restaurant_id": "dosa",
        "lines": [{"item_id": item, "quantity": 1, "price_cents": price}],
    }
    headers = {"Authorization": f"Bearer {stack.token(Role.CUSTOMER, 'asha')}"}
    async with http.post(f"{stack.api_url()}/v1/orders", json=body, headers=headers) as response:
        assert response.status == 202, await response.text()
        order_id: str = (await response.json())["order_id"]

    async def decided() -> str:
        async with http.get(f"{stack.api_url()}/v1/orders/{order_id}", headers=headers) as response:
            order = await response.json()
        assert order.get("status") in {"accepted", "rejected"}, f"still {order.get('status')}"
        return str(order["status"]) + ":" + str(order.get("reason") or "")

    return await poll_until(decided, 30, 0.05, f"order {order_id} undecided")


def event_topics(stack: Stack, assignment: dict[str, Any]) -> set[str]:
    """The topics the worker's agents read (not Faust's changelogs, which are named after the group)."""
    return {p["topic"] for p in assignment["partitions"] if p["topic"].startswith(f"{stack.namespace}.")}


async def test_each_service_consumes_only_its_topics_in_its_own_group(stack: Stack) -> None:
    async with aiohttp.ClientSession() as http:
        catalog, orders = await assignment(http, stack, "catalog"), await assignment(http, stack, "orders")
    assert (catalog["service"], catalog["group"]) == ("catalog", f"{stack.namespace}-catalog")
    assert (orders["service"], orders["group"]) == ("orders", f"{stack.namespace}-orders")
    assert event_topics(stack, catalog) == {catalog_topic_name(stack.namespace)}
    assert event_topics(stack, orders) == {
        catalog_topic_name(stack.namespace),
        order_topic_name(stack.namespace),
    }


async def test_orders_are_priced_by_the_orders_worker_against_the_current_catalog(stack: Stack) -> None:
    async with aiohttp.ClientSession() as http:
        await wait_applied(stack, await publish(stack, http, restaurant_batch("blr", "dosa", 2, 9000)))
        item = next(iter(sorted(k for k in items_by_id(await stack.menu(http, "blr")) if k.startswith("dosa"))))
        assert (await place(http, stack, "first", item, 9000)).startswith("accepted")

        await wait_applied(stack, await publish(stack, http, price_set("blr", "dosa", item, 9900)))
        assert items_by_id(await stack.menu(http, "blr"))[item]["price_cents"] == 9900
        # The orders worker reads the change from the log on its own; an order at the old price is refused
        # once it has, and one at the new price goes through.
        attempts = itertools.count()

        async def refused_at_the_old_price() -> str:
            outcome = await place(http, stack, f"stale-{next(attempts)}", item, 9000)
            assert not outcome.startswith("accepted"), outcome
            return outcome

        outcome = await poll_until(refused_at_the_old_price, 15, 0.2, "the orders worker never saw the new price")
        assert outcome.startswith("rejected") and "price" in outcome, outcome
        assert (await place(http, stack, "fresh", item, 9900)).startswith("accepted")
