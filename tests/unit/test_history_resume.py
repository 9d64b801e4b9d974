"""Resuming a menu stream from Last-Event-ID: exactly the entries after it when the feed still holds them,
otherwise None (the client gets a fresh snapshot), never a history with a hole in it or one across a rebuild."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any, cast

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from api import menu_views, order_views
from api.feed import Delivery, FeedHub, Subscriber
from api.gzip_stream import GzipFraming
from api.keys import FEEDS, MENUS, ORDER_FEEDS, REDIS, SETTINGS, STREAMS, OpenStreams
from api.order_feed import OrderFeedHub
from api.readmodel import FeedEntry, MenuReader
from core.redis_keys import city_keys, order_keys
from core.settings import Settings
from core.tokens import Role, issue_token
from ops.sse_client import EventStreamParser
from tests.support.fakes import FakeRedis, FeedProjection

NAMESPACE = "unit"
CITY = "blr"
LIMIT = 100


def reader_and_projection(maxlen: int = 1000) -> tuple[MenuReader, FeedProjection]:
    redis = FakeRedis()
    return MenuReader(cast(Any, redis), NAMESPACE), FeedProjection(redis, city_keys(NAMESPACE, CITY), maxlen)


def ids(history: list[FeedEntry] | None) -> list[str] | None:
    return None if history is None else [entry.id for entry in history]


async def test_a_client_gets_exactly_the_entries_after_its_last_event_id() -> None:
    reader, projection = reader_and_projection()
    first = projection.apply(["item_upserted", "item_price_changed"])
    second = projection.apply(["item_price_changed"])

    assert ids(await reader.history_after(CITY, first[0], LIMIT)) == [first[1], *second]
    assert ids(await reader.history_after(CITY, first[1], LIMIT)) == second


async def test_a_client_that_is_caught_up_gets_an_empty_history() -> None:
    reader, projection = reader_and_projection()
    newest = projection.apply(["item_upserted"])[-1]

    assert await reader.history_after(CITY, newest, LIMIT) == []


async def test_a_client_whose_next_entry_was_trimmed_gets_a_snapshot() -> None:
    reader, projection = reader_and_projection(maxlen=2)
    oldest = projection.apply(["item_upserted"])[0]
    for _ in range(3):
        projection.apply(["item_upserted"])

    assert await reader.history_after(CITY, oldest, LIMIT) is None


async def test_a_client_whose_own_entry_was_trimmed_still_resumes_from_the_next_one() -> None:
    reader, projection = reader_and_projection(maxlen=2)
    oldest = projection.apply(["item_upserted"])[0]
    missed = projection.apply(["item_upserted"]) + projection.apply(["item_upserted"])

    assert ids(await reader.history_after(CITY, oldest, LIMIT)) == missed  # the next entry names it as prev


async def test_an_id_the_feed_never_had_means_a_snapshot() -> None:
    reader, projection = reader_and_projection()
    projection.apply(["item_upserted", "item_upserted"])  # 2-0, 2-1
    projection.apply(["item_upserted"])  # 3-0

    assert await reader.history_after(CITY, "2-7", LIMIT) is None  # between two real ids
    assert await reader.history_after(CITY, "99-0", LIMIT) is None  # from the future (another Redis, or a rebuild)
    assert await reader.history_after(CITY, "1-0", LIMIT) is None  # before the first entry


async def test_a_malformed_id_or_the_empty_cursor_means_a_snapshot() -> None:
    reader, projection = reader_and_projection()
    projection.apply(["item_upserted"])

    for last_id in ("0-0", "abc", "2-", "-1", "2-0-0", ""):
        assert await reader.history_after(CITY, last_id, LIMIT) is None, last_id


async def test_more_history_than_the_limit_means_a_snapshot() -> None:
    reader, projection = reader_and_projection()
    start = projection.apply(["item_upserted"])[0]
    projection.apply(["item_upserted"] * 3)

    assert await reader.history_after(CITY, start, 2) is None
    assert len(await reader.history_after(CITY, start, 3) or []) == 3


async def test_a_client_from_before_a_rebuild_gets_a_snapshot() -> None:
    reader, projection = reader_and_projection()
    before = projection.apply(["item_upserted"])[0]
    projection.rebuild()
    projection.apply(["item_upserted"])

    assert await reader.history_after(CITY, before, LIMIT) is None


async def test_a_client_that_saw_the_rebuild_resumes_after_it() -> None:
    reader, projection = reader_and_projection()
    projection.apply(["item_upserted"])
    snapshot = projection.rebuild()[0]
    after = projection.apply(["item_price_changed"])

    assert ids(await reader.history_after(CITY, snapshot, LIMIT)) == after


async def test_a_snapshot_marker_in_the_history_means_a_snapshot() -> None:
    """The projection deletes the feed when it writes a snapshot marker, so this takes a feed written otherwise."""
    reader, projection = reader_and_projection()
    projection.redis.xadd(projection.keys.feed, "2-0", {"type": "item_upserted", "data": "{}", "prev": ""})
    projection.redis.xadd(projection.keys.feed, "3-0", {"type": "snapshot", "data": "{}", "prev": "2-0"})
    projection.redis.hset(projection.keys.meta, {"cursor": "3-0"})

    assert await reader.history_after(CITY, "2-0", LIMIT) is None


Step = tuple[str, int]  # ("apply", number of messages) or ("rebuild", 0)

steps = st.lists(
    st.one_of(st.tuples(st.just("apply"), st.integers(min_value=1, max_value=4)), st.just(("rebuild", 0))),
    min_size=1,
    max_size=25,
)


any_ids = st.lists(st.builds("{}-{}".format, st.integers(min_value=0, max_value=30), st.integers(0, 5)), max_size=5)


@given(
    script=steps,
    maxlen=st.integers(min_value=1, max_value=12),
    limit=st.integers(min_value=1, max_value=12),
    other_ids=any_ids,
)
async def test_a_resume_is_exact_or_a_snapshot_and_a_snapshot_only_when_history_is_gone(
    script: list[Step], maxlen: int, limit: int, other_ids: list[str]
) -> None:
    reader, projection = reader_and_projection(maxlen)
    since_rebuild: list[str] = []  # every id written since the last rebuild, trimmed or not
    before_rebuild: list[str] = []
    for kind, count in script:
        if kind == "rebuild":
            before_rebuild += since_rebuild
            since_rebuild = projection.rebuild()
        else:
            since_rebuild += projection.apply(["item_price_changed"] * count)
    retained = [entry_id.decode() for entry_id, _ in projection.redis.streams[projection.keys.feed]]

    never_written = ["1-9", f"{projection.position + 1}-7", f"{projection.position + 5}-0"]
    for last_id in before_rebuild + since_rebuild + never_written + other_ids:
        history = ids(await reader.history_after(CITY, last_id, limit))
        missed = since_rebuild[since_rebuild.index(last_id) + 1 :] if last_id in since_rebuild else None
        if history is not None:
            assert history == missed, f"resuming after {last_id}: {history}, missed {missed}"
        elif (last_id in retained or (missed and missed[0] in retained)) and len(missed or []) <= limit:
            raise AssertionError(f"a snapshot after {last_id}, though the feed holds all it missed: {missed}")


# ---- the resume, through the menu stream view ----


@dataclass(eq=False)
class WatchedSubscriber(Subscriber):
    live: asyncio.Event = field(default_factory=asyncio.Event)

    def go_live(self, transport: asyncio.WriteTransport, chunked: bool, gzip: GzipFraming | None = None) -> None:
        super().go_live(transport, chunked, gzip)
        self.live.set()


class DrivenFeeds:
    """Stands in for the pod's FeedHub: the test plays its reader and delivers to each subscriber itself."""

    def __init__(self, max_pending_bytes: int = 1_000_000) -> None:
        self.max_pending_bytes = max_pending_bytes
        self.subscribers: list[WatchedSubscriber] = []
        self.subscribed = asyncio.Event()

    def city(self, code: str) -> "DrivenFeeds":
        return self

    @asynccontextmanager
    async def subscribe(self, *order_id: str) -> AsyncIterator[Subscriber]:
        subscriber = WatchedSubscriber(self.max_pending_bytes)
        self.subscribers.append(subscriber)
        self.subscribed.set()
        yield subscriber

    async def live_subscriber(self) -> Subscriber:
        async with asyncio.timeout(5):
            await self.subscribed.wait()
            await self.subscribers[-1].live.wait()
        return self.subscribers[-1]


async def read_event_ids(response: aiohttp.ClientResponse, until: str) -> list[str]:
    parser = EventStreamParser()
    received: list[str] = []
    async with asyncio.timeout(5):
        while until not in received:
            received += [event.id for event in parser.feed(await response.content.readany()) if event.id]
    return received


def menu_stream_app(redis: FakeRedis, feeds: DrivenFeeds) -> web.Application:
    app = web.Application()
    app[SETTINGS] = Settings()
    app[MENUS] = MenuReader(cast(Any, redis), NAMESPACE)
    app[FEEDS] = cast(FeedHub, feeds)
    app[STREAMS] = OpenStreams()
    app.router.add_get("/v1/cities/{city}/menu/stream", menu_views.menu_stream)
    return app


async def test_a_caught_up_client_is_not_sent_again_what_a_lagging_feed_reader_delivers_late() -> None:
    """The client saw up to 3-0 (from another pod, say); this pod's feed reader has not got that far yet."""
    redis = FakeRedis()
    projection = FeedProjection(redis, city_keys(NAMESPACE, CITY), maxlen=100)
    seen = projection.apply(["item_upserted"]) + projection.apply(["item_price_changed"])
    feeds = DrivenFeeds()
    app = menu_stream_app(redis, feeds)

    async with TestServer(app) as server, aiohttp.ClientSession() as session:
        url = server.make_url(f"/v1/cities/{CITY}/menu/stream")
        async with session.get(url, headers={"Last-Event-ID": seen[-1]}) as response:
            subscriber = await feeds.live_subscriber()
            late = projection.apply(["item_price_changed"])
            for entry_id in (*seen, *late):  # the reader catching up, one read at a time
                subscriber.deliver(Delivery([FeedEntry(entry_id, "item_price_changed", "{}")]))

            received = await read_event_ids(response, until=late[-1])

    assert received == late


async def test_a_client_cut_loose_for_falling_behind_is_counted_and_told_to_reconnect() -> None:
    redis = FakeRedis()
    projection = FeedProjection(redis, city_keys(NAMESPACE, CITY), maxlen=100)
    seen = projection.apply(["item_upserted"])
    feeds = DrivenFeeds(max_pending_bytes=-1)  # any unsent bytes, none at all too, pass this bound
    app = menu_stream_app(redis, feeds)

    def slow_clients() -> float:
        return REGISTRY.get_sample_value("feastflow_api_sse_slow_clients_total", {"kind": "menu"}) or 0.0

    before = slow_clients()

    async with TestServer(app) as server, aiohttp.ClientSession() as session:
        url = server.make_url(f"/v1/cities/{CITY}/menu/stream")
        async with session.get(url, headers={"Last-Event-ID": seen[-1]}) as response:
            subscriber = await feeds.live_subscriber()
            later = projection.apply(["item_price_changed"])
            subscriber.deliver(Delivery([FeedEntry(later[0], "item_price_changed", "{}")]))

            async with asyncio.timeout(5):
                received = (await response.content.read()).decode()

    assert subscriber.overflowed
    assert received.splitlines()[:2] == [f"id: {later[0]}", "event: item_price_changed"]
    assert "event: reconnect" in received.splitlines()
    assert slow_clients() == before + 1


async def test_a_caught_up_order_client_is_not_sent_again_what_a_lagging_reader_delivers_late() -> None:
    secret = "s" * 48
    redis = FakeRedis()
    order_id = "ord1"
    keys = order_keys(NAMESPACE, order_id)
    redis.hset(keys.order, {"doc": "{}", "customer": "c1", "restaurant_id": "r1", "city": CITY, "status": "accepted"})
    seen = ["1-0", "2-0"]  # the order's status events, ids '<version>-0'
    for entry_id in seen:
        redis.xadd(keys.feed, entry_id, {"type": "status", "data": "{}"})
    feeds = DrivenFeeds()
    app = web.Application()
    app[SETTINGS] = replace(Settings(), namespace=NAMESPACE, jwt_secret=secret)
    app[REDIS] = cast(Any, redis)
    app[ORDER_FEEDS] = cast(OrderFeedHub, feeds)
    app[STREAMS] = OpenStreams()
    app.router.add_get("/v1/orders/{order_id}/stream", order_views.order_stream)
    headers = {"Last-Event-ID": seen[-1], "Authorization": f"Bearer {issue_token(secret, Role.CUSTOMER, 'c1')}"}

    async with TestServer(app) as server, aiohttp.ClientSession() as session:
        url = server.make_url(f"/v1/orders/{order_id}/stream")
        async with session.get(url, headers=headers) as response:
            assert response.status == 200
            subscriber = await feeds.live_subscriber()
            for entry_id in (*seen, "3-0"):  # the pod's reader of every order's events, behind this client
                subscriber.deliver(Delivery([FeedEntry(entry_id, "status", "{}")]))

            received = await read_event_ids(response, until="3-0")

    assert received == ["3-0"]
