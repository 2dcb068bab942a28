"""The node: one request's way from aiohttp to the store and back.

aiohttp parses -> the fast-path route table picks route and resource -> auth verifies
signature and client -> the catalog decides access and projection -> the handler calls
the store -> projection and encoding -> audit entry and metrics -> response.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

import fastpath
from fastpath import CATALOG_ITEM, CURSOR, RECORD, RECORDS, SERVICE, RouteTable
from gateway import signing
from gateway.admission import read_body_unslotted, unqueued
from gateway.audit import AuditEntry, AuditLog
from gateway.auth import check_head, verify
from gateway.catalog import Access, Catalog, ResourceEntry
from gateway.citizenkey import CitizenKey
from gateway.config import NodeConfig
from gateway.errors import Problem
from gateway.filemodes import check_private, private_dir
from gateway.governance import GovernanceStore, open_governance
from gateway.governance.checkpoints import node_checkpointer
from gateway.governance.quotas import RateLimiter
from gateway.governance.webhooks import KEY_FILE, Deliverer, load_node_key
from gateway.handlers import catalog as catalog_handlers
from gateway.handlers import consents as consent_handlers
from gateway.handlers import ops, records
from gateway.handlers import services as service_handlers
from gateway.handlers import webhooks as webhook_handlers
from gateway.keyring import Keyring
from gateway.logs import AccessLog
from gateway.metrics import Metrics
from gateway.release import Releaser
from gateway.services.proxy import ServiceRegistry
from gateway.stores.base import Store, StoreError, StoreUnavailable
from gateway.stores.retention import RetentionJob
from gateway.wire import PROBLEM

# Static routes (kinds >= fastpath.STATIC_MIN).
HEALTHZ, READYZ, METRICS, OPENAPI, CATALOG = range(fastpath.STATIC_MIN, fastpath.STATIC_MIN + 5)
# Services and governance routes (static, or matched by _match_extra: not on the hot path).
(SERVICES, CONSENTS, CONSENT_ITEM, ACCESS_LOG, SUBSCRIPTIONS, SUBSCRIPTION_ITEM, MY_SUBSCRIPTIONS,
 COMPOSITE) = range(fastpath.STATIC_MIN + 5, fastpath.STATIC_MIN + 13)
NODE_KEYS = fastpath.STATIC_MIN + 13  # unsigned: the node's webhook-signing public key
STATIC = {"/healthz": HEALTHZ, "/readyz": READYZ, "/metrics": METRICS,
          "/openapi.json": OPENAPI, "/v1/catalog": CATALOG, "/v1/services": SERVICES,
          "/v1/consents": CONSENTS, "/v1/subscriptions": MY_SUBSCRIPTIONS, "/v1/node-keys": NODE_KEYS}
_SEGMENT = re.compile(r"^[A-Za-z0-9._:@-]{1,128}$")


def _match_extra(path: str) -> tuple[int, int, str | None, str | None] | None:
    """Governance routes with an id in the path (consents, citizens, subscriptions, composites)."""
    parts = path.split("/")
    n = len(parts)
    if n < 4 or parts[1] != "v1" or not all(_SEGMENT.match(p) for p in parts[2:]):
        return None
    section = parts[2]
    if n == 4 and section == "consents":
        return (CONSENT_ITEM, -1, parts[3], None)
    if n == 4 and section == "subscriptions":
        return (SUBSCRIPTION_ITEM, -1, parts[3], None)
    if n == 4 and section == "composites":
        return (COMPOSITE, -1, parts[3], None)
    if n == 5 and section == "citizens" and parts[4] == "access-log":
        return (ACCESS_LOG, -1, parts[3], None)
    if n == 5 and section == "resources" and parts[4] == "subscriptions":
        return (SUBSCRIPTIONS, -1, parts[3], None)
    return None

Handler = Callable[["Call"], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Route:
    """How one route kind is served: its name for metrics and its handler per method."""

    name: str
    methods: dict[str, Handler]
    signed: bool = True
    audit_op: dict[str, str] = field(default_factory=dict)
    keyed: frozenset[str] = frozenset()  # methods that must carry a signed Idempotency-Key


ROUTES: dict[int, Route] = {
    RECORDS: Route("records", {"POST": records.push, "GET": records.pull},
                   audit_op={"POST": "push", "GET": "pull"}, keyed=frozenset({"POST"})),
    RECORD: Route("record", {"GET": records.get_by_key}, audit_op={"GET": "read"}),
    CURSOR: Route("cursor", {"PUT": records.commit_cursor}, audit_op={"PUT": "cursor"}),
    CATALOG: Route("catalog", {"GET": catalog_handlers.list_catalog}),
    CATALOG_ITEM: Route("catalog_item", {"GET": catalog_handlers.get_entry}),
    HEALTHZ: Route("healthz", {"GET": ops.healthz}, signed=False),
    READYZ: Route("readyz", {"GET": ops.readyz}, signed=False),
    METRICS: Route("metrics", {"GET": ops.metrics}, signed=False),
    OPENAPI: Route("openapi", {"GET": ops.openapi}, signed=False),
    SERVICE: Route("service", dict.fromkeys(("GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"),
                                            service_handlers.call_service)),
    SERVICES: Route("services", {"GET": service_handlers.list_services}),
    COMPOSITE: Route("composite", {"POST": service_handlers.run_composite}, keyed=frozenset({"POST"})),
    CONSENTS: Route("consents", {"POST": consent_handlers.create_consent}, keyed=frozenset({"POST"})),
    CONSENT_ITEM: Route("consent", {"GET": consent_handlers.get_consent,
                                    "DELETE": consent_handlers.revoke_consent}),
    ACCESS_LOG: Route("access_log", {"GET": consent_handlers.access_log}),
    SUBSCRIPTIONS: Route("subscriptions", {"POST": webhook_handlers.subscribe,
                                           "GET": webhook_handlers.list_for_resource},
                         keyed=frozenset({"POST"})),
    MY_SUBSCRIPTIONS: Route("subscriptions", {"GET": webhook_handlers.list_mine}),
    SUBSCRIPTION_ITEM: Route("subscription", {"GET": webhook_handlers.get_subscription,
                                              "DELETE": webhook_handlers.unsubscribe}),
    NODE_KEYS: Route("node_keys", {"GET": webhook_handlers.node_keys}, signed=False),
}
RELEASES = frozenset({"pull", "read"})  # audit operations that hand records to the caller
KNOWN_METHODS = {"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"}


@dataclass(frozen=True, slots=True)
class State:
    """Everything a catalog reload swaps at once."""

    catalog: Catalog
    keyring: Keyring
    routes: Any  # fastpath RouteTable


class Call:
    """One request on its way through the node."""

    __slots__ = ("node", "request", "request_id", "client", "entry", "access", "key",
                 "body", "body_sha256", "count", "state", "target", "audit_op", "citizens",
                 "consent", "purpose", "route", "idempotency_key", "signature")

    def __init__(self, node: Node, request: web.BaseRequest, request_id: str, state: State) -> None:
        self.node = node
        self.request = request
        self.request_id = request_id
        self.state = state
        self.client: str | None = None
        self.entry: ResourceEntry | None = None
        self.access: Access | None = None
        self.key: str | None = None
        self.body = b""
        self.body_sha256 = signing.EMPTY_SHA256
        self.count = 0
        self.target: str | None = None  # resource, service, consent ... named by the path
        self.audit_op: str | None = None  # set when the exchange is audited
        self.citizens: list[str] | None = None  # keyed hashes; None = from X-Exchange-UserId
        self.consent: str | None = None
        self.purpose: str | None = None
        self.route = "unmatched"  # the route kind's name once matched (metrics, access log)
        self.idempotency_key: str | None = None  # signed (the signature covers it)
        self.signature = ""  # the request's signature: names a signed request once


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
    return State(catalog, keyring, RouteTable(catalog.resource_ids, catalog.services.ids, STATIC))


class Node:
    """A gateway node: holds the state and serves requests through :meth:`handle`."""

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
        self.webhooks = Deliverer(self)
        self.log = AccessLog(enabled=config.node.access_log)
        self.retention = RetentionJob(store, lambda: self.state.catalog,
                                      interval_s=config.store.retention_interval_s)
        self.inflight = 0
        self.max_inflight = config.limits.max_inflight
        self.metrics.inflight.set_function(lambda: self.inflight)  # read at scrape time only
        self.ready = False
        self.draining = False
        self.drained = asyncio.Event()  # set when draining starts: long-polls answer at once
        self._ids = itertools.count(1)
        self._id_prefix = os.urandom(4).hex()

    def new_request_id(self) -> str:
        """A request id unique to this node process (``X-Exchange-Request-Id``)."""
        return f"{self._id_prefix}-{next(self._ids):x}"

    def swap_state(self, state: State) -> None:
        """Atomically replace catalog, keys and route table (one reference assignment)."""
        self.state = state
        self.metrics.catalog_resources.set(len(state.catalog.resources))
        if self.ready:
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
        self.metrics.watch(self.store, self.audit, self.config.resolve(self.config.node.data_dir))
        self.ready = True

    async def stop(self) -> None:
        self.ready = False
        await self.retention.stop()
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
        route_name = "unmatched"
        status = 500
        if self.inflight >= self.max_inflight and not unqueued(request):
            self.metrics.rejected.inc()
            resp = self._problem(Problem("server.unavailable", "node is at max_inflight; retry shortly",
                                         headers={"Retry-After": "1"}), request_id)
            self._finish(request, request_id, None, "overload", method, 503, t0)
            resp.headers["X-Exchange-Request-Id"] = request_id
            return resp
        self.inflight += 1
        call = Call(self, request, request_id, self.state)
        try:
            route_name, resp = await self._dispatch(call)
            if call.citizens and call.audit_op in RELEASES and self.audit is not None:
                # personal data leaves only once its release is durably in the audit log
                await self.audit.record(self.audit_entry(call, resp.status))
                call.audit_op = None
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
            self._finish(request, request_id, call.client, call.route, method, status, t0)
            if call.audit_op is not None and call.client is not None and self.audit is not None:
                self.submit_audit(self.audit_entry(call, status), request_id)
        if not resp.prepared:
            resp.headers["X-Exchange-Request-Id"] = request_id
        return resp

    async def _dispatch(self, call: Call) -> tuple[str, web.StreamResponse]:
        request = call.request
        raw_path = request.raw_path
        qpos = raw_path.find("?")
        path = raw_path if qpos < 0 else raw_path[:qpos]
        query = "" if qpos < 0 else raw_path[qpos + 1:]
        state = call.state
        m = state.routes.match(request.method, path)
        if m is None:
            m = _match_extra(path)
        if m is None:
            if len(path) > 2048 or "%" in path or "/./" in path or "/../" in path or "//" in path:
                raise Problem("client.bad_request", "malformed request path")
            raise Problem("client.not_found", f"no route for {path[:200]!r}")
        kind, index, ident, extra = m
        route = ROUTES.get(kind)
        if route is None:
            raise Problem("client.not_found", f"no route for {path[:200]!r}")
        call.route = route.name
        handler = route.methods.get(request.method)
        if handler is None:
            raise Problem("client.method_not_allowed",
                          f"{request.method} is not allowed on {route.name}; use {', '.join(route.methods)}",
                          headers={"Allow": ", ".join(route.methods)})
        if not route.signed:
            return route.name, await handler(call)
        head = check_head(state.keyring, state.catalog.subsystems, request.headers)
        call.idempotency_key = idempotency_key(request.headers, request.method in route.keyed)
        call.signature = head.signature
        call.body = await read_body_unslotted(self, request)
        call.body_sha256 = signing.body_digest(call.body)
        call.client = verify(head, request.method, path, query, call.body_sha256)
        self._check_mtls(call)
        if state.catalog.quotas:
            self.limiter.check(call.client, state.catalog.quotas)
        if kind == SERVICE:
            call.target, call.key = ident, extra
            return route.name, await handler(call)
        if kind >= SERVICES:
            call.target = ident
            return route.name, await handler(call)
        if ident is not None and kind in (RECORDS, RECORD, CURSOR, CATALOG_ITEM):
            if index < 0:
                raise Problem("client.not_found", f"unknown resource {ident!r}")
            entry = state.catalog.resources[index]
            call.entry = entry
            if kind == CATALOG_ITEM:
                return route.name, await handler(call)
            call.key = extra
            call.target = entry.id
            call.audit_op = route.audit_op.get(request.method)
            self.audit_guard()
            if not (kind == RECORDS and request.method == "POST"):
                access = state.catalog.access(call.client, entry)
                if access is None:
                    raise Problem("client.access_denied", f"{call.client} has no read access to {entry.id}")
                call.access = access
                if kind == RECORD and entry.spec.personal:
                    return route.name, await consent_handlers.personal_read(call)
        return route.name, await handler(call)

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

    def _check_mtls(self, call: Call) -> None:
        if not self.config.node.client_ca:
            return
        transport = call.request.transport
        cert = transport.get_extra_info("peercert") if transport else None
        names = set()
        for rdn in (cert or {}).get("subject", ()):
            for k, v in rdn:
                if k == "commonName":
                    names.add(v)
        for k, v in (cert or {}).get("subjectAltName", ()):
            if k == "URI":
                names.add(v.removeprefix("urn:exchange:"))
        if call.client not in names:
            raise Problem("client.unauthenticated",
                          "the TLS client certificate does not name the subsystem in X-Exchange-Client")

    def _problem(self, p: Problem, request_id: str) -> web.Response:
        return web.Response(status=p.status, body=p.body(request_id), content_type=PROBLEM, headers=p.headers)

    def _finish(self, request: web.BaseRequest, request_id: str, client: str | None,
                route: str, method: str, status: int, t0: float) -> None:
        dt = time.perf_counter() - t0
        self.metrics.observe(route, method if method in KNOWN_METHODS else "OTHER", status, dt)
        path = request.path
        if route == "record":  # record keys and citizen ids are personal data: not in the log
            path = path.rpartition("/")[0] + "/{key}"
        elif route == "access_log":
            path = "/v1/citizens/{user}/access-log"
        self.log.access(request_id, client, method, path, status, dt)

    def audit_entry(self, call: Call, status: int) -> AuditEntry:
        """The audit entry of a call: the citizens are those whose records it released (or the
        governance act named), the purpose and consent those the consent rule accepted;
        nothing comes from an unchecked header."""
        return AuditEntry(ts=time.time(), request_id=call.request_id, client=call.client or "",
                          op=call.audit_op or "", target=call.target or "", status=status,
                          count=call.count, citizens=call.citizens or [], purpose=call.purpose,
                          consent=call.consent)

    def audit_step(self, call: Call, op: str, target: str, status: int, *, count: int = 1,
                   detail: str | None = None) -> None:
        """Audit one part of a call (a composite step) under the call's request id."""
        if self.audit is None:
            return
        self.submit_audit(AuditEntry(
            ts=time.time(), request_id=call.request_id, client=call.client or "", op=op, target=target,
            status=status, count=count, purpose=call.purpose, detail=detail), call.request_id)

    def submit_audit(self, entry: AuditEntry, request_id: str = "") -> None:
        """Queue an audit entry (the guard made room before the access)."""
        if self.audit is None:
            return
        try:
            self.audit.submit(entry)
        except Problem:
            self.log.error(request_id, "audit queue full", None)


def make_server(node: Node) -> web.Server:
    """aiohttp's low-level server around the node's handler (no per-route dispatcher)."""
    from gateway.protocol import ExchangeServer

    # auto_decompress=False: bodies are signed as sent; read_body refuses content codings.
    return ExchangeServer(node, access_log=None, handler_cancellation=True, auto_decompress=False)
