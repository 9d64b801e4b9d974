"""The order agent: prices each placed order against the worker's catalog tables, stores the decision in
PostgreSQL (one row per order), projects it to Redis, and applies status changes in order.

Order of writes: the PostgreSQL transaction (the order row and its status history) commits first, then the
Redis projection is built from what PostgreSQL holds. The pricing decision is taken once, against the prices
and the clock of that moment, so it cannot be taken again on a replay; the committed row is that decision,
and the projection is a pure function of the row (idempotent by the order's version). Hence:
- a value PostgreSQL refuses surfaces before anything is visible: the transaction rolls back, the command is
  dead-lettered with the reason, the partition moves on;
- a crash between COMMIT and the projection leaves customers briefly behind the store; the command was not
  acked, so it is read again and the replay projects the stored row (the INSERT finds it and changes nothing);
- Redis refusing a projection built from a stored row is a bug: the command is dead-lettered (and alerted)
  and the order stays in PostgreSQL, the authority the API falls back to.

While a dependency is unreachable the agent retries with back-off and the commands wait in Kafka.

A worker generation decides orders only for the partitions it holds (streams.handover): before its handover it
reads past the commands, and after the marker its predecessor decides none. A decision is stored once per
order id, so even an overlap could not decide an order twice.
"""

import logging
from collections.abc import Awaitable
from typing import Any, TypeVar

from core.orders import StoredOrder
from models.errors import InvalidEvent
from models.events import utc_now
from models.handover import decode_marker
from models.orders import PlaceOrder, decode_command, price_order
from streams.app import Worker
from streams.dead_letters import dead_letter
from streams.failures import DeadLetterKind, describe, permanent_kind
from streams.guarded_agent import register_guarded_agent
from streams.handover import at_marker
from streams.handover_state import lane_name
from streams.metrics import ORDER_DECISIONS, POSTGRES_WRITES
from streams.order_store import OrderStore
from streams.retry import ShuttingDown

logger = logging.getLogger(__name__)
T = TypeVar("T")


def register_order_agent(worker: Worker) -> None:
    register_guarded_agent(worker, worker.order_topic, "orders", process_command)


async def process_command(worker: Worker, message: Any) -> None:
    await worker.handover.decided.wait()  # whether this generation holds the log (streams.handover)
    lane = (message.topic, message.partition)
    try:
        marker = decode_marker(message.value)
    except InvalidEvent as exc:
        if worker.handover.projects(lane):
            await dead_letter(worker, message, DeadLetterKind.UNDECODABLE, f"undecodable: {exc.message}")
        return
    if marker is not None:
        await at_marker(worker, lane, marker, message.offset, decide_held_back)
        return
    if not worker.handover.projects(lane):
        # Before its handover a worker generation decides no order: the one holding the log does. After
        # releasing a lane, it keeps the commands in case it takes the lane back (decide_held_back).
        if lane in worker.handover.released:
            worker.held_back.hold(lane_name(lane), message.offset, None, message)
        return
    await _decide(worker, message)


async def decide_held_back(worker: Worker, partition: int) -> None:
    """Taking a lane back: the commands its successor may never have decided (it failed after taking over) are
    decided now. Deciding again is harmless: an order keeps its first decision, a status change applies once."""
    lane = (worker.order_topic.get_topic_name(), partition)
    held = worker.held_back.after(lane_name(lane), -1)
    if held is None:
        logger.error("more order commands were held back on %s than kept; some may stay undecided", lane_name(lane))
        held = list(worker.held_back.entries.get(lane_name(lane), ()))
    for _, _, message in held:
        await _decide(worker, message)
    if held:
        logger.info("decided the %d order commands held back on %s", len(held), lane_name(lane))


async def _decide(worker: Worker, message: Any) -> None:
    try:
        command = decode_command(message.value)
    except InvalidEvent as exc:
        await dead_letter(worker, message, DeadLetterKind.UNDECODABLE, f"undecodable order command: {exc.message}")
        return
    city = worker.settings.city(command.city)
    if city is None:
        await dead_letter(worker, message, DeadLetterKind.UNKNOWN_CITY, f"unknown city {command.city!r}")
        return
    store = OrderStore(await worker.retry("connecting to PostgreSQL", worker.resources.pg_pool))
    try:
        if isinstance(command, PlaceOrder):
            decision = price_order(worker.tables.view(city.code), command.restaurant_id, command.lines)
            now = utc_now()
            stored = await worker.retry(
                "storing an order", lambda: _timed("order_place", store.place(command, decision, city.currency, now))
            )
            outcome = stored.row["status"]
        else:
            stored_or_none, changed = await worker.retry(
                "advancing an order", lambda: _timed("order_advance", store.advance(command))
            )
            if stored_or_none is None:
                reason = f"status change for unknown order {command.order_id}"
                await dead_letter(worker, message, DeadLetterKind.UNKNOWN_ORDER, reason)
                return
            stored = stored_or_none
            outcome = command.status.value if changed else "invalid_transition"
        if await _project(worker, stored) == "DUPLICATE":
            outcome = "duplicate"
    except ShuttingDown:
        raise
    except Exception as exc:  # refused by a store, or a bug on this command: park it, the partition goes on
        kind = permanent_kind(exc)
        logger.error("order command at offset %d refused: %r", message.offset, exc, extra={"city": city.code})
        await dead_letter(worker, message, kind, f"{kind.value}: {describe(exc)}")
        return
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
    return await worker.retry("projecting an order", lambda: worker.order_projection.project(stored))
