"""The pipeline: one request's way from aiohttp to a handler and back, in one direction.

request id and admission (``max_inflight``) -> the fast-path route table picks the route
(``gateway.routes``) and its path parameters -> the signature's headers are checked before
the body costs anything -> the body is read (without holding a slot) and the signature
verified -> mutual TLS and quota -> the endpoint's access policy (owner, reader and, for a
personal keyed read, the consent rule; portal; member) -> the handler, given an
:class:`~gateway.exchange.Exchange`, answers and names the audit facts -> a release of
personal data is durably audited -> the answer is encoded -> audit entry, metrics and
access log. Handlers never see the node; the node never parses a path.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from fastpath import RouteTable
from gateway import signing
from gateway.admission import read_body_unslotted, unqueued
from gateway.audit import AuditEntry, AuditLog
from gateway.auth import check_head, verify
from gateway.catalog import Catalog
from gateway.citizenkey import CitizenKey
from gateway.config import NodeConfig
from gateway.errors import Problem
from gateway.exchange import Answer, Backends, Exchange, Status
from gateway.filemodes import check_private, private_dir
from gateway.governance import GovernanceStore, open_governance
from gateway.governance.checkpoints import node_checkpointer
from gateway.governance.consents import authorize_personal_read
from gateway.governance.quotas import RateLimiter
from gateway.governance.webhooks import KEY_FILE, Deliverer, load_node_key
from gateway.keyring import Keyring
from gateway.logs import AccessLog
from gateway.looplag import LoopLag
from gateway.metrics import Metrics
from gateway.openapi import openapi_document
from gateway.release import Releaser
from gateway.routes import RELEASES, ROUTES, Access, Endpoint, Route
from gateway.services.proxy import ServiceRegistry
from gateway.stores.base import Store, StoreError, StoreUnavailable
from gateway.stores.retention import RetentionJob
from gateway.wire import PROBLEM, int_param, json_encode, respond

KNOWN_METHODS = {"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"}
TEMPLATES = tuple(r.path for r in ROUTES)
OPENAPI = json_encode(openapi_document(ROUTES))


@dataclass(frozen=True, slots=True)
class State:
    """Everything a catalog reload swaps at once."""

    catalog: Catalog
    keyring: Keyring
    routes: Any  # fastpath RouteTable compiled from gateway.routes


def idempotency_key(headers: Any, required: bool) -> str | None:
    """The request's ``Idempotency-Key`` (400 when malformed, or missing where required)."""
    key = headers.get("Idempotency-Key")
    if key is None:
        if required:
            raise Problem("client.bad_request",
                          "this request creates state: send a signed Idempotency-Key (1 to 128 of A-Z a-z 0-9 . _ : -)")
        return None
    if not signing.IDEMPOTENCY_KEY_RE.match(key):
        raise Problem("client.bad_request", "Idempotency-Key must be 1 to 128 of A-Z a-z 0-9 . _ : -")
    return key


def build_state(catalog: Catalog, keyring: Keyring) -> State:
    """Check that keys name declared subsystems and compile the route table."""
    keyring.check_clients(set(catalog.subsystems))
    return State(catalog, keyring, RouteTable(TEMPLATES, catalog.resource_ids, catalog.services.ids))


class Node:
    """A gateway node: holds the state and the backends, serves requests through :meth:`handle`."""

    def __init__(self, config: NodeConfig, state: State, store: Store, *, audit: bool = True,
                 governance: GovernanceStore | None = None) -> None:
        self.config = config
        self.state = state
        self.store = store
        self.metrics = Metrics()
        self.metrics.catalog_resources.set(len(state.catalog.resources))
        data_dir = private_dir(config.resolve(config.node.data_dir))  # mode 0700
        self.governance = governance if governance is not None else open_governance(config)
        self.citizen = CitizenKey.load(config, state.keyring)  # the cluster's (gateway/citizenkey.py)
        self.citizen_key = self.citizen.secret
        self.node_key = load_node_key(check_private(data_dir / KEY_FILE, "the node key"))  # signs webhooks
        self.audit = AuditLog(self.governance, self.citizen_key,  # the node key signs audit checkpoints
                              checkpointer=node_checkpointer(config, self.node_key, self.governance)
                              ) if audit else None
        self.services = ServiceRegistry(self.metrics.registry)
        self.limiter = RateLimiter()
        self.releaser = Releaser(self.citizen_key)  # minimisation and the citizens released
        self.log = AccessLog(enabled=config.node.access_log)
        self.webhooks = Deliverer(store=store, governance=self.governance, releaser=self.releaser,
                                  audit=self.audit, node_key=self.node_key, log=self.log,
                                  catalog=lambda: self.state.catalog, registry=self.metrics.registry)
        self.retention = RetentionJob(store, lambda: self.state.catalog,
                                      interval_s=config.store.retention_interval_s)
        self.inflight = 0
        self.max_inflight = config.limits.max_inflight
        self._mtls = bool(config.node.client_ca)  # client certificates must name the caller
        self.metrics.inflight.set_function(lambda: self.inflight)  # read at scrape time only
        self.status = Status()
        self.loop_lag = LoopLag(self.metrics.registry)
        self.drained = asyncio.Event()  # set when draining starts: long-polls answer at once
        self.backends = Backends(store=store, governance=self.governance, releaser=self.releaser,
                                 services=self.services, webhooks=self.webhooks, audit=self.audit,
                                 metrics=self.metrics, limits=config.limits, citizen_key=self.citizen_key,
                                 node_key=self.node_key, status=self.status, drained=self.drained,
                                 openapi=OPENAPI)
        self._ids = itertools.count(1)
        self._id_prefix = os.urandom(4).hex()

    @property
    def ready(self) -> bool:
        return self.status.ready

    @property
    def draining(self) -> bool:
        return self.status.draining

    def drain(self) -> None:
        """Start draining: not ready any more, long-polls answer at once."""
        self.status.draining = True
        self.drained.set()

    def new_request_id(self) -> str:
        """A request id unique to this node process (``X-Exchange-Request-Id``)."""
        return f"{self._id_prefix}-{next(self._ids):x}"

    def swap_state(self, state: State) -> None:
        """Atomically replace catalog, keys and route table (one reference assignment)."""
        self.state = state
        self.metrics.catalog_resources.set(len(state.catalog.resources))
        if self.status.ready:
            self.services.update(state.catalog.services.services)

    async def start(self) -> None:
        await self.store.open()
        await self.governance.open()
        await self.citizen.check(self.governance)  # the key that hashed the stored data
        if self.audit:
            self.audit.start()
        self.services.update(self.state.catalog.services.services)
        self.services.start()
        self.webhooks.start()
        self.log.start()
        self.retention.start()  # the catalog's retention policies, every retention_interval_s
        self.loop_lag.start()
        self.metrics.watch(self.store, self.audit, self.config.resolve(self.config.node.data_dir))
        self.status.ready = True

    async def stop(self) -> None:
        self.status.ready = False
        await self.retention.stop()
        await self.loop_lag.stop()
        await self.webhooks.stop()
        await self.services.close()
        if self.audit:
            await self.audit.close()
        await self.governance.close()
        await self.store.close()
        await self.log.close()

    # -- the request path -------------------------------------------------------------

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        """aiohttp's low-level handler: every request enters here."""
        t0 = time.perf_counter()
        request_id = f"{self._id_prefix}-{next(self._ids):x}"
        method = request.method
        if self.inflight >= self.max_inflight and not unqueued(request):
            self.metrics.rejected.inc()
            resp = self._problem(Problem("server.unavailable", "node is at max_inflight; retry shortly",
                                         headers={"Retry-After": "1"}), request_id)
            self._finish(request, request_id, "", None, method, 503, t0)
            return resp
        self.inflight += 1
        x = Exchange(request, request_id, self.state.catalog, self.backends)
        route: Route | None = None
        endpoint: Endpoint | None = None
        status = 500
        try:
            route, endpoint = self._route(x)
            resp = await self._serve(x, route, endpoint)
            status = resp.status
        except Problem as p:
            status = p.status
            resp = self._problem(p, request_id)
        except StoreUnavailable as exc:
            status = 503
            resp = self._problem(Problem("server.unavailable", f"store unavailable: {exc}",
                                         headers={"Retry-After": "1"}), request_id)
        except StoreError as exc:
            status = 500
            self.log.error(request_id, "store error", exc)
            resp = self._problem(Problem("server.internal", "store error; see the node's log"), request_id)
        except asyncio.CancelledError:
            status = 499
            raise
        except Exception as exc:  # noqa: BLE001 - the node must answer, never drop the request
            status = 500
            self.log.error(request_id, "unhandled error", exc)
            resp = self._problem(Problem("server.internal", "internal error; see the node's log"), request_id)
        finally:
            self.inflight -= 1
            self._finish(request, request_id, x.client, route, method, status, t0)
            op = x.facts.op or (endpoint.audit if endpoint is not None else None)
            if op is not None and x.client and self.audit is not None and not x.facts.recorded:
                self.submit_audit(self.audit_entry(x, op, status), request_id)
        if not resp.prepared:
            resp.headers["X-Exchange-Request-Id"] = request_id
        return resp

    def _route(self, x: Exchange) -> tuple[Route, Endpoint]:
        """The route and endpoint of the request, with its path parameters on ``x``."""
        request = x.request
        path = request.raw_path.partition("?")[0]
        m = self.state.routes.match(path)
        if m is None:
            if len(path) > 2048 or "%" in path or "/./" in path or "/../" in path or "//" in path:
                raise Problem("client.bad_request", "malformed request path")
            raise Problem("client.not_found", f"no route for {path[:200]!r}")
        route = ROUTES[m[0]]
        x.index, x.first, x.second = m[1], m[2], m[3]
        endpoint = route.methods.get(request.method)
        if endpoint is None:
            raise Problem("client.method_not_allowed",
                          f"{request.method} is not allowed on {route.name}; use {route.allow()}",
                          headers={"Allow": route.allow()})
        return route, endpoint

    async def _serve(self, x: Exchange, route: Route, endpoint: Endpoint) -> web.StreamResponse:
        request = x.request
        if endpoint.access is Access.ANYONE:
            return self._respond(request, await endpoint.handler(x))
        state = self.state
        headers = request.headers
        head = check_head(state.keyring, state.catalog.subsystems, headers)
        x.idempotency_key = idempotency_key(headers, endpoint.idempotent)
        x.signature = head.signature
        if request.body_exists:
            x.body = await read_body_unslotted(self, request)
            x.body_sha256 = signing.body_digest(x.body)
        else:
            x.body_sha256 = signing.EMPTY_SHA256
        raw_path, _, query = request.raw_path.partition("?")
        x.client = verify(head, request.method, raw_path, query, x.body_sha256)
        if self._mtls:
            self._check_mtls(x)
        if state.catalog.quotas:
            self.limiter.check(x.client, state.catalog.quotas)
        if route.resource:
            if x.index < 0:
                raise Problem("client.not_found", f"unknown resource {x.first!r}")
            x.entry = state.catalog.resources[x.index]
            x.facts.target = x.entry.id
        if endpoint.query:
            q = request.rel_url.query
            x.args = {p.name: int_param(q, p.name, p.default, p.lo, p.hi) for p in endpoint.query}
        if endpoint.audit is not None:
            self.audit_guard()
        if endpoint.access is not Access.MEMBER and self._authorize(x, endpoint):
            d = await authorize_personal_read(self.governance, x.catalog, self.citizen_key, x.client,
                                              x.entry, x.access, headers)  # type: ignore[arg-type]
            x.decision = d
            x.facts.consent, x.facts.purpose = d.consent, d.purpose
        answer = await endpoint.handler(x)
        op = x.facts.op or endpoint.audit
        if x.facts.citizens and op in RELEASES and self.audit is not None and answer.status < 300:
            # personal data leaves only once its release is durably in the audit log
            await self.audit.record(self.audit_entry(x, op, answer.status))
            x.facts.recorded = True
        return self._respond(request, answer)

    def _authorize(self, x: Exchange, endpoint: Endpoint) -> bool:
        """The endpoint's access policy; True when the consent rule must run too (a keyed read
        of a personal resource)."""
        catalog = x.catalog
        if endpoint.access is Access.PORTAL:
            if x.client not in catalog.portals:
                raise Problem("client.access_denied", f"{x.client} is not a portal acting for citizens")
            return False
        entry = x.entry
        assert entry is not None  # the route has a {rid}
        if endpoint.access is Access.OWNER:
            if x.client != entry.spec.owner:
                raise Problem("client.access_denied",
                              f"only the owner {entry.spec.owner} may push to {entry.id}")
            return False
        x.access = catalog.access(x.client, entry)
        if x.access is None:
            raise Problem("client.access_denied", f"{x.client} has no read access to {entry.id}")
        return endpoint.consent and entry.spec.personal

    def _respond(self, request: web.BaseRequest, answer: Answer) -> web.StreamResponse:
        if answer.response is not None:
            return answer.response
        if answer.content_type is not None:  # already encoded
            resp = web.Response(status=answer.status, body=answer.doc, headers=answer.headers)
            resp.headers["Content-Type"] = answer.content_type
            return resp
        return respond(request, answer.status, answer.doc, answer.headers)

    def audit_guard(self, reserve: int = 1) -> None:
        """Refuse (503) an exchange that the audit log might not record: its queue is nearly
        full, or the governance store refuses every write (e.g. another cluster's citizen key)."""
        audit = self.audit
        if audit is None:
            return
        if not audit.room(self.inflight + reserve):
            raise Problem("server.unavailable", "audit log is saturated; retry shortly",
                          headers={"Retry-After": "1"})
        if self.governance.refused is not None:
            raise Problem("server.unavailable", "the audit log cannot be written; see /readyz",
                          headers={"Retry-After": "5"})

    def _check_mtls(self, x: Exchange) -> None:
        transport = x.request.transport
        cert = transport.get_extra_info("peercert") if transport else None
        names = set()
        for rdn in (cert or {}).get("subject", ()):
            for k, v in rdn:
                if k == "commonName":
                    names.add(v)
        for k, v in (cert or {}).get("subjectAltName", ()):
            if k == "URI":
                names.add(v.removeprefix("urn:exchange:"))
        if x.client not in names:
            raise Problem("client.unauthenticated",
                          "the TLS client certificate does not name the subsystem in X-Exchange-Client")

    def _problem(self, p: Problem, request_id: str) -> web.Response:
        return web.Response(status=p.status, body=p.body(request_id), content_type=PROBLEM,
                            headers={**p.headers, "X-Exchange-Request-Id": request_id})

    def _finish(self, request: web.BaseRequest, request_id: str, client: str, route: Route | None,
                method: str, status: int, t0: float) -> None:
        dt = time.perf_counter() - t0
        name = route.name if route is not None else ("overload" if status == 503 else "unmatched")
        self.metrics.observe(name, method if method in KNOWN_METHODS else "OTHER", status, dt)
        # record keys and citizen ids are personal data: such paths are logged as their template
        path = route.path if route is not None and route.private else request.path
        self.log.access(request_id, client or None, method, path, status, dt)

    def audit_entry(self, x: Exchange, op: str, status: int) -> AuditEntry:
        """The audit entry of an exchange: the citizens are those whose records it released
        (or the governance act named), the purpose and consent those the consent rule
        accepted; nothing comes from an unchecked header."""
        f = x.facts
        return AuditEntry(ts=time.time(), request_id=x.request_id, client=x.client, op=op,
                          target=f.target or "", status=status, count=f.count, citizens=f.citizens or [],
                          purpose=f.purpose, consent=f.consent)

    def submit_audit(self, entry: AuditEntry, request_id: str = "") -> None:
        """Queue an audit entry (the guard made room before the access)."""
        if self.audit is None:
            return
        try:
            self.audit.submit(entry)
        except Problem:
            self.log.error(request_id, "audit queue full", None)
