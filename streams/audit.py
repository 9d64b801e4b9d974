"""Audit projection: every applied or refused catalog event, with old and new values, into PostgreSQL."""

import logging
from collections.abc import Sequence

import aiopg
import orjson

from models.catalog import AppliedEvent
from streams.metrics import POSTGRES_WRITES

logger = logging.getLogger(__name__)

_INSERT = (
    "INSERT INTO catalog_events (event_id, batch_id, city, type, subject, actor, request_id, status, reason,"
    " version, position, seq_in_batch, occurred_at, old_value, new_value)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
    " ON CONFLICT (event_id) DO NOTHING"
)


def _json(value: object) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


class AuditLog:
    """The audit rows of one batch, inserted inside a transaction the caller commits."""

    def __init__(self, cursor: aiopg.Cursor) -> None:
        self._cursor = cursor

    async def record(self, batch_id: str, position: int, entries: Sequence[AppliedEvent]) -> None:
        rows = [
            (
                entry.event.event_id,
                batch_id,
                entry.event.city,
                entry.event.type.value,
                entry.subject,
                entry.event.actor,
                entry.event.request_id,
                entry.status,
                entry.reason,
                entry.version,
                position,
                seq,
                entry.event.occurred_at,
                _json(entry.old),
                _json(entry.new),
            )
            for seq, entry in enumerate(entries)
            if entry.event.event_id
        ]
        with POSTGRES_WRITES.labels("audit").time():
            for row in rows:
                await self._cursor.execute(_INSERT, row)
