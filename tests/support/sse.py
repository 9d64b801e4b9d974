"""A minimal Server-Sent Events reader for tests: records every event with its id, type and data."""

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from typing import Any

import aiohttp


@dataclass(frozen=True)
class SseEvent:
    id: str | None
    type: str
    data: str
    received_at: float

    def json(self) -> Any:
        return json.loads(self.data)


@dataclass
class SseClient:
    """Follows one SSE URL in the background; `events` grows as events arrive."""

    url: str
    last_event_id: str | None = None
    events: list[SseEvent] = field(default_factory=list)
    comments: int = 0
    _task: asyncio.Task[None] | None = None
    _new: asyncio.Event = field(default_factory=asyncio.Event)
    status: int | None = None
    closed: asyncio.Event = field(default_factory=asyncio.Event)

    async def __aenter__(self) -> "SseClient":
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_read=60))
        self._task = asyncio.create_task(self._follow())
        await self.wait_for(lambda events: len(events) >= 1, timeout=10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task
        await self._session.close()

    async def _follow(self) -> None:
        headers = {"Last-Event-ID": self.last_event_id} if self.last_event_id else {}
        loop = asyncio.get_running_loop()
        try:
            async with self._session.get(self.url, headers=headers) as response:
                self.status = response.status
                fields: dict[str, str] = {}
                async for raw in response.content:
                    line = raw.decode().rstrip("\r\n")
                    if not line:
                        if "data" in fields:
                            self.events.append(
                                SseEvent(fields.get("id"), fields.get("event", "message"), fields["data"], loop.time())
                            )
                            self._new.set()
                        fields = {}
                    elif line.startswith(":"):
                        self.comments += 1
                    else:
                        name, _, value = line.partition(":")
                        value = value[1:] if value.startswith(" ") else value
                        fields[name] = fields[name] + "\n" + value if name == "data" and name in fields else value
        finally:
            self.closed.set()
            self._new.set()

    async def wait_for(self, predicate: Any, timeout: float) -> list[SseEvent]:
        deadline = asyncio.get_running_loop().time() + timeout
        while not predicate(self.events):
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise TimeoutError(f"SSE condition not met in {timeout}s; got {len(self.events)} events")
            self._new.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._new.wait(), remaining)
        return self.events

    def of_type(self, kind: str) -> list[SseEvent]:
        return [e for e in self.events if e.type == kind]
