"""Orders end to end: price-locked, idempotent, durable, with live status — on real Kafka, Redis, PostgreSQL."""

import asyncio
import io
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any

import aiohttp
import aiopg
import pytest

from core.tokens import Role
from core.topics import order_topic_name
from tests.support.catalog import price_set, publish, restaurant_batch, wait_applied
from tests.support.polling import poll_until
from tests.support.processes import free_port
from tests.support.sse import SseClient
from tests.support.stack import SHARED_PG_DSN, Stack, items_by_id
from tests.support.tcp_proxy import TcpProxy

TERMINAL = {"accepted", "rejected"}
RETRIES = "feastflow_worker_retries_total{"


@pytest.fixture(scope="module")
async def pg_proxy() -> AsyncIterator[TcpProxy]:
    """The stack's only way to PostgreSQL: cutting it is an outage of PostgreSQL for this stack alone."""
    proxy = await TcpProxy(free_port(), "127.0.0.1", 5432).start()
    yield proxy
    await proxy.close()


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory, pg_proxy: TcpProxy) -> AsyncIterator[Stack]:
    running = await Stack(
        Path(tmp_path_factory.mktemp("orders")),
        extra_env={"FEASTFLOW_ORDER_RATE": "1000"},
        pg_dsn_base=SHARED_PG_DSN.replace("port=5432", f"port={pg_proxy.listen_port}"),
    ).start(api_count=2)
    async with aiohttp.ClientSession() as session:
        await wait_applied(running, await publish(running, session, restaurant_batch("blr", "biryani", 6, 25000)))
    yield running
    running.stop()


def customer(stack: Stack, name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {stack.token(Role.CUSTOMER, name)}"}


def order_body(key: str, prices: dict[str, int], quantities: dict[str, int] | None = None) -> dict[str, Any]:
    return {
        "idempotency_key": key,
        "city": "blr",
        "restaurant_id": "biryani",
        "lines": [
            {"item_id": item, "quantity": (quantities or {}).get(item, 1), "price_cents": price}
            for item, price in prices.items()
        ],
    }


async def place(http: aiohttp.ClientSession, stack: Stack, who: str, body: Any, index: int = 0) -> tuple[int, Any]:
    async with http.post(f"{stack.api_url(index)}/v1/orders", json=body, headers=customer(stack, who)) as response:
        return response.status, await response.json()


async def wait_status(
    http: aiohttp.ClientSession, stack: Stack, order_id: str, who: str, wanted: set[str], timeout: float = 30
) -> dict[str, Any]:
    async def decided() -> dict[str, Any]:
        async with http.get(f"{stack.api_url()}/v1/orders/{order_id}", headers=customer(stack, who)) as response:
            order: dict[str, Any] = await response.json()
        assert order.get("status") in wanted, f"still {order.get('status')}"
        return order

    return await poll_until(decided, timeout, message=f"order {order_id} not {sorted(wanted)}")


async def rows_for(stack: Stack, order_ids: list[str]) -> dict[str, int]:
    async with aiopg.connect(stack.settings.pg_dsn) as conn, conn.cursor() as cur:
        await cur.execute("SELECT order_id, count(*) FROM orders WHERE order_id = ANY(%s) GROUP BY 1", (order_ids,))
        return {order_id: count for order_id, count in await cur.fetchall()}


async def current_prices(http: aiohttp.ClientSession, stack: Stack) -> dict[str, int]:
    return {
        k: v["price_cents"] for k, v in items_by_id(await stack.menu(http, "blr")).items() if k.startswith("biryani")
    }


async def test_an_order_is_accepted_and_its_status_streams_live_to_its_owner_only(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    prices = await current_prices(http, stack)
    status, body = await place(
        http, stack, "asha", order_body("o-1", {"biryani-0": prices["biryani-0"]}, {"biryani-0": 2})
    )
    assert (status, body["status"]) == (202, "pending")
    order_id = body["order_id"]
    token = stack.token(Role.CUSTOMER, "asha")
    async with SseClient(f"{stack.api_url(1)}/v1/orders/{order_id}/stream?access_token={token}") as stream:
        accepted = await wait_status(http, stack, order_id, "asha", TERMINAL)
        assert accepted["status"] == "accepted" and accepted["total_cents"] == 2 * prices["biryani-0"]
        kitchen = {"Authorization": f"Bearer {stack.token(Role.RESTAURANT, 'biryani')}"}
        for step in ("preparing", "out_for_delivery", "delivered"):
            async with http.post(
                f"{stack.api_url()}/v1/orders/{order_id}/status", json={"status": step}, headers=kitchen
            ) as response:
                assert response.status == 202, await response.text()
            await wait_status(http, stack, order_id, "asha", {step})
        events = await stream.wait_for(lambda evs: len(evs) >= 5, timeout=5)
    assert [e.json()["status"] for e in events] == ["pending", "accepted", "preparing", "out_for_delivery", "delivered"]
    assert [e.id for e in events] == ["1-0", "2-0", "3-0", "4-0", "5-0"]
    async with SseClient(
        f"{stack.api_url()}/v1/orders/{order_id}/stream?access_token={token}", last_event_id="3-0"
    ) as resumed:
        replayed = await resumed.wait_for(lambda evs: len(evs) >= 2, timeout=5)
        assert [e.json()["status"] for e in replayed] == ["out_for_delivery", "delivered"]
    for path in (f"/v1/orders/{order_id}", f"/v1/orders/{order_id}/stream"):
        async with http.get(f"{stack.api_url()}{path}", headers=customer(stack, "intruder")) as response:
            assert response.status == 404
            assert (await response.json())["error"]["code"] == "unknown_order"


async def test_a_price_changed_after_the_menu_was_read_rejects_with_current_prices(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    seen = await current_prices(http, stack)
    await wait_applied(
        stack, await publish(stack, http, price_set("blr", "biryani", "biryani-1", seen["biryani-1"] + 500))
    )
    status, body = await place(
        http, stack, "ravi", order_body("o-2", {"biryani-1": seen["biryani-1"], "biryani-2": seen["biryani-2"]})
    )
    assert status == 202
    order = await wait_status(http, stack, body["order_id"], "ravi", TERMINAL)
    assert order["status"] == "rejected" and order["reason"] == "price_changed"
    assert order["current_prices"] == {"biryani-1": seen["biryani-1"] + 500, "biryani-2": seen["biryani-2"]}
    status, body = await place(http, stack, "ravi", order_body("o-3", {"biryani-9": 100}))
    assert (await wait_status(http, stack, body["order_id"], "ravi", TERMINAL))["reason"] == "unknown_item"
    await wait_applied(
        stack,
        await publish(
            stack,
            http,
            {
                "type": "item.availability_set",
                "city": "blr",
                "restaurant_id": "biryani",
                "item_id": "biryani-3",
                "available": False,
            },
        ),
    )
    status, body = await place(http, stack, "ravi", order_body("o-4", {"biryani-3": seen["biryani-3"]}))
    assert (await wait_status(http, stack, body["order_id"], "ravi", TERMINAL))["reason"] == "item_unavailable"


async def test_concurrent_duplicates_make_exactly_one_order_per_key(stack: Stack, http: aiohttp.ClientSession) -> None:
    prices = await current_prices(http, stack)
    keys = [(f"cust-{n % 10}", f"dup-{n}") for n in range(50)]
    submissions = [(who, key, n % 2) for who, key in keys for n in range(4)]
    results = await asyncio.gather(
        *(
            place(http, stack, who, order_body(key, {"biryani-4": prices["biryani-4"]}), index)
            for who, key, index in submissions
        )
    )
    assert {status for status, _ in results} == {202}
    by_key: dict[tuple[str, str], set[str]] = {}
    for (who, key, _), (_, body) in zip(submissions, results, strict=True):
        by_key.setdefault((who, key), set()).add(body["order_id"])
    assert all(len(ids) == 1 for ids in by_key.values())
    order_ids = [next(iter(ids)) for ids in by_key.values()]
    assert len(set(order_ids)) == 50
    for (who, _), order_id in zip(by_key, order_ids, strict=True):
        await wait_status(http, stack, order_id, who, TERMINAL)
    assert await rows_for(stack, order_ids) == {order_id: 1 for order_id in order_ids}


async def test_the_same_key_with_another_body_is_a_conflict(stack: Stack, http: aiohttp.ClientSession) -> None:
    prices = await current_prices(http, stack)
    status, first = await place(http, stack, "mira", order_body("k-1", {"biryani-5": prices["biryani-5"]}))
    assert status == 202
    status, again = await place(http, stack, "mira", order_body("k-1", {"biryani-5": prices["biryani-5"]}))
    assert (status, again["order_id"]) == (202, first["order_id"])
    before = await stack.end_offsets(order_topic_name(stack.namespace))
    status, clash = await place(
        http, stack, "mira", order_body("k-1", {"biryani-5": prices["biryani-5"]}, {"biryani-5": 3})
    )
    assert status == 409 and clash["error"]["code"] == "idempotency_conflict"
    assert clash["error"]["field"] == "idempotency_key"
    assert await stack.end_offsets(order_topic_name(stack.namespace)) == before
    status, other_customer = await place(http, stack, "noor", order_body("k-1", {"biryani-5": prices["biryani-5"]}))
    assert status == 202 and other_customer["order_id"] != first["order_id"]


async def test_an_invalid_transition_is_a_409_and_changes_nothing(stack: Stack, http: aiohttp.ClientSession) -> None:
    prices = await current_prices(http, stack)
    _, body = await place(http, stack, "zoe", order_body("t-1", {"biryani-5": prices["biryani-5"]}))
    order_id = body["order_id"]
    await wait_status(http, stack, order_id, "zoe", TERMINAL)
    admin = stack.admin_headers()
    async with http.post(
        f"{stack.api_url()}/v1/orders/{order_id}/status", json={"status": "delivered"}, headers=admin
    ) as response:
        assert response.status == 409 and (await response.json())["error"]["code"] == "invalid_transition"
    other_kitchen = {"Authorization": f"Bearer {stack.token(Role.RESTAURANT, 'someone-else')}"}
    async with http.post(
        f"{stack.api_url()}/v1/orders/{order_id}/status", json={"status": "preparing"}, headers=other_kitchen
    ) as response:
        assert response.status == 404
    async with http.post(
        f"{stack.api_url()}/v1/orders/{order_id}/status", json={"status": "preparing"}, headers=customer(stack, "zoe")
    ) as response:
        assert response.status == 403
    assert (await wait_status(http, stack, order_id, "zoe", TERMINAL))["version"] == 2


BAD_ORDERS = [
    pytest.param(b"{", 400, "malformed_json", None, id="malformed-json"),
    pytest.param(
        {"city": "blr", "restaurant_id": "biryani", "lines": []}, 422, "invalid_event", "idempotency_key", id="no-key"
    ),
    pytest.param(order_body("b-1", {}), 422, "invalid_event", "lines", id="no-lines"),
    pytest.param(
        {**order_body("b-2", {"biryani-0": 1}), "city": "atlantis"}, 422, "unknown_city", "city", id="unknown-city"
    ),
    pytest.param(
        order_body("b-3", {"biryani-0": -1}), 422, "invalid_event", "lines[0].price_cents", id="negative-price"
    ),
    pytest.param(
        order_body("b-4", {"biryani-0": 1}, {"biryani-0": 0}),
        422,
        "invalid_event",
        "lines[0].quantity",
        id="zero-quantity",
    ),
    pytest.param({**order_body("b-5", {"biryani-0": 1}), "tip": 5}, 422, "invalid_event", "tip", id="unknown-field"),
    pytest.param(
        {
            **order_body("b-6", {"biryani-0": 1}),
            "lines": [
                {"item_id": "biryani-0", "quantity": 1, "price_cents": 1},
                {"item_id": "biryani-0", "quantity": 1, "price_cents": 1},
            ],
        },
        422,
        "invalid_event",
        "lines[1].item_id",
        id="duplicate-line",
    ),
]


@pytest.mark.parametrize(("body", "status", "code", "field"), BAD_ORDERS)
async def test_bad_orders_are_refused_and_nothing_is_published_or_stored(
    stack: Stack, http: aiohttp.ClientSession, body: Any, status: int, code: str, field: str | None
) -> None:
    topic = order_topic_name(stack.namespace)
    before = await stack.end_offsets(topic)
    # Raw bytes go as JSON too: what is refused here is their content, not their media type (that is a 415).
    kwargs: dict[str, Any] = {"data": io.BytesIO(body)} if isinstance(body, bytes) else {"json": body}
    headers = {**customer(stack, "bad"), "Content-Type": "application/json"}
    async with http.post(f"{stack.api_url()}/v1/orders", headers=headers, **kwargs) as response:
        assert response.status == status
        error = (await response.json())["error"]
    assert (error["code"], error.get("field")) == (code, field)
    assert await stack.end_offsets(topic) == before


@pytest.mark.parametrize(
    ("headers_for", "status"),
    [
        pytest.param(lambda s: {}, 401, id="no-token"),
        pytest.param(lambda s: s.admin_headers(), 403, id="admin-cannot-order"),
    ],
)
async def test_only_customers_place_orders(
    stack: Stack, http: aiohttp.ClientSession, headers_for: Any, status: int
) -> None:
    async with http.post(
        f"{stack.api_url()}/v1/orders", json=order_body("c-1", {"biryani-0": 1}), headers=headers_for(stack)
    ) as response:
        assert response.status == status


async def test_orders_beyond_the_customer_rate_get_429(stack: Stack, http: aiohttp.ClientSession) -> None:
    pod = await stack.start_api(FEASTFLOW_ORDER_RATE="2")
    try:
        url = pod.ready_url.removesuffix("/readyz")
        statuses = []
        for n in range(6):
            async with http.post(
                f"{url}/v1/orders", json=order_body(f"r-{n}", {"biryani-0": 1}), headers=customer(stack, "hasty")
            ) as response:
                statuses.append(response.status)
                if response.status == 429:
                    assert int(response.headers["Retry-After"]) >= 1
        assert statuses.count(429) >= 2 and set(statuses) <= {202, 429}
    finally:
        pod.terminate()
        stack.apis.remove(pod)


async def worker_retries(http: aiohttp.ClientSession, stack: Stack) -> float:
    async with http.get(f"{stack.worker_url()}/metrics") as response:
        text = await response.text()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(RETRIES))


async def test_orders_placed_while_postgres_is_down_are_all_stored_once_it_returns(
    stack: Stack, pg_proxy: TcpProxy, http: aiohttp.ClientSession
) -> None:
    prices = await current_prices(http, stack)
    retries_before = await worker_retries(http, stack)
    await pg_proxy.cut()
    try:
        placed = []
        for n in range(20):
            status, body = await place(
                http, stack, f"outage-{n % 4}", order_body(f"pg-{n}", {"biryani-0": prices["biryani-0"]}), n % 2
            )
            assert status == 202, body
            placed.append((f"outage-{n % 4}", body["order_id"]))
        # The worker holds an order it cannot store: it retries (and says it is not ready) until PostgreSQL is back.
        await poll_until(
            lambda: _grew(worker_retries(http, stack), retries_before), 30, 0.1, "the worker never met the outage"
        )
        async with http.get(stack.workers["w1"].ready_url) as response:
            assert response.status == 503
    finally:
        await pg_proxy.restore()
    for who, order_id in placed:
        assert (await wait_status(http, stack, order_id, who, TERMINAL, timeout=60))["status"] == "accepted"
    ids = [order_id for _, order_id in placed]
    assert await rows_for(stack, ids) == {order_id: 1 for order_id in ids}


async def _grew(count: Awaitable[float], before: float) -> bool:
    return await count > before


async def test_killing_the_worker_while_orders_flow_decides_every_order_exactly_once(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    prices = await current_prices(http, stack)
    placed: list[tuple[str, str]] = []

    async def flow() -> None:
        for n in range(60):
            who = f"kill-{n % 6}"
            status, body = await place(
                http, stack, who, order_body(f"kw-{n}", {"biryani-0": prices["biryani-0"]}), n % 2
            )
            assert status == 202
            placed.append((who, body["order_id"]))
            await asyncio.sleep(0.03)

    traffic = asyncio.create_task(flow())
    await poll_until(lambda: len(placed) >= 10, 30, message="orders not flowing before the kill")
    stack.workers["w1"].kill()
    at_kill = len(placed)
    await poll_until(lambda: len(placed) >= at_kill + 10, 30, message="orders not flowing while the worker is down")
    await stack.start_worker("w1")
    await traffic
    for who, order_id in placed:
        assert (await wait_status(http, stack, order_id, who, TERMINAL, timeout=60))["status"] == "accepted"
    ids = [order_id for _, order_id in placed]
    assert await rows_for(stack, ids) == {order_id: 1 for order_id in ids}
