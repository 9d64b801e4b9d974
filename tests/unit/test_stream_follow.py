"""The stream-follow loop both live feeds share (api.stream_follow): Redis blinking at any step never ends it,
and nothing it read is skipped — a failed hand-over is read again from the same position."""

import asyncio
from collections.abc import Sequence
from typing import Any, cast

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from api import stream_follow
from api.feed import Delivery, Subscriber
from api.readmodel import FeedEntry
from api.stream_follow import RawEntries, follow_stream
from tests.support.fakes import RecordingTransport

STREAM = "feed"


def raw(*ids: str) -> list[tuple[bytes, dict[bytes, bytes]]]:
    return [(entry_id.encode(), {b"type": b"change", b"data": b"{}"}) for entry_id in ids]


class ScriptedRedis:
    """Answers XREAD from a script (a reply, or an exception to raise), then blocks as an idle stream would."""

    def __init__(self, script: Sequence[Any]) -> None:
        self.script = list(script)
        self.read_from: list[str] = []
        self.idle = asyncio.Event()

    async def xread(self, streams: dict[str, str], block: int, count: int) -> Any:
        self.read_from.append(streams[STREAM])
        if not self.script:
            self.idle.set()
            await asyncio.Event().wait()
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        return [[STREAM.encode(), step]]


@pytest.fixture(autouse=True)
def no_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stream_follow, "RETRY_PAUSE_S", 0.0)


async def run_until_idle(redis: ScriptedRedis, handle: Any, start: Any = None) -> asyncio.Event:
    async def from_zero() -> str:
        return "0-0"

    started = asyncio.Event()
    task = asyncio.create_task(follow_stream(cast(Any, redis), STREAM, start or from_zero, handle, started, "test"))
    try:
        await asyncio.wait_for(redis.idle.wait(), 2)
    finally:
        task.cancel()
    assert not task.done() or task.cancelled()
    return started


async def test_entries_are_handed_on_in_order_and_reading_goes_on_from_the_last_one() -> None:
    redis = ScriptedRedis([raw("1-0", "2-0"), raw("3-0")])
    handed: list[list[bytes]] = []

    async def handle(entries: RawEntries) -> None:
        handed.append([entry_id for entry_id, _ in entries])

    started = await run_until_idle(redis, handle)
    assert started.is_set()
    assert handed == [[b"1-0", b"2-0"], [b"3-0"]]
    assert redis.read_from == ["0-0", "2-0", "3-0"]


async def test_a_failed_read_is_retried_from_the_same_position() -> None:
    redis = ScriptedRedis([raw("1-0"), RedisConnectionError("gone"), TimeoutError(), raw("2-0")])
    handed: list[bytes] = []

    async def handle(entries: RawEntries) -> None:
        handed.extend(entry_id for entry_id, _ in entries)

    await run_until_idle(redis, handle)
    assert handed == [b"1-0", b"2-0"]
    assert redis.read_from == ["0-0", "1-0", "1-0", "1-0", "2-0"]


async def test_a_failed_hand_over_is_read_again_never_skipped() -> None:
    redis = ScriptedRedis([raw("1-0", "2-0"), raw("1-0", "2-0"), raw("3-0")])
    attempts: list[list[bytes]] = []

    async def handle(entries: RawEntries) -> None:
        attempts.append([entry_id for entry_id, _ in entries])
        if len(attempts) == 1:
            raise RedisConnectionError("the snapshot read failed")

    await run_until_idle(redis, handle)
    assert attempts == [[b"1-0", b"2-0"], [b"1-0", b"2-0"], [b"3-0"]]
    assert redis.read_from == ["0-0", "0-0", "2-0", "3-0"]


async def test_the_start_position_is_retried_until_redis_answers() -> None:
    calls = 0

    async def start() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise RedisConnectionError("not yet")
        return "7-0"

    async def handle(entries: RawEntries) -> None:
        pass

    redis = ScriptedRedis([])
    started = await run_until_idle(redis, handle, start)
    assert started.is_set() and calls == 3
    assert redis.read_from == ["7-0"]


def test_a_batch_read_again_reaches_a_buffering_client_once() -> None:
    """The redelivery above is harmless: a client still writing its first data drops the repeat on going live."""
    subscriber = Subscriber(max_pending_bytes=1 << 20)
    batch = Delivery([FeedEntry("1-0", "change", "{}"), FeedEntry("2-0", "change", "{}")])
    subscriber.deliver(batch)
    subscriber.deliver(batch)
    subscriber.deliver(Delivery([FeedEntry("3-0", "change", "{}")]))
    transport = RecordingTransport()
    subscriber.go_live(cast(asyncio.WriteTransport, transport), chunked=False)
    written = b"".join(transport.writes)
    assert [line for line in written.split(b"\n") if line.startswith(b"id: ")] == [b"id: 1-0", b"id: 2-0", b"id: 3-0"]
