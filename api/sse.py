"""SSE framing for frames shared by many clients.

aiohttp-sse formats every `send()` for its one client; fanning one change out to thousands of clients, we
frame it once (the same wire format as aiohttp-sse's `send` with a "\\n" separator) and write those bytes
to every client (api.feed). Connection set-up, headers, heartbeats and stop_streaming() stay aiohttp-sse's.
"""

import asyncio
import contextlib
import re
from typing import Any

from aiohttp_sse import EventSourceResponse

from api.gzip_stream import GZIP_HEADER, GzipFraming

SEPARATOR = "\n"
RECONNECT_EVENT = "reconnect"
RECONNECT_HINT_MS = 500  # how soon a client told to reconnect (pod draining, or fell behind) comes back


class FeedEventSourceResponse(EventSourceResponse):
    """aiohttp-sse's event stream with its response head held back until the first bytes go out (aiohttp's
    buffered headers, as its plain responses have): a client starting gets the head and its snapshot or history
    in one write, not two. In a drained pod's reconnect storm the head's own write was 5% of a pod's time."""

    _send_headers_immediately = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # A stream's connection is never reused: it ends when the client leaves, falls behind or the pod drains.
        # aiohttp-sse says `keep-alive`, and a gateway then put the connection back in its pool as the stream ended
        # with the pod draining, and sent a request on it just as the pod closed it: lost (a 502 nginx does not retry
        # for a POST; seen in a drain under load). `close` tells the gateway to let the connection go.
        self.headers["Connection"] = "close"
        self.force_close()

    async def ready_for_feed(self) -> GzipFraming | None:
        """Sends what aiohttp still holds for this stream (the head, when nothing was written yet): from then on
        the feed writes straight to the transport. Returns the gzip state the feed accounts its pieces in, if any."""
        await super().write(b"")
        return None


class GzipEventSourceResponse(FeedEventSourceResponse):
    """An event stream sent gzipped (api.gzip_stream): everything written through it, heartbeats and the
    `reconnect` event included, is compressed piece by piece; the feed writes its shared compressed pieces
    straight to the transport and accounts for them in `framing`; the trailer goes out with the end."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.headers["Content-Encoding"] = "gzip"
        self.framing = GzipFraming()
        self._header = GZIP_HEADER  # goes out with the first piece: one write less per client

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        await self._write_first(self.framing.piece(bytes(data)))

    async def write_piece(self, data: bytes, deflated: bytes) -> None:
        """`data` already compressed (`deflated`, made once for many clients)."""
        await self._write_first(self.framing.piece(data, deflated))

    async def _write_first(self, piece: bytes) -> None:
        await super().write(self._unsent_header() + piece)

    def _unsent_header(self) -> bytes:
        """The gzip header if it has not gone out yet (then it goes with what is written next), else nothing."""
        header, self._header = self._header, b""
        return header

    async def ready_for_feed(self) -> GzipFraming:
        """The stream's gzip state, once its header (and the response head) is out: from then on the feed writes
        its shared pieces straight to the transport."""
        if self._header:
            await self._write_first(b"")
        return self.framing

    async def write_eof(self, data: bytes = b"") -> None:
        if self._eof_sent or not self.prepared:
            return await super().write_eof(data)
        ending = self._unsent_header() + (self.framing.piece(data) if data else b"") + self.framing.end()
        with contextlib.suppress(ConnectionError):  # a client already gone needs no trailer
            await super().write_eof(ending)


async def tell_to_reconnect(stream: EventSourceResponse) -> None:
    """A `reconnect` event with a short retry hint; never waits long on a client that cannot take it."""
    with contextlib.suppress(Exception):
        await asyncio.wait_for(stream.send("", event=RECONNECT_EVENT, retry=RECONNECT_HINT_MS), 1.0)


def encode_frame(event_id: str, event_type: str, data: str) -> bytes:
    if "\n" in data or "\r" in data or "\n" in event_id or "\n" in event_type:
        raise ValueError("frame fields must be single lines (JSON from orjson always is)")
    return f"id: {event_id}\nevent: {event_type}\ndata: {data}\n\n".encode()


# A Redis stream id: milliseconds and a sequence, each an unsigned 64-bit number. The very last id is refused
# too: an exclusive range starting after it ("(" + id) is an error in Redis.
_EVENT_ID = re.compile(r"([0-9]{1,20})(?:-([0-9]{1,20}))?")
_ID_PART_MAX = 2**64 - 2


def parse_last_event_id(value: str) -> tuple[int, int] | None:
    """The (milliseconds, sequence) of an event id in the feed's form (ASCII digits only), or None."""
    match = _EVENT_ID.fullmatch(value)
    if match is None:
        return None
    high, low = int(match[1]), int(match[2] or 0)
    if high > _ID_PART_MAX or low > _ID_PART_MAX:
        return None
    return high, low
