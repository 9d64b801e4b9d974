"""Building catalog events for tests and waiting until the workers applied them."""

import asyncio
import time
from typing import Any

import aiohttp

from feastflow.redis_keys import event_key
from tests.support.stack import Stack


def restaurant_batch(city: str, restaurant_id: str, items: int, price_cents: int = 1000) -> dict[str, Any]:
    events: list[dict[str, Any]] = [
        {"type": "restaurant.upserted", "city": city, "restaurant_id": restaurant_id, "name": f"R {restaurant_id}"}
    ]
    events += [
        {
            "type": "item.upserted",
            "city": city,
            "restaurant_id": restaurant_id,
            "item_id": f"{restaurant_id}-{n}",
            "name": f"Dish {n}",
            "category": "Mains",
            "price_cents": price_cents,
        }
        for n in range(items)
    ]
    return {"events": events}


def price_set(city: str, restaurant_id: str, item_id: str, price_cents: int, **extra: Any) -> dict[str, Any]:
    return {
        "type": "price.set",
        "city": city,
        "restaurant_id": restaurant_id,
        "item_id": item_id,
        "price_cents": price_cents,
        **extra,
    }


async def publish(stack: Stack, session: aiohttp.ClientSession, body: Any, index: int = 0) -> list[str]:
    response = await stack.post_events(session, body, index)
    assert response.status == 202, await response.text()
    event_ids: list[str] = (await response.json())["event_ids"]
    return event_ids


async def statuses(stack: Stack, event_ids: list[str]) -> dict[str, str]:
    redis = stack.redis()
    try:
        async with redis.pipeline(transaction=False) as pipe:
            for event_id in event_ids:
                pipe.hget(event_key(stack.namespace, event_id), "status")
            values = await pipe.execute()
    finally:
        await redis.aclose()
    return {e: (v.decode() if v else "missing") for e, v in zip(event_ids, values, strict=True)}


async def wait_applied(stack: Stack, event_ids: list[str], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    pending = list(event_ids)
    while pending:
        current = await statuses(stack, pending)
        pending = [e for e, status in current.items() if status not in ("applied", "rejected")]
        if not pending:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(pending)} of {len(event_ids)} events not applied after {timeout}s")
        await asyncio.sleep(0.05)
