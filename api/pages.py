"""The customer page and the admin dashboard: static files from api/ui, served by every API pod.

Pages are HTML that browsers revalidate on every visit (so a deploy shows at once). Scripts and styles live
under `/ui/<digest>/`, where the digest covers every file of the bundle: a page asks for exactly the bundle
it was built with, so those answers can be cached for good, and a module's relative imports stay inside its
bundle. A request naming another digest (a page from a pod of another version, during a rollout) still gets
this pod's file, but marked not to be cached.
"""

import gzip
import hashlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from aiohttp import web

from api.conditional import encoded_response

UI_DIR = Path(__file__).resolve().parent / "ui"
PAGES = {"customer": "customer.html", "admin": "admin.html"}
_CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
# Only this origin's scripts, styles and connections; no inline code, no framing, no plugins.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
PAGE_CACHE = "no-cache"
ASSET_CACHE = "public, max-age=31536000, immutable"


@dataclass(frozen=True, slots=True)
class UiFile:
    content_type: str
    body: bytes
    gzipped: bytes
    etag: str


@dataclass(frozen=True, slots=True)
class UiBundle:
    digest: str
    assets: dict[str, UiFile]
    pages: dict[str, UiFile]


def _ui_file(name: str, body: bytes) -> UiFile:
    content_type = _CONTENT_TYPES[Path(name).suffix]
    return UiFile(content_type, body, gzip.compress(body, mtime=0), f'"{hashlib.sha256(body).hexdigest()[:20]}"')


@cache
def ui_bundle() -> UiBundle:
    files = {path.name: path.read_bytes() for path in sorted(UI_DIR.iterdir()) if path.suffix in _CONTENT_TYPES}
    assets = {name: body for name, body in files.items() if not name.endswith(".html")}
    digest = hashlib.sha256(b"".join(name.encode() + b"\0" + body for name, body in assets.items())).hexdigest()[:16]
    prefix = f"/ui/{digest}".encode()
    pages = {page: _ui_file(name, files[name].replace(b"@UI@", prefix)) for page, name in PAGES.items()}
    return UiBundle(digest, {name: _ui_file(name, body) for name, body in assets.items()}, pages)


def _respond(request: web.Request, file: UiFile, cache_control: str) -> web.Response:
    headers = {**SECURITY_HEADERS, "Cache-Control": cache_control}
    return encoded_response(request, file.etag, file.body, lambda: file.gzipped, file.content_type, headers)


async def customer_page(request: web.Request) -> web.Response:
    return _respond(request, ui_bundle().pages["customer"], PAGE_CACHE)


async def admin_page(request: web.Request) -> web.Response:
    return _respond(request, ui_bundle().pages["admin"], PAGE_CACHE)


async def to_customer_page(request: web.Request) -> web.Response:
    raise web.HTTPFound("/app/")


async def to_admin_page(request: web.Request) -> web.Response:
    raise web.HTTPFound("/admin/")


async def ui_asset(request: web.Request) -> web.Response:
    bundle = ui_bundle()
    file = bundle.assets.get(request.match_info["name"])
    if file is None:
        raise web.HTTPNotFound()
    current = request.match_info["digest"] == bundle.digest
    return _respond(request, file, ASSET_CACHE if current else PAGE_CACHE)
