"""Reading request bodies the same way everywhere: size-limited, JSON or a 400."""

from typing import Any

import orjson
from aiohttp import web

from api.errors import BadRequest, PayloadTooLarge


async def read_json(request: web.Request) -> Any:
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
