"""Orders in PostgreSQL: the authority on what was decided. One row per order, whatever the redeliveries."""

from typing import Any

import aiopg
import orjson

from core.orders import COLUMNS, StoredOrder, load_order
from core.pg import transaction
from models.orders import AdvanceOrder, PlaceOrder, PricingDecision, may_advance


class OrderStore:
    def __init__(self, pool: aiopg.Pool) -> None:
        self._pool = pool

    async def place(self, command: PlaceOrder, decision: PricingDecision, currency: str, now: str) -> StoredOrder:
        async with transaction(self._pool) as cur:
            await cur.execute(
                f"INSERT INTO orders ({COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 2, %s, %s)"
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
        return await load_order(self._pool, order_id)

    async def _require(self, order_id: str) -> StoredOrder:
        stored = await self.load(order_id)
        if stored is None:
            raise RuntimeError(f"order {order_id} vanished")
        return stored


def _json(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()
