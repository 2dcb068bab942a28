"""The service proxy: one connection pool, balancer, breaker and retry budget per service.

A call's request body is already read (its hash is signed); the response body is streamed
from the backend to the caller. Backend answers, errors included, pass through untouched;
failures on the gateway's side answer 502 (``server.upstream_failed``), 504
(``server.upstream_timeout``) or 503 (``server.unavailable``, breaker open).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Mapping
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

from gateway.errors import Problem
from gateway.services.balancer import Backend, Balancer
from gateway.services.breaker import CircuitBreaker
from gateway.services.budget import RetryBudget
from gateway.services.h1client import H1Client, Response, UpstreamError
from gateway.services.spec import IDEMPOTENT, Service

#: Headers that belong to one connection (RFC 9110 7.6.1) or to the caller's credentials.
HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
    "te", "trailer", "trailers", "transfer-encoding", "upgrade", "host", "content-length",
    "authorization", "expect", "x-exchange-request-id",
})
#: Headers that the node asserts to a backend (here or on webhook deliveries): a caller's
#: copies are dropped, so that a backend can trust them. ``X-Forwarded-*`` too (prefix).
NODE_ASSERTED = frozenset({
    "x-exchange-client", "x-exchange-request-id", "x-exchange-composite", "x-exchange-step",
    "x-exchange-date", "x-exchange-delivery", "x-exchange-signature", "x-exchange-subscription",
    "forwarded", "via", "x-real-ip",
})
RESPONSE_DROP = frozenset(HOP_BY_HOP - {"content-length", "x-exchange-request-id"}) | {"server"}
BUFFER_MAX = 256 * 1024  # answers up to this size (with Content-Length) are sent in one write


class UpstreamResult:
    """A buffered backend answer (composite steps use this instead of streaming)."""

    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body


def connection_tokens(headers: Mapping[str, str]) -> set[str]:
    """Header names listed in Connection (also hop-by-hop)."""
    value = headers.get("Connection", "")
    return {t.strip().lower() for t in value.split(",") if t.strip()}


def outbound_headers(headers: Any, request_id: str, peer: str | None, client: str) -> CIMultiDict[str]:
    """The caller's end-to-end headers for the backend, and the node's own assertions:
    ``X-Exchange-Client`` (the authenticated caller), ``X-Exchange-Request-Id``,
    ``X-Forwarded-For`` and ``Via``; a caller's copies of those are dropped. 400 on CR/LF/NUL."""
    drop = HOP_BY_HOP | NODE_ASSERTED
    if "Connection" in headers:
        drop = drop | connection_tokens(headers)
    out: CIMultiDict[str] = CIMultiDict()
    for k, v in headers.items():
        if "\r" in v or "\n" in v or "\x00" in v or "\r" in k or "\n" in k:
            raise Problem("client.bad_request", f"header {k[:64]!r} contains a line break or NUL")
        lk = k.lower()
        if lk not in drop and not lk.startswith("x-forwarded-"):
            out.add(k, v)
    out["X-Exchange-Client"] = client
    out["X-Exchange-Request-Id"] = request_id
    if peer:
        out["X-Forwarded-For"] = peer
    out["Via"] = "1.1 onestop-exchange"
    return out


class ServiceMetrics:
    """Service call outcomes and open breakers (labels bounded: outcomes, not service ids)."""

    OUTCOMES = ("ok", "backend_5xx", "upstream_failed", "upstream_timeout", "circuit_open", "retried")

    def __init__(self, registry: Any = None) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge

        r = registry if registry is not None else CollectorRegistry()
        calls = Counter("exchange_service_calls", "Service calls by outcome", ["outcome"], registry=r)
        self.calls = {o: calls.labels(o) for o in self.OUTCOMES}
        self.open_breakers = Gauge("exchange_service_breakers_open", "Services whose circuit is open",
                                   registry=r)

    def count(self, outcome: str) -> None:
        self.calls[outcome].inc()


class ServicePool:
    """Everything the node keeps per service: pool, balancer, breaker, budget, health task."""

    def __init__(self, spec: Service, metrics: ServiceMetrics | None = None) -> None:
        self.spec = spec
        self.metrics = metrics or ServiceMetrics()
        self.balancer = Balancer(((b.url, b.weight) for b in spec.backends),
                                 spec.eject_failures, spec.eject_s)
        br = spec.breaker
        self.breaker = CircuitBreaker(br.failures, br.open_s, br.half_open_probes)
        self.budget = RetryBudget(spec.retry_budget)
        self.client = H1Client(limit=spec.max_connections, connect_timeout=spec.connect_timeout_s)
        self._health: asyncio.Task | None = None

    # -- health ------------------------------------------------------------------------

    def start(self) -> None:
        """Start the active health check (when the service declares one)."""
        if self.spec.health is not None and self._health is None:
            self._health = asyncio.get_running_loop().create_task(self._check_forever())

    async def check_once(self) -> None:
        """Probe every backend once and mark it up (2xx) or down."""
        hc = self.spec.health
        assert hc is not None

        async def probe(b: Backend) -> None:
            try:
                async with asyncio.timeout(hc.timeout_s):
                    r = await self.client.request("GET", b.base + hc.path, {"User-Agent": "onestop-health"},
                                                  read_timeout=hc.timeout_s)
                    try:
                        await r.read(1 << 20)
                    finally:
                        r.release()
                b.healthy = 200 <= r.status < 300
            except (UpstreamError, TimeoutError, OSError):
                b.healthy = False

        await asyncio.gather(*(probe(b) for b in self.balancer.backends))

    async def _check_forever(self) -> None:
        assert self.spec.health is not None
        while True:
            await self.check_once()
            await asyncio.sleep(self.spec.health.interval_s)

    async def close(self) -> None:
        if self._health is not None:
            self._health.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._health
            self._health = None
        self.client.close()

    # -- calls -------------------------------------------------------------------------

    def _admit(self) -> None:
        if not self.breaker.allow():
            self.metrics.count("circuit_open")
            wait = max(1, math.ceil(self.breaker.retry_after()))
            raise Problem("server.unavailable", f"circuit open for service {self.spec.id}; retry in {wait} s",
                          headers={"Retry-After": str(wait)})

    async def _send(self, method: str, tail: str, query: str, body: bytes,
                    headers: CIMultiDict[str]) -> Response:
        """Send with retries (idempotent methods, within the budget); answers once the head arrived.

        A kept-alive connection found closed before any answer (the backend most likely
        closed it while idle) is retried once on a fresh connection when the request is
        replayable: an idempotent method, or one carrying an ``Idempotency-Key``.
        """
        spec = self.spec
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + spec.timeout_s
        attempts = 1 + (spec.retries if method in IDEMPOTENT else 0)
        replayable = method in IDEMPOTENT or "Idempotency-Key" in headers
        self.budget.on_request()
        tried: list[Backend] = []
        last: Problem | None = None
        attempt = stale_retry = 0
        while attempt < attempts:
            if attempt and not stale_retry and not self.budget.try_retry():
                break
            stale_retry = 0
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            b = self.balancer.pick(tried)
            tried.append(b)
            try:
                resp = await self.client.request(method, b.target(tail, query), headers, body,
                                                 read_timeout=spec.timeout_s,
                                                 deadline=loop.time() + remaining)
            except TimeoutError:
                self.balancer.failure(b)
                self.metrics.count("upstream_timeout")
                raise Problem("server.upstream_timeout",
                              f"service {spec.id} did not answer within {spec.timeout_s:g} s") from None
            except UpstreamError as exc:
                if exc.kind == "stale" and replayable and not stale_retry:
                    stale_retry = 1
                    tried.pop()
                    continue  # the same attempt again, on a fresh connection
                self.balancer.failure(b)
                last = Problem("server.upstream_failed", f"service {spec.id} failed: {exc}")
                attempt += 1
                if attempt < attempts:
                    self.metrics.count("retried")
                continue
            if resp.status >= 500:
                self.balancer.failure(b)
                self.metrics.count("backend_5xx")
            else:
                self.balancer.success(b)
                self.metrics.count("ok")
            return resp
        self.metrics.count("upstream_failed" if last else "upstream_timeout")
        raise last or Problem("server.upstream_timeout", f"service {spec.id}: no time left for a retry")

    async def _call(self, method: str, tail: str, query: str, body: bytes,
                    headers: CIMultiDict[str]) -> Response:
        self._admit()
        try:
            resp = await self._send(method, tail, query, body, headers)
        except Problem:
            self.breaker.failure()
            raise
        except BaseException:
            self.breaker.release()
            raise
        (self.breaker.success if resp.status < 500 else self.breaker.failure)()
        return resp

    async def forward(self, request: web.BaseRequest, tail: str, query: str, body: bytes,
                      request_id: str, client: str) -> web.StreamResponse:
        """Proxy one call for the authenticated ``client``; small answers in one write,
        others streamed to the caller."""
        headers = outbound_headers(request.headers, request_id, request.remote, client)
        resp = await self._call(request.method, tail, query, body, headers)
        complete = False
        out: web.StreamResponse | None = None
        try:
            drop = RESPONSE_DROP | connection_tokens(resp.headers)
            headers_out: CIMultiDict[str] = CIMultiDict()
            for k, v in resp.headers.items():
                if k.lower() not in drop:
                    headers_out.add(k, v)
            headers_out["X-Exchange-Request-Id"] = request_id
            length = resp.content_length
            if request.method == "HEAD":
                out = web.Response(status=resp.status, reason=resp.reason, headers=headers_out)
                complete = True
                return out
            if length is not None and length <= BUFFER_MAX:
                body_out = await resp.read()
                headers_out.pop("Content-Length", None)
                out = web.Response(status=resp.status, reason=resp.reason, body=body_out or None,
                                   headers=headers_out)
                complete = True
                return out
            headers_out.pop("Content-Length", None)
            out = web.StreamResponse(status=resp.status, reason=resp.reason, headers=headers_out)
            if length is not None:
                out.content_length = length
            try:
                await out.prepare(request)
                async for chunk in resp.iter_chunks():
                    await out.write(chunk)
                await out.write_eof()
            except ConnectionResetError:
                return out  # the caller went away mid-answer; nothing more to send
            complete = True
            return out
        except (UpstreamError, TimeoutError) as exc:
            if out is None or not out.prepared:
                raise Problem("server.upstream_failed",
                              f"service {self.spec.id} broke off its answer: {exc}") from None
            raise
        finally:
            if complete:
                resp.release()
            else:
                resp.close()

    async def call(self, method: str, tail: str, body: bytes, headers: CIMultiDict[str],
                   max_body: int = 8 * 1024 * 1024) -> UpstreamResult:
        """One buffered call (for composite steps); raises Problem on gateway-side failure."""
        resp = await self._call(method, tail, "", body, headers)
        try:
            data = await resp.read(max_body)
        except (UpstreamError, TimeoutError) as exc:
            resp.close()
            self.breaker.failure()
            raise Problem("server.upstream_failed", f"service {self.spec.id} broke off its answer: {exc}") from None
        resp.release()
        return UpstreamResult(resp.status, dict(resp.headers), data)


class ServiceRegistry:
    """The pools of the catalog's services; a catalog reload keeps unchanged ones."""

    def __init__(self, registry: Any = None) -> None:
        self.metrics = ServiceMetrics(registry)
        self.pools: dict[str, ServicePool] = {}
        self.metrics.open_breakers.set_function(
            lambda: sum(1 for p in self.pools.values() if p.breaker.state == "open"))
        self._started = False
        self._closing: set[asyncio.Task] = set()
        self._retired: set[ServicePool] = set()

    def update(self, services: list[Service]) -> None:
        """Adopt a new catalog's services (call from the event loop)."""
        new: dict[str, ServicePool] = {}
        for s in services:
            old = self.pools.get(s.id)
            if old is not None and old.spec == s:
                new[s.id] = old
            else:
                new[s.id] = pool = ServicePool(s, self.metrics)
                if self._started:
                    pool.start()
        retired = [p for sid, p in self.pools.items() if new.get(sid) is not p]
        self.pools = new
        for p in retired:  # let in-flight calls finish before closing their pool
            self._retired.add(p)
            t = asyncio.get_running_loop().create_task(self._close_later(p))
            self._closing.add(t)
            t.add_done_callback(self._closing.discard)

    async def _close_later(self, pool: ServicePool, delay: float = 30.0) -> None:
        await asyncio.sleep(min(delay, pool.spec.timeout_s + 1))
        self._retired.discard(pool)
        await pool.close()

    def start(self) -> None:
        self._started = True
        for p in self.pools.values():
            p.start()

    def get(self, service_id: str) -> ServicePool | None:
        return self.pools.get(service_id)

    async def close(self) -> None:
        closing = list(self._closing)
        for t in closing:
            t.cancel()
        await asyncio.gather(*closing, return_exceptions=True)
        for p in [*self.pools.values(), *self._retired]:
            await p.close()
        self.pools = {}
        self._retired.clear()
