"""A stream whose client left before it began ends as a client gone (the errors middleware's 400, which nobody
receives), never as aiohttp-sse's assertion and a logged 500: a client closing at once is anyone's to send."""

from typing import Any, cast

import pytest
from aiohttp.test_utils import make_mocked_request

from api.feed import Subscriber
from api.streaming import stream_to_client


async def test_a_client_gone_before_its_stream_began_is_a_connection_reset() -> None:
    request = make_mocked_request("GET", "/v1/cities/blr/menu/stream")
    cast(Any, request.protocol).transport = None  # what aiohttp's protocol holds once the connection is lost

    with pytest.raises(ConnectionResetError):
        await stream_to_client(request, Subscriber(1_000), [], kind="menu", feed_beats=True)
