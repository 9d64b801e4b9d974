"""Nothing is lost when workers die, restart, join or leave, and nothing moves backwards when events are
delivered again: every acknowledged change is counted through to Redis and to connected SSE clients."""

import asyncio
import contextlib
import shutil
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from feastflow.redis_keys import city_keys
from streams.topics import consumer_group
from tests.support.catalog import publish, restaurant_batch, wait_applied
from tests.support.processes import feastflow_command
from tests.support.sse import SseClient
from tests.support.stack import Stack, items_by_id
from tests.support.traffic import PriceTraffic

pytestmark = pytest.mark.slow

CITIES = ("blr", "mum", "ams")
ITEMS_PER_CITY = 8


async def _seeded_stack(root: Path, workers: tuple[str, ...] = ("w1",)) -> Stack:
    stack = await Stack(root).start(api_count=1, worker_names=workers)
    async with aiohttp.ClientSession() as session:
        for city in CITIES:
            await wait_applied(
                stack, await publish(stack, session, restaurant_batch(city, f"{city}-r", ITEMS_PER_CITY))
            )
    return stack


def _traffic(stack: Stack) -> PriceTraffic:
    items = [(city, f"{city}-r", f"{city}-r-{n}") for city in CITIES for n in range(ITEMS_PER_CITY)]
    return PriceTraffic(stack, items)


async def _assert_every_change_arrived(stack: Stack, traffic: PriceTraffic, clients: dict[str, SseClient]) -> None:
    assert traffic.failures == 0
    await wait_applied(stack, traffic.event_ids, timeout=90)
    async with aiohttp.ClientSession() as session:
        for city in CITIES:
            menu = items_by_id(await stack.menu(session, city))
            for n in range(ITEMS_PER_CITY):
                item_id = f"{city}-r-{n}"
                sent = traffic.acked.get((city, item_id), [])
                if sent:
                    assert menu[item_id]["price_cents"] == sent[-1], item_id
                assert menu[item_id]["version"] == 1 + len(sent), item_id
    for city, client in clients.items():
        expected = {item_id: prices for (c, item_id), prices in traffic.acked.items() if c == city}
        want = sum(len(prices) for prices in expected.values())
        await client.wait_for(lambda evs, want=want: len([e for e in evs if e.type == "item"]) >= want, timeout=30)
        await asyncio.sleep(0.5)
        seen: dict[str, list[int]] = defaultdict(list)
        for event in client.of_type("item"):
            seen[event.json()["item_id"]].append(event.json()["price_cents"])
        assert dict(seen) == expected, f"{city}: SSE saw other changes than were acknowledged"
        ids = [e.id for e in client.events]
        assert len(ids) == len(set(ids)), "an SSE id was sent twice"


@contextlib.asynccontextmanager
async def _under_load(root: Path) -> AsyncIterator[tuple[Stack, dict[str, SseClient], PriceTraffic]]:
    """A seeded private stack, an SSE client per city, and admin traffic flowing."""
    stack = await _seeded_stack(root)
    try:
        async with contextlib.AsyncExitStack() as exits:
            clients = {
                city: await exits.enter_async_context(SseClient(f"{stack.api_url()}/v1/cities/{city}/menu/stream"))
                for city in CITIES
            }
            traffic = _traffic(stack)
            traffic.start()
            yield stack, clients, traffic
    finally:
        stack.stop()


async def test_sigkill_and_restart_five_times_loses_nothing(tmp_path: Path) -> None:
    async with _under_load(tmp_path) as (stack, clients, traffic):
        for round_ in range(5):
            await asyncio.sleep(1.5)
            stack.workers["w1"].kill()
            if round_ == 2:  # the node is gone with its disk: tables come back from their changelogs
                shutil.rmtree(stack.settings.worker_data_dir(consumer_group(stack.namespace, "all"), "w1"))
            await asyncio.sleep(0.5)
            await stack.start_worker("w1")
        await asyncio.sleep(1.0)
        await traffic.stop()
        assert traffic.total > 200
        await _assert_every_change_arrived(stack, traffic, clients)
        async with aiohttp.ClientSession() as session:  # still flowing after the last restart
            change = {
                "type": "price.set",
                "city": "blr",
                "restaurant_id": "blr-r",
                "item_id": "blr-r-0",
                "price_cents": 1,
            }
            await wait_applied(stack, await publish(stack, session, change))


async def test_workers_joining_and_leaving_under_load_lose_nothing(tmp_path: Path) -> None:
    async with _under_load(tmp_path) as (stack, clients, traffic):
        await asyncio.sleep(1.0)
        await stack.start_worker("w2")  # scale out
        await asyncio.sleep(2.0)
        stack.workers["w2"].terminate()  # and back in, cleanly: it commits and leaves the group
        assert stack.workers["w2"].popen is not None and stack.workers["w2"].popen.returncode == 0
        await asyncio.sleep(2.0)
        await stack.start_worker("w3")
        await asyncio.sleep(2.0)
        stack.workers["w1"].kill()  # the original one dies; w3 must take everything over
        await asyncio.sleep(1.0)
        await traffic.stop()
        await _assert_every_change_arrived(stack, traffic, clients)


async def test_events_delivered_again_change_nothing(stack: Stack, http: aiohttp.ClientSession) -> None:
    await wait_applied(stack, await publish(stack, http, restaurant_batch("mum", "vada", 4)))
    for price in (1200, 1300, 1400):
        await wait_applied(
            stack,
            await publish(
                stack,
                http,
                {
                    "type": "price.set",
                    "city": "mum",
                    "restaurant_id": "vada",
                    "item_id": "vada-1",
                    "price_cents": price,
                },
            ),
        )
    before = await stack.menu(http, "mum")
    duplicates_before = await _worker_counter(http, stack, 'feastflow_worker_batches_total{outcome="duplicate"}')
    async with SseClient(f"{stack.api_url()}/v1/cities/mum/menu/stream") as client:
        async with http.get(f"{stack.worker_url()}/feastflow/assignment/") as response:
            assignment = await response.json()
        partitions = [p["partition"] for p in assignment["partitions"] if p["topic"] == stack.topic]
        for partition in partitions:  # the worker processes its whole history again
            replay = f"{stack.worker_url()}/feastflow/replay/{partition}/0/"
            async with http.post(replay, headers=stack.admin_headers()) as response:
                assert response.status == 200
        await asyncio.sleep(3.0)
        assert client.events[1:] == [], "a replayed event reached customers again"
    replayed = await _worker_counter(http, stack, 'feastflow_worker_batches_total{outcome="duplicate"}')
    assert replayed - duplicates_before >= 4, "the worker did not process the four batches again"
    after = await stack.menu(http, "mum")
    assert after == before
    assert items_by_id(after)["vada-1"]["price_cents"] == 1400


async def test_redis_flushed_is_rebuilt_by_command_and_clients_get_a_snapshot(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    await wait_applied(stack, await publish(stack, http, restaurant_batch("ams", "frites", 3)))
    before = {city: await stack.menu(http, city) for city in ("mum", "ams")}
    async with SseClient(f"{stack.api_url()}/v1/cities/ams/menu/stream") as client:
        redis = stack.redis()
        try:
            await redis.flushdb()
            assert not await redis.exists(city_keys(stack.namespace, "ams").items)
        finally:
            await redis.aclose()
        process = await asyncio.create_subprocess_exec(
            *feastflow_command("rebuild-projection"),
            env=stack.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await process.communicate()
        assert process.returncode == 0, output.decode()
        events = await client.wait_for(lambda evs: len([e for e in evs if e.type == "snapshot"]) >= 2, timeout=10)
        fresh = [e for e in events if e.type == "snapshot"][-1].json()
    for city, menu in before.items():  # each city's rebuild lands in order on its own partition
        for _ in range(50):
            rebuilt = await stack.menu(http, city)
            if rebuilt["restaurants"]:
                break
            await asyncio.sleep(0.1)
        assert items_by_id(rebuilt) == items_by_id(menu)
    assert items_by_id(fresh) == items_by_id(before["ams"])


async def _worker_counter(http: aiohttp.ClientSession, stack: Stack, series: str) -> float:
    async with http.get(f"{stack.worker_url()}/metrics") as response:
        assert response.status == 200
        text = await response.text()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(series))


async def test_a_lost_read_model_comes_back_by_itself(stack: Stack, http: aiohttp.ClientSession) -> None:
    await wait_applied(stack, await publish(stack, http, restaurant_batch("blr", "idli", 2)))
    before = items_by_id(await stack.menu(http, "blr"))
    keys = city_keys(stack.namespace, "blr")
    redis = stack.redis()
    try:
        await redis.delete(*keys.as_list())
    finally:
        await redis.aclose()
    assert (await stack.menu(http, "blr"))["restaurants"] == []
    for _ in range(150):  # the worker checks every 5 s
        await asyncio.sleep(0.1)
        if (await stack.menu(http, "blr"))["restaurants"]:
            break
    assert items_by_id(await stack.menu(http, "blr")) == before
