"""SSE framing for frames shared by many clients.

aiohttp-sse formats every `send()` for its one client; fanning one change out to thousands of clients, we
frame it once (the same wire format as aiohttp-sse's `send` with a "\\n" separator) and write those bytes
to every client (api.feed). Connection set-up, headers, heartbeats and stop_streaming() stay aiohttp-sse's.
"""

SEPARATOR = "\n"


def encode_frame(event_id: str, event_type: str, data: str) -> bytes:
    if "\n" in data or "\r" in data or "\n" in event_id or "\n" in event_type:
        raise ValueError("frame fields must be single lines (JSON from orjson always is)")
    return f"id: {event_id}\nevent: {event_type}\ndata: {data}\n\n".encode()
