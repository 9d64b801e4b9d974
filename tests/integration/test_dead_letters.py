"""Records the worker cannot use go to the dead-letter topic with the reason; the agent keeps going."""

import aiohttp
import orjson
from aiokafka import AIOKafkaProducer

from tests.support.catalog import price_set, publish, restaurant_batch, wait_applied
from tests.support.dead_letters import read_dead_letters
from tests.support.stack import Stack, items_by_id

POISON = [
    (b"blr", b"\x00\x01 definitely not json", "undecodable: not JSON"),
    (b"blr", orjson.dumps({"city": "blr", "events": [{"type": "item.teleported", "data": {}}]}), "undecodable"),
    (b"zzz", orjson.dumps({"city": "zzz", "events": [{"type": "pricing.rule_tick", "data": {}}]}), "unknown city"),
]


async def test_poison_records_are_dead_lettered_and_later_events_still_apply(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    await wait_applied(stack, await publish(stack, http, restaurant_batch("blr", "chaat", 2)))
    producer = AIOKafkaProducer(bootstrap_servers=stack.settings.kafka_bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for key, value, _ in POISON:
            await producer.send_and_wait(stack.topic, value, key=key)
    finally:
        await producer.stop()
    await wait_applied(stack, await publish(stack, http, price_set("blr", "chaat", "chaat-1", 2500)))
    assert items_by_id(await stack.menu(http, "blr"))["chaat-1"]["price_cents"] == 2500

    letters = await read_dead_letters(stack, lambda seen: len(seen) >= len(POISON))
    assert len(letters) == len(POISON)
    for letter in letters:
        assert letter["topic"] == stack.topic and isinstance(letter["offset"], int) and letter["dead_lettered_at"]
    reasons = sorted(letter["reason"] for letter in letters)
    for _key, _value, reason in POISON:
        assert any(r.startswith(reason) for r in reasons), (reason, reasons)
    assert any(letter["value"].endswith("not json") for letter in letters)

    # The operator view shows the same letters, newest first, with their reasons; as JSON and as a page.
    async with http.get(f"{stack.worker_url()}/feastflow/dead-letters/?limit=2") as response:
        view = await response.json()
    assert view["count"] == 2
    assert [row["reason"] for row in view["dead_letters"]] == [
        letter["reason"] for letter in sorted(letters, key=lambda x: x["dead_lettered_at"], reverse=True)[:2]
    ]
    assert all(row["source"].startswith(f"{stack.topic}[") for row in view["dead_letters"])
    assert {letter["kind"] for letter in letters} == {"undecodable", "unknown_city"}
    async with http.get(f"{stack.worker_url()}/feastflow/dead-letters/", headers={"Accept": "text/html"}) as response:
        page = await response.text()
    assert response.content_type == "text/html"
    assert "<th>reason</th>" in page and "unknown city &#x27;zzz&#x27;" in page  # a table, its text escaped
    assert page.count("<td><code>undecodable:") == 2  # the reasons
    assert page.count("<td><code>undecodable</code>") == 2  # and their kind
