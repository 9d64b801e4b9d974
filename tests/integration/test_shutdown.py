"""Zero-downtime shutdown of an API pod: not ready at once, still serving, SSE clients told to reconnect."""

import asyncio
import signal
import time
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from tests.support.polling import poll_until
from tests.support.raw_http import read_answer
from tests.support.sse import SseClient
from tests.support.stack import Stack


async def test_sigterm_makes_a_pod_unready_at_once_then_drains_and_exits_cleanly(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    pod = await stack.start_api(FEASTFLOW_PRE_STOP_S="1.5", FEASTFLOW_DRAIN_S="3")
    url = pod.ready_url.removesuffix("/readyz")
    async with SseClient(f"{url}/v1/cities/blr/menu/stream") as client:
        signalled = time.monotonic()
        pod.send(signal.SIGTERM)

        async def unready() -> dict[str, Any]:
            async with http.get(f"{url}/readyz") as response:
                assert response.status == 503, response.status
                answer: dict[str, Any] = await response.json()
                return answer

        assert (await poll_until(unready, 0.2, 0.02, "still ready after SIGTERM"))["draining"] is True
        for path in ("/healthz", "/v1/cities/blr/menu", "/v1/cities"):  # still serving while balancers notice
            async with http.get(f"{url}{path}") as response:
                assert response.status == 200, path
        await client.wait_for(lambda evs: any(e.type == "reconnect" for e in evs), timeout=5)
        await asyncio.wait_for(client.closed.wait(), timeout=5)
    assert pod.popen is not None
    await asyncio.get_running_loop().run_in_executor(None, pod.popen.wait, 10)
    assert pod.popen.returncode == 0
    assert time.monotonic() - signalled < 1.5 + 3 + 2
    stack.apis.remove(pod)


async def test_a_stopping_pod_answers_on_its_idle_connections_instead_of_closing_them_under_a_request(
    stack: Stack,
) -> None:
    """A gateway sends requests on idle connections from its pool; a pod that closed them as it stopped lost a
    request sent at that moment (a 502, not retried for a POST). The stopping pod keeps them, says
    `Connection: close` on its answers, and its streams' and scrapes' connections are never kept idle."""
    pod = await stack.start_api(FEASTFLOW_PRE_STOP_S="0", FEASTFLOW_DRAIN_S="3")
    parts = urlsplit(pod.ready_url)
    idle_reader, idle = await asyncio.open_connection(parts.hostname, parts.port)
    stream_reader, stream = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        idle.write(b"GET /healthz HTTP/1.1\r\nHost: pod\r\n\r\n")
        answer = await read_answer(idle_reader)
        assert answer.status == 200 and answer.headers.get("connection") != "close", answer
        # A scraper holds no idle connection the stopping pod would wait for: its answer closes the connection.
        scrape_reader, scrape = await asyncio.open_connection(parts.hostname, parts.port)
        scrape.write(b"GET /metrics HTTP/1.1\r\nHost: pod\r\n\r\n")
        answer = await read_answer(scrape_reader)
        assert answer.status == 200 and answer.headers["connection"] == "close", answer
        assert await asyncio.wait_for(scrape_reader.read(), 5) == b""
        scrape.close()
        stream.write(b"GET /v1/cities/blr/menu/stream HTTP/1.1\r\nHost: pod\r\n\r\n")
        answer = await read_answer(stream_reader, body=False)
        assert answer.status == 200 and answer.headers["connection"] == "close", answer

        pod.send(signal.SIGTERM)
        # The stream ends (the pod told its clients to reconnect), so the pod is past where aiohttp closes idle
        # connections; and the stream's connection closes with it.
        rest = await asyncio.wait_for(stream_reader.read(), 10)
        assert b"event: reconnect" in rest
        idle.write(b"GET /v1/cities HTTP/1.1\r\nHost: pod\r\n\r\n")
        answer = await read_answer(idle_reader)
        assert answer.status == 200 and answer.headers["connection"] == "close", answer
        assert await asyncio.wait_for(idle_reader.read(), 5) == b""
    finally:
        idle.close()
        stream.close()
    assert pod.popen is not None
    await asyncio.get_running_loop().run_in_executor(None, pod.popen.wait, 10)
    assert pod.popen.returncode == 0
    stack.apis.remove(pod)
