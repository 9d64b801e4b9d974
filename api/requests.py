"""Reading request bodies the same way everywhere: JSON only (415 otherwise), size-limited, parsed or a 400,
then read against the declared contract or a 422 naming the field."""

from collections.abc import Callable
from typing import Any, TypeVar

import orjson
from aiohttp import web

from api.errors import ApiError, BadRequest, PayloadTooLarge, Unprocessable
from models.errors import InvalidEvent

T = TypeVar("T")


class UnsupportedMediaType(ApiError):
    status, code = 415, "unsupported_media_type"


def _require_json(request: web.Request) -> None:
    """JSON is UTF-8 by definition (RFC 8259): a charset parameter is allowed only when it says so."""
    if request.content_type != "application/json":
        raise UnsupportedMediaType("send the body as application/json (set the Content-Type header)")
    charset = request.charset
    if charset is not None and charset.lower() not in ("utf-8", "utf8"):
        raise UnsupportedMediaType(f"send JSON as UTF-8, not {charset}")


async def read_json(request: web.Request) -> Any:
    _require_json(request)
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise PayloadTooLarge(f"the body is larger than {request.app._client_max_size} bytes") from None
    if not raw:
        raise BadRequest("the request needs a JSON body")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from None


async def read_input(request: web.Request, parse: Callable[[Any], T]) -> T:
    """The body, read by one of the contract's parsers; what breaks the contract is a 422 naming the field."""
    body = await read_json(request)
    try:
        return parse(body)
    except InvalidEvent as exc:
        raise as_unprocessable(exc) from None


def as_unprocessable(exc: InvalidEvent) -> Unprocessable:
    return Unprocessable(exc.message, field=exc.field, code=exc.code)
