"""Answers for bodies encoded once and served many times: a 304 when the client has this version (its
`If-None-Match` names the ETag), the gzipped bytes when it accepts gzip, the plain bytes otherwise."""

from collections.abc import Callable, Mapping

from aiohttp import web


def accepts_gzip(request: web.Request) -> bool:
    """Whether the client's Accept-Encoding takes gzip: named (or `*`) and not refused with `q=0`."""
    offered: dict[str, bool] = {}
    for item in request.headers.get("Accept-Encoding", "").split(","):
        coding, *params = (part.strip() for part in item.split(";"))
        refused = any(param.replace(" ", "") in {"q=0", "q=0.0", "q=0.00", "q=0.000"} for param in params)
        if coding:
            offered[coding.lower()] = not refused
    return offered.get("gzip", offered.get("x-gzip", offered.get("*", False)))


def encoded_response(
    request: web.Request,
    etag: str,
    body: bytes,
    gzipped: Callable[[], bytes],
    content_type: str,
    headers: Mapping[str, str],
) -> web.Response:
    """`gzipped` is called only for a client that accepts gzip (the caller caches what it returns)."""
    sent = {**headers, "ETag": etag, "Vary": "Accept-Encoding"}
    if etag in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers=sent)
    if accepts_gzip(request):
        body = gzipped()
        sent["Content-Encoding"] = "gzip"
    return web.Response(body=body, headers={**sent, "Content-Type": content_type})
