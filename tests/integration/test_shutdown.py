"""Zero-downtime shutdown of an API pod: not ready at once, still serving, SSE clients told to reconnect."""

import asyncio
import signal
import time
from typing import Any

import aiohttp

from tests.support.polling import poll_until
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
