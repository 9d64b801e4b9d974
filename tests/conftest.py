"""Fixtures: a private stack of real processes per test module, on the real Kafka, Redis and PostgreSQL
that `make test` starts (deploy/local/infra.sh)."""

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.support.stack import Stack, delete_session_topics


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    running = await Stack(Path(tmp_path_factory.mktemp("stack"))).start(api_count=2)
    yield running
    running.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    deleted = asyncio.run(delete_session_topics())
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if deleted and reporter is not None:
        reporter.write_line(f"tests: deleted the {len(deleted)} Kafka topics this session's stacks made")
