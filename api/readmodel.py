"""Reading the menu read model from Redis: whole menus for snapshots, feed history for resumes."""

import asyncio
import functools
import gzip
import time
from collections.abc import Awaitable, Callable, Hashable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Generic, TypeVar

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


K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


class FreshReads(Generic[K, T]):
    """Concurrent reads of one key share one round trip, but only a read that began after the caller asked.

    An SSE client subscribes to its city's feed before it reads; a read begun before that could miss a change
    its subscription did not see either. A read begun after it can miss nothing, and every client that asked
    before it began shares it: a storm of clients costs a few reads, not one each."""

    def __init__(self) -> None:
        self._reading: dict[K, tuple[float, asyncio.Future[T]]] = {}

    async def read(self, key: K, load: Callable[[], Awaitable[T]]) -> T:
        asked_at = time.monotonic()
        while True:
            current = self._reading.get(key)
            if current is None:
                reading: asyncio.Future[T] = asyncio.ensure_future(load())
                self._reading[key] = (time.monotonic(), reading)
                reading.add_done_callback(functools.partial(self._forget, key))
                return await asyncio.shield(reading)
            started_at, reading = current
            if started_at >= asked_at:
                return await asyncio.shield(reading)
            await asyncio.wait([reading])  # too old for this caller: let it finish, then share the next one

    def _forget(self, key: K, done: "asyncio.Future[T]") -> None:
        if (current := self._reading.get(key)) is not None and current[1] is done:
            del self._reading[key]


class MenuReader:
    def __init__(self, redis: Redis, namespace: str) -> None:
        self._redis = redis
        self._namespace = namespace
        self._cache: dict[str, Menu] = {}
        self._menus: FreshReads[str, Menu] = FreshReads()
        self._cursors: FreshReads[str, str] = FreshReads()
        self._histories: FreshReads[tuple[str, str, int], list[FeedEntry] | None] = FreshReads()

    def keys(self, city: str) -> CityKeys:
        return city_keys(self._namespace, city)

    async def cursor(self, city: str) -> str:
        """Where the city's read model stands. Callers at once share a read (a storm of clients joining while
        changes flow asked Redis once each: an eighth of a pod's work in it)."""
        return await self._cursors.read(city, functools.partial(self._read_cursor, city))

    async def _read_cursor(self, city: str) -> str:
        raw = await self._redis.hget(self.keys(city).meta, "cursor")
        return as_text(raw) or NO_CURSOR

    async def menu(self, city: str, covering: tuple[int, int] | None = None) -> Menu:
        """The whole menu with the cursor it reflects, read in one transaction so the two agree.

        Served from memory while the cursor has not moved; concurrent misses for a city share one read
        (FreshReads: only one begun after this call).

        `covering`, from an SSE client's feed: the newest change the feed handed out before the client
        subscribed. A menu in memory that already reflects it is all that client needs (every later change
        reaches it through the feed), so a storm of clients joining the feed costs Redis nothing.
        """
        cached = self._cache.get(city)
        if cached is not None and covering is not None and stream_order(cached.cursor) >= covering:
            return cached
        if cached is not None and cached.cursor == await self.cursor(city):
            return cached
        return await self._menus.read(city, functools.partial(self._load, city))

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
        """Exactly the entries after `last_id`, or None when that position is no longer retained. Clients
        resuming from one id at once (a drained pod's, all caught up when it closed) share one read
        (FreshReads). The list is shared: read it, never change it."""
        if not valid_entry_id(last_id) or last_id == NO_CURSOR:
            return None
        return await self._histories.read(
            (city, last_id, limit), functools.partial(self._read_history, city, last_id, limit)
        )

    async def _read_history(self, city: str, last_id: str, limit: int) -> list[FeedEntry] | None:
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
