"""How API pods serve the pages: security headers, caching that suits a deploy, and nothing beyond the bundle."""

import re

import aiohttp

from api.pages import ASSET_CACHE, CONTENT_SECURITY_POLICY, PAGE_CACHE, ui_bundle
from tests.support.stack import Stack


async def test_pages_are_revalidated_and_carry_a_self_only_content_security_policy(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    for path in ("/app/", "/admin/"):
        async with http.get(f"{stack.api_url()}{path}") as response:
            assert response.status == 200
            assert response.headers["Content-Type"] == "text/html; charset=utf-8"
            assert response.headers["Cache-Control"] == PAGE_CACHE
            assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
            assert response.headers["X-Content-Type-Options"] == "nosniff"
            page = await response.text()
            etag = response.headers["ETag"]
        assets = re.findall(r'(?:src|href)="(/ui/[^"]+)"', page)
        assert assets and all(a.startswith(f"/ui/{ui_bundle().digest}/") for a in assets)
        async with http.get(f"{stack.api_url()}{path}", headers={"If-None-Match": etag}) as response:
            assert response.status == 304
    for path, target in (("/", "/app/"), ("/app", "/app/"), ("/admin", "/admin/")):
        async with http.get(f"{stack.api_url()}{path}", allow_redirects=False) as response:
            assert (response.status, response.headers["Location"]) == (302, target)


async def test_assets_of_this_bundle_are_cached_for_good_and_others_are_not(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    digest = ui_bundle().digest
    async with http.get(f"{stack.api_url()}/ui/{digest}/customer.js") as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/javascript; charset=utf-8"
        assert response.headers["Cache-Control"] == ASSET_CACHE
        assert response.headers["Content-Encoding"] == "gzip"  # aiohttp asked for it; the client unpacked it
        assert "followMenu" in await response.text()
    async with http.get(f"{stack.api_url()}/ui/0123456789abcdef/customer.js") as response:
        assert response.status == 200
        assert response.headers["Cache-Control"] == PAGE_CACHE  # a page of another version: served, not kept
    for name in ("customer.html", "..%2Fpages.py", "nothing.js"):
        async with http.get(f"{stack.api_url()}/ui/{digest}/{name}") as response:
            assert response.status == 404
            assert (await response.json())["error"]["code"] == "not_found"
