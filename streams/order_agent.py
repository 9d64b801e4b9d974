"""The order agent: prices each placed order against the worker's catalog tables, stores the decision in
PostgreSQL (one row per order), projects it to Redis, and applies status changes in order.

While PostgreSQL is unreachable the agent retries with back-off and the commands wait in Kafka.
"""

import logging
from collections.abc import Awaitable
from typing import Any, TypeVar

from models.errors import InvalidEvent
from models.events import utc_now
from models.orders import PlaceOrder, decode_command, price_order
from streams.app import Worker
from streams.dead_letters import dead_letter
from streams.guarded_agent import register_guarded_agent
from streams.metrics import ORDER_DECISIONS, POSTGRES_WRITES
from streams.order_store import OrderStore, StoredOrder
from streams.retry import retry_forever

logger = logging.getLogger(__name__)
T = TypeVar("T")


def register_order_agent(worker: Worker) -> None:
    register_guarded_agent(worker, worker.order_topic, "orders", process_command)


async def process_command(worker: Worker, message: Any) -> None:
    try:
        command = decode_command(message.value)
    except InvalidEvent as exc:
        await dead_letter(worker, message, f"undecodable order command: {exc.message}")
        return
    city = worker.settings.city(command.city)
    if city is None:
        await dead_letter(worker, message, f"unknown city {command.city!r}")
        return
    store = OrderStore(await worker.resources.pg_pool())
    if isinstance(command, PlaceOrder):
        decision = price_order(worker.tables.view(city.code), command.restaurant_id, command.lines)
        now = utc_now()
        stored = await retry_forever(
            "storing an order",
            lambda: _timed("order_place", store.place(command, decision, city.currency, now)),
            worker.stopping,
        )
        outcome = stored.row["status"]
    else:
        stored_or_none, changed = await retry_forever(
            "advancing an order", lambda: _timed("order_advance", store.advance(command)), worker.stopping
        )
        if stored_or_none is None:
            await dead_letter(worker, message, f"status change for unknown order {command.order_id}")
            return
        stored = stored_or_none
        outcome = command.status.value if changed else "invalid_transition"
    if await _project(worker, stored) == "DUPLICATE":
        outcome = "duplicate"
    ORDER_DECISIONS.labels(outcome).inc()
    logger.info(
        "order %s",
        outcome,
        extra={
            "order_id": command.order_id,
            "city": city.code,
            "offset": message.offset,
            "request_id": getattr(command, "request_id", None),
        },
    )


async def _timed(operation: str, write: Awaitable[T]) -> T:
    with POSTGRES_WRITES.labels(operation).time():
        return await write


async def _project(worker: Worker, stored: StoredOrder) -> str:
    return await retry_forever("projecting an order", lambda: worker.order_projection.project(stored), worker.stopping)
