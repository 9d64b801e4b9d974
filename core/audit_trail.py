"""The catalog's audit trail as PostgreSQL holds it (table catalog_events, written by the worker in
streams.audit): the API reads an event's outcome once Redis no longer keeps it, and an item's history."""

from collections.abc import Iterable
from typing import Any

import aiopg

from models.events import format_timestamp


async def event_outcome(pool: aiopg.Pool, event_id: str) -> dict[str, Any] | None:
    """An event's status as the contract shows it, or None when the trail has no such event."""
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(
            "SELECT status, city, type, applied_at, version, reason FROM catalog_events WHERE event_id = %s",
            (event_id,),
        )
        row = await cur.fetchone()
    if row is None:
        return None
    status, city, kind, applied_at, version, reason = row
    body: dict[str, Any] = {
        "event_id": event_id,
        "status": status,
        "city": city,
        "type": kind,
        "applied_at": format_timestamp(applied_at),
    }
    if version is not None:
        body["version"] = version
    if reason:
        body["reason"] = reason
    return body


async def applied_history(pool: aiopg.Pool, city: str, subject: str, types: Iterable[str]) -> list[dict[str, Any]]:
    """Every applied change of one subject (an item) in log order, oldest first, with old and new values."""
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(
            "SELECT event_id, type, actor, occurred_at, applied_at, version, old_value, new_value, request_id"
            " FROM catalog_events WHERE city = %s AND subject = %s AND status = 'applied' AND type = ANY(%s)"
            " ORDER BY position, seq_in_batch",
            (city, subject, list(types)),
        )
        rows = await cur.fetchall()
    return [
        {
            "event_id": event_id,
            "type": kind,
            "actor": actor,
            "occurred_at": format_timestamp(occurred_at),
            "applied_at": format_timestamp(applied_at),
            "version": version,
            "old": old,
            "new": new,
            "request_id": request_id,
        }
        for event_id, kind, actor, occurred_at, applied_at, version, old, new, request_id in rows
    ]
