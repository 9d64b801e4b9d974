"""The catalog agent: applies menu and pricing events, city by city, and projects them.

For each record: decode and apply (pure; a record that cannot be decoded or applied is dead-lettered), then
one write unit, retried whole while a dependency is unreachable:

    BEGIN -> audit rows -> Redis projection -> tables -> COMMIT -> ack

- The audit rows go first, inside an open PostgreSQL transaction, because PostgreSQL is the store that
  refuses values (a NUL in a name: "\\u0000 cannot be converted to text"). A refusal surfaces before anything
  is visible to customers: the transaction rolls back, the record is dead-lettered, the partition moves on.
- The Redis projection next, still inside the transaction: if Redis refuses the batch, the audit rows roll
  back with it, so neither side has it. The projection is idempotent by log position, so a replay of the
  unit (after a transient failure, or a crash before COMMIT) writes nothing twice.
- The tables right after Redis answered, with no await between: the order agent (same worker) prices
  orders against the tables, so a price customers can already see must be the price orders are checked
  against. The tables are written before COMMIT so that, once the audit has a change, the tables have it too.
- COMMIT last. A crash between the Redis write and COMMIT leaves customers briefly ahead of the audit trail;
  the record was not acked, so it is read again and the replay inserts the audit rows (Redis answers
  DUPLICATE). The audit never has a change customers did not get.

A transient failure (Redis, PostgreSQL or Kafka unreachable) is retried with capped back-off while the
record waits; the worker reports not ready meanwhile. Anything else is permanent for that record: it goes to
the dead-letter topic with the reason, and the partition moves on.

Records that wait behind each other (streams.guarded_agent) are written in one unit: each is applied on top
of the ones before it, then BEGIN -> every record's audit rows -> for each record in order, its Redis
projection and right after it its tables -> COMMIT. One round of commits for many records is how a worker that
fell behind catches up. Only records this worker writes as plainly as that are grouped; a handover marker, a
record it cannot use, one it keeps without writing, is processed alone (the group before it written first).
When a group's unit is refused, the records whose projection and tables were written are written again alone
(their audit rows rolled back; Redis answers DUPLICATE) and the rest are processed alone from the start, so
a refusal parks only its own record, exactly as without groups.
"""

import dataclasses
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from core.pg import transaction
from core.redis_keys import city_keys
from models.catalog import BatchOutcome, CatalogView, apply_batch, overlay
from models.errors import InvalidEvent
from models.events import EventBatch, decode_batch, parse_timestamp
from models.handover import PROBE_CITY, decode_marker
from streams.app import Worker, WorkerService
from streams.audit import AuditLog
from streams.dead_letters import dead_letter
from streams.failures import DeadLetterKind, describe, permanent_kind
from streams.guarded_agent import record_context, register_guarded_agent
from streams.handover import at_marker, write_city_whole
from streams.metrics import BATCHES, EVENTS, FRESHNESS, HANDOVERS, SHADOW_ERRORS
from streams.projection import CitySnapshot, ProjectionResult
from streams.retry import ShuttingDown
from streams.state import TableView

logger = logging.getLogger(__name__)


def register_catalog_agent(worker: Worker) -> None:
    name = "shadow" if worker.service is WorkerService.SHADOW else "catalog"
    # Groups save commits, so only a service that writes the read model takes records in groups; the others
    # (orders, shadow) keep each record's own time in feastflow_worker_processing_seconds, which the canary
    # compares as it comes, record by record.
    grouped = process_group if worker.service.projects_catalog else None
    register_guarded_agent(worker, worker.catalog_topic, name, process_record, grouped)


class Fenced(Exception):
    """Redis refused the write: a newer worker generation holds the city (streams.handover)."""


@dataclass(frozen=True)
class Prepared:
    """A record decoded and applied, ready for the write unit."""

    message: Any
    city: str
    currency: str
    batch: EventBatch
    outcome: BatchOutcome
    event: Any = None  # its Faust event, when it is processed in a group (streams.guarded_agent.record_context)


async def process_record(worker: Worker, message: Any) -> None:
    prepared = await _prepare(worker, message, worker.tables.view, _nothing_before)
    if prepared is not None:
        await _write_alone(worker, prepared)


async def _nothing_before() -> None:
    """A record processed alone has no group before it to write first."""


async def _prepare(
    worker: Worker,
    message: Any,
    view_of: Callable[[str], CatalogView],
    before_alone: Callable[[], Awaitable[None]],
) -> Prepared | None:
    """Decode and apply a record on `view_of(city)`. None when it was dealt with here, alone, after
    `before_alone()` (which writes the group gathered before it): a handover marker, a record that cannot be
    used (dead-lettered), one this worker keeps without writing."""
    await worker.handover.decided.wait()  # whether this generation holds the log (streams.handover)
    lane = (message.topic, message.partition)
    try:
        marker = decode_marker(message.value)
    except InvalidEvent as exc:
        await before_alone()
        await _unusable(worker, message, DeadLetterKind.UNDECODABLE, f"undecodable: {exc.message}")
        return None
    if marker is not None:
        await before_alone()
        await at_marker(worker, lane, marker, message.offset, catch_up_read_model)
        return None
    try:
        batch = decode_batch(message.value)
    except InvalidEvent as exc:
        await before_alone()
        reason = f"undecodable: {exc.message}" + (f" ({exc.field})" if exc.field else "")
        await _unusable(worker, message, DeadLetterKind.UNDECODABLE, reason)
        return None
    city = worker.settings.city(batch.city)
    if city is None:
        await before_alone()
        await _unusable(worker, message, DeadLetterKind.UNKNOWN_CITY, f"unknown city {batch.city!r}")
        return None
    worker.city_partitions[city.code] = message.partition
    if not _writes(worker, message):
        # The orders and shadow services keep their own copy of the catalog tables (to price orders, to be
        # compared), and so does a worker generation before its handover; the generation that holds the log
        # owns the read model, the audit log and the dead letters.
        await before_alone()
        view_of = worker.tables.view
    try:
        outcome = apply_batch(view_of(city.code), batch, message.offset, city.currency)
    except Exception as exc:  # a bug in apply must not stop the city: park the event with the reason
        await before_alone()
        logger.exception("cannot apply batch at offset %d", message.offset, extra={"city": city.code})
        if worker.service is WorkerService.SHADOW:
            SHADOW_ERRORS.labels("apply_failed").inc()
        await _refused(worker, message, batch, DeadLetterKind.APPLY_FAILED, f"apply failed: {describe(exc)}")
        return None
    if not _writes(worker, message):
        _keep(worker, city.code, batch, message.offset, outcome)
        if lane in worker.handover.released:  # kept in case this worker takes the lane back
            worker.held_back.hold(city.code, message.offset, batch, outcome)
        return None
    return Prepared(message, city.code, city.currency, batch, outcome)


async def _write_alone(worker: Worker, prepared: Prepared) -> None:
    with record_context(prepared.event):
        await _write_one(worker, prepared)


async def _write_one(worker: Worker, prepared: Prepared) -> None:
    message, city, batch, outcome = prepared.message, prepared.city, prepared.batch, prepared.outcome
    try:
        result = await worker.retry("catalog write", lambda: _write(worker, [prepared], Progress()))
    except ShuttingDown:
        raise
    except Fenced as fenced:
        worker.handover.fenced((message.topic, message.partition), str(fenced))
        HANDOVERS.labels("fenced").inc()
        logger.warning("offset %d not written: %s", message.offset, fenced, extra={"city": city})
        _keep(worker, city, batch, message.offset, outcome)
        return
    except Exception as exc:  # refused by a store: nothing of it is visible (the unit rolled back)
        kind = permanent_kind(exc)
        logger.error("catalog write refused at offset %d: %r", message.offset, exc, extra={"city": city})
        await _refused(worker, message, batch, kind, f"{kind.value}: {describe(exc)}")
        return
    _written(worker, prepared, result[0])


async def process_group(worker: Worker, events: list[Any]) -> None:
    """Consecutive records, written in as few units as the records allow (see the module's docstring)."""
    group = Group(worker)
    for event in events:
        with record_context(event):
            prepared = await _prepare(worker, event.message, group.view, group.flush)
        if prepared is not None:
            group.add(dataclasses.replace(prepared, event=event))
    await group.flush()


@dataclass
class Progress:
    """How many records of a unit had their projection and tables written when it stopped."""

    written: int = 0


@dataclass
class Group:
    """Records gathered for one write unit, each applied on top of the ones before it."""

    worker: Worker
    members: list[Prepared] = field(default_factory=list)
    pending: dict[str, BatchOutcome] = field(default_factory=dict)  # per city: what the members change

    def view(self, city: str) -> CatalogView:
        tables = self.worker.tables.view(city)
        pending = self.pending.get(city)
        return tables if pending is None else overlay(tables, pending)

    def add(self, prepared: Prepared) -> None:
        self.members.append(prepared)
        pending = self.pending.setdefault(prepared.city, BatchOutcome())
        pending.restaurants.update(prepared.outcome.restaurants)
        pending.items.update(prepared.outcome.items)
        pending.pricing = prepared.outcome.pricing or pending.pricing

    async def flush(self) -> None:
        members, self.members, self.pending = self.members, [], {}
        if len(members) == 1:
            await _write_alone(self.worker, members[0])
            return
        if not members:
            return
        progress = Progress()
        try:
            results = await self.worker.retry("catalog write", lambda: _write(self.worker, members, progress))
        except ShuttingDown:
            raise
        except Exception as exc:  # refused or fenced: as if each had come alone
            logger.warning("a unit of %d records was refused (%r): writing each alone", len(members), exc)
            for prepared in members[: progress.written]:
                await _write_alone(self.worker, prepared)
            for prepared in members[progress.written :]:
                with record_context(prepared.event):
                    await process_record(self.worker, prepared.message)
            return
        for prepared, result in zip(members, results, strict=True):
            _written(self.worker, prepared, result)


def _written(worker: Worker, prepared: Prepared, result: ProjectionResult) -> None:
    message, city, batch, outcome = prepared.message, prepared.city, prepared.batch, prepared.outcome
    _keep(worker, city, batch, message.offset, None)
    _observe(batch, outcome, result)
    if result is ProjectionResult.DUPLICATE:
        return
    for entry in outcome.audit:
        logger.info(
            "event %s %s",
            entry.event.type.value,
            entry.status,
            extra={
                "event_id": entry.event.event_id,
                "city": city,
                "offset": message.offset,
                "request_id": entry.event.request_id,
                "reason": entry.reason,
            },
        )


async def _write(worker: Worker, members: list[Prepared], progress: Progress) -> list[ProjectionResult]:
    """The write unit of one record or of a group (see the module's docstring for the order and why)."""
    progress.written = 0
    results = []
    async with transaction(await worker.resources.pg_pool()) as cursor:
        audit = AuditLog(cursor)
        for prepared in members:
            await audit.record(prepared.batch.batch_id, prepared.message.offset, prepared.outcome.audit)
        for prepared in members:
            view = worker.tables.view(prepared.city)
            position = prepared.message.offset
            results.append(await _project(worker, view, prepared.city, prepared.currency, position, prepared.outcome))
            with record_context(prepared.event):  # no await between the projection and the tables
                worker.tables.persist(prepared.city, prepared.outcome)
            progress.written += 1
    return results


async def catch_up_read_model(worker: Worker, partition: int) -> None:
    """Before taking a partition: a city of it the read model holds behind this worker's tables (the generation
    that held it died, or failed after taking over) gets the changes it lacks, each as it would have been
    written (what this worker held back since releasing the partition); the city is written whole when some
    of them were not kept."""
    redis = worker.resources.redis
    for city, seen_on in list(worker.city_partitions.items()):
        mine = worker.applied_positions.get(city)
        served = worker.settings.city(city)
        if seen_on != partition or mine is None or served is None:
            continue
        meta = city_keys(worker.settings.namespace, city).meta
        raw = await worker.retry("reading a city's position", functools.partial(redis.hget, meta, "position"))
        stored = None if raw is None else int(raw)
        if stored is not None and stored >= mine:
            continue
        held = worker.held_back.after(city, stored)
        if held is None:
            logger.warning("%s: read model at %s, tables at %d: writing the city whole", city, stored, mine)
            await write_city_whole(worker, city, mine)
            continue
        view = worker.tables.view(city)
        for position, batch, outcome in held:
            await worker.retry(
                "catalog write",
                functools.partial(_project_held_back, worker, view, city, served.currency, batch, position, outcome),
            )
        logger.info("%s: wrote the %d changes the read model lacked (%s to %d)", city, len(held), stored, mine)


async def _project_held_back(
    worker: Worker, view: TableView, city: str, currency: str, batch: EventBatch, position: int, outcome: BatchOutcome
) -> ProjectionResult:
    """The write unit without the tables, which have the change already."""
    async with transaction(await worker.resources.pg_pool()) as cursor:
        await AuditLog(cursor).record(batch.batch_id, position, outcome.audit)
        return await _project(worker, view, city, currency, position, outcome)


def _writes(worker: Worker, message: Any) -> bool:
    """Whether this worker writes for the record's partition: its service projects the catalog and its
    generation holds the partition (streams.handover)."""
    return worker.service.projects_catalog and worker.handover.projects((message.topic, message.partition))


def _keep(worker: Worker, city: str, batch: EventBatch, position: int, outcome: BatchOutcome | None) -> None:
    """The tables have the batch (persisted here unless the write unit did), at this position."""
    if outcome is not None:
        worker.tables.persist(city, outcome)
    worker.applied_positions[city] = position
    if city == PROBE_CITY.code:
        worker.last_probe_batch = batch.batch_id


async def _unusable(worker: Worker, message: Any, kind: DeadLetterKind, reason: str) -> None:
    if _writes(worker, message):
        await dead_letter(worker, message, kind, reason)
    else:
        logger.warning("skipping catalog record at offset %d: %s", message.offset, reason)


async def _refused(worker: Worker, message: Any, batch: EventBatch, kind: DeadLetterKind, reason: str) -> None:
    """Dead-letter a batch that was read but could not be applied, and mark its events refused for the admins
    who wait on them (`GET /v1/admin/events/{id}`: rejected, reason `dead_lettered: <kind>`)."""
    await _unusable(worker, message, kind, reason)
    if _writes(worker, message):
        event_ids = [event.event_id for event in batch.events if event.event_id]
        refused = f"dead_lettered: {kind.value}"
        try:
            await worker.retry("marking events refused", lambda: worker.projection.mark_refused(event_ids, refused))
        except ShuttingDown:
            raise
        except Exception as exc:  # only a status for admins: the record is parked already
            logger.error("could not mark the events at offset %d refused: %r", message.offset, exc)


async def _project(
    worker: Worker, view: TableView, city: str, currency: str, position: int, outcome: BatchOutcome
) -> ProjectionResult:
    projection = worker.projection
    if not outcome.rebuild:
        result = await projection.apply(city, currency, position, outcome)
        if result is ProjectionResult.FENCED:
            raise Fenced(f"{city} is held under a newer epoch than {worker.handover.epoch}")
        if result is not ProjectionResult.NO_STATE:
            return result
    snapshot = city_snapshot(view, outcome)
    result = await projection.replace(city, currency, position, snapshot, outcome.audit)
    if result is ProjectionResult.FENCED:
        raise Fenced(f"{city} is held under a newer epoch than {worker.handover.epoch}")
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
