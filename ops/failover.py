"""Crash failover of the local stack's worker, measured: SIGKILL the only worker, then post a price change every
200 ms through the gateway; the failover time is from the kill until the first change posted after it reaches
an SSE client. The supervisor restarts the worker; as the only (static) member of its generation's group it
resumes its partitions without waiting out the session of the killed process (streams.handover)."""

import asyncio
import contextlib
import os
import signal
import time
import uuid
from typing import Any

import aiohttp

from core.settings import Settings
from core.tokens import Role, issue_token
from ops.probes import wait_ready
from ops.sse_client import EventSource
from ops.stack import LocalStack, RolloutFailed
from ops.supervisor import BackOff, started_at

CITY = "blr"
RESTAURANT = "failover-check"
EVERY_S = 0.2
GIVE_UP_S = 60.0


async def isolated_crash(settings: Settings) -> None:
    """Until the worker has run long enough that the supervisor restarts it after its first back-off (BackOff):
    a kill then measures one crash, not a crash loop."""
    stack = LocalStack(settings)
    while True:
        unit, _ = stack.worker_unit()
        started = started_at(unit.pid)
        ran_s = time.time() - started if started is not None else 0.0
        if ran_s > BackOff().reset_after_s + 1:
            return
        await asyncio.sleep(1.0)


async def measure_failover(settings: Settings, gateway: str = "http://127.0.0.1:8080") -> dict[str, Any]:
    """One SIGKILL of the worker; see the module docstring. Call isolated_crash first to measure one crash."""
    stack = LocalStack(settings)
    token = issue_token(settings.jwt_secret, Role.ADMIN, "failover", ttl_s=600)
    headers = {"Authorization": f"Bearer {token}"}
    item = f"item-{uuid.uuid4().hex[:8]}"
    arrived: dict[int, float] = {}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_read=30)) as http:
        source = EventSource(http, f"{gateway}/v1/cities/{CITY}/menu/stream")

        async def follow() -> None:
            async for event in source.events():
                if event.type == "item" and event.json().get("item_id") == item:
                    arrived.setdefault(event.json()["base_price_cents"], time.monotonic())

        follower = asyncio.create_task(follow())
        try:
            await asyncio.wait_for(source.opened.wait(), 10)
            await _post(http, gateway, headers, _setup(item))
            await _until(lambda: 100 in arrived, "the set-up change never arrived")
            unit, _ = stack.worker_unit()
            os.kill(unit.pid, signal.SIGKILL)
            killed, price, sent = time.monotonic(), 1000, 0
            while not any(p > 1000 for p in arrived) and time.monotonic() - killed < GIVE_UP_S:
                price, sent = price + 1, sent + 1
                await _post(http, gateway, headers, _price(item, price))
                await asyncio.sleep(EVERY_S)
            flowing = [at for p, at in arrived.items() if p > 1000]
            if not flowing:
                raise RolloutFailed(f"no change reached customers within {GIVE_UP_S:g}s of killing the worker")
            restarted, name = stack.worker_unit()
            await wait_ready(f"http://127.0.0.1:{restarted.port}/feastflow/ready/", restarted.pid, name)
            return {"failover_s": round(min(flowing) - killed, 2), "changes_posted_meanwhile": sent}
        finally:
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower


def _setup(item: str) -> dict[str, Any]:
    return {
        "events": [
            {"type": "restaurant.upserted", "city": CITY, "restaurant_id": RESTAURANT, "name": "Failover check"},
            {
                "type": "item.upserted",
                "city": CITY,
                "restaurant_id": RESTAURANT,
                "item_id": item,
                "name": "Failover item",
                "price_cents": 100,
            },
        ]
    }


def _price(item: str, price: int) -> dict[str, Any]:
    event = {"type": "price.set", "city": CITY, "restaurant_id": RESTAURANT, "item_id": item, "price_cents": price}
    return {"events": [event]}


async def _post(http: aiohttp.ClientSession, gateway: str, headers: dict[str, str], body: dict[str, Any]) -> None:
    async with http.post(f"{gateway}/v1/admin/events", json=body, headers=headers) as response:
        if response.status != 202:
            raise RolloutFailed(f"admin change answered {response.status}: {await response.text()}")


async def _until(condition: Any, message: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise RolloutFailed(message)
        await asyncio.sleep(0.05)
