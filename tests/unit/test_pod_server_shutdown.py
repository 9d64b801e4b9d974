"""A stopping pod's HTTP server (api.server.HardenedServer): it never closes an idle keep-alive connection under
a gateway that may be sending a request on it; it waits, bounded, for the peer to let the connection go."""

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web

from api import server
from api.server import HardenedRunner
from tests.support.polling import poll_until
from tests.support.raw_http import read_answer


async def hello(request: web.Request) -> web.Response:
    return web.Response(text="hello")


async def started_runner() -> tuple[HardenedRunner, int]:
    app = web.Application()
    app.router.add_get("/", hello)
    runner = HardenedRunner(app, header_timeout_s=10.0, shutdown_timeout=5.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, port


def refused(port: int) -> Callable[[], Awaitable[bool]]:
    async def connect_is_refused() -> bool:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except ConnectionRefusedError:
            return True
        writer.close()
        return False

    return connect_is_refused


async def idle_connection(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\nHost: pod\r\n\r\n")
    answer = await read_answer(reader)
    assert answer.status == 200 and answer.body == b"hello"
    return reader, writer


async def test_an_idle_connection_still_takes_a_request_while_the_server_stops(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server, "PEERS_CLOSE_S", 1.0)
    runner, port = await started_runner()
    reader, writer = await idle_connection(port)
    began = time.monotonic()
    stopping = asyncio.create_task(runner.cleanup())
    # The server stopped listening: past where aiohttp alone closed idle connections at once.
    await poll_until(refused(port), 0.9, 0.01, "the server still listens")
    assert not stopping.done()
    writer.write(b"GET / HTTP/1.1\r\nHost: pod\r\n\r\n")
    answer = await read_answer(reader)
    assert answer.status == 200 and answer.body == b"hello"
    await asyncio.wait_for(stopping, 5)
    # Nobody said `Connection: close` here (that is the pod's draining middleware), so the peer kept the
    # connection: the server waited its whole bound, then closed it.
    assert 1.0 <= time.monotonic() - began < 2.0
    assert await asyncio.wait_for(reader.read(), 1) == b""
    writer.close()


async def test_the_server_stops_as_soon_as_its_peers_let_their_connections_go(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server, "PEERS_CLOSE_S", 5.0)
    runner, port = await started_runner()
    _, first = await idle_connection(port)
    _, second = await idle_connection(port)
    began = time.monotonic()
    stopping = asyncio.create_task(runner.cleanup())
    first.close()
    assert runner.server is not None
    http_server = runner.server
    await poll_until(lambda: len(http_server.connections) == 1, 2.0, 0.01, "the first connection is still counted")
    assert not stopping.done()  # one peer still holds a connection
    second.close()
    await asyncio.wait_for(stopping, 2)
    assert time.monotonic() - began < 1.0
