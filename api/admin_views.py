"""Admin writes and what became of them: publish events, event status, item history."""

import logging
import uuid
from typing import Any

import orjson
from aiohttp import web

from api.auth import Role, authenticate
from api.errors import Conflict, NotFound, NotReady
from api.keys import MENUS, PG_POOL, PUBLISHER, RATE_LIMITER, REDIS, SETTINGS
from api.metrics import AFTER_PUBLISH_FAILURES
from api.middlewares import request_id_of
from api.readmodel import as_text
from api.requests import as_unprocessable, read_input
from core.audit_trail import applied_history, event_outcome
from core.redis_keys import EVENT_STATUS_TTL_S, event_key
from models.admin_events import AdminEventInput, parse_admin_body
from models.errors import InvalidEvent
from models.events import (
    Event,
    EventBatch,
    EventType,
    ItemAvailabilitySet,
    ItemRemoved,
    ItemUpserted,
    PriceSet,
    RestaurantUpserted,
    decode_batch,
    utc_now,
)
from models.fields import valid_id
from models.responses import EVENTS_ACCEPTED

logger = logging.getLogger(__name__)

ITEM_EVENT_TYPES = (
    EventType.ITEM_UPSERTED.value,
    EventType.ITEM_REMOVED.value,
    EventType.ITEM_AVAILABILITY_SET.value,
    EventType.PRICE_SET.value,
)


async def publish_events(request: web.Request) -> web.Response:
    app = request.app
    settings = app[SETTINGS]
    principal = authenticate(request, settings.jwt_secret, Role.ADMIN)
    await app[RATE_LIMITER].check("admin", principal.subject, settings.admin_rate_per_second)
    inputs = await read_input(request, lambda body: parse_admin_body(body, settings.city_codes))
    await _check_expected_versions(request, inputs)
    now = utc_now()
    request_id = request_id_of(request)
    events = tuple(
        Event(
            event_id=uuid.uuid4().hex,
            type=item.type,
            city=item.city,
            occurred_at=now,
            actor=principal.subject,
            payload=item.payload,
            expected_version=item.expected_version,
            request_id=request_id,
        )
        for item in inputs
    )
    batch = EventBatch(city=events[0].city, events=events, batch_id=uuid.uuid4().hex)
    # Everything is built and checked before Kafka sees it: the record as the worker will read it, and the
    # answer. After the acknowledgement nothing may turn the answer into an error.
    try:
        decode_batch(batch.encode())
    except InvalidEvent as exc:
        raise as_unprocessable(exc) from None
    body = orjson.dumps(
        EVENTS_ACCEPTED.validate_python({"event_ids": [e.event_id for e in events], "batch_id": batch.batch_id})
    )
    try:
        await app[PUBLISHER].publish(batch)
    except Exception as exc:
        logger.error("publishing batch %s failed: %r", batch.batch_id, exc)
        raise NotReady(
            "the event log did not acknowledge the change in time; it may still apply: check before retrying",
            code="publish_failed",
        ) from None
    await _mark_published(request, events, now)
    logger.info(
        "published %d events",
        len(events),
        extra={"batch_id": batch.batch_id, "city": batch.city, "event_ids": [e.event_id for e in events]},
    )
    return web.Response(status=202, body=body, content_type="application/json")


async def _check_expected_versions(request: web.Request, inputs: list[AdminEventInput]) -> None:
    """Refuse early what the worker would refuse anyway; the worker's check is the one that counts."""
    menus = request.app[MENUS]
    for index, item in enumerate(inputs):
        if item.expected_version is None:
            continue
        payload = item.payload
        current: dict[str, Any] | None
        if isinstance(payload, ItemUpserted | ItemRemoved | ItemAvailabilitySet | PriceSet):
            current = await menus.item(item.city, payload.item_id)
        elif isinstance(payload, RestaurantUpserted):
            current = await menus.restaurant(item.city, payload.restaurant_id)
        else:
            current = await menus.pricing(item.city)
        version = int(current["version"]) if current else 0
        if version != item.expected_version:
            field = f"events[{index}].expected_version" if len(inputs) > 1 else "expected_version"
            raise Conflict(
                f"expected version {item.expected_version} but the current version is {version}; reload and retry",
                field=field,
            )


async def _mark_published(request: web.Request, events: tuple[Event, ...], now: str) -> None:
    """Best effort: Kafka has the events, so the answer is 202 whatever happens here (the worker writes the
    status again when it applies them)."""
    redis = request.app[REDIS]
    namespace = request.app[SETTINGS].namespace
    try:
        async with redis.pipeline(transaction=False) as pipe:
            for event in events:
                key = event_key(namespace, event.event_id)
                # HSETNX: the worker may already have written "applied"; never move a status backwards.
                pipe.hsetnx(key, "status", "published")
                pipe.hsetnx(key, "published_at", now)
                pipe.hsetnx(key, "city", event.city)
                pipe.hsetnx(key, "type", event.type.value)
                pipe.expire(key, EVENT_STATUS_TTL_S)
            await pipe.execute()
    except Exception as exc:
        AFTER_PUBLISH_FAILURES.labels("event_status").inc()
        logger.warning("marking %d published events failed: %r", len(events), exc, extra={"city": events[0].city})


async def event_status(request: web.Request) -> web.Response:
    app = request.app
    authenticate(request, app[SETTINGS].jwt_secret, Role.ADMIN)
    event_id = request.match_info["event_id"]
    if not valid_id(event_id):  # never a key or a query built from what the id pattern refuses
        raise NotFound("no such event", code="unknown_event")
    raw = await app[REDIS].hgetall(event_key(app[SETTINGS].namespace, event_id))
    if raw:
        fields = {as_text(k): as_text(v) for k, v in raw.items()}
        body: dict[str, Any] = {"event_id": event_id, "status": fields["status"]}
        for name in ("city", "type", "published_at", "applied_at", "reason"):
            if fields.get(name):
                body[name] = fields[name]
        if fields.get("version"):
            body["version"] = int(fields["version"])
        return web.Response(body=orjson.dumps(body), content_type="application/json")
    row = await event_outcome(app[PG_POOL], event_id)
    if row is None:
        raise NotFound(f"no event {event_id!r}", code="unknown_event")
    return web.Response(body=orjson.dumps(row), content_type="application/json")


async def item_history(request: web.Request) -> web.Response:
    app = request.app
    authenticate(request, app[SETTINGS].jwt_secret, Role.ADMIN)
    city, item_id = request.match_info["city"], request.match_info["item_id"]
    if app[SETTINGS].city(city) is None:
        raise NotFound("no such city", code="unknown_city")
    if not valid_id(item_id):
        raise NotFound("no such item", code="unknown_item")
    history = await applied_history(app[PG_POOL], city, item_id, ITEM_EVENT_TYPES)
    if not history:
        raise NotFound(f"no history for item {item_id!r} in {city}", code="unknown_item")
    return web.Response(
        body=orjson.dumps({"city": city, "item_id": item_id, "history": history}), content_type="application/json"
    )
