"""Nothing is lost when workers die, restart, join or leave, and nothing moves backwards when events are
delivered again: every acknowledged change is counted through to Redis and to connected SSE clients."""

import asyncio
import contextlib
import shutil
import signal
import subprocess
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from core.redis_keys import city_keys
from core.topics import changelog_topics, consumer_group
from models.events import utc_now
from ops.create_topics import ensure_topics
from ops.sse_client import ServerSentEvent
from tests.support.catalog import price_set, publish, restaurant_batch, wait_applied
from tests.support.polling import poll_until
from tests.support.processes import feastflow_command, free_port
from tests.support.sse import SseClient
from tests.support.stack import Stack, items_by_id
from tests.support.traffic import PriceTraffic

pytestmark = pytest.mark.slow

CITIES = ("blr", "mum", "ams")
ITEMS_PER_CITY = 8
LAST_PRICE = 7  # below every price the traffic sends


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
        # One last change to the city: its feed is in order, so once that arrived, every earlier change (and
        # any copy of one) has too.
        last = f"{city}-r-0"
        expected[last] = [*expected.get(last, []), LAST_PRICE]
        async with aiohttp.ClientSession() as session:
            await wait_applied(stack, await publish(stack, session, price_set(city, f"{city}-r", last, LAST_PRICE)))
        await client.wait_for(lambda evs: any(_is_last(e) for e in evs), timeout=30)
        seen: dict[str, list[int]] = defaultdict(list)
        for event in client.of_type("item"):
            seen[event.json()["item_id"]].append(event.json()["price_cents"])
        assert dict(seen) == expected, f"{city}: SSE saw other changes than were acknowledged"
        ids = [e.id for e in client.events]
        assert len(ids) == len(set(ids)), "an SSE id was sent twice"


def _is_last(event: ServerSentEvent) -> bool:
    return event.type == "item" and event.json()["price_cents"] == LAST_PRICE


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


async def _changes(traffic: PriceTraffic, count: int, when: str) -> None:
    """A phase of the load, measured in acknowledged changes rather than seconds."""
    target = traffic.total + count
    await poll_until(lambda: traffic.total >= target, 60, message=f"not {count} changes acknowledged {when}")


async def _owns_a_partition(http: aiohttp.ClientSession, stack: Stack, name: str) -> bool:
    async with http.get(f"{stack.worker_url(name)}/feastflow/assignment/") as response:
        assignment = await response.json()
    return any(p["topic"] == stack.topic and p["active"] for p in assignment["partitions"])


async def test_sigkill_and_restart_five_times_loses_nothing(tmp_path: Path) -> None:
    async with _under_load(tmp_path) as (stack, clients, traffic):
        for round_ in range(5):
            await _changes(traffic, 40, "before the kill")
            stack.workers["w1"].kill()
            if round_ == 2:  # the node is gone with its disk: tables come back from their changelogs
                shutil.rmtree(stack.settings.worker_data_dir(consumer_group(stack.namespace, "all"), "w1"))
            await _changes(traffic, 10, "while the worker is down")
            await stack.start_worker("w1")
        await _changes(traffic, 25, "after the last restart")
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
    async with _under_load(tmp_path) as (stack, clients, traffic), aiohttp.ClientSession() as http:
        await _changes(traffic, 25, "before scaling out")
        await stack.start_worker("w2")  # scale out
        await poll_until(lambda: _owns_a_partition(http, stack, "w2"), 60, 0.2, "w2 never got a partition")
        await _changes(traffic, 25, "with two workers")
        stack.workers["w2"].terminate()  # and back in, cleanly: it commits and leaves the group
        assert stack.workers["w2"].popen is not None and stack.workers["w2"].popen.returncode == 0
        await _changes(traffic, 50, "after w2 left")
        await stack.start_worker("w3")
        await poll_until(lambda: _owns_a_partition(http, stack, "w3"), 60, 0.2, "w3 never got a partition")
        await _changes(traffic, 25, "with w3 in the group")
        stack.workers["w1"].kill()  # the original one dies; w3 must take everything over
        await _changes(traffic, 25, "after w1 died")
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

        async def replayed() -> bool:
            series = 'feastflow_worker_batches_total{outcome="duplicate"}'
            return await _worker_counter(http, stack, series) - duplicates_before >= 4

        await poll_until(replayed, 30, 0.1, "the worker did not process the four batches again")
        after = await stack.menu(http, "mum")
        assert after == before
        assert items_by_id(after)["vada-1"]["price_cents"] == 1400
        # A change after the replay: the city's feed is in order, so anything the replay sent came before it.
        await wait_applied(stack, await publish(stack, http, price_set("mum", "vada", "vada-2", 1500)))
        events = await client.wait_for(lambda evs: any('"price_cents":1500' in e.data for e in evs), timeout=10)
        assert [e.json()["price_cents"] for e in events[1:]] == [1500], "a replayed event reached customers again"


async def test_redis_flushed_is_rebuilt_by_command_and_clients_get_a_snapshot(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    # Two cities with menus of this test's own (it runs alone as well as after the others).
    await wait_applied(stack, await publish(stack, http, restaurant_batch("mum", "pav", 2)))
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

        async def rebuilt(city: str = city) -> dict[str, Any]:
            served = await stack.menu(http, city)
            assert served["restaurants"], f"{city} still empty"
            return served

        assert items_by_id(await poll_until(rebuilt, 6, 0.1, f"{city} not rebuilt")) == items_by_id(menu)
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

    async def back() -> bool:
        return bool((await stack.menu(http, "blr"))["restaurants"])

    await poll_until(back, 16, 0.1, "the read model did not come back")  # the worker checks every 5 s
    assert items_by_id(await stack.menu(http, "blr")) == before


@contextlib.contextmanager
def _private_redis(root: Path) -> Iterator["_RedisServer"]:
    server = _RedisServer(free_port(), root / "redis.log")
    server.start()
    try:
        yield server
    finally:
        server.kill()


@dataclass
class _RedisServer:
    """A redis-server of the test's own, which it may kill -9 (never the shared one)."""

    port: int
    log: Path
    popen: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        with self.log.open("ab") as log:
            self.popen = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)

    def kill(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait(10)


async def test_the_worker_rides_out_a_redis_bounce_in_the_same_process(tmp_path: Path) -> None:
    with _private_redis(tmp_path) as redis_server:
        stack = Stack(tmp_path, extra_env={"FEASTFLOW_REDIS_URL": redis_server.url, "FEASTFLOW_STUCK_AFTER_S": "3"})
        await stack.start(api_count=1)
        try:
            worker = stack.workers["w1"]
            assert worker.popen is not None
            pid = worker.popen.pid
            async with aiohttp.ClientSession() as http:

                async def ready() -> bool:
                    async with http.get(worker.ready_url) as response:
                        return response.status == 200

                async def live() -> bool:
                    async with http.get(f"{stack.worker_url()}/feastflow/live/") as response:
                        return response.status == 200

                async def timer_failed() -> bool:
                    series = 'feastflow_worker_timer_failures_total{kind="transient",timer="rebuild_lost_read_models"}'
                    return await _worker_counter(http, stack, series) > 0

                await wait_applied(stack, await publish(stack, http, restaurant_batch("blr", "vada", 2)))
                redis_server.kill()
                # A change arrives while Redis is down: its write is retried, the worker says it is not ready.
                producer = AIOKafkaProducer(bootstrap_servers=stack.settings.kafka_bootstrap)
                await producer.start()
                try:
                    await producer.send_and_wait(stack.topic, _price_set_record("blr", "vada", "vada-0", 4321), b"blr")
                finally:
                    await producer.stop()
                await poll_until(lambda: _not(ready), 20, 0.1, "not reporting not ready")
                # Past the stuck bound (3 s here) on that one record, the worker stops being live.
                await poll_until(lambda: _not(live), 20, 0.1, "not reporting not live")
                assert await _worker_counter(http, stack, "feastflow_worker_live ") == 0
                # The read-model timer meets the outage too (it crashed the app before): still the same process.
                await poll_until(timer_failed, 20, 0.1, "not meeting the outage in a timer")
                assert worker.alive and worker.popen.pid == pid
                redis_server.start()  # empty: the worker writes the city again
                await poll_until(ready, 60, 0.1, "not ready again")
                assert await live() and await _worker_counter(http, stack, "feastflow_worker_live ") == 1
                assert worker.alive and worker.popen.pid == pid

                async def change_shown() -> bool:
                    menu = items_by_id(await stack.menu(http, "blr"))
                    return menu.get("vada-0", {}).get("price_cents") == 4321

                await poll_until(change_shown, 30, 0.1, "not showing the change made during the outage")
                await wait_applied(stack, await publish(stack, http, price_set("blr", "vada", "vada-1", 777)))
                assert worker.alive and worker.popen.pid == pid
        finally:
            stack.stop()


async def _not(condition: Callable[[], Awaitable[bool]]) -> bool:
    return not await condition()


def _price_set_record(city: str, restaurant_id: str, item_id: str, price_cents: int) -> bytes:
    event = {
        "event_id": uuid.uuid4().hex,
        "type": "price.set",
        "schema_version": 1,
        "city": city,
        "occurred_at": utc_now(),
        "actor": "test",
        "expected_version": None,
        "request_id": None,
        "data": {"restaurant_id": restaurant_id, "item_id": item_id, "price_cents": price_cents},
    }
    return orjson.dumps({"batch_id": uuid.uuid4().hex, "city": city, "events": [event]})


async def test_feastflow_topics_creates_every_changelog_before_any_worker(tmp_path: Path) -> None:
    settings = Stack(tmp_path).settings  # a fresh namespace: no worker ever ran in it
    await ensure_topics(settings)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        wanted = [
            spec.name for spec in changelog_topics(settings.namespace, settings.partitions, settings.shadow_label)
        ]
        described = {t["topic"]: t for t in await admin.describe_topics(wanted)}
        assert {name: len(described[name]["partitions"]) for name in wanted} == dict.fromkeys(
            wanted, settings.partitions
        )
        responses = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name) for name in wanted])
        policies = {
            resource[3]: {entry[0]: entry[1] for entry in resource[4]}["cleanup.policy"]
            for response in responses
            for resource in response.resources
        }
        assert policies == dict.fromkeys(wanted, "compact")
    finally:
        await admin.close()


async def test_three_workers_and_three_api_pods_share_the_cities_and_lose_nothing(tmp_path: Path) -> None:
    """The scaled-out shape: three workers split the partitions (every one held, none twice) and three API pods
    each serve every city; every acknowledged change reaches each pod's menu and a stream on each pod."""
    stack = await Stack(tmp_path).start(api_count=3)
    for name in ("w2", "w3"):  # scaled out one by one, as an autoscaler would
        await stack.start_worker(name)
    cities = [city.code for city in stack.settings.cities if not city.launching][:12]  # over all 6 partitions
    try:
        async with aiohttp.ClientSession() as http:
            for city in cities:
                await wait_applied(stack, await publish(stack, http, restaurant_batch(city, f"{city}-r", 2)))

            async def held() -> dict[str, set[int]]:
                owned = {}
                for name in stack.workers:
                    async with http.get(f"{stack.worker_url(name)}/feastflow/assignment/") as response:
                        partitions = (await response.json())["partitions"]
                    owned[name] = {p["partition"] for p in partitions if p["topic"] == stack.topic and p["active"]}
                return owned

            async def split_three_ways() -> bool:
                owned = await held()
                every = [p for partitions in owned.values() for p in partitions]
                return all(owned.values()) and sorted(every) == list(range(stack.settings.partitions))

            await poll_until(split_three_ways, 90, 0.5, message="the three workers never split the partitions")
            async with contextlib.AsyncExitStack() as exits:
                clients = {
                    (pod, city): await exits.enter_async_context(
                        SseClient(f"{stack.api_url(pod)}/v1/cities/{city}/menu/stream")
                    )
                    for pod in range(3)
                    for city in cities[:4]
                }
                traffic = PriceTraffic(
                    stack, [(city, f"{city}-r", f"{city}-r-{n}") for city in cities for n in range(2)]
                )
                traffic.start()
                await _changes(traffic, 60, "with three workers and three pods")
                await traffic.stop()
                assert traffic.failures == 0
                await wait_applied(stack, traffic.event_ids, timeout=90)
                for pod in range(3):
                    for city in cities:
                        menu = items_by_id(await stack.menu(http, city, index=pod))
                        for (sent_city, item_id), prices in traffic.acked.items():
                            if sent_city == city:
                                assert menu[item_id]["price_cents"] == prices[-1], (pod, item_id)
                for city in cities[:4]:  # a last change per city: once it arrived, every earlier one had
                    await wait_applied(
                        stack, await publish(stack, http, price_set(city, f"{city}-r", f"{city}-r-0", 7))
                    )
                for (pod, city), client in clients.items():
                    await client.wait_for(lambda evs: any(_is_last(e) for e in evs), timeout=30)
                    expected = {i: p for (c, i), p in traffic.acked.items() if c == city}
                    expected[f"{city}-r-0"] = [*expected.get(f"{city}-r-0", []), LAST_PRICE]
                    seen: dict[str, list[int]] = defaultdict(list)
                    for event in client.of_type("item"):
                        seen[event.json()["item_id"]].append(event.json()["price_cents"])
                    assert dict(seen) == expected, f"pod {pod}, {city}: SSE saw other changes than were acknowledged"
    finally:
        stack.stop()
