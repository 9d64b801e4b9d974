"""A pod's menu in memory: served without Redis to an SSE client whose feed position it covers (a storm of
clients costs Redis nothing), read again when the feed has handed out something newer than it; concurrent
reads (menus, resumes from one id) shared, but never one begun before the caller asked."""

import asyncio
from typing import Any, cast

from api.readmodel import FreshReads, MenuReader
from core.redis_keys import city_keys
from tests.support.fakes import FakeRedis


class CountingRedis(FakeRedis):
    reads: int = 0

    async def hget(self, key: str, name: str) -> bytes | None:
        self.reads += 1
        return await super().hget(key, name)


def set_cursor(redis: FakeRedis, cursor: str) -> None:
    redis.hset(city_keys("unit", "blr").meta, {"cursor": cursor})


def reader_at(cursor: str) -> tuple[CountingRedis, MenuReader]:
    """A pod's reader over a Redis whose blr read model stands at `cursor`, counting its reads."""
    redis = CountingRedis()
    set_cursor(redis, cursor)
    return redis, MenuReader(cast(Any, redis), "unit")


async def test_a_menu_that_covers_the_feed_position_is_served_without_asking_redis() -> None:
    redis, reader = reader_at("7-0")
    loaded = await reader.menu("blr")
    reads = redis.reads

    for position in [(5, 0), (7, 0)]:
        assert await reader.menu("blr", covering=position) is loaded
    assert redis.reads == reads


async def test_a_feed_ahead_of_the_menu_in_memory_makes_the_pod_read_it_again() -> None:
    redis, reader = reader_at("7-0")
    await reader.menu("blr")
    set_cursor(redis, "8-0")  # the worker projected a change, and the feed handed it out

    menu = await reader.menu("blr", covering=(8, 0))

    assert menu.cursor == "8-0"


async def test_without_a_feed_position_the_cursor_in_redis_decides() -> None:
    redis, reader = reader_at("7-0")
    await reader.menu("blr")
    set_cursor(redis, "9-0")

    assert (await reader.menu("blr")).cursor == "9-0"


async def test_callers_share_a_read_begun_after_they_asked_and_never_one_begun_before() -> None:
    reads: FreshReads[str, int] = FreshReads()
    begun: list[int] = []
    release = asyncio.Event()

    async def load() -> int:
        begun.append(len(begun))
        await release.wait()
        return begun[-1]

    first = asyncio.create_task(reads.read("blr", load))
    await asyncio.sleep(0)  # its read has begun
    storm = [asyncio.create_task(reads.read("blr", load)) for _ in range(100)]
    await asyncio.sleep(0)
    release.set()

    assert await first == 0
    assert await asyncio.gather(*storm) == [1] * 100  # none took the read begun before it asked; one read for all
    assert begun == [0, 1]


async def test_a_storm_of_clients_resuming_from_one_id_reads_the_feed_once() -> None:
    redis, reader = reader_at("7-0")
    histories = await asyncio.gather(*(reader.history_after("blr", "7-0", 100) for _ in range(500)))
    assert histories == [[]] * 500  # caught up: nothing after 7-0
    assert redis.reads == 2  # the first client's read, then one for the 499 who asked once it had begun


async def test_a_storm_of_clients_checking_the_menu_in_memory_asks_redis_for_the_cursor_twice() -> None:
    redis, reader = reader_at("7-0")
    loaded = await reader.menu("blr")
    reads = redis.reads
    menus = await asyncio.gather(*(reader.menu("blr") for _ in range(500)))
    assert all(menu is loaded for menu in menus)  # the cursor has not moved: the menu in memory
    assert redis.reads - reads == 2  # the first caller's cursor read, then one for those who asked once it began
