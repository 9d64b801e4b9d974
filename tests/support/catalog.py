"""Building catalog events for tests and waiting until the workers applied them."""

from typing import Any

import aiohttp

from core.redis_keys import event_key
from tests.support.polling import poll_until
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


async def wait_applied(
    stack: Stack, event_ids: list[str], timeout: float = 30.0, *, allow_rejected: bool = False
) -> dict[str, str]:
    """Wait until the worker decided every event; fail if it rejected one, unless the caller expects that
    (`allow_rejected`). Returns each event's final status."""
    decided: dict[str, str] = {}

    async def all_decided() -> bool:
        current = await statuses(stack, [e for e in event_ids if e not in decided])
        decided.update({e: status for e, status in current.items() if status in ("applied", "rejected")})
        pending = len(event_ids) - len(decided)
        assert not pending, f"{pending} of {len(event_ids)} events not decided"
        return True

    await poll_until(all_decided, timeout, message="events not applied")
    rejected = [e for e in event_ids if decided[e] == "rejected"]
    if rejected and not allow_rejected:
        reasons = await _reasons(stack, rejected)
        raise AssertionError(f"{len(rejected)} of {len(event_ids)} events rejected: {reasons}")
    return {e: decided[e] for e in event_ids}


async def _reasons(stack: Stack, event_ids: list[str]) -> dict[str, str]:
    redis = stack.redis()
    try:
        values = [await redis.hget(event_key(stack.namespace, e), "reason") for e in event_ids]
    finally:
        await redis.aclose()
    return {e: v.decode() if isinstance(v, bytes) else repr(v) for e, v in zip(event_ids, values, strict=True)}
