"""Raw HTTP/1.1 over a socket, for requests no well-behaved client library would send."""

import asyncio
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson

from tests.support.contract import ERROR_STATUSES, assert_error_body


@dataclass(frozen=True)
class RawAnswer:
    status: int
    headers: dict[str, str]  # lower-cased names
    body: bytes


async def raw_request(base_url: str, data: bytes, timeout: float = 10.0) -> RawAnswer:
    """Send `data` as is on a fresh connection; read the one answer (the server closes after errors)."""
    parts = urlsplit(base_url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        writer.write(data)
        await writer.drain()
        return await read_answer(reader, timeout)
    finally:
        writer.close()


async def read_answer(reader: asyncio.StreamReader, timeout: float = 10.0, body: bool = True) -> RawAnswer:
    """One answer off a connection: its head, and its body by Content-Length unless `body` is False (a stream)."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0")) if body else 0
    return RawAnswer(status, headers, await asyncio.wait_for(reader.readexactly(length), timeout))


def assert_raw_contract_answer(answer: RawAnswer) -> dict[str, Any] | None:
    """tests.support.contract.assert_contract_answer for an answer read off a raw socket."""
    assert answer.status < 500 or answer.status == 503, f"{answer.status}: {answer.body[:300]!r}"
    if 200 <= answer.status < 300:
        return None
    assert answer.status in ERROR_STATUSES, f"{answer.status} is not a contract status: {answer.body[:300]!r}"
    assert answer.headers.get("content-type", "").startswith("application/json"), answer
    document = orjson.loads(answer.body)
    assert_error_body(document)
    if answer.status in (429, 503):
        assert answer.headers.get("retry-after", "").isdigit(), f"{answer.status} without Retry-After"
    error: dict[str, Any] = document["error"]
    return error


async def seconds_until_closed(base_url: str, first: bytes, trickle: bytes, every_s: float, limit_s: float) -> float:
    """Open a connection, send `first`, then one byte of `trickle` every `every_s` (a slow client);
    return how long the server kept the connection, or `limit_s` if it still had it then."""
    parts = urlsplit(base_url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    started = time.monotonic()
    try:
        writer.write(first)
        await writer.drain()
        position = 0
        while time.monotonic() - started < limit_s:
            try:
                data = await asyncio.wait_for(reader.read(65536), every_s)
            except TimeoutError:
                data = None
            if data == b"":
                return time.monotonic() - started
            if data is None:
                try:
                    writer.write(trickle[position : position + 1] or b"x")
                    await writer.drain()
                except ConnectionError:
                    return time.monotonic() - started
                position += 1
        return limit_s
    finally:
        writer.close()
