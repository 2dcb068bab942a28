"""The node's HTTP connections: malformed HTTP answered as the contract says, and the
guards that keep a hostile network from holding the node's sockets.

aiohttp's parser refuses some requests before the node's handler runs (a bad request
line, an unknown method, oversized headers). aiohttp would answer those in text/plain
without ``X-Exchange-Request-Id`` and log a traceback; here they get a problem+json
answer with a request id and one JSON error line, like every other error. So does a
header value that is not Latin-1 text (gateway.headers), before the node handles it.

Connection guards (``[limits]``):
- ``max_connections_per_ip``: a connection over the cap for its client address is closed
  at once, before anything is read from it.
- ``header_timeout_s``: a request head must be complete within this time of the
  connection being opened, or, on a kept-alive connection, of the first byte of the next
  request. An idle kept-alive connection is left to aiohttp's ``keepalive_timeout``.
  A connection whose head is late is closed (after the answer in progress, if any).
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from aiohttp.streams import StreamReader
from aiohttp.web_protocol import RequestHandler

from gateway.errors import Problem
from gateway.headers import bad_header, describe
from gateway.peers import AddressCounts
from gateway.wire import PROBLEM

_CODES = {400: "client.bad_request", 405: "client.method_not_allowed", 413: "client.payload_too_large",
          431: "client.bad_request", 503: "server.unavailable", 504: "server.upstream_timeout"}


class ExchangeServer(web.Server):
    """aiohttp's low-level server with the node's connection guards and problem answers."""

    def __init__(self, node: Any, **kwargs: Any) -> None:
        super().__init__(self._handle, **kwargs)
        self.node = node
        limits = node.config.limits
        self.header_timeout = limits.header_timeout_s
        self.addresses = AddressCounts(limits.max_connections_per_ip)

    def __call__(self) -> RequestHandler:
        return _ProblemHandler(self, loop=self._loop, **self._kwargs)

    def _handle(self, request: web.BaseRequest) -> Any:
        """The node's handler, behind the header-value check (an awaitable either way)."""
        name = bad_header(request.headers)
        if name is not None:
            return self._refuse(describe(name))
        return self.node.handle(request)

    async def _refuse(self, detail: str) -> web.StreamResponse:
        return problem_response(self.node, 400, detail)


def problem_response(node: Any, status: int, detail: str, exc: BaseException | None = None) -> web.Response:
    """A problem+json answer given outside the node's handler; the connection closes after it."""
    request_id = node.new_request_id()
    code = _CODES.get(status, "server.internal" if status >= 500 else "client.bad_request")
    if status >= 500:
        node.log.error(request_id, "unhandled error", exc)
    else:
        node.log.error(request_id, detail, None)
    node.metrics.observe("malformed", "OTHER", status, 0.0)
    p = Problem(code, detail)
    resp = web.Response(status=p.status, body=p.body(request_id), content_type=PROBLEM,
                        headers={"X-Exchange-Request-Id": request_id})
    resp.force_close()
    return resp


class _ProblemHandler(RequestHandler):
    __slots__ = ("_address", "_head_timer", "_body")

    def __init__(self, manager: ExchangeServer, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._address: str | None = None  # counted in manager.addresses while open
        self._head_timer: asyncio.TimerHandle | None = None  # runs while a head is incomplete
        self._body: StreamReader | None = None  # the body being received, if any

    # -- protocol errors ------------------------------------------------------------------

    def handle_error(self, request: web.BaseRequest, status: int = 500,
                     exc: BaseException | None = None, message: str | None = None) -> web.StreamResponse:
        if request.writer.output_size > 0:
            raise ConnectionError("the response was already started; closing the connection")
        reason = (getattr(exc, "message", None) or message or "").strip().splitlines()
        detail = "malformed HTTP request" + (f": {reason[0][:200]}" if reason and status < 500 else "")
        return problem_response(self._manager.node, status, detail, exc)  # type: ignore[union-attr]

    # -- connections per address -----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        server: ExchangeServer = self._manager  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        address = peer[0] if isinstance(peer, tuple) and peer else None
        if address is not None:
            if not server.addresses.take(address):
                server.node.metrics.refused_per_address.inc()
                self.force_close()
                return
            self._address = address
        self._arm()

    def connection_lost(self, exc: BaseException | None) -> None:
        server = self._manager
        if self._address is not None and server is not None:
            server.addresses.give(self._address)  # type: ignore[attr-defined]
            self._address = None
        self._disarm()
        self._body = None
        super().connection_lost(exc)

    # -- header timeout --------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._force_close or self._close or self._upgraded or self._payload_parser is not None:
            super().data_received(data)
            return
        if not data or data.endswith(b"\r\n\r\n"):
            # Empty: aiohttp re-parsing what it buffered while paused. CRLF CRLF at the end
            # (most requests without a body): a head in progress would be complete there,
            # so none is pending; the bytes may also sit in a body, which is not timed.
            self._feed(data)
            return
        # Feed all but the last byte, then the last one: whether that byte completed a head
        # or a body, or sits in a head still incomplete, tells if a head is pending.
        if len(data) > 1:
            self._feed(data[:-1])
            if self._force_close or self._close:
                return
            data = data[-1:]
        count, body = self._request_count, self._body
        self._feed(data)
        if self._request_count != count or self._body is not None or body is not None:
            return  # a head completed (timer stopped), or the byte is (or ended) a body
        self._arm()  # the byte belongs to a request head that is not complete yet

    def _feed(self, data: bytes) -> None:
        count = self._request_count
        super().data_received(data)
        if self._request_count != count:
            self._disarm()
            payload = self._messages[-1][1] if self._messages else None
            self._body = payload if payload is not None and not payload.is_eof() else None
        elif self._body is not None and self._body.is_eof():
            self._body = None

    def _arm(self) -> None:
        if self._head_timer is None:
            server: ExchangeServer = self._manager  # type: ignore[assignment]
            self._head_timer = self._loop.call_later(server.header_timeout, self._head_late)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_late(self) -> None:
        self._head_timer = None
        if self.transport is None or self._force_close or self._manager is None:
            return
        self._manager.node.metrics.refused_header_timeout.inc()  # type: ignore[attr-defined]
        if self._request_in_progress:
            self.close()  # after the answer in progress; the late head is dropped
        else:
            self.force_close()


def make_server(node: Any) -> web.Server:
    """aiohttp's low-level server around the node's handler (no per-route dispatcher)."""
    # auto_decompress=False: bodies are signed as sent; read_body refuses content codings.
    return ExchangeServer(node, access_log=None, handler_cancellation=True, auto_decompress=False)
