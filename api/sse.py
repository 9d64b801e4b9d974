"""SSE responses that can write a frame encoded once for many clients.

aiohttp-sse formats every `send()` for its one client; fanning one change out to thousands of clients, we
frame it once (`encode_frame`, the same wire format as aiohttp-sse's `send` with a "\\n" separator) and
write those bytes to each response with the library's own timeout and abort handling around the write.
Connection set-up, headers, heartbeats and stop_streaming() stay aiohttp-sse's.
"""

import asyncio

from aiohttp_sse import EventSourceResponse

SEPARATOR = "\n"


def encode_frame(event_id: str, event_type: str, data: str) -> bytes:
    if "\n" in data or "\r" in data or "\n" in event_id or "\n" in event_type:
        raise ValueError("frame fields must be single lines (JSON from orjson always is)")
    return f"id: {event_id}\nevent: {event_type}\ndata: {data}\n\n".encode()


class BroadcastResponse(EventSourceResponse):
    async def send_frames(self, frames: bytes) -> None:
        """Write pre-encoded frames; a stalled or vanished client is cut off, as aiohttp-sse's send does."""
        try:
            async with asyncio.timeout(self._send_timeout):
                await self.write(frames)
        except ConnectionResetError:
            self.stop_streaming()
            raise
        except TimeoutError:
            self.stop_streaming()
            self._abort_transport()
            raise
