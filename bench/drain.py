"""The benchmark's counting clients: SSE streams read straight off the socket.

Most of the benchmark's clients only count the events they receive. Through aiohttp each read of each of them
went through a stream reader and woke a task; with a thousand streams that made the benchmark's own process
the busiest one on the box, and a client short of CPU reads late and measures its own delay. A protocol that
counts in data_received does the same job with a fraction of the CPU. The probe clients that time each event
stay on aiohttp: they are few.
"""

import asyncio
from urllib.parse import urlsplit

ITEM_EVENT = b"event: item\n"
MAX_HEAD_BYTES = 16_384


class StreamRefused(Exception):
    pass


class CountingStream(asyncio.Protocol):
    """GETs one SSE stream and counts its item events; `closed` is set when the connection ends."""

    def __init__(self, request: bytes, connected: asyncio.Event) -> None:
        self.request = request
        self.connected = connected
        self.closed = asyncio.Event()
        self.status: bytes | None = None
        self.item_events = 0
        self._head = b""
        self._tail = b""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        transport.write(self.request)

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
            self.connected.set()
        self.item_events += count_across(self._tail, data)
        self._tail = (self._tail + data)[-len(ITEM_EVENT) + 1 :]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed.set()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


def count_across(tail: bytes, data: bytes) -> int:
    """Item events in `data`, including one that began in `tail` (the previous read's last bytes, shorter than
    the marker, so nothing in it alone was a whole marker)."""
    return (tail + data).count(ITEM_EVENT)


def stream_request(url: str) -> tuple[str, int, bytes]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    request = (f"GET {parts.path or '/'} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: text/event-stream\r\n\r\n").encode()
    return host, port, request


async def counting_client(url: str, connected: asyncio.Event, counted: list[int]) -> None:
    """Holds one stream until cancelled, then adds what it counted to `counted`; raises if the stream was
    refused or ended first (the caller counts that as a dropped client)."""
    host, port, request = stream_request(url)
    stream = CountingStream(request, connected)
    await asyncio.get_running_loop().create_connection(lambda: stream, host, port)
    try:
        await stream.closed.wait()
    finally:
        stream.close()
        counted.append(stream.item_events)
    if stream.status != b"200":
        raise StreamRefused(f"{url} answered {stream.status!r}")
    raise StreamRefused(f"{url} ended the stream")
