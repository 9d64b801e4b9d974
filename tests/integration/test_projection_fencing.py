"""The projection's fencing on a real Redis: once a worker generation wrote a city under its epoch, a write under
an older epoch is refused (FENCED) and changes nothing, whatever its log position."""

import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from core.redis_keys import city_keys
from models.catalog import BatchOutcome, CityPricing, apply_batch
from models.events import decode_batch
from models.handover import PROBE_CITY, PROBE_ITEM, probe_batches
from streams.projection import CitySnapshot, MenuProjection, ProjectionResult
from streams.state import CatalogTables
from tests.support.stack import TEST_REDIS_DB

NOW = "2026-11-30T20:00:00.000000Z"


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    client = Redis.from_url(f"redis://127.0.0.1:6379/{TEST_REDIS_DB}")
    yield client
    await client.aclose()


def outcomes(price: int) -> list[BatchOutcome]:
    tables = CatalogTables({}, {}, {})
    applied = []
    for position, batch in enumerate(probe_batches(price, "system:test", NOW)):
        outcome = apply_batch(tables.view(PROBE_CITY.code), decode_batch(batch.encode()), position, "USD")
        tables.persist(PROBE_CITY.code, outcome)
        applied.append(outcome)
    return applied


async def test_a_write_under_an_older_epoch_is_refused_and_changes_nothing(redis: Redis) -> None:
    namespace = f"fence-{uuid.uuid4().hex[:8]}"
    epoch = [2]
    projection = MenuProjection(redis, namespace, 1000, lambda: epoch[0])
    setup, change = outcomes(777)
    city = PROBE_CITY.code
    assert await projection.apply(city, "USD", 10, setup) is ProjectionResult.NO_STATE  # first write: whole city
    assert await projection.replace(city, "USD", 10, _snapshot(setup), setup.audit) is ProjectionResult.APPLIED
    keys = city_keys(namespace, city)
    assert await redis.hget(keys.meta, "epoch") == b"2"
    epoch[0] = 1  # the generation before: even a newer position is refused
    assert await projection.apply(city, "USD", 11, change) is ProjectionResult.FENCED
    assert await redis.hget(keys.meta, "position") == b"10"
    assert b'"price_cents":1,' in (await redis.hget(keys.items, PROBE_ITEM) or b"")
    epoch[0] = 3  # a newer generation writes, and raises the fence
    assert await projection.apply(city, "USD", 11, change) is ProjectionResult.APPLIED
    assert await redis.hget(keys.meta, "epoch") == b"3"
    assert b'"price_cents":777' in (await redis.hget(keys.items, PROBE_ITEM) or b"")
    await redis.delete(*keys.as_list())


def _snapshot(outcome: BatchOutcome) -> CitySnapshot:
    return CitySnapshot(list(outcome.restaurants.values()), list(outcome.items.values()), CityPricing())
