"""Orders: place one (idempotently), read it, follow its status live, and advance it (restaurant, admin)."""

import logging
import uuid
from typing import Any, cast

import orjson
from aiohttp import web

from api.auth import Principal, Role, authenticate
from api.errors import Conflict, NotFound, NotReady
from api.keys import ORDER_FEEDS, PG_POOL, PUBLISHER, RATE_LIMITER, REDIS, SETTINGS
from api.metrics import AFTER_PUBLISH_FAILURES
from api.middlewares import request_id_of
from api.readmodel import as_text, stream_order, to_entry
from api.requests import as_unprocessable, read_input
from api.streaming import stream_to_client
from core.orders import load_order
from core.redis_keys import IDEMPOTENCY_TTL_S, ORDER_TTL_S, idempotency_key, order_keys
from models.errors import InvalidEvent
from models.events import utc_now
from models.fields import valid_id
from models.orders import (
    AdvanceOrder,
    OrderRequest,
    OrderStatus,
    PlaceOrder,
    decode_command,
    encode_command,
    may_advance,
    order_id_for,
    parse_order_request,
    parse_status_request,
)
from models.responses import ORDER_ACCEPTED, ORDER_BODY, STATUS_ACCEPTED

logger = logging.getLogger(__name__)

# A position in an order's feed ("<version>-0"): ASCII digits only, and few enough that Redis takes them.

# Shows a just-accepted command as pending until the worker's decision lands (never overwrites it).
_PENDING = r"""
if redis.call('HEXISTS', KEYS[1], 'version') == 1 then return 0 end
redis.call('HSET', KEYS[1], 'doc', ARGV[1], 'customer', ARGV[2], 'restaurant_id', ARGV[3], 'city', ARGV[4],
           'status', 'pending')
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
"""


async def place_order(request: web.Request) -> web.Response:
    app = request.app
    settings = app[SETTINGS]
    customer = authenticate(request, settings.jwt_secret, Role.CUSTOMER)
    await app[RATE_LIMITER].check("orders", customer.subject, settings.order_rate_per_second)
    order = await read_input(request, lambda body: parse_order_request(body, settings.city_codes))
    city = settings.city(order.city)
    assert city is not None  # parse_order_request accepted only served cities
    order_id = order_id_for(customer.subject, order.idempotency_key)
    now = utc_now()
    command = PlaceOrder(
        order_id,
        customer.subject,
        order.city,
        order.restaurant_id,
        order.lines,
        order.idempotency_key,
        now,
        request_id_of(request),
    )
    # Built and checked before anything is claimed or published: the command as the worker will read it,
    # the order as the customer will read it, and the answer.
    try:
        decode_command(encode_command(command))
    except InvalidEvent as exc:
        raise as_unprocessable(exc) from None
    pending = orjson.dumps(ORDER_BODY.validate_python(_pending_document(order_id, order, now, city.currency)))
    accepted = _accepted(order_id, OrderStatus.PENDING)
    redis = app[REDIS]
    claim_key = idempotency_key(settings.namespace, customer.subject, order.idempotency_key)
    claimed = await redis.set(claim_key, f"{order.fingerprint()} {order_id}", nx=True, ex=IDEMPOTENCY_TTL_S)
    if not claimed:
        existing = await redis.get(claim_key)
        if existing is not None and as_text(existing).split(" ")[0] != order.fingerprint():
            raise Conflict(
                "this idempotency_key was used for a different order",
                field="idempotency_key",
                code="idempotency_conflict",
            )
        status = await redis.hget(order_keys(settings.namespace, order_id).order, "status")
        if status is not None and as_text(status) != OrderStatus.PENDING:
            return _accepted(order_id, as_text(status))  # decided long ago: nothing to send again
    try:
        await app[PUBLISHER].publish_order(command)
    except Exception as exc:
        logger.error("publishing order %s failed: %r", order_id, exc, extra={"order_id": order_id})
        if claimed:
            await redis.delete(claim_key)
        raise NotReady(
            "the order log did not acknowledge the order; retry with the same key", code="publish_failed"
        ) from None
    await _show_pending(request, order_id, order, pending, customer.subject)
    return accepted


async def _show_pending(
    request: web.Request, order_id: str, order: OrderRequest, pending: bytes, customer: str
) -> None:
    """Best effort: Kafka has the order, so the answer is 202 whatever happens here (until the worker's
    decision lands, a reader finds the order in neither place and retries)."""
    try:
        await request.app[REDIS].eval(
            _PENDING,
            1,
            order_keys(request.app[SETTINGS].namespace, order_id).order,
            pending,
            customer,
            order.restaurant_id,
            order.city,
            ORDER_TTL_S,
        )
    except Exception as exc:
        AFTER_PUBLISH_FAILURES.labels("order_pending").inc()
        logger.warning("showing order %s as pending failed: %r", order_id, exc, extra={"order_id": order_id})


def _accepted(order_id: str, status: str) -> web.Response:
    body = ORDER_ACCEPTED.validate_python({"order_id": order_id, "status": status})
    return web.Response(status=202, body=orjson.dumps(body), content_type="application/json")


def _pending_document(order_id: str, order: OrderRequest, now: str, currency: str) -> dict[str, Any]:
    return {
        "order_id": order_id,
        "status": "pending",
        "city": order.city,
        "restaurant_id": order.restaurant_id,
        "lines": [line.as_json() for line in order.lines],
        "total_cents": sum(line.price_cents * line.quantity for line in order.lines),
        "currency": currency,
        "created_at": now,
        "updated_at": now,
        "version": 0,
    }


async def _visible_order(request: web.Request, principal: Principal) -> dict[str, Any]:
    """The order's Redis fields if this principal may see it; 404 otherwise (never 403: ids are not leaked)."""
    app = request.app
    order_id = request.match_info["order_id"]
    if not valid_id(order_id):  # never a key or a query built from what the id pattern refuses
        raise NotFound("no such order", code="unknown_order")
    raw = cast(dict[bytes, bytes], await app[REDIS].hgetall(order_keys(app[SETTINGS].namespace, order_id).order))
    fields = {k.decode(): v.decode() for k, v in raw.items()}
    if not fields:
        stored = await load_order(app[PG_POOL], order_id)  # older than Redis keeps orders
        if stored is not None:
            fields = {
                "doc": orjson.dumps(stored.as_json()).decode(),
                "customer": stored.row["customer"],
                "restaurant_id": stored.row["restaurant_id"],
                "city": stored.row["city"],
                "status": stored.row["status"],
            }
    allowed = fields and (
        principal.role is Role.ADMIN
        or (principal.role is Role.CUSTOMER and fields.get("customer") == principal.subject)
        or (principal.role is Role.RESTAURANT and fields.get("restaurant_id") == principal.subject)
    )
    if not allowed:
        raise NotFound("no such order", code="unknown_order")
    return fields


async def get_order(request: web.Request) -> web.Response:
    principal = authenticate(request, request.app[SETTINGS].jwt_secret)
    fields = await _visible_order(request, principal)
    return web.Response(body=fields["doc"].encode(), content_type="application/json")


async def order_stream(request: web.Request) -> web.StreamResponse:
    app = request.app
    principal = authenticate(request, app[SETTINGS].jwt_secret)
    await _visible_order(request, principal)
    order_id = request.match_info["order_id"]
    keys = order_keys(app[SETTINGS].namespace, order_id)
    # Well-formed when present: api.middlewares.resume_id_middleware refused anything else with a 400.
    last_event_id = request.headers.get("Last-Event-ID") or request.query.get("last_event_id")
    async with app[ORDER_FEEDS].subscribe(order_id) as subscriber:
        start = f"({last_event_id}" if last_event_id else "-"
        if last_event_id:  # as for the menu stream: what the client has is never sent again
            subscriber.last_order = stream_order(last_event_id)
        raw = cast(list[Any], await app[REDIS].xrange(keys.feed, min=start, max="+"))
        history = [to_entry(entry_id, fields) for entry_id, fields in raw]
        return await stream_to_client(request, subscriber, history, kind="order")


async def advance_order(request: web.Request) -> web.Response:
    app = request.app
    principal = authenticate(request, app[SETTINGS].jwt_secret, Role.ADMIN, Role.RESTAURANT)
    requested = await read_input(request, parse_status_request)
    fields = await _visible_order(request, principal)
    if not may_advance(fields["status"], requested):
        raise Conflict(
            f"an order that is {fields['status']} cannot become {requested}", field="status", code="invalid_transition"
        )
    command = AdvanceOrder(
        uuid.uuid4().hex,
        request.match_info["order_id"],
        fields["city"],
        requested,
        f"{principal.role.value}:{principal.subject}",
        utc_now(),
    )
    try:
        decode_command(encode_command(command))
    except InvalidEvent as exc:
        raise as_unprocessable(exc) from None
    body = STATUS_ACCEPTED.validate_python(
        {"order_id": command.order_id, "status": requested, "command_id": command.command_id}
    )
    try:
        await app[PUBLISHER].publish_order(command)
    except Exception:
        raise NotReady("the order log did not acknowledge the change; retry", code="publish_failed") from None
    return web.Response(status=202, content_type="application/json", body=orjson.dumps(body))
