"""One client of a shared feed: it buffers while its first data is written, goes live without a gap or a
repeat, gets the bytes built once for every client, skips what it already has (also inside a batch that
straddles it), and is cut loose, not waited for, when it falls too far behind."""

import asyncio
import gzip
from typing import Any, cast

from hypothesis import given
from hypothesis import strategies as st

from api.feed import CityFeed, Delivery, Subscriber
from api.gzip_stream import GZIP_HEADER, GzipFraming
from api.readmodel import FeedEntry, MenuReader
from core.redis_keys import city_keys
from ops.sse_client import EventStreamParser
from tests.support.fakes import FakeRedis, FeedProjection, RecordingTransport
from tests.support.polling import poll_until

MAX_PENDING = 10_000


def entries(*ids: str) -> list[FeedEntry]:
    return [FeedEntry(entry_id, "item_price_changed", f'{{"id":"{entry_id}"}}') for entry_id in ids]


def frames(batch: list[FeedEntry]) -> bytes:
    return b"".join(entry.frame for entry in batch)


def as_transport(transport: RecordingTransport) -> asyncio.WriteTransport:
    return cast(asyncio.WriteTransport, transport)


def dechunk(data: bytes) -> bytes:
    """The body of an HTTP/1.1 chunked stream, checking every chunk is well formed."""
    body, rest = b"", data
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line, 16)
        assert rest[size : size + 2] == b"\r\n", "a chunk's length does not match its body"
        body, rest = body + rest[:size], rest[size + 2 :]
    return body


def live_subscriber(has_up_to: str | None = None, chunked: bool = True) -> tuple[Subscriber, RecordingTransport]:
    subscriber = Subscriber(MAX_PENDING)
    if has_up_to is not None:
        subscriber.last_order = FeedEntry(has_up_to, "", "").order
    transport = RecordingTransport()
    subscriber.go_live(as_transport(transport), chunked)
    return subscriber, transport


def test_while_its_first_data_is_written_a_client_buffers_what_the_feed_delivers() -> None:
    subscriber = Subscriber(MAX_PENDING)
    batch = entries("5-0", "5-1")

    subscriber.deliver(Delivery(batch))

    assert subscriber.pending == batch
    assert subscriber.pending_bytes == len(frames(batch))


def test_going_live_writes_only_what_the_first_data_did_not_cover_in_one_write() -> None:
    subscriber = Subscriber(MAX_PENDING)
    subscriber.deliver(Delivery(entries("4-0", "5-0")))
    subscriber.deliver(Delivery(entries("6-0", "6-1")))
    subscriber.last_order = (5, 0)  # the snapshot it was sent is at 5-0
    transport = RecordingTransport()

    subscriber.go_live(as_transport(transport), chunked=True)

    assert transport.writes == [b"%x\r\n%b\r\n" % (len(frames(entries("6-0", "6-1"))), frames(entries("6-0", "6-1")))]
    assert subscriber.last_order == (6, 1)
    assert subscriber.pending == [] and subscriber.pending_bytes == 0


def test_going_live_with_everything_already_covered_writes_nothing() -> None:
    subscriber = Subscriber(MAX_PENDING)
    subscriber.deliver(Delivery(entries("4-0")))
    subscriber.last_order = (7, 0)
    transport = RecordingTransport()

    subscriber.go_live(as_transport(transport), chunked=True)

    assert transport.writes == []
    assert subscriber.last_order == (7, 0)


def test_every_live_client_gets_the_bytes_built_once_for_all() -> None:
    (first, first_transport), (second, second_transport) = live_subscriber("1-0"), live_subscriber("1-0")
    delivery = Delivery(entries("2-0", "3-0"))

    first.deliver(delivery)
    second.deliver(delivery)

    assert first_transport.writes[0] is delivery.piece.chunked_body
    assert second_transport.writes[0] is delivery.piece.chunked_body
    assert dechunk(delivery.piece.chunked_body) == frames(entries("2-0", "3-0"))


def test_a_client_without_chunked_encoding_gets_the_plain_frames() -> None:
    subscriber, transport = live_subscriber("1-0", chunked=False)
    delivery = Delivery(entries("2-0"))

    subscriber.deliver(delivery)

    assert transport.writes == [delivery.piece.body]


def test_a_batch_the_client_already_has_is_not_written_again() -> None:
    subscriber, transport = live_subscriber("9-2")

    subscriber.deliver(Delivery(entries("9-0", "9-1", "9-2")))

    assert transport.writes == []
    assert subscriber.last_order == (9, 2)


def test_a_batch_that_straddles_what_a_client_has_is_written_from_its_first_new_entry() -> None:
    subscriber, transport = live_subscriber("9-1", chunked=False)

    subscriber.deliver(Delivery(entries("9-0", "9-1", "9-2", "10-0")))

    assert transport.written == frames(entries("9-2", "10-0"))
    assert subscriber.last_order == (10, 0)


def test_a_client_that_buffers_past_its_bound_is_cut_loose_and_gets_nothing_more() -> None:
    big = FeedEntry("5-0", "item_price_changed", "x" * MAX_PENDING)
    subscriber = Subscriber(MAX_PENDING)

    subscriber.deliver(Delivery([big]))
    subscriber.deliver(Delivery(entries("6-0")))
    transport = RecordingTransport()
    subscriber.go_live(as_transport(transport), chunked=True)

    assert subscriber.overflowed
    assert subscriber.pending == [] and subscriber.pending_bytes == 0
    assert transport.writes == []


def test_a_live_client_whose_unsent_bytes_pass_the_bound_is_cut_loose_and_its_stream_ended_once() -> None:
    subscriber, transport = live_subscriber("1-0")
    ended: list[str] = []
    subscriber.on_cut_loose = lambda: ended.append("stop")
    subscriber.deliver(Delivery(entries("2-0")))
    assert not subscriber.overflowed

    transport.buffered = MAX_PENDING + 1  # the client stopped reading
    subscriber.deliver(Delivery(entries("3-0")))
    subscriber.deliver(Delivery(entries("4-0")))

    assert subscriber.overflowed and ended == ["stop"]
    assert len(transport.writes) == 2  # 2-0, then 3-0 that found the buffer full; never 4-0


class BrokenTransport(RecordingTransport):
    def write(self, data: bytes) -> None:
        raise ConnectionResetError("the client went away")


def test_one_broken_connection_never_stops_the_broadcast() -> None:
    feed = CityFeed("blr", cast(Any, None), cast(Any, None), MAX_PENDING, coalesce_s=0, ping_s=10)
    broken, healthy = Subscriber(MAX_PENDING), Subscriber(MAX_PENDING)
    broken.go_live(as_transport(BrokenTransport()), chunked=True)
    healthy_transport = RecordingTransport()
    healthy.go_live(as_transport(healthy_transport), chunked=False)
    feed.subscribers.update({broken, healthy})

    feed._deliver(entries("2-0"))

    assert broken.overflowed
    assert healthy_transport.written == frames(entries("2-0"))


def feed_with(*transports: RecordingTransport, coalesce_s: float, ping_s: float = 10) -> CityFeed:
    feed = CityFeed("blr", cast(Any, None), cast(Any, None), MAX_PENDING, coalesce_s=coalesce_s, ping_s=ping_s)
    for transport in transports:
        subscriber = Subscriber(MAX_PENDING)
        subscriber.go_live(as_transport(transport), chunked=True)
        feed.subscribers.add(subscriber)
    return feed


async def test_when_every_client_took_the_last_write_the_next_change_is_read_at_once() -> None:
    feed = feed_with(RecordingTransport(), RecordingTransport(), coalesce_s=3600)
    feed._deliver(entries("2-0"))

    # A timer would hold the feed for an hour here; with nothing unsent it does not wait at all.
    await asyncio.wait_for(feed._settle(), timeout=1)


async def test_while_a_client_still_has_unsent_bytes_the_feed_waits_until_they_are_gone() -> None:
    slow = RecordingTransport()
    feed = feed_with(RecordingTransport(), slow, coalesce_s=3600)
    slow.buffered = 100  # its socket did not take the whole write
    feed._deliver(entries("2-0"))

    settling = asyncio.create_task(feed._settle())
    for _ in range(20):  # the feed looks again every SETTLE_STEP_S and finds the bytes still there
        await asyncio.sleep(0)
    assert not settling.done()

    slow.buffered = 0
    await asyncio.wait_for(settling, timeout=1)
    assert feed.behind == set()


async def test_a_client_that_never_drains_holds_the_feed_back_at_most_coalesce_s() -> None:
    stuck, closed = RecordingTransport(buffered=100), RecordingTransport(buffered=100, closing=True)
    feed = feed_with(stuck, closed, coalesce_s=0.05)
    feed._deliver(entries("2-0"))
    assert len(feed.behind) == 1  # a closing connection is never waited for

    await asyncio.wait_for(feed._settle(), timeout=1)
    assert feed.behind == set()


HEARTBEAT = b": ping\n\n"


async def test_a_quiet_feed_sends_each_live_client_a_heartbeat_plain_or_gzip() -> None:
    plain, zipped = RecordingTransport(), RecordingTransport()
    feed = feed_with(plain, coalesce_s=0, ping_s=0.05)
    framing = GzipFraming()
    gzip_client = Subscriber(MAX_PENDING)
    gzip_client.go_live(as_transport(zipped), chunked=True, gzip=framing)
    starting = Subscriber(MAX_PENDING)  # still writing its first data: no transport yet, nothing to send it
    feed.subscribers.update({gzip_client, starting})

    beating = asyncio.create_task(feed._beat())
    try:
        await poll_until(lambda: len(plain.writes) >= 2 and len(zipped.writes) >= 2, 5, message="no heartbeats")
    finally:
        beating.cancel()

    assert dechunk(plain.written) == HEARTBEAT * len(plain.writes)
    assert gzip.decompress(GZIP_HEADER + dechunk(zipped.written) + framing.end()) == HEARTBEAT * len(zipped.writes)
    assert starting.pending == []


async def test_a_feed_that_delivers_sends_no_heartbeat_between_its_deliveries() -> None:
    transport = RecordingTransport()
    feed = feed_with(transport, coalesce_s=0, ping_s=1.0)
    beating = asyncio.create_task(feed._beat())
    try:
        for n in range(30):  # a change every 0.05 s for 1.5 s: never a second without one
            feed._deliver(entries(f"{n + 2}-0"))
            await asyncio.sleep(0.05)
    finally:
        beating.cancel()

    assert HEARTBEAT not in dechunk(transport.written)
    assert len(transport.writes) == 30


@st.composite
def feed_history(draw: st.DrawFn) -> list[FeedEntry]:
    """A feed as the projection writes it: ids '<position>-<n>', n counting the messages of one batch."""
    positions = draw(st.lists(st.integers(min_value=1, max_value=3), min_size=2, max_size=12))
    ids = [f"{position}-{n}" for position, count in enumerate(positions, start=1) for n in range(count)]
    return entries(*ids)


@given(feed=feed_history(), data=st.data())
def test_a_client_receives_every_entry_after_its_first_data_exactly_once_in_order(
    feed: list[FeedEntry], data: st.DataObject
) -> None:
    """The feed reader reads the stream in batches of any size. A client subscribes before some batch, then
    reads its first data (a snapshot or history) covering the stream up to some entry at or after where its
    subscription starts: the reader may lag behind Redis, so later batches can straddle that entry. It goes
    live after any number of batches."""
    cuts = sorted(data.draw(st.sets(st.integers(min_value=1, max_value=len(feed) - 1)), label="batch ends"))
    batches = [feed[start:end] for start, end in zip([0, *cuts], [*cuts, len(feed)], strict=True)]
    subscribed_at = data.draw(st.integers(min_value=0, max_value=len(batches) - 1), label="subscribed before batch")
    missed = sum(len(batch) for batch in batches[:subscribed_at])
    first_data_up_to = data.draw(st.integers(min_value=max(missed, 1), max_value=len(feed)), label="first data")
    live_at = data.draw(st.integers(min_value=subscribed_at, max_value=len(batches)), label="live before batch")
    chunked = data.draw(st.booleans(), label="chunked")

    subscriber = Subscriber(MAX_PENDING)
    for batch in batches[subscribed_at:live_at]:
        subscriber.deliver(Delivery(batch))
    subscriber.last_order = feed[first_data_up_to - 1].order  # as api.streaming does after writing it
    transport = RecordingTransport()
    subscriber.go_live(as_transport(transport), chunked)
    for batch in batches[live_at:]:
        subscriber.deliver(Delivery(batch))

    received = dechunk(transport.written) if chunked else transport.written
    assert received == frames(feed[first_data_up_to:])
    assert not subscriber.overflowed


def test_a_client_going_live_after_a_rebuild_is_not_sent_what_the_rebuilds_snapshot_covers() -> None:
    """CityFeed._publish gives a rebuild's snapshot the menu's cursor, so the changes after it in the feed can be
    older than the snapshot; a client still buffering must skip them just as a live one does."""
    subscriber = Subscriber(MAX_PENDING)
    subscriber.deliver(Delivery(entries("9-0")))  # the snapshot, at the menu's cursor
    subscriber.deliver(Delivery(entries("8-0", "9-0")))  # changes the snapshot already includes
    subscriber.last_order = (5, 0)
    transport = RecordingTransport()

    subscriber.go_live(as_transport(transport), chunked=False)

    assert transport.written == frames(entries("9-0"))
    assert subscriber.last_order == (9, 0)


@given(feed=feed_history(), data=st.data())
def test_whenever_a_client_goes_live_it_gets_each_entry_newer_than_what_it_has_once_in_order(
    feed: list[FeedEntry], data: st.DataObject
) -> None:
    """Deliveries out of order too: a batch may start again at an entry already delivered (a reader behind the
    client) or jump ahead of entries delivered later (a rebuild's snapshot at the menu's cursor). Whatever the
    order, and whether a delivery reaches the client while it buffers or once it is live, the client gets each
    entry newer than everything it has, once, in order."""
    spans = st.lists(st.integers(min_value=0, max_value=len(feed)), min_size=2, max_size=2, unique=True).map(sorted)
    batches = [feed[start:end] for start, end in data.draw(st.lists(spans, min_size=1, max_size=8), label="batches")]
    first_data_up_to = data.draw(st.integers(min_value=0, max_value=len(feed)), label="first data")
    live_at = data.draw(st.integers(min_value=0, max_value=len(batches)), label="live before batch")

    subscriber = Subscriber(MAX_PENDING)
    for batch in batches[:live_at]:
        subscriber.deliver(Delivery(batch))
    has = feed[first_data_up_to - 1].order if first_data_up_to else (-1, -1)
    subscriber.last_order = has
    transport = RecordingTransport()
    subscriber.go_live(as_transport(transport), chunked=False)
    for batch in batches[live_at:]:
        subscriber.deliver(Delivery(batch))

    newer: list[FeedEntry] = []
    for entry in (entry for batch in batches for entry in batch):
        if entry.order > (newer[-1].order if newer else has):
            newer.append(entry)
    assert transport.written == frames(newer)


@given(sizes=st.lists(st.integers(min_value=1, max_value=MAX_PENDING // 3), max_size=12))
def test_a_client_buffers_no_more_than_its_bound_and_is_cut_loose_once_past_it(sizes: list[int]) -> None:
    subscriber = Subscriber(MAX_PENDING)
    delivered = 0
    for n, size in enumerate(sizes, start=1):
        delivery = Delivery([FeedEntry(f"{n}-0", "item_price_changed", "x" * size)])
        subscriber.deliver(delivery)
        delivered += len(delivery.piece.body)

        assert subscriber.pending_bytes <= MAX_PENDING
        assert subscriber.overflowed == (delivered > MAX_PENDING)
    transport = RecordingTransport()
    subscriber.go_live(as_transport(transport), chunked=False)

    assert (transport.written == b"") == (subscriber.overflowed or not sizes)


class SlowReader(RecordingTransport):
    """A transport whose unsent bytes grow with each write, as a real one's do while its client does not read."""

    def write(self, data: bytes) -> None:
        super().write(data)
        self.buffered += len(data)


@given(
    traffic=st.lists(
        st.tuples(
            st.integers(min_value=1, max_value=MAX_PENDING // 2), st.integers(min_value=0, max_value=MAX_PENDING)
        ),
        max_size=20,
    )
)
def test_a_live_client_that_stops_reading_is_cut_loose_and_its_unsent_bytes_stay_bounded(
    traffic: list[tuple[int, int]],
) -> None:
    """Each step the feed delivers a batch of some size, then the client reads some of what waits for it."""
    subscriber, transport = Subscriber(MAX_PENDING), SlowReader()
    subscriber.go_live(as_transport(transport), chunked=False)
    largest_write = 0
    for n, (size, read) in enumerate(traffic, start=1):
        writes_before, was_cut_loose = len(transport.writes), subscriber.overflowed
        subscriber.deliver(Delivery([FeedEntry(f"{n}-0", "item_price_changed", "x" * size)]))
        largest_write = max([largest_write, *map(len, transport.writes[writes_before:])])

        assert not (was_cut_loose and len(transport.writes) > writes_before), "written to after being cut loose"
        assert subscriber.overflowed == (transport.buffered > MAX_PENDING or was_cut_loose)
        assert transport.buffered <= MAX_PENDING + largest_write
        if not subscriber.overflowed:
            transport.buffered -= min(read, transport.buffered)


def events_in(written: bytes) -> list[tuple[str | None, str]]:
    """(id, event type) of each SSE frame, in order, as a client reads them."""
    return [(event.id, event.type) for event in EventStreamParser().feed(written)]


async def test_a_rebuild_in_the_feed_starts_every_client_over_from_a_snapshot_that_covers_what_follows() -> None:
    redis = FakeRedis()
    keys = city_keys("unit", "blr")
    projection = FeedProjection(redis, keys, maxlen=100)
    first = projection.apply(["item_upserted"])
    change = projection.apply(["item_price_changed"])
    rebuilt = projection.rebuild()
    after = projection.apply(["item_price_changed"])  # applied before the pod's reader reaches the rebuild
    feed = CityFeed("blr", cast(Any, redis), MenuReader(cast(Any, redis), "unit"), MAX_PENDING, coalesce_s=0, ping_s=10)
    subscriber, transport = live_subscriber(first[-1], chunked=False)
    feed.subscribers.add(subscriber)

    read = await redis.xrange(keys.feed, min="-", max="+")
    # The reader had read `change` before the rebuild replaced the stream, then reads on: the rebuild, `after`.
    already_read = [
        (entry.id.encode(), {b"type": entry.type.encode(), b"data": entry.data.encode()}) for entry in entries(*change)
    ]
    await feed._publish([*already_read, *read])

    assert rebuilt[0] in [entry_id.decode() for entry_id, _ in read]
    # The snapshot carries the menu's cursor (the newest change it includes), so that change is not sent again.
    assert events_in(transport.written) == [(change[0], "item_price_changed"), (after[0], "snapshot")]


def test_delivering_says_whether_the_clients_socket_left_bytes_waiting() -> None:
    subscriber, transport = live_subscriber()
    assert subscriber.deliver(Delivery(entries("1-0"))) is False  # the socket took it all

    transport.buffered = 10
    assert subscriber.deliver(Delivery(entries("2-0"))) is True
    assert subscriber.deliver(Delivery(entries("2-0"))) is True  # nothing new for it, still waiting

    transport.closing = True
    assert subscriber.deliver(Delivery(entries("3-0"))) is False  # a closing connection is not waited for
