"""gzip streams built from pieces compressed once for every client: any clients' pieces, in any order, make a
valid gzip stream that ends with a correct trailer; a live subscriber's shared pieces and its own writes mix."""

import asyncio
import gzip
import zlib
from typing import cast

import pytest
from aiohttp.test_utils import make_mocked_request
from hypothesis import given
from hypothesis import strategies as st

from api.conditional import accepts_gzip
from api.feed import Delivery, Subscriber
from api.gzip_stream import GZIP_HEADER, GzipFraming, deflate_piece
from api.readmodel import FeedEntry
from tests.support.fakes import RecordingTransport


@given(st.lists(st.binary(max_size=3000), max_size=8))
def test_pieces_compressed_alone_make_one_gzip_stream_in_any_order(pieces: list[bytes]) -> None:
    framing = GzipFraming()
    shared = {piece: deflate_piece(piece) for piece in pieces}  # as if made once for many clients
    wire = GZIP_HEADER + b"".join(framing.piece(piece, shared[piece]) for piece in pieces)

    assert zlib.decompressobj(31).decompress(wire) == b"".join(pieces)  # readable as it arrives, no trailer yet
    assert gzip.decompress(wire + framing.end()) == b"".join(pieces)  # the trailer's CRC and length hold


def test_a_gzip_subscriber_gets_the_shared_compressed_bytes_and_its_stream_stays_whole() -> None:
    framing = GzipFraming()
    transport = RecordingTransport()
    subscriber = Subscriber(1_000_000)
    first = [FeedEntry("5-0", "item", '{"id":"a"}')]
    wire = GZIP_HEADER + framing.piece(first[0].frame, first[0].deflated_frame)  # the stream's first data
    subscriber.last_order = first[0].order
    subscriber.go_live(cast(asyncio.WriteTransport, transport), chunked=False, gzip=framing)

    shared = Delivery([FeedEntry("6-0", "item", '{"id":"b"}')])
    subscriber.deliver(shared)
    # A batch that straddles what it has: only the new entry, compressed for this client alone.
    subscriber.deliver(Delivery([FeedEntry("6-0", "item", '{"id":"b"}'), FeedEntry("7-0", "item", '{"id":"c"}')]))

    assert transport.writes[0] is shared.piece.deflated  # the very bytes every gzip client gets
    frames = b"".join(e.frame for e in [*first, *shared.entries, FeedEntry("7-0", "item", '{"id":"c"}')])
    assert gzip.decompress(wire + transport.written + framing.end()) == frames


@pytest.mark.parametrize(
    ("header", "accepted"),
    [
        ("gzip, deflate, br", True),
        ("br;q=1.0, gzip;q=0.8", True),
        ("*", True),
        ("x-gzip", True),
        ("", False),
        ("identity", False),
        ("gzip;q=0", False),
        ("gzip; q=0.000, *", False),
        ("*;q=0", False),
        ("deflate, br", False),
    ],
)
def test_gzip_is_used_only_when_the_client_accepts_it(header: str, accepted: bool) -> None:
    request = make_mocked_request("GET", "/v1/cities/blr/menu/stream", headers={"Accept-Encoding": header})
    assert accepts_gzip(request) is accepted
