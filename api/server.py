"""The pod's HTTP server: aiohttp's, with three things its knobs do not offer.

- Errors aiohttp answers by itself, before any middleware runs (a request line or headers it cannot parse,
  too long, too many), get the contract's JSON error body instead of plain text, with the gateway's
  statuses and codes (414 uri_too_long, 431 headers_too_large, 408 request_timeout, else 400).
- A header read timeout: a connection must deliver a complete request head within `header_timeout_s` of
  being opened, or of its first byte after the previous request, else it is closed. aiohttp only has the
  keep-alive timer, which must stay longer than the gateway's idle upstream timeout (nginx reuses idle
  connections until then: closing them sooner races its next request), so it cannot bound a slow sender.
- A stopping pod does not close idle keep-alive connections under the gateway (the same race); it answers with
  `Connection: close` and waits a bounded time for the gateway to let them go.

They hook into aiohttp's RequestHandler (its `handle_error`, `connection_made`, `data_received`) and the
Server that makes one per connection (its `pre_shutdown`, `shutdown`); aiohttp offers no public way to choose
that class, hence HardenedRunner.
"""

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from aiohttp.web_server import Server

from api.middlewares import error_body_bytes

logger = logging.getLogger(__name__)

# The request line and a header line have distinct limits so a LineTooLong tells which one overflowed.
MAX_REQUEST_LINE = 8190
MAX_HEADER_LINE = 8192
MAX_HEADERS = 100
KEEPALIVE_S = 75.0  # longer than a gateway's idle upstream timeout (the local one's 3 s; ingress-nginx's 60 s)
# A stopping pod waits this long at most for its peers to close their connections (HardenedServer.shutdown): longer
# than the local gateway's upstream keepalive_timeout (deploy/local/gateway.sh).
PEERS_CLOSE_S = 4.0
LINGER_S = 2.0  # after an early error answer, how long to swallow the rest of a body the client still sends


def _parse_error(exc: BaseException | None, status: int) -> tuple[int, str, str]:
    if isinstance(exc, LineTooLong):
        if exc.args[1:2] == (MAX_REQUEST_LINE,):
            return 414, "uri_too_long", f"the request line is longer than {MAX_REQUEST_LINE} bytes"
        return 431, "headers_too_large", f"a header is longer than {MAX_HEADER_LINE} bytes"
    if isinstance(exc, BadHttpMessage) and "Too many headers" in exc.message:
        return 431, "headers_too_large", f"more than {MAX_HEADERS} headers"
    if status < 500:
        return 400, "bad_request", "the request is not valid HTTP/1.1"
    return 500, "internal", "something went wrong on our side"


class GoneCallbacks(list[Callable[[], None]]):
    """What runs when the client of a long request disconnects."""


_GONE = web.RequestKey("client_gone", GoneCallbacks)


def on_client_gone(request: web.Request, callback: Callable[[], None]) -> None:
    """`callback` runs as soon as the client of this (long) request disconnects, at once if it already has: a stream
    learns it at once instead of at its next heartbeat, and gives its client's slot back (api.limits)."""
    if request.transport is None or request.transport.is_closing():
        callback()
        return
    callbacks = request.get(_GONE)
    if callbacks is None:
        callbacks = request[_GONE] = GoneCallbacks()
    callbacks.append(callback)


class HardenedRequestHandler(RequestHandler):
    header_timeout_s: float = 10.0
    _head_deadline: asyncio.TimerHandle | None = None
    _head_count: int = -1

    def handle_error(
        self, request: BaseRequest, status: int = 500, exc: BaseException | None = None, message: str | None = None
    ) -> web.StreamResponse:
        if request.writer.output_size > 0:
            raise ConnectionError("the response has begun; no room for an error answer")
        status, code, text = _parse_error(exc, status)
        if status >= 500:
            self.log_exception("error handling a request from %s", request.remote, exc_info=exc)
        else:  # anyone on the network can send garbage: worth a line, not a traceback
            logger.info("refused a malformed request from %s: %s", request.remote, code, extra={"reason": str(exc)})
        answer = web.Response(status=status, body=error_body_bytes(status, code, text), content_type="application/json")
        answer.force_close()
        return answer

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._arm_head_deadline()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._head_deadline is not None and self._request_count != self._head_count:
            self._head_deadline.cancel()  # the head it waited for arrived
            self._head_deadline = None
        if self._head_deadline is None and self._waiting_for_head():
            self._arm_head_deadline()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None
        request = self._current_request
        super().connection_lost(exc)
        if request is not None:
            for callback in request.get(_GONE, ()):
                callback()

    def _waiting_for_head(self) -> bool:
        return not self._request_in_progress and not self._messages and not self._upgraded

    def _arm_head_deadline(self) -> None:
        self._head_count = self._request_count
        self._head_deadline = self._loop.call_later(self.header_timeout_s, self._head_overdue)

    def _head_overdue(self) -> None:
        self._head_deadline = None
        if self._request_count == self._head_count and self._waiting_for_head() and self.transport is not None:
            body = error_body_bytes(408, "request_timeout", "the request head took too long to arrive")
            self.transport.write(
                b"HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\nConnection: close\r\n"
                b"Content-Length: %d\r\n\r\n%b" % (len(body), body)
            )
            self.force_close()


class HardenedServer(Server):
    header_timeout_s: float = 10.0
    _none_left: asyncio.Event | None = None  # set once a stopping server has no connection left

    def pre_shutdown(self) -> None:
        """aiohttp closes every idle keep-alive connection here, as the pod stops. A gateway may be sending a request
        on one of them at that moment (nginx takes idle connections to a pod from its pool), and the request is lost:
        a 502 that nginx does not retry for a POST (seen: an admin POST during a pod's drain under load). Idle
        connections are left to their peers to close instead, and `shutdown` waits for that."""

    async def shutdown(self, timeout: float | None = None) -> None:
        """For up to `PEERS_CLOSE_S` (within `timeout`, the pod's drain_s), waits while connections are open: answers
        say `Connection: close` meanwhile (api.middlewares), and the gateway closes its idle connections after its
        idle timeout (the local gateway's 3 s; the cluster's ingress stops using the pod once it leaves the
        endpoints). Then, as aiohttp does, lets requests still running finish in what is left of `timeout` and closes
        the rest."""
        loop = asyncio.get_running_loop()
        began = loop.time()
        bound = PEERS_CLOSE_S if timeout is None else min(timeout, PEERS_CLOSE_S)
        self._none_left = asyncio.Event()
        self._note_if_none_left()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._none_left.wait(), bound)
        super().pre_shutdown()  # what still is idle now is closed, as aiohttp would have at once
        left = None if timeout is None else max(0.0, timeout - (loop.time() - began))
        await super().shutdown(left)

    def connection_lost(self, handler: RequestHandler, exc: BaseException | None = None) -> None:
        super().connection_lost(handler, exc)
        if handler._task_handler is not None:  # aiohttp forgets the connection once its task is done
            handler._task_handler.add_done_callback(lambda _: self._note_if_none_left())
        else:
            self._note_if_none_left()

    def _note_if_none_left(self) -> None:
        if self._none_left is not None and not self._connections:
            self._none_left.set()

    def __call__(self) -> RequestHandler:
        handler = HardenedRequestHandler(self, loop=self._loop, **self._kwargs)
        handler.header_timeout_s = self.header_timeout_s
        return handler


class HardenedRunner(web.AppRunner):
    def __init__(self, app: web.Application, *, header_timeout_s: float, **kwargs: Any) -> None:
        kwargs.setdefault("keepalive_timeout", KEEPALIVE_S)
        kwargs.setdefault("lingering_time", LINGER_S)
        kwargs.setdefault("max_line_size", MAX_REQUEST_LINE)
        kwargs.setdefault("max_field_size", MAX_HEADER_LINE)
        kwargs.setdefault("max_headers", MAX_HEADERS)
        super().__init__(app, **kwargs)
        self._header_timeout_s = header_timeout_s

    async def _make_server(self) -> Server:
        plain = await super()._make_server()
        # The same server, made by our class: aiohttp builds it in Application._make_handler.
        server = HardenedServer(
            plain.request_handler,
            request_factory=plain.request_factory,
            handler_cancellation=plain.handler_cancellation,
            loop=plain._loop,
            **plain._kwargs,
        )
        server.header_timeout_s = self._header_timeout_s
        return server
