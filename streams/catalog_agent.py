"""The catalog agent: applies menu and pricing events, city by city, and projects them.

For each batch, in this order: apply (pure) -> Redis projection -> tables -> audit row -> ack.
Redis is written before the tables so the read model is never behind the tables; a crash between
the two only means the batch is applied again, which yields the same result and which the projection
recognises as a duplicate. (A crash between the tables and the audit row leaves that row, written on
the replay, without the old and new values: the records already show the batch.)
Nothing that goes wrong with one event stops the agent: undecodable or unappliable events go to the
dead-letter topic with the reason; unreachable Redis or PostgreSQL is retried with back-off while the
events wait in Kafka.
"""

import logging
import time
from typing import Any

from models.catalog import BatchOutcome, apply_batch
from models.errors import InvalidEvent
from models.events import EventBatch, decode_batch, parse_timestamp
from streams.app import Worker, WorkerService
from streams.dead_letters import dead_letter
from streams.guarded_agent import register_guarded_agent
from streams.metrics import BATCHES, EVENTS, FRESHNESS, SHADOW_ERRORS
from streams.projection import CitySnapshot, ProjectionResult
from streams.retry import retry_forever
from streams.state import TableView

logger = logging.getLogger(__name__)


def register_catalog_agent(worker: Worker) -> None:
    name = "shadow" if worker.service is WorkerService.SHADOW else "catalog"
    register_guarded_agent(worker, worker.catalog_topic, name, process_record)


async def process_record(worker: Worker, message: Any) -> None:
    try:
        batch = decode_batch(message.value)
    except InvalidEvent as exc:
        await _unusable(worker, message, f"undecodable: {exc.message}" + (f" ({exc.field})" if exc.field else ""))
        return
    city = worker.settings.city(batch.city)
    if city is None:
        await _unusable(worker, message, f"unknown city {batch.city!r}")
        return
    view = worker.tables.view(city.code)
    try:
        outcome = apply_batch(view, batch, message.offset, city.currency)
    except Exception as exc:  # a bug in apply must not stop the city: park the event with the reason
        logger.exception("cannot apply batch at offset %d", message.offset, extra={"city": city.code})
        if worker.service is WorkerService.SHADOW:
            SHADOW_ERRORS.labels("apply_failed").inc()
        await _unusable(worker, message, f"apply failed: {exc!r}")
        return
    if not worker.service.projects_catalog:
        # The orders and shadow services keep their own copy of the catalog tables (to price orders, to be
        # compared); the catalog service owns the read model, the audit log and the dead letters.
        worker.tables.persist(city.code, outcome)
        worker.applied_positions[city.code] = message.offset
        return
    stopping = worker.stopping
    result = await retry_forever(
        "redis projection", lambda: _project(worker, view, city.code, city.currency, message.offset, outcome), stopping
    )
    _observe(batch, outcome, result)
    # Tables right after Redis, with no await between: the order agent (same worker) prices orders against
    # the tables, so a price customers can already see must be the price orders are checked against.
    worker.tables.persist(city.code, outcome)
    await retry_forever("audit log", lambda: _audit(worker, batch, message.offset, outcome), stopping)
    if result is ProjectionResult.DUPLICATE:
        return
    for entry in outcome.audit:
        logger.info(
            "event %s %s",
            entry.event.type.value,
            entry.status,
            extra={
                "event_id": entry.event.event_id,
                "city": city.code,
                "offset": message.offset,
                "request_id": entry.event.request_id,
                "reason": entry.reason,
            },
        )


async def _unusable(worker: Worker, message: Any, reason: str) -> None:
    if worker.service.projects_catalog:
        await dead_letter(worker, message, reason)
    else:
        logger.warning("skipping catalog record at offset %d: %s", message.offset, reason)


async def _project(
    worker: Worker, view: TableView, city: str, currency: str, position: int, outcome: BatchOutcome
) -> ProjectionResult:
    projection = worker.projection
    if not outcome.rebuild:
        result = await projection.apply(city, currency, position, outcome)
        if result is not ProjectionResult.NO_STATE:
            return result
    snapshot = city_snapshot(view, outcome)
    result = await projection.replace(city, currency, position, snapshot, outcome.audit)
    logger.info("wrote the whole city to Redis", extra={"city": city, "offset": position})
    return result


def _observe(batch: EventBatch, outcome: BatchOutcome, result: ProjectionResult) -> None:
    if result is ProjectionResult.DUPLICATE:
        BATCHES.labels("duplicate").inc()
        for entry in outcome.audit:
            EVENTS.labels(entry.event.type.value, "duplicate").inc()
        return
    BATCHES.labels("rejected" if outcome.rejected else "applied").inc()
    for entry in outcome.audit:
        EVENTS.labels(entry.event.type.value, entry.status).inc()
    created = min((e.occurred_at for e in batch.events if e.occurred_at), default=None)
    if created is not None and not outcome.rejected:
        FRESHNESS.observe(max(0.0, time.time() - parse_timestamp(created)))


def city_snapshot(view: TableView, outcome: BatchOutcome) -> CitySnapshot:
    restaurants = {r.restaurant_id: r for r in view.restaurants()} | outcome.restaurants
    items = {i.item_id: i for i in view.items()} | outcome.items
    return CitySnapshot(
        restaurants=sorted(restaurants.values(), key=lambda r: r.restaurant_id),
        items=sorted(items.values(), key=lambda i: i.item_id),
        pricing=outcome.pricing or view.pricing(),
    )


async def _audit(worker: Worker, batch: EventBatch, position: int, outcome: BatchOutcome) -> None:
    audit = await worker.audit()
    await audit.record(batch.batch_id, position, outcome.audit)
