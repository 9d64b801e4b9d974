"""The one Server-Sent Events client of the rehearsal, the benchmarks and the tests.

`EventSource` follows a stream as a browser's EventSource does: it keeps the last event id and, when the
server closes the stream, fails, or sends the API's `reconnect` event (api/sse.py: a pod draining, or a
client cut loose for falling behind), it reconnects with `Last-Event-ID` after the server's `retry:` hint,
backing off up to a cap while attempts keep failing. Unlike a browser it also retries after an HTTP error
(a pod that is not ready answers 503), and with `backoff=None` it reads one connection only, which is what
a test that watches a single stream wants. `count_events()` is the cheap mode for the latency bench's
thousands of clients: a bare asyncio protocol on the socket that counts the events of one type without
parsing the stream (through aiohttp, a read of each of a thousand streams woke a task and made the bench's own
process the busiest on the box, so its clients read late and measured their own delay).

The parser is written here rather than taken from a package: httpx-sse decodes lines for httpx only (its
decoder is private), aiohttp-sse-client2 has had no release since early 2023, and neither has a cheap
mode. The format (html.spec.whatwg.org, "Server-sent events", parsing an event stream) is small; the
unit tests hold this parser to it for every way a stream can be split into reads.
"""

import asyncio
import codecs
import re
import time
import zlib
from collections import Counter
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlsplit

import aiohttp
import orjson

from api.sse import RECONNECT_EVENT

_LINE_END = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    type: str
    data: str
    id: str | None = None  # this event's own `id:` field; the stream's position is the source's last_event_id
    received_at: float = 0.0  # time.monotonic() when the read that completed it arrived

    def json(self) -> Any:
        return orjson.loads(self.data)


class EventStreamParser:
    """Turns the bytes of one text/event-stream response, fed as they are read, into events."""

    def __init__(self, last_event_id: str | None = None) -> None:
        self.last_event_id = last_event_id  # as of the last complete frame: an `id:` counts at its blank line
        self.retry_ms: int | None = None
        self.comments = 0  # heartbeats, among others
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._first = True  # a byte order mark may open the stream
        self._after_cr = False  # a CR ended the last read: an LF opening the next one belongs to it
        self._tail = ""  # the unfinished line
        self._type = ""
        self._id: str | None = None  # this frame's own
        self._id_buffer = last_event_id
        self._data: list[str] = []

    def feed(self, chunk: bytes, received_at: float = 0.0) -> list[ServerSentEvent]:
        text = self._decoder.decode(chunk)
        if not text:
            return []
        if self._first:
            self._first = False
            text = text.removeprefix("\ufeff")
        if self._after_cr and text.startswith("\n"):
            text = text[1:]
        self._after_cr = text.endswith("\r")
        lines = _LINE_END.split(self._tail + text)
        self._tail = lines.pop()
        events = []
        for line in lines:
            if line:
                self._field(line)
            elif (event := self._dispatch(received_at)) is not None:
                events.append(event)
        return events

    def _field(self, line: str) -> None:
        if line[0] == ":":
            self.comments += 1
            return
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._type = value
        elif name == "id":
            if "\0" not in value:
                self._id = self._id_buffer = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self.retry_ms = int(value)

    def _dispatch(self, received_at: float) -> ServerSentEvent | None:
        self.last_event_id = self._id_buffer
        event = None
        if self._data:
            event = ServerSentEvent(self._type or "message", "\n".join(self._data), self._id, received_at)
        self._type, self._id, self._data = "", None, []
        return event


class EventTypeCounter:
    """Counts the events of one type in a stream without parsing it: the latency bench's thousand clients on
    a two-core machine cannot all afford the parser. It trusts the API's framing (api/sse.py: every field on
    its own LF-ended line, data one JSON line), so a stream from elsewhere wants the parser instead."""

    def __init__(self, event_type: str) -> None:
        self._marker = f"\nevent: {event_type}\n".encode()
        self._tail = b"\n"  # the stream's start is a line's start

    def feed(self, chunk: bytes) -> int:
        """How many such events this read completed. A marker split across reads is counted once: the tail
        kept is one byte shorter than the marker, so every match includes a byte of the new read."""
        data = self._tail + chunk
        self._tail = data[1 - len(self._marker) :]
        return data.count(self._marker)


@dataclass(frozen=True)
class Backoff:
    """How long to wait before reconnecting: the server's `retry:` hint (else `first_s`) after a stream that
    ended, doubling with each attempt that failed since, never longer than `cap_s` (nor than the hint would
    have it if the cap is lower: a client may insist on coming back sooner)."""

    first_s: float = 0.5
    cap_s: float = 10.0
    factor: float = 2.0

    def delay_s(self, retry_ms: int | None, failures: int) -> float:
        base = self.first_s if retry_ms is None else retry_ms / 1000
        return float(min(self.cap_s, base * self.factor**failures))


class EventSource:
    """Follows one SSE URL; see the module docstring for when it reconnects and how long it waits."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        url: str,
        *,
        last_event_id: str | None = None,
        headers: Mapping[str, str] | None = None,
        backoff: Backoff | None = Backoff(),
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.session = session
        self.url = url
        self.last_event_id = last_event_id
        self.headers = dict(headers or {})
        self.backoff = backoff
        self.retry_ms: int | None = None
        self.statuses: Counter[int] = Counter()  # per connection attempt that got an answer
        self.errors: Counter[str] = Counter()  # attempts and streams that failed, by exception type
        self.gaps_s: list[float] = []  # without a stream: from losing one (or failing to get one) to the next
        self.opened = asyncio.Event()  # set by the first stream, and stays set
        self._sleep = sleep
        self._parser: EventStreamParser | None = None
        self._past_comments = 0

    @property
    def comments(self) -> int:
        return self._past_comments + (self._parser.comments if self._parser else 0)

    async def events(self) -> AsyncGenerator[ServerSentEvent, None]:
        """Every event, in order, across reconnections; a `reconnect` event is yielded, then acted upon.
        With `backoff=None`, it ends with the one connection, whose errors it raises.
        A consumer that stops early closes it: `async with contextlib.aclosing(source.events()) as events`."""
        failures = 0
        lost_at: float | None = None
        while True:
            streamed = False
            try:
                async with self.session.get(self.url, headers=self._request_headers()) as response:
                    self.statuses[response.status] += 1
                    if response.status != 200:
                        await response.read()
                    else:
                        streamed = True
                        self.opened.set()
                        if lost_at is not None:
                            self.gaps_s.append(time.monotonic() - lost_at)
                            lost_at = None
                        self._parser = parser = EventStreamParser(self.last_event_id)
                        async for chunk in response.content.iter_any():
                            events = parser.feed(chunk, time.monotonic())
                            self.last_event_id = parser.last_event_id
                            self.retry_ms = parser.retry_ms if parser.retry_ms is not None else self.retry_ms
                            for event in events:
                                yield event
                            if self.backoff is not None and any(e.type == RECONNECT_EVENT for e in events):
                                break
            except (aiohttp.ClientError, TimeoutError) as exc:
                if self.backoff is None:
                    raise
                self.errors[type(exc).__name__] += 1
            finally:
                if self._parser is not None:
                    self._past_comments += self._parser.comments
                    self._parser = None
            if self.backoff is None:
                return
            if lost_at is None:
                lost_at = time.monotonic()
            failures = 0 if streamed else failures + 1
            await self._sleep(self.backoff.delay_s(self.retry_ms, failures))

    def _request_headers(self) -> dict[str, str]:
        if not self.last_event_id:
            return self.headers
        return {**self.headers, "Last-Event-ID": self.last_event_id}


MAX_HEAD_BYTES = 16_384


class StreamRefused(Exception):
    pass


class CountingStream(asyncio.Protocol):
    """The cheap mode's connection: GETs one stream, then counts one event type in `data_received`."""

    def __init__(self, request: bytes, event_type: str, connected: asyncio.Event) -> None:
        self.request = request
        self.request_sent = False  # sent on the socket before the protocol got it (bench.fanout.open_stream)
        self.connected = connected
        self.closed = asyncio.Event()
        self.status: bytes | None = None
        self.counted = 0
        self._event_type = event_type
        self._counter = EventTypeCounter(event_type)
        self._head = b""
        self._inflater: Any = None  # a zlib decompressor, when the stream came gzipped
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is one, without subclassing it
        if not self.request_sent:
            self._transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        if self.status is None:
            self._head += data
            head, separator, data = self._head.partition(b"\r\n\r\n")
            if not separator:
                if len(self._head) > MAX_HEAD_BYTES:
                    self.close()
                return
            self.status = [*head.split(b" ", 2), b"", b""][1]
            self._head = b""
            if self.status != b"200":
                self.close()
                return
            if b"\r\ncontent-encoding: gzip" in head.lower():
                self._inflater = zlib.decompressobj(wbits=31)
            self.connected.set()
        self.body_received(data if self._inflater is None else self._inflater.decompress(data))

    def body_received(self, data: bytes) -> None:
        """The stream's bytes after the response head."""
        self.counted += self._counter.feed(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed.set()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def restart(self, request: bytes) -> None:
        """Ready for a new connection of the same client (a reconnect): `counted` goes on, the rest starts over."""
        self.request = request
        self.request_sent = False
        self.status = None
        self._head = b""
        self._inflater = None
        self._counter = EventTypeCounter(self._event_type)
        self.closed.clear()


def stream_request(url: str, gzip: bool = False) -> tuple[str, int, bytes]:
    """The request for a stream; with `gzip` it accepts the stream gzipped, as browsers do. CountingStream inflates
    it, but does not take chunks apart (it finds event names in the raw bytes), so such a request is HTTP/1.0."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    # Connection: close: the connection is never reused, and a server that ends the stream then closes it too.
    version = "1.0" if gzip else "1.1"
    request = (
        f"GET {parts.path or '/'} HTTP/{version}\r\nHost: {host}:{port}\r\nAccept: text/event-stream\r\n"
        + ("Accept-Encoding: gzip\r\n" if gzip else "")
        + "Connection: close\r\n\r\n"
    )
    return host, port, request.encode()


async def count_events(url: str, event_type: str, connected: asyncio.Event, counted: list[int]) -> None:
    """The cheap mode: hold one stream until cancelled, then add how many `event_type` events it carried to
    `counted`. Raises StreamRefused if the stream was refused or ended first (the bench counts a dropped client)."""
    host, port, request = stream_request(url)
    stream = CountingStream(request, event_type, connected)
    await asyncio.get_running_loop().create_connection(lambda: stream, host, port)
    try:
        await stream.closed.wait()
    finally:
        stream.close()
        counted.append(stream.counted)
    if stream.status != b"200":
        raise StreamRefused(f"{url} answered {stream.status!r}")
    raise StreamRefused(f"{url} ended the stream")
