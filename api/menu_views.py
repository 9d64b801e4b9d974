"""Customer reads: cities, a city's menu, and the live menu stream (SSE)."""

import logging

import orjson
from aiohttp import web

from api.conditional import encoded_response
from api.errors import NotFound
from api.keys import FEEDS, MENUS, SETTINGS
from api.metrics import SSE_RESUMES
from api.readmodel import stream_order
from api.streaming import stream_to_client
from models.cities import City

logger = logging.getLogger(__name__)

HISTORY_LIMIT = 10_000
# A browser revalidates on every use (a 304 and no body when it holds the current version); a shared cache (the
# gateway, a CDN) may answer from a copy up to a second old. The body's cursor says how far it reaches: the stream
# opened from it sends everything after, so a customer never misses a change whichever copy it was given.
MENU_CACHE_CONTROL = "public, max-age=0, s-maxage=1"


def _city(request: web.Request) -> City:
    code = request.match_info["city"]
    city = request.app[SETTINGS].city(code)
    if city is None:
        raise NotFound(f"no city {code!r}", code="unknown_city")
    return city


async def list_cities(request: web.Request) -> web.Response:
    cities = [c.as_json() for c in request.app[SETTINGS].cities]
    return web.Response(body=orjson.dumps(cities), content_type="application/json")


async def get_menu(request: web.Request) -> web.Response:
    city = _city(request)
    menu = await request.app[MENUS].menu(city.code)
    headers = {"Cache-Control": MENU_CACHE_CONTROL}
    return encoded_response(request, menu.etag, menu.body, lambda: menu.gzipped, "application/json", headers)


async def get_pricing(request: web.Request) -> web.Response:
    city = _city(request)
    pricing = await request.app[MENUS].pricing(city.code) or {"rule": None, "active": False, "version": 0}
    return web.Response(body=orjson.dumps({"city": city.code, **pricing}), content_type="application/json")


async def menu_stream(request: web.Request) -> web.StreamResponse:
    city = _city(request)
    app = request.app
    last_event_id = request.headers.get("Last-Event-ID") or request.query.get("last_event_id")
    menus = app[MENUS]
    feed = app[FEEDS].city(city.code)
    async with feed.subscribe() as subscriber:
        # Subscribed first, read second: anything newer than what we read is already buffered for us.
        history = None
        if last_event_id:
            history = await menus.history_after(city.code, last_event_id, HISTORY_LIMIT)
            if history is not None:
                # The client has everything up to its id; a feed reader behind it must not send that again.
                subscriber.last_order = stream_order(last_event_id)
        # A menu in memory that covers where the feed is needs no Redis round trip: a storm costs Redis nothing.
        initial = history if history is not None else [(await menus.menu(city.code, covering=feed.position)).snapshot]
        SSE_RESUMES.labels(kind="menu", outcome="snapshot" if history is None else "history").inc()
        return await stream_to_client(request, subscriber, initial, kind="menu", feed_beats=True)
