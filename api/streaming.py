"""One way every SSE stream of a pod runs: first data, then live from the pod's shared feed, until the client
leaves, the pod drains, or the client falls too far behind (then it is told to reconnect)."""

from aiohttp import web
from aiohttp_sse import EventSourceResponse, sse_response

from api.conditional import accepts_gzip
from api.feed import Subscriber
from api.keys import SETTINGS, STREAMS
from api.metrics import SSE_CLIENTS, SSE_EVENTS_SENT, SSE_SLOW_CLIENTS
from api.readmodel import FeedEntry
from api.server import on_client_gone
from api.sse import SEPARATOR, FeedEventSourceResponse, GzipEventSourceResponse, tell_to_reconnect

# aiohttp-sse's own heartbeat for a stream whose feed sends the heartbeats (api.feed.CityFeed): never. Its task then
# only stands for the stream being open (stop_streaming() ends it); a finite number, as uvloop's timers need one.
FEED_BEATS_PING_S = 10 * 365 * 24 * 3600.0


async def stream_to_client(
    request: web.Request, subscriber: Subscriber, initial: list[FeedEntry], kind: str, feed_beats: bool = False
) -> EventSourceResponse:
    """`subscriber` must already be subscribed, and `initial` read after that (so nothing falls between).
    `feed_beats`: the subscriber's feed sends this stream's heartbeats (one timer for all of its clients).

    A client that accepts gzip gets the stream gzipped (a snapshot is ~80 KB plain, ~7 KB gzipped), built from
    pieces compressed once for every client (api.gzip_stream)."""
    if request.transport is None:  # gone before its stream began: aiohttp-sse's prepare() would assert (a 500)
        raise ConnectionResetError("the client left before its stream began")
    app = request.app
    gzip = accepts_gzip(request)
    response_cls = GzipEventSourceResponse if gzip else FeedEventSourceResponse
    headers = {"Vary": "Accept-Encoding"}
    ping_s = FEED_BEATS_PING_S if feed_beats else app[SETTINGS].sse_ping_s
    async with sse_response(
        request, sep=SEPARATOR, ping_interval=ping_s, headers=headers, response_cls=response_cls
    ) as stream:
        app[STREAMS].add(stream)
        SSE_CLIENTS.labels(kind=kind).inc()
        try:
            if initial:
                await _write_initial(stream, initial)
                subscriber.last_order = initial[-1].order
                SSE_EVENTS_SENT.labels(kind=kind).inc(len(initial))
            if request.transport is not None:
                framing = await stream.ready_for_feed()
                subscriber.go_live(request.transport, stream.chunked, framing)
                await _until_closed_or_cut_loose(request, stream, subscriber)
                if subscriber.overflowed:
                    SSE_SLOW_CLIENTS.labels(kind=kind).inc()
                    await tell_to_reconnect(stream)
        except ConnectionResetError:
            pass
        finally:
            SSE_CLIENTS.labels(kind=kind).dec()
            app[STREAMS].discard(stream)
    return stream


async def _write_initial(stream: EventSourceResponse, initial: list[FeedEntry]) -> None:
    if len(initial) == 1 and isinstance(stream, GzipEventSourceResponse):
        # A snapshot: compressed once per menu version, for every client starting from it.
        await stream.write_piece(initial[0].frame, initial[0].deflated_frame)
    else:
        await stream.write(b"".join(entry.frame for entry in initial))


async def _until_closed_or_cut_loose(request: web.Request, stream: EventSourceResponse, subscriber: Subscriber) -> None:
    """Until the client leaves, the pod drains (stop_streaming()), a heartbeat cannot be written, or the feed cuts
    the client loose: all of them end aiohttp-sse's stream task, which is all this waits on (no task per ending)."""
    if subscriber.overflowed:
        return
    subscriber.on_cut_loose = stream.stop_streaming
    on_client_gone(request, stream.stop_streaming)
    await stream.wait()
