"""The SSE client: the parser reads the format however a stream is split into reads; the cheap counter
agrees with it; a follower resumes with the last id after the server closes, fails or says `reconnect`,
waiting the server's hint and backing off to a cap while attempts fail."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from hypothesis import given, settings
from hypothesis import strategies as st

from api.sse import RECONNECT_EVENT, RECONNECT_HINT_MS, encode_frame
from ops.sse_client import (
    Backoff,
    EventSource,
    EventStreamParser,
    EventTypeCounter,
    ServerSentEvent,
    StreamRefused,
    count_events,
)


def parse(*chunks: bytes) -> list[tuple[str, str, str | None]]:
    parser = EventStreamParser()
    return [(e.type, e.data, e.id) for chunk in chunks for e in parser.feed(chunk)]


def test_fields_make_an_event_at_the_blank_line_and_data_lines_join_with_newlines() -> None:
    stream = b"id: 7-0\nevent: item\ndata: first\ndata:  second\ndata\n\n"

    assert parse(stream) == [("item", "first\n second\n", "7-0")]


def test_an_event_without_a_type_is_a_message_and_one_without_data_is_not_dispatched() -> None:
    assert parse(b"data: x\n\nevent: item\n\nid: 3\n\n") == [("message", "x", None)]


def test_comments_are_counted_and_unknown_fields_ignored() -> None:
    parser = EventStreamParser()

    events = parser.feed(b": ping\n\nfoo: bar\n:\ndata: x\n\n")

    assert [(e.type, e.data) for e in events] == [("message", "x")]
    assert parser.comments == 2


def messages(*data: str) -> list[tuple[str, str, str | None]]:
    return [("message", text, None) for text in data]


def test_cr_lf_and_crlf_all_end_lines_also_when_a_crlf_is_split_across_reads() -> None:
    assert parse(b"data: a\r\n\r\ndata: b\r\rdata: c\n\n") == messages("a", "b", "c")
    assert parse(b"data: a\r", b"\n\r", b"\ndata: b\r\n\r\n") == messages("a", "b")


def test_an_event_the_stream_ends_in_the_middle_of_is_not_dispatched() -> None:
    assert parse(b"data: complete\n\ndata: cut off\n") == [("message", "complete", None)]


def test_the_last_event_id_persists_an_empty_id_clears_it_and_one_with_nul_is_ignored() -> None:
    parser = EventStreamParser(last_event_id="1-0")
    parser.feed(b"data: x\n\n")
    assert parser.last_event_id == "1-0"
    parser.feed(b"id: 2-0\n\nid: 3\x00\ndata: y\n\n")
    assert parser.last_event_id == "2-0"
    parser.feed(b"id\ndata: z\n\n")
    assert parser.last_event_id == ""


def test_retry_takes_digits_only_and_a_byte_order_mark_opens_the_stream() -> None:
    parser = EventStreamParser()
    events = parser.feed(b"\xef\xbb\xbfretry: 500\nretry: 5s\ndata: x\n\n")

    assert parser.retry_ms == 500 and [e.data for e in events] == ["x"]


@dataclass(frozen=True)
class Frame:
    type: str | None
    id: str | None
    data: list[str]
    comments: int
    retry: int | None


line_text = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\r\n\x00"), max_size=12)
frames = st.builds(
    Frame,
    type=st.none() | st.text("abcdé_", min_size=1, max_size=6),
    id=st.none() | line_text,
    data=st.lists(line_text, min_size=1, max_size=3),
    comments=st.integers(0, 2),
    retry=st.none() | st.integers(0, 10_000),
)


def serialized(stream: list[Frame], newline: str, bom: bool) -> bytes:
    lines: list[str] = []
    for frame in stream:
        lines += [": ping"] * frame.comments
        lines += [f"id: {frame.id}"] if frame.id is not None else []
        lines += [f"event: {frame.type}"] if frame.type is not None else []
        lines += [f"data: {data}" for data in frame.data]
        lines += [f"retry: {frame.retry}"] if frame.retry is not None else []
        lines.append("")
    return ("\ufeff" if bom else "").encode() + "".join(line + newline for line in lines).encode()


@settings(max_examples=100, deadline=None)
@given(
    stream=st.lists(frames, max_size=6),
    newline=st.sampled_from(["\n", "\r", "\r\n"]),
    bom=st.booleans(),
    data=st.data(),
)
def test_any_split_of_a_valid_stream_into_reads_yields_the_same_events(
    stream: list[Frame], newline: str, bom: bool, data: st.DataObject
) -> None:
    raw = serialized(stream, newline, bom)
    cuts = sorted(data.draw(st.sets(st.integers(0, len(raw)), max_size=24), label="cuts"))
    parser = EventStreamParser()

    events = [e for start, end in zip([0, *cuts], [*cuts, len(raw)], strict=True) for e in parser.feed(raw[start:end])]

    assert [(e.type, e.data, e.id) for e in events] == [
        (frame.type or "message", "\n".join(frame.data), frame.id) for frame in stream
    ]
    assert parser.comments == sum(frame.comments for frame in stream)
    ids = [frame.id for frame in stream if frame.id is not None]
    assert parser.last_event_id == (ids[-1] if ids else None)
    retries = [frame.retry for frame in stream if frame.retry is not None]
    assert parser.retry_ms == (retries[-1] if retries else None)


@settings(max_examples=60, deadline=None)
@given(
    types=st.lists(st.sampled_from(["item", "item_removed", "restaurant", "snapshot"]), max_size=12),
    heartbeats=st.booleans(),
    data=st.data(),
)
def test_the_cheap_counter_counts_what_the_parser_reads_however_the_api_framing_is_split(
    types: list[str], heartbeats: bool, data: st.DataObject
) -> None:
    ping = b": ping\n\n" if heartbeats else b""
    raw = b"".join(
        ping + encode_frame(f"{n}-0", kind, '{"note":"event: item"}') for n, kind in enumerate(types, start=1)
    )
    cuts = sorted(data.draw(st.sets(st.integers(0, len(raw)), max_size=24), label="cuts"))
    counter = EventTypeCounter("item")

    counted = sum(counter.feed(raw[start:end]) for start, end in zip([0, *cuts], [*cuts, len(raw)], strict=True))

    assert counted == types.count("item") == [e.type for e in EventStreamParser().feed(raw)].count("item")


# A scripted server: each request takes the next answer (status, body); with `hold`, the stream stays open
# after its body until the test ends, so only the client can end it.
@dataclass(frozen=True)
class Answer:
    body: bytes = b""
    status: int = 200
    hold: bool = False
    cut: bool = False  # the connection breaks after the body


@dataclass
class ScriptedServer:
    answers: list[Answer]
    last_event_ids: list[str | None] = field(default_factory=list)
    authorizations: list[str | None] = field(default_factory=list)
    released: asyncio.Event = field(default_factory=asyncio.Event)

    async def stream(self, request: web.Request) -> web.StreamResponse:
        self.last_event_ids.append(request.headers.get("Last-Event-ID"))
        self.authorizations.append(request.headers.get("Authorization"))
        answer = self.answers.pop(0) if self.answers else Answer(hold=True)
        if answer.status != 200:
            return web.json_response({"error": "not ready"}, status=answer.status)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(answer.body)
        if answer.cut:
            assert request.transport is not None
            request.transport.abort()
            return response
        if answer.hold:
            await self.released.wait()
        return response


@dataclass
class Harness:
    server: ScriptedServer
    session: aiohttp.ClientSession
    url: str
    delays: list[float] = field(default_factory=list)

    async def sleep(self, seconds: float) -> None:
        self.delays.append(seconds)

    def source(self, **options: object) -> EventSource:
        return EventSource(self.session, self.url, sleep=self.sleep, **options)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def scripted(*answers: Answer) -> AsyncIterator[Harness]:
    server = ScriptedServer(list(answers))
    app = web.Application()
    app.router.add_get("/stream", server.stream)
    async with TestServer(app) as test_server, aiohttp.ClientSession() as session:
        try:
            yield Harness(server, session, str(test_server.make_url("/stream")))
        finally:
            server.released.set()


async def take(source: EventSource, count: int) -> list[ServerSentEvent]:
    taken: list[ServerSentEvent] = []
    async with asyncio.timeout(5), contextlib.aclosing(source.events()) as events:
        async for event in events:
            taken.append(event)
            if len(taken) == count:
                break
    return taken


async def test_a_follower_resumes_with_the_last_id_after_the_server_closes_the_stream() -> None:
    first = encode_frame("1-0", "item", "{}") + encode_frame("2-0", "item", "{}")
    async with scripted(Answer(first), Answer(encode_frame("3-0", "item", "{}"))) as harness:
        source = harness.source(backoff=Backoff(first_s=0.25))

        events = await take(source, 3)

    assert [e.id for e in events] == ["1-0", "2-0", "3-0"]
    assert harness.server.last_event_ids == [None, "2-0"]
    assert harness.delays == [0.25]
    assert len(source.gaps_s) == 1 and source.statuses == {200: 2}


async def test_told_to_reconnect_a_follower_leaves_at_once_and_returns_after_the_servers_hint() -> None:
    reconnect = f"event: {RECONNECT_EVENT}\ndata: \nretry: {RECONNECT_HINT_MS}\n\n".encode()
    draining = Answer(encode_frame("5-0", "item", "{}") + reconnect, hold=True)
    async with scripted(draining, Answer(encode_frame("6-0", "item", "{}"), hold=True)) as harness:
        source = harness.source()

        events = await take(source, 3)

    assert [(e.type, e.id) for e in events] == [("item", "5-0"), (RECONNECT_EVENT, None), ("item", "6-0")]
    assert harness.server.last_event_ids == [None, "5-0"]
    assert harness.delays == [RECONNECT_HINT_MS / 1000]


async def test_failed_attempts_back_off_to_the_cap_and_a_stream_resets_the_back_off() -> None:
    unready = [Answer(status=503)] * 4
    streams = [Answer(encode_frame(f"{n}-0", "item", "{}")) for n in (1, 2, 3)]
    async with scripted(streams[0], *unready, *streams[1:]) as harness:
        source = harness.source(backoff=Backoff(first_s=0.1, cap_s=0.5), headers={"Authorization": "Bearer t"})

        events = await take(source, 3)

    assert [e.id for e in events] == ["1-0", "2-0", "3-0"]
    assert harness.delays == [0.1, 0.2, 0.4, 0.5, 0.5, 0.1]
    assert harness.server.last_event_ids == [None] + ["1-0"] * 5 + ["2-0"]
    assert set(harness.server.authorizations) == {"Bearer t"}
    assert source.statuses == {200: 3, 503: 4} and len(source.gaps_s) == 2


async def test_a_broken_connection_is_counted_and_resumed_from() -> None:
    cut = Answer(encode_frame("1-0", "item", "{}") + b"id: 2-0\nevent: item\ndata: {", cut=True)
    async with scripted(cut, Answer(encode_frame("2-0", "item", "{}"))) as harness:
        source = harness.source()

        events = await take(source, 2)

    assert [e.id for e in events] == ["1-0", "2-0"]
    assert harness.server.last_event_ids == [None, "1-0"]
    assert sum(source.errors.values()) == 1


async def test_without_back_off_a_source_reads_one_connection_and_raises_its_errors() -> None:
    body = b": ping\n\n" + encode_frame("1-0", "snapshot", "{}") + f"event: {RECONNECT_EVENT}\ndata: \n\n".encode()
    async with scripted(Answer(body), Answer(status=503), Answer(b"data: x\n\n", cut=True)) as harness:
        whole = harness.source(backoff=None, last_event_id="0-1")
        events = [event async for event in whole.events()]
        unready = harness.source(backoff=None)
        none = [event async for event in unready.events()]
        broken = harness.source(backoff=None)
        with pytest.raises(aiohttp.ClientPayloadError):
            async for _ in broken.events():
                pass

    assert [e.type for e in events] == ["snapshot", RECONNECT_EVENT] and whole.comments == 1
    assert harness.server.last_event_ids[0] == "0-1"
    assert none == [] and unready.statuses == {503: 1}


async def test_the_cheap_mode_counts_events_of_a_type_over_one_connection() -> None:
    body = b"".join(encode_frame(f"{n}-0", kind, "{}") for n, kind in enumerate(["snapshot", "item", "item"]))
    async with scripted(Answer(body), Answer(status=503)) as harness:
        connected, counted = asyncio.Event(), list[int]()
        with pytest.raises(StreamRefused, match="ended the stream"):
            await count_events(harness.url, "item", connected, counted)
        refused = asyncio.Event()
        with pytest.raises(StreamRefused, match="503"):
            await count_events(harness.url, "item", refused, counted)

    assert counted == [2, 0] and connected.is_set() and not refused.is_set()
