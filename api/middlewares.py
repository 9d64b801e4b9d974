"""One place that turns errors into the contract's error body, and measures every request.

Views keep no try/except ladders for dependencies: an exception saying Redis, PostgreSQL or Kafka is
unreachable becomes a 503 with Retry-After here, whatever the route.
"""

import asyncio
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable

import aiokafka.errors
import orjson
import psycopg2
import redis.exceptions
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from api.errors import ApiError, BadRequest, RequestTimeout
from api.keys import DRAINING, SETTINGS
from api.metrics import DEPENDENCY_ERRORS, LATENCY, REQUESTS
from api.sse import parse_last_event_id
from core.logs import request_id_var

logger = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "payload_too_large",
    414: "uri_too_long",
    415: "unsupported_media_type",
    429: "rate_limited",
    503: "unavailable",
}
DEPENDENCY_RETRY_AFTER_S = 2

# What a dependency outage looks like from here. TimeoutError covers aiopg's operation timeout and any
# asyncio.wait_for around a dependency call; redis' BusyLoadingError is one of its ConnectionErrors.
_OUTAGES: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    psycopg2.OperationalError,
    psycopg2.InterfaceError,
    TimeoutError,
    aiokafka.errors.KafkaConnectionError,
    aiokafka.errors.KafkaTimeoutError,
    aiokafka.errors.NodeNotReadyError,
    aiokafka.errors.ProducerClosed,
)


def dependency_of(exc: BaseException) -> str | None:
    """Which dependency `exc` says is unreachable, or None when it is no outage."""
    if isinstance(exc, redis.exceptions.RedisError):
        return "redis" if isinstance(exc, _OUTAGES) else None
    if isinstance(exc, psycopg2.Error):
        return "postgres" if isinstance(exc, _OUTAGES) else None
    if isinstance(exc, aiokafka.errors.KafkaError):
        retriable = getattr(exc, "retriable", False)
        return "kafka" if retriable or isinstance(exc, _OUTAGES) else None
    return "timeout" if isinstance(exc, TimeoutError) else None


REQUEST_ID_HEADER = "X-Request-Id"
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
REQUEST_ID = web.RequestKey("request_id", str)


def request_id_of(request: web.Request) -> str:
    """The caller's X-Request-Id when it is a sane token, else a fresh one; set by request_id_middleware."""
    return request[REQUEST_ID]


@web.middleware
async def request_id_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    offered = request.headers.get(REQUEST_ID_HEADER, "")
    request_id = offered if _REQUEST_ID.fullmatch(offered) else uuid.uuid4().hex
    request[REQUEST_ID] = request_id
    token = request_id_var.set(request_id)
    try:
        response = await handler(request)
    finally:
        request_id_var.reset(token)
    if not response.prepared:  # streams sent their headers already; they set it themselves
        response.headers[REQUEST_ID_HEADER] = request_id
    return response


@web.middleware
async def close_while_draining_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Once the pod is stopping, every answer says `Connection: close`: the gateway stops reusing a connection to
    this pod after its answer, instead of the pod closing it under a request the gateway is sending (see
    api.server.HardenedServer.shutdown)."""
    response = await handler(request)
    if request.app[DRAINING].is_set() and not response.prepared:
        response.force_close()
    return response


def error_response(error: ApiError, close: bool = False) -> web.Response:
    headers = dict(error.headers)
    if error.status in (429, 503):
        headers.setdefault("Retry-After", str(DEPENDENCY_RETRY_AFTER_S))
    response = web.Response(
        status=error.status, body=orjson.dumps(error.body()), content_type="application/json", headers=headers
    )
    if close or error.status == 408:  # the connection holds what we could not read: never reuse it
        response.force_close()
    return response


def error_body_bytes(status: int, code: str, message: str) -> bytes:
    return orjson.dumps(_as_api_error(status, code, message).body())


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as error:
        return error_response(error)
    except web.HTTPException as http:
        if http.status < 400:
            raise
        answer = _as_api_error(http.status, HTTP_CODES.get(http.status, "http_error"), http.reason)
        # Allow on a 405 comes from the router; content headers are the old body's, not ours.
        answer.headers = {k: v for k, v in http.headers.items() if k.lower() not in ("content-type", "content-length")}
        return error_response(answer)
    except (web.RequestPayloadError, HttpProcessingError, ConnectionResetError):
        # A body aiohttp could not decode (chunking, Content-Length, encoding) or a client gone mid-body.
        return error_response(_as_api_error(400, "bad_request", "the request body could not be read"), close=True)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        dependency = dependency_of(exc)
        if dependency is None:
            logger.exception("unhandled error on %s %s", request.method, request.path)
            return error_response(_as_api_error(500, "internal", "something went wrong on our side"))
        DEPENDENCY_ERRORS.labels(dependency).inc()
        logger.warning("%s unavailable on %s %s: %r", dependency, request.method, request.path, exc)
        outage = _as_api_error(503, "dependency_unavailable", f"{dependency} is unavailable; retry shortly")
        return error_response(outage)


def _as_api_error(status: int, code: str, message: str) -> ApiError:
    error = ApiError(message, code=code)
    error.status = status
    return error


@web.middleware
async def body_timeout_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Read the whole body up front, within a bound: a client that trickles its body loses the connection
    instead of holding it. Views then read the cached body (request.read/json)."""
    if request.can_read_body:
        try:
            await asyncio.wait_for(request.read(), request.app[SETTINGS].body_timeout_s)
        except TimeoutError:
            if request.protocol is not None:
                request.protocol.force_close()
            raise RequestTimeout("the request body took too long to arrive") from None
    return await handler(request)


@web.middleware
async def resume_id_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Streams accept `Last-Event-ID` (header or ?last_event_id=) only in the feed's id form: checked here
    once for every stream, so no view ever hands Redis an id it would refuse."""
    if _is_stream(request):
        for value in (request.headers.get("Last-Event-ID"), request.query.get("last_event_id")):
            if value and parse_last_event_id(value) is None:
                raise BadRequest(
                    "Last-Event-ID must be an event id such as 1712345678901-0",
                    code="invalid_last_event_id",
                    field="Last-Event-ID",
                )
    return await handler(request)


def _is_stream(request: web.Request) -> bool:
    resource = request.match_info.route.resource
    return resource is not None and resource.canonical.endswith("/stream")


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    route = request.match_info.route.resource.canonical if request.match_info.route.resource else "unmatched"
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    finally:
        LATENCY.labels(route, request.method).observe(time.perf_counter() - started)
        REQUESTS.labels(route, request.method, str(status)).inc()
