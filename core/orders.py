"""Orders as PostgreSQL holds them, read by the API (an order older than Redis keeps) and by the worker that
writes them (streams.order_store). The table is created by core/migrations; one row per order, and its status
history in order_status_history."""

from dataclasses import dataclass
from typing import Any

import aiopg

from models.events import format_timestamp

COLUMNS = (
    "order_id, customer, idempotency_key, city, restaurant_id, lines, status, reason, current_prices,"
    " price_versions, total_cents, currency, version, created_at, updated_at"
)


@dataclass(frozen=True, slots=True)
class StatusChange:
    version: int
    status: str
    reason: str | None
    at: str


@dataclass(frozen=True, slots=True)
class StoredOrder:
    row: dict[str, Any]
    history: list[StatusChange]

    @property
    def version(self) -> int:
        return int(self.row["version"])

    def as_json(self) -> dict[str, Any]:
        """The order as the public contract shows it."""
        row = self.row
        body: dict[str, Any] = {
            "order_id": row["order_id"],
            "status": row["status"],
            "city": row["city"],
            "restaurant_id": row["restaurant_id"],
            "lines": row["lines"],
            "total_cents": row["total_cents"],
            "currency": row["currency"],
            "created_at": format_timestamp(row["created_at"]),
            "updated_at": format_timestamp(row["updated_at"]),
            "version": row["version"],
        }
        if row["reason"]:
            body["reason"] = row["reason"]
        if row["current_prices"] is not None:
            body["current_prices"] = row["current_prices"]
        if row["price_versions"] is not None:
            body["price_versions"] = row["price_versions"]  # the item versions the order was priced at
        return body

    def status_event(self, change: StatusChange) -> dict[str, Any]:
        event: dict[str, Any] = {
            "order_id": self.row["order_id"],
            "status": change.status,
            "version": change.version,
            "at": change.at,
            "total_cents": self.row["total_cents"],
        }
        if change.reason:
            event["reason"] = change.reason
            if self.row["current_prices"] is not None:
                event["current_prices"] = self.row["current_prices"]
        return event


async def load_order(pool: aiopg.Pool, order_id: str) -> StoredOrder | None:
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(f"SELECT {COLUMNS} FROM orders WHERE order_id = %s", (order_id,))
        row = await cur.fetchone()
        if row is None:
            return None
        names = [c.strip() for c in COLUMNS.split(",")]
        await cur.execute(
            "SELECT version, status, reason, at FROM order_status_history WHERE order_id = %s ORDER BY version",
            (order_id,),
        )
        history = [StatusChange(v, s, r, format_timestamp(at)) for v, s, r, at in await cur.fetchall()]
    return StoredOrder(dict(zip(names, row, strict=True)), history)
