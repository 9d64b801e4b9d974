"""Reading the menu read model from Redis: whole menus for snapshots, feed history for resumes."""

import asyncio
import gzip
import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import orjson
from redis.asyncio import Redis

from api.gzip_stream import deflate_piece
from api.sse import encode_frame, parse_last_event_id
from core.redis_keys import CityKeys, city_keys

NO_CURSOR = "0-0"


@dataclass(frozen=True)
class FeedEntry:
    """One SSE event, framed once: the same bytes go to every client of the city."""

    id: str
    type: str
    data: str

    @cached_property
    def order(self) -> tuple[int, int]:
        return stream_order(self.id)

    @cached_property
    def frame(self) -> bytes:
        return encode_frame(self.id, self.type, self.data)

    @cached_property
    def deflated_frame(self) -> bytes:
        """The frame as a piece of a gzip stream (api.gzip_stream), compressed once for every client."""
        return deflate_piece(self.frame)


def stream_order(entry_id: str) -> tuple[int, int]:
    high, _, low = entry_id.partition("-")
    return int(high), int(low or 0)


def valid_entry_id(entry_id: str) -> bool:
    return parse_last_event_id(entry_id) is not None


@dataclass(frozen=True)
class Menu:
    """A city's menu as of `cursor`, encoded once: every request and snapshot until the next change shares it."""

    cursor: str
    body: bytes

    @property
    def etag(self) -> str:
        return f'"{self.cursor}"'

    @cached_property
    def snapshot(self) -> "FeedEntry":
        """The SSE `snapshot` event of this menu, framed once for every client that starts from it (a storm of
        reconnecting clients would otherwise frame the same ~80 KB once each)."""
        return FeedEntry(self.cursor, "snapshot", self.body.decode())

    @cached_property
    def gzipped(self) -> bytes:
        return gzip.compress(self.body, compresslevel=6, mtime=0)


class MenuReader:
    def __init__(self, redis: Redis, namespace: str) -> None:
        self._redis = redis
        self._namespace = namespace
        self._cache: dict[str, Menu] = {}
        self._loading: dict[str, tuple[float, asyncio.Future[Menu]]] = {}

    def keys(self, city: str) -> CityKeys:
        return city_keys(self._namespace, city)

    async def cursor(self, city: str) -> str:
        raw = await self._redis.hget(self.keys(city).meta, "cursor")
        return as_text(raw) or NO_CURSOR

    async def menu(self, city: str, covering: tuple[int, int] | None = None) -> Menu:
        """The whole menu with the cursor it reflects, read in one transaction so the two agree.

        Served from memory while the cursor has not moved; concurrent misses for a city share one read,
        but only a read that began after this call did: an SSE client subscribes before asking, and a read
        begun earlier could miss a change its subscription did not see either.

        `covering`, from an SSE client's feed: the newest change the feed handed out before the client
        subscribed. A menu in memory that already reflects it is all that client needs (every later change
        reaches it through the feed), so a storm of clients joining the feed costs Redis nothing.
        """
        asked_at = time.monotonic()
        cached = self._cache.get(city)
        if cached is not None and covering is not None and stream_order(cached.cursor) >= covering:
            return cached
        if cached is not None and cached.cursor == await self.cursor(city):
            return cached
        while True:
            current = self._loading.get(city)
            if current is None:
                loading: asyncio.Future[Menu] = asyncio.ensure_future(self._load(city))
                self._loading[city] = (time.monotonic(), loading)
                loading.add_done_callback(lambda done: self._forget_load(city, done))
                return await asyncio.shield(loading)
            started_at, loading = current
            if started_at >= asked_at:
                return await asyncio.shield(loading)
            await asyncio.wait([loading])  # too old for us: let it finish, then share the next one

    def _forget_load(self, city: str, done: "asyncio.Future[Menu]") -> None:
        if self._loading.get(city, (0.0, None))[1] is done:
            del self._loading[city]

    async def _load(self, city: str) -> Menu:
        keys = self.keys(city)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(keys.restaurants)
            pipe.hgetall(keys.items)
            pipe.hget(keys.meta, "cursor")
            restaurants, items, cursor = await pipe.execute()
        menu = Menu(
            as_text(cursor) or NO_CURSOR, build_menu_body(city, as_text(cursor) or NO_CURSOR, restaurants, items)
        )
        self._cache[city] = menu
        return menu

    async def pricing(self, city: str) -> dict[str, Any] | None:
        raw = await self._redis.hget(self.keys(city).meta, "pricing")
        return orjson.loads(raw) if raw else None

    async def item(self, city: str, item_id: str) -> dict[str, Any] | None:
        raw = await self._redis.hget(self.keys(city).items, item_id)
        return orjson.loads(raw) if raw else None

    async def restaurant(self, city: str, restaurant_id: str) -> dict[str, Any] | None:
        raw = await self._redis.hget(self.keys(city).restaurants, restaurant_id)
        return orjson.loads(raw) if raw else None

    async def history_after(self, city: str, last_id: str, limit: int) -> list[FeedEntry] | None:
        """Exactly the entries after `last_id`, or None when that position is no longer retained."""
        if not valid_entry_id(last_id) or last_id == NO_CURSOR:
            return None
        keys = self.keys(city)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xrange(keys.feed, min=f"({last_id}", max="+", count=limit + 1)
            pipe.hget(keys.meta, "cursor")
            entries, cursor = await pipe.execute()
        if not entries:
            return [] if as_text(cursor) == last_id else None
        if len(entries) > limit or as_text(entries[0][1].get(b"prev")) != last_id:
            return None
        history = [to_entry(entry_id, fields) for entry_id, fields in entries]
        if any(entry.type == "snapshot" for entry in history):
            return None
        return history


def to_entry(entry_id: bytes | str, fields: Mapping[bytes, bytes]) -> FeedEntry:
    return FeedEntry(as_text(entry_id), as_text(fields.get(b"type")), as_text(fields.get(b"data")))


def build_menu_body(city: str, cursor: str, restaurants: Mapping[bytes, bytes], items: Mapping[bytes, bytes]) -> bytes:
    by_restaurant: dict[str, dict[str, Any]] = {}
    for raw in restaurants.values():
        restaurant = orjson.loads(raw)
        restaurant["items"] = []
        by_restaurant[restaurant["restaurant_id"]] = restaurant
    for raw in items.values():
        item = orjson.loads(raw)
        owner = by_restaurant.get(item["restaurant_id"])
        if owner is not None:
            owner["items"].append(item)
    ordered = sorted(by_restaurant.values(), key=lambda r: r["restaurant_id"])
    for restaurant in ordered:
        restaurant["items"].sort(key=lambda i: i["item_id"])
    return orjson.dumps({"city": city, "cursor": cursor, "restaurants": ordered})


def as_text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else value
