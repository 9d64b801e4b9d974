"""A draining pod tells every SSE client to reconnect at once, each within its bound: clients that do not read
(a saturated box) hold the drain back a second in all, not a second each; and a shutdown that hangs anyway is
logged with where it hangs, and the process ends."""

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
from aiohttp import web

from api.keys import DRAINING, STREAMS, OpenStreams
from api.main import drain_streams, finish_within


@dataclass(eq=False)
class StuckStream:
    """A client whose socket takes nothing: every send waits forever."""

    stopped: bool = False
    told: list[str] = field(default_factory=list)

    async def send(self, data: str, event: str | None = None, retry: int | None = None) -> None:
        self.told.append(event or "")
        await asyncio.Event().wait()

    def stop_streaming(self) -> None:
        self.stopped = True


async def test_every_client_is_told_at_once_and_stopped_within_about_a_second() -> None:
    app = web.Application()
    app[DRAINING] = asyncio.Event()
    streams = OpenStreams()
    clients = [StuckStream() for _ in range(50)]
    for client in clients:
        streams.add(cast(Any, client))
    app[STREAMS] = streams

    started = time.monotonic()
    await drain_streams(app)

    assert time.monotonic() - started < 5  # one after another it was 50 s
    assert all(client.told == ["reconnect"] and client.stopped for client in clients)
    assert app[DRAINING].is_set()


async def test_a_shutdown_that_hangs_is_logged_with_where_it_hangs_and_the_process_ends_anyway(
    caplog: pytest.LogCaptureFixture,
) -> None:
    exits: list[int] = []

    async def hangs() -> None:
        await asyncio.Event().wait()

    await finish_within(hangs(), 0.05, exits.append)

    assert exits == [1]
    assert "exiting with" in caplog.text and "hangs at" in caplog.text and "test_drain_streams.py" in caplog.text


async def test_a_shutdown_that_finishes_in_time_ends_normally() -> None:
    exits: list[int] = []

    async def finishes() -> None:
        await asyncio.sleep(0)

    await finish_within(finishes(), 5, exits.append)

    assert exits == []
