"""`feastflow seed` publishes the demo once: it asks whether the catalog log has events. A fresh stack's first
worker has already put its handover markers and probe changes there (streams.handover); those do not count,
an admin's change does."""

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from ops.create_topics import catalog_has_events
from tests.support.catalog import publish, restaurant_batch
from tests.support.stack import Stack


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    running = await Stack(Path(tmp_path_factory.mktemp("seed"))).start()
    yield running
    running.stop()


async def test_only_an_event_for_a_served_city_counts_as_the_log_having_events(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    assert await catalog_has_events(stack.settings) is False  # markers and probes only: seed the demo
    await publish(stack, http, restaurant_batch("blr", "seed-check", items=1))
    assert await catalog_has_events(stack.settings) is True
