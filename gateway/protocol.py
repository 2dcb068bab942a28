"""Malformed HTTP answered as the contract says.

aiohttp's parser refuses some requests before the node's handler runs (a bad request
line, an unknown method, oversized headers). aiohttp would answer those in text/plain
without ``X-Exchange-Request-Id`` and log a traceback; here they get a problem+json
answer with a request id and one JSON error line, like every other error.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from gateway.errors import Problem
from gateway.wire import PROBLEM

_CODES = {400: "client.bad_request", 405: "client.method_not_allowed", 413: "client.payload_too_large",
          431: "client.bad_request", 503: "server.unavailable", 504: "server.upstream_timeout"}


class ExchangeServer(web.Server):
    """aiohttp's low-level server whose connections answer protocol errors as problems."""

    def __init__(self, node: Any, **kwargs: Any) -> None:
        super().__init__(node.handle, **kwargs)
        self.node = node

    def __call__(self) -> RequestHandler:
        return _ProblemHandler(self, loop=self._loop, **self._kwargs)


class _ProblemHandler(RequestHandler):
    def handle_error(self, request: web.BaseRequest, status: int = 500,
                     exc: BaseException | None = None, message: str | None = None) -> web.StreamResponse:
        if request.writer.output_size > 0:
            raise ConnectionError("the response was already started; closing the connection")
        node = self._manager.node  # type: ignore[union-attr]
        request_id = node.new_request_id()
        code = _CODES.get(status, "server.internal" if status >= 500 else "client.bad_request")
        reason = (getattr(exc, "message", None) or message or "").strip().splitlines()
        detail = "malformed HTTP request" + (f": {reason[0][:200]}" if reason and status < 500 else "")
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
