"""A pod's menu in memory: served without Redis to an SSE client whose feed position it covers (a storm of
clients costs Redis nothing), read again when the feed has handed out something newer than it."""

from typing import Any, cast

from api.readmodel import MenuReader
from core.redis_keys import city_keys
from tests.support.fakes import FakeRedis


class CountingRedis(FakeRedis):
    reads: int = 0

    async def hget(self, key: str, name: str) -> bytes | None:
        self.reads += 1
        return await super().hget(key, name)


def set_cursor(redis: FakeRedis, cursor: str) -> None:
    redis.hset(city_keys("unit", "blr").meta, {"cursor": cursor})


async def test_a_menu_that_covers_the_feed_position_is_served_without_asking_redis() -> None:
    redis = CountingRedis()
    set_cursor(redis, "7-0")
    reader = MenuReader(cast(Any, redis), "unit")
    loaded = await reader.menu("blr")
    reads = redis.reads

    for position in [(5, 0), (7, 0)]:
        assert await reader.menu("blr", covering=position) is loaded
    assert redis.reads == reads


async def test_a_feed_ahead_of_the_menu_in_memory_makes_the_pod_read_it_again() -> None:
    redis = CountingRedis()
    set_cursor(redis, "7-0")
    reader = MenuReader(cast(Any, redis), "unit")
    await reader.menu("blr")
    set_cursor(redis, "8-0")  # the worker projected a change, and the feed handed it out

    menu = await reader.menu("blr", covering=(8, 0))

    assert menu.cursor == "8-0"


async def test_without_a_feed_position_the_cursor_in_redis_decides() -> None:
    redis = CountingRedis()
    set_cursor(redis, "7-0")
    reader = MenuReader(cast(Any, redis), "unit")
    await reader.menu("blr")
    set_cursor(redis, "9-0")

    assert (await reader.menu("blr")).cursor == "9-0"
