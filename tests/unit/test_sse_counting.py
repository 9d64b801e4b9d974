"""The SSE client's cheap mode (ops.sse_client.count_events): a bare protocol counts every event of a type once,
however the bytes are split, and gives up on a refused stream or a head that never ends."""

import asyncio
import itertools
from dataclasses import dataclass, field

from hypothesis import given
from hypothesis import strategies as st

from ops.sse_client import CountingStream, stream_request

HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
ITEM = b'id: 5-0\nevent: item\ndata: {"price":1}\n\n'
OTHER = b'id: 4-0\nevent: snapshot\ndata: {"event: item\\u000a":0}\n\n'


@dataclass
class FakeTransport:
    written: list[bytes] = field(default_factory=list)
    closed: bool = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def close(self) -> None:
        self.closed = True


def opened(connected: asyncio.Event) -> tuple[CountingStream, FakeTransport]:
    stream = CountingStream(b"GET /s HTTP/1.1\r\n\r\n", "item", connected)
    transport = FakeTransport()
    stream._transport = transport  # type: ignore[assignment]
    return stream, transport


@given(st.lists(st.integers(min_value=1, max_value=len(HEAD) + 5 * len(ITEM)), max_size=12))
def test_every_item_event_counts_once_wherever_the_reads_split_the_bytes(cuts: list[int]) -> None:
    connected = asyncio.Event()
    stream, _ = opened(connected)
    body = HEAD + b"40\r\n" + OTHER + ITEM * 3 + b"\r\n" + ITEM * 2
    points = sorted({0, len(body), *(min(c, len(body)) for c in cuts)})
    for start, end in itertools.pairwise(points):
        stream.data_received(body[start:end])
    assert stream.status == b"200"
    assert connected.is_set()
    assert stream.counted == 5


def test_a_refused_stream_closes_and_never_counts_as_connected() -> None:
    connected = asyncio.Event()
    stream, transport = opened(connected)
    stream.data_received(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 2\r\n\r\n{}")
    assert stream.status == b"503"
    assert transport.closed
    assert not connected.is_set()


def test_a_head_that_never_ends_is_given_up() -> None:
    stream, transport = opened(asyncio.Event())
    stream.data_received(b"HTTP/1.1 200 OK\r\nX: " + b"a" * 20_000)
    assert transport.closed


def test_the_request_names_the_pod_and_asks_for_events() -> None:
    assert stream_request("http://127.0.0.1:8081/v1/cities/blr/menu/stream") == (
        "127.0.0.1",
        8081,
        b"GET /v1/cities/blr/menu/stream HTTP/1.1\r\nHost: 127.0.0.1:8081\r\nAccept: text/event-stream\r\n"
        b"Connection: close\r\n\r\n",
    )
