"""No event can stall a partition: whatever a record on the log holds (written by the API, an older build or
another producer), the worker either applies it or parks it on the dead-letter topic with its reason, and
the next change on the same partition reaches customers at once. On real Kafka, Redis and PostgreSQL.

Two refusals are staged with real PostgreSQL triggers in the stack's private schema: a value the event model
accepts and the store refuses is otherwise hard to come by (the model refuses what PostgreSQL would). The
"apply raises" case is staged with a fault injected into the worker process (a sitecustomize module on its
PYTHONPATH): no valid event makes the pure apply raise, and a bug must still not stop a city.
"""

import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import aiopg
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from core.tokens import Role
from models.events import utc_now
from tests.support.catalog import price_set, publish, restaurant_batch, statuses, wait_applied
from tests.support.dead_letters import wait_dead_letter
from tests.support.polling import poll_until
from tests.support.sse import SseClient
from tests.support.stack import Stack, items_by_id

CITY = "blr"
EXPLODES = "explodes-on-apply"  # the injected fault's marker (see FAULT)
REFUSED_BY_STORE = "refused-by-store"  # the audit trigger's marker
REFUSED_CUSTOMER = "refused-customer"  # the orders trigger's marker

FAULT = f"""
import models.catalog as catalog

_apply_batch = catalog.apply_batch


def apply_batch(view, batch, *args, **kwargs):
    if {EXPLODES!r} in repr(batch):
        raise RuntimeError("injected fault: apply raised")
    return _apply_batch(view, batch, *args, **kwargs)


catalog.apply_batch = apply_batch
"""

TRIGGERS = f"""
CREATE FUNCTION refuse_marked_audit() RETURNS trigger AS $$
BEGIN
  IF row_to_json(NEW)::text LIKE '%{REFUSED_BY_STORE}%' THEN
    RAISE EXCEPTION 'audit row refused by a check' USING ERRCODE = 'check_violation';
  END IF;
  RETURN NEW;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER refuse_marked_audit BEFORE INSERT ON catalog_events
  FOR EACH ROW EXECUTE FUNCTION refuse_marked_audit();
CREATE FUNCTION refuse_marked_order() RETURNS trigger AS $$
BEGIN
  IF NEW.customer = '{REFUSED_CUSTOMER}' THEN
    RAISE EXCEPTION 'order refused by a check' USING ERRCODE = 'check_violation';
  END IF;
  RETURN NEW;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER refuse_marked_order BEFORE INSERT ON orders FOR EACH ROW EXECUTE FUNCTION refuse_marked_order();
"""


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    root = Path(tmp_path_factory.mktemp("poison"))
    faults = root / "faults"
    faults.mkdir()
    (faults / "sitecustomize.py").write_text(FAULT)
    running = Stack(root, extra_env={"PYTHONPATH": str(faults), "FEASTFLOW_ORDER_RATE": "1000"})
    try:
        await running.start(api_count=1)
        async with aiopg.connect(running.settings.pg_dsn) as conn, conn.cursor() as cur:
            await cur.execute(TRIGGERS)
        async with aiohttp.ClientSession() as session:
            await wait_applied(running, await publish(running, session, restaurant_batch(CITY, "dosa", 3)))
        yield running
    finally:
        running.stop()


def wire_batch(*events: dict[str, Any], city: str = CITY) -> bytes:
    """A catalog record as a producer other than the API might write it: nothing checked on the way in."""
    return orjson.dumps(
        {
            "batch_id": uuid.uuid4().hex,
            "city": city,
            "events": [
                {
                    "event_id": uuid.uuid4().hex,
                    "schema_version": 1,
                    "city": city,
                    "occurred_at": utc_now(),
                    "actor": "other-producer",
                    "expected_version": None,
                    "request_id": None,
                    **event,
                }
                for event in events
            ],
        }
    )


def item_upserted(item_id: str, name: str) -> dict[str, Any]:
    data = {"restaurant_id": "dosa", "item_id": item_id, "name": name, "category": "Mains", "price_cents": 900}
    return {"type": "item.upserted", "data": data}


async def produce(stack: Stack, value: bytes, key: bytes = CITY.encode()) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=stack.settings.kafka_bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        await producer.send_and_wait(stack.topic, value, key=key)
    finally:
        await producer.stop()


async def assert_next_change_reaches_customers_within_a_second(
    stack: Stack, http: aiohttp.ClientSession, price: int
) -> None:
    async with SseClient(f"{stack.api_url()}/v1/cities/{CITY}/menu/stream") as client:
        sent_at = time.monotonic()  # the clock of an event's received_at
        await publish(stack, http, price_set(CITY, "dosa", "dosa-0", price))
        events = await client.wait_for(
            lambda evs: any(e.type == "item" and e.json().get("price_cents") == price for e in evs), timeout=10
        )
        arrived = next(e for e in events if e.type == "item" and e.json().get("price_cents") == price)
        assert arrived.received_at - sent_at < 1.0, f"took {arrived.received_at - sent_at:.2f}s"


async def audit_rows(stack: Stack, like: str) -> int:
    async with aiopg.connect(stack.settings.pg_dsn) as conn, conn.cursor() as cur:
        await cur.execute("SELECT count(*) FROM catalog_events WHERE new_value::text LIKE %s", (f"%{like}%",))
        row = await cur.fetchone()
        return int(row[0])


async def worker_metric(http: aiohttp.ClientSession, stack: Stack, sample: str) -> float:
    async with http.get(f"{stack.worker_url()}/metrics") as response:
        text = await response.text()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(sample))


async def test_nul_in_a_name_sent_straight_to_the_log_is_dead_lettered_and_pricing_goes_on(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    await produce(stack, wire_batch(item_upserted("nul-dish", "Masala\u0000Dosa")))
    letter = await wait_dead_letter(stack, lambda x: "nul-dish" in x["value"])
    # Refused by the event model (undecodable) or, by an older model, by PostgreSQL (store_refused).
    assert letter["kind"] in ("undecodable", "store_refused"), letter
    assert letter["reason"] and letter["topic"] == stack.topic
    assert isinstance(letter["partition"], int) and isinstance(letter["offset"], int)
    await assert_next_change_reaches_customers_within_a_second(stack, http, 1234)
    menu = items_by_id(await stack.menu(http, CITY))
    assert "nul-dish" not in menu, "customers see a change the audit trail refused"
    assert await audit_rows(stack, "nul-dish") == 0


async def test_a_value_the_store_refuses_is_dead_lettered_with_nothing_shown_to_customers(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    refused_before = await worker_metric(http, stack, 'feastflow_worker_dead_letters_total{kind="store_refused"')
    event_ids = await publish(stack, http, item_upserted_via_api(REFUSED_BY_STORE))
    letter = await wait_dead_letter(stack, lambda x: REFUSED_BY_STORE in x["value"])
    assert letter["kind"] == "store_refused"
    assert "refused by a check" in letter["reason"] and "CheckViolation" in letter["reason"]
    await assert_next_change_reaches_customers_within_a_second(stack, http, 1345)
    assert REFUSED_BY_STORE not in items_by_id(await stack.menu(http, CITY))
    assert (await statuses(stack, event_ids))[event_ids[0]] == "rejected"  # the admin is told it was refused
    async with http.get(f"{stack.api_url()}/v1/admin/events/{event_ids[0]}", headers=stack.admin_headers()) as r:
        assert (await r.json())["reason"] == "dead_lettered: store_refused"
    assert await audit_rows(stack, REFUSED_BY_STORE) == 0
    refused_after = await worker_metric(http, stack, 'feastflow_worker_dead_letters_total{kind="store_refused"')
    assert refused_after == refused_before + 1


def item_upserted_via_api(item_id: str) -> dict[str, Any]:
    return {
        "type": "item.upserted",
        "city": CITY,
        "restaurant_id": "dosa",
        "item_id": item_id,
        "name": "Refused dish",
        "category": "Mains",
        "price_cents": 700,
    }


@pytest.mark.parametrize(
    "template",
    [
        b'{"city": "blr", "marker": "MARK", "events": [{"type": "item.upserted", "data": {"name": "\xff\xfe"}}]}',
        b"\x00\x01\x02 MARK not json at all",
        b'{"city": "blr", "marker": "MARK", "events": "nope"}',
    ],
    ids=["invalid-utf8", "not-json", "not-a-batch"],
)
async def test_unreadable_records_are_dead_lettered_and_pricing_goes_on(
    stack: Stack, http: aiohttp.ClientSession, template: bytes
) -> None:
    marker = uuid.uuid4().hex
    await produce(stack, template.replace(b"MARK", marker.encode()))
    letter = await wait_dead_letter(stack, lambda x: marker in x["value"])
    assert letter["kind"] == "undecodable" and letter["reason"].startswith("undecodable"), letter
    await assert_next_change_reaches_customers_within_a_second(stack, http, 1400 + len(template))


async def test_an_event_that_makes_apply_raise_is_dead_lettered_and_pricing_goes_on(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    await produce(stack, wire_batch(item_upserted(EXPLODES, "Boom")))
    letter = await wait_dead_letter(stack, lambda x: EXPLODES in x["value"])
    assert letter["kind"] == "apply_failed" and "injected fault" in letter["reason"]
    await assert_next_change_reaches_customers_within_a_second(stack, http, 1567)


async def test_an_order_the_store_refuses_is_dead_lettered_and_later_orders_go_through(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    menu = items_by_id(await stack.menu(http, CITY))
    line = {"item_id": "dosa-1", "quantity": 1, "price_cents": menu["dosa-1"]["price_cents"]}
    body = {"city": CITY, "restaurant_id": "dosa", "lines": [line]}
    refused = await place_order(http, stack, REFUSED_CUSTOMER, {**body, "idempotency_key": uuid.uuid4().hex})
    accepted = await place_order(http, stack, "alice", {**body, "idempotency_key": uuid.uuid4().hex})
    letter = await wait_dead_letter(stack, lambda x: refused in x["value"])
    assert letter["kind"] == "store_refused" and "order refused by a check" in letter["reason"]
    headers = {"Authorization": f"Bearer {stack.token(Role.CUSTOMER, 'alice')}"}

    async def decided() -> bool:
        async with http.get(f"{stack.api_url()}/v1/orders/{accepted}", headers=headers) as response:
            order = await response.json() if response.status == 200 else {}
        assert order.get("status") == "accepted", f"still {order}"
        return True

    await poll_until(decided, 20, 0.05, "the order after the refused one was not accepted")


async def place_order(http: aiohttp.ClientSession, stack: Stack, who: str, body: dict[str, Any]) -> str:
    headers = {"Authorization": f"Bearer {stack.token(Role.CUSTOMER, who)}"}
    async with http.post(f"{stack.api_url()}/v1/orders", json=body, headers=headers) as response:
        assert response.status == 202, await response.text()
        order_id: str = (await response.json())["order_id"]
        return order_id
