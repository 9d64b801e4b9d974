"""One place that turns errors into the contract's error body, and measures every request."""

import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web

from api.errors import ApiError
from api.metrics import LATENCY, REQUESTS
from feastflow.logs import request_id_var

logger = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
}


REQUEST_ID_HEADER = "X-Request-Id"
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def request_id_of(request: web.Request) -> str:
    """The caller's X-Request-Id when it is a sane token, else a fresh one; set by request_id_middleware."""
    return str(request["request_id"])


@web.middleware
async def request_id_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    offered = request.headers.get(REQUEST_ID_HEADER, "")
    request_id = offered if _REQUEST_ID.fullmatch(offered) else uuid.uuid4().hex
    request["request_id"] = request_id
    token = request_id_var.set(request_id)
    try:
        response = await handler(request)
    finally:
        request_id_var.reset(token)
    if not response.prepared:  # streams sent their headers already; they set it themselves
        response.headers[REQUEST_ID_HEADER] = request_id
    return response


def error_response(error: ApiError) -> web.Response:
    return web.Response(
        status=error.status, body=orjson.dumps(error.body()), content_type="application/json", headers=error.headers
    )


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as error:
        return error_response(error)
    except web.HTTPException as http:
        if http.status < 400:
            raise
        code = _HTTP_CODES.get(http.status, "http_error")
        return error_response(_as_api_error(http.status, code, http.reason))
    except Exception:
        logger.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(_as_api_error(500, "internal", "something went wrong on our side"))


def _as_api_error(status: int, code: str, message: str) -> ApiError:
    error = ApiError(message, code=code)
    error.status = status
    return error


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
