"""api.streaming and api.sse at the edge of a stream. A stream whose client left before it began ends as a client
gone (the errors middleware's 400, which nobody receives), never as aiohttp-sse's assertion and a logged 500: a
client closing at once is anyone's to send. A stream's response head leaves with its first bytes, in one write."""

import asyncio
from typing import Any, cast
from unittest import mock

import pytest
from aiohttp.http_writer import StreamWriter
from aiohttp.test_utils import make_mocked_request

from api.feed import Subscriber
from api.sse import SEPARATOR, FeedEventSourceResponse, GzipEventSourceResponse
from api.streaming import stream_to_client
from tests.support.fakes import RecordingTransport


async def test_a_client_gone_before_its_stream_began_is_a_connection_reset() -> None:
    request = make_mocked_request("GET", "/v1/cities/blr/menu/stream")
    cast(Any, request.protocol).transport = None  # what aiohttp's protocol holds once the connection is lost

    with pytest.raises(ConnectionResetError):
        await stream_to_client(request, Subscriber(1_000), [], kind="menu", feed_beats=True)


async def started_stream(response_cls: type[FeedEventSourceResponse]) -> tuple[FeedEventSourceResponse, list[bytes]]:
    transport = RecordingTransport()
    protocol = mock.Mock(transport=transport)
    writer = StreamWriter(protocol, asyncio.get_running_loop())
    request = make_mocked_request(
        "GET", "/v1/cities/blr/menu/stream", writer=writer, protocol=protocol, transport=transport
    )
    stream = response_cls(sep=SEPARATOR)
    await stream.prepare(request)
    return stream, transport.writes


@pytest.mark.parametrize("response_cls", [FeedEventSourceResponse, GzipEventSourceResponse])
async def test_a_starting_stream_sends_its_head_with_its_first_bytes_in_one_write(
    response_cls: type[FeedEventSourceResponse],
) -> None:
    stream, sends = await started_stream(response_cls)
    assert sends == []  # prepared: the head waits for the snapshot or history

    await stream.write(b"id: 1\nevent: snapshot\ndata: {}\n\n")

    assert len(sends) == 1 and sends[0].startswith(b"HTTP/1.1 200 OK\r\n") and len(sends[0].split(b"\r\n\r\n", 1)[1])
    stream.stop_streaming()


@pytest.mark.parametrize("response_cls", [FeedEventSourceResponse, GzipEventSourceResponse])
async def test_a_stream_with_nothing_to_send_yet_sends_its_head_before_the_feed_takes_over(
    response_cls: type[FeedEventSourceResponse],
) -> None:
    """A client resuming with nothing missed: the feed writes to the transport itself, so the head goes first."""
    stream, sends = await started_stream(response_cls)

    await stream.ready_for_feed()

    assert len(sends) == 1 and sends[0].startswith(b"HTTP/1.1 200 OK\r\n")
    await stream.ready_for_feed()
    assert len(sends) == 1  # once
    stream.stop_streaming()
