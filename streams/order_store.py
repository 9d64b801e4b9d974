"""Orders in PostgreSQL: the authority on what was decided. One row per order, whatever the redeliveries."""

from dataclasses import dataclass
from typing import Any

import aiopg
import orjson

from models.events import format_timestamp
from models.orders import AdvanceOrder, PlaceOrder, PricingDecision, may_advance
from streams.pg import transaction

_COLUMNS = (
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


class OrderStore:
    def __init__(self, pool: aiopg.Pool) -> None:
        self._pool = pool

    async def place(self, command: PlaceOrder, decision: PricingDecision, currency: str, now: str) -> StoredOrder:
        async with transaction(self._pool) as cur:
            await cur.execute(
                f"INSERT INTO orders ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 2, %s, %s)"
                " ON CONFLICT DO NOTHING",
                (
                    command.order_id,
                    command.customer,
                    command.idempotency_key,
                    command.city,
                    command.restaurant_id,
                    _json([line.as_json() for line in command.lines]),
                    decision.status.value,
                    decision.reason,
                    _json(decision.current_prices),
                    _json(decision.price_versions),
                    decision.total_cents,
                    currency,
                    command.placed_at,
                    now,
                ),
            )
            if cur.rowcount == 1:
                await cur.execute(
                    "INSERT INTO order_status_history (order_id, version, status, reason, actor, at)"
                    " VALUES (%s, 1, 'pending', NULL, %s, %s), (%s, 2, %s, %s, 'system:pricing', %s)",
                    (
                        command.order_id,
                        command.customer,
                        command.placed_at,
                        command.order_id,
                        decision.status.value,
                        decision.reason,
                        now,
                    ),
                )
        return await self._require(command.order_id)

    async def advance(self, command: AdvanceOrder) -> tuple[StoredOrder | None, bool]:
        """Apply a status change if it is still allowed; return the order and whether it changed now."""
        async with transaction(self._pool) as cur:
            await cur.execute("SELECT status, version FROM orders WHERE order_id = %s FOR UPDATE", (command.order_id,))
            row = await cur.fetchone()
            changed = False
            if row is not None:
                await cur.execute("SELECT 1 FROM order_status_history WHERE command_id = %s", (command.command_id,))
                already = await cur.fetchone() is not None
                status, version = row
                if not already and may_advance(status, command.status):
                    await cur.execute(
                        "UPDATE orders SET status = %s, version = %s, updated_at = %s WHERE order_id = %s",
                        (command.status.value, version + 1, command.at, command.order_id),
                    )
                    await cur.execute(
                        "INSERT INTO order_status_history (order_id, version, status, actor, command_id, at)"
                        " VALUES (%s, %s, %s, %s, %s, %s)",
                        (
                            command.order_id,
                            version + 1,
                            command.status.value,
                            command.actor,
                            command.command_id,
                            command.at,
                        ),
                    )
                    changed = True
        if row is None:
            return None, False
        return await self._require(command.order_id), changed

    async def load(self, order_id: str) -> StoredOrder | None:
        async with self._pool.acquire() as conn, conn.cursor() as cur:
            await cur.execute(f"SELECT {_COLUMNS} FROM orders WHERE order_id = %s", (order_id,))
            row = await cur.fetchone()
            if row is None:
                return None
            names = [c.strip() for c in _COLUMNS.split(",")]
            await cur.execute(
                "SELECT version, status, reason, at FROM order_status_history WHERE order_id = %s ORDER BY version",
                (order_id,),
            )
            history = [StatusChange(v, s, r, format_timestamp(at)) for v, s, r, at in await cur.fetchall()]
        return StoredOrder(dict(zip(names, row, strict=True)), history)

    async def _require(self, order_id: str) -> StoredOrder:
        stored = await self.load(order_id)
        if stored is None:
            raise RuntimeError(f"order {order_id} vanished")
        return stored


def _json(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()
