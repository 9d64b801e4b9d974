"""A draining pod tells every SSE client to reconnect at once, each within its bound: clients that do not read
(a saturated box) hold the drain back a second in all, not a second each."""

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, cast

from aiohttp import web

from api.keys import DRAINING, STREAMS, OpenStreams
from api.main import drain_streams


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
