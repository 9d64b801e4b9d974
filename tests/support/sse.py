"""A menu or order stream a test watches in the background (one connection, as the test opened it), on the
package's SSE client: `events` grows as events arrive, each stamped with its arrival (time.monotonic())."""

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp

from ops.sse_client import EventSource, ServerSentEvent


@dataclass
class SseClient:
    url: str
    last_event_id: str | None = None
    events: list[ServerSentEvent] = field(default_factory=list)
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    _source: EventSource | None = None
    _task: asyncio.Task[None] | None = None
    _new: asyncio.Event = field(default_factory=asyncio.Event)

    async def __aenter__(self) -> "SseClient":
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_read=60))
        self._source = EventSource(self._session, self.url, last_event_id=self.last_event_id, backoff=None)
        self._task = asyncio.create_task(self._follow(self._source))
        await self.wait_for(lambda events: len(events) >= 1, timeout=10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task
        await self._session.close()

    @property
    def status(self) -> int | None:
        statuses = list(self._source.statuses) if self._source else []
        return statuses[0] if statuses else None

    @property
    def comments(self) -> int:
        return self._source.comments if self._source else 0

    async def _follow(self, source: EventSource) -> None:
        try:
            async for event in source.events():
                self.events.append(event)
                self._new.set()
        finally:
            self.closed.set()
            self._new.set()

    async def wait_for(
        self, predicate: Callable[[list[ServerSentEvent]], bool], timeout: float
    ) -> list[ServerSentEvent]:
        deadline = asyncio.get_running_loop().time() + timeout
        while not predicate(self.events):
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise TimeoutError(f"SSE condition not met in {timeout}s; got {len(self.events)} events")
            self._new.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._new.wait(), remaining)
        return self.events

    def of_type(self, kind: str) -> list[ServerSentEvent]:
        return [e for e in self.events if e.type == kind]
