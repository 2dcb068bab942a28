"""What a handler receives and gives back: one :class:`Exchange` in, one :class:`Answer` out.

The pipeline (:mod:`gateway.app`) fills an :class:`Exchange` with everything it has checked
(the authenticated client, the route's resource and the caller's access, the body, the
signed Idempotency-Key, the consent decision) and the :class:`Backends` a handler may use.
The handler answers with a document to encode, or a response it wrote itself (the service
proxy), and records in :class:`Facts` what the audit entry must say. Nothing here knows the
node: handlers never reach back up a layer.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from gateway.audit import AuditLog
    from gateway.catalog import Access, Catalog, ResourceEntry
    from gateway.config import LimitsSection
    from gateway.governance.consents import Decision
    from gateway.governance.store import GovernanceStore
    from gateway.governance.webhooks import Deliverer, NodeKey
    from gateway.metrics import Metrics
    from gateway.release import Releaser
    from gateway.services.proxy import ServiceRegistry
    from gateway.stores.base import Store


@dataclass(slots=True)
class Status:
    """The node's life cycle, as the readiness check reports it."""

    ready: bool = False
    draining: bool = False


@dataclass(frozen=True, slots=True)
class Backends:
    """The domain services and stores handlers use (built once by the node)."""

    store: Store
    governance: GovernanceStore
    releaser: Releaser
    services: ServiceRegistry
    webhooks: Deliverer
    audit: AuditLog | None
    metrics: Metrics
    limits: LimitsSection
    citizen_key: bytes
    node_key: NodeKey  # signs webhook deliveries and audit checkpoints
    status: Status
    openapi: bytes  # the OpenAPI document of the node's routes, encoded once
    drained: asyncio.Event  # set when the node starts draining: long-polls answer at once


@dataclass(slots=True)
class Facts:
    """What the audit entry of an exchange says beyond who, what and the status."""

    target: str | None = None  # resource, service, consent... named by the exchange
    count: int = 0
    citizens: list[str] | None = None  # keyed hashes of the citizens whose data it released or named
    consent: str | None = None
    purpose: str | None = None
    op: str | None = None  # overrides the route's audit operation (rarely needed)
    recorded: bool = False  # already durably in the audit log (a personal release)


@dataclass(slots=True)
class Answer:
    """A handler's result: a document (JSON or msgpack, as the caller accepts), or a response
    the handler has written itself."""

    status: int = 200
    doc: Any = None
    headers: dict[str, str] | None = None
    response: web.StreamResponse | None = None
    content_type: str | None = None  # a document already encoded (bytes) in this media type


class Exchange:
    """One authenticated request on its way to a handler."""

    __slots__ = ("request", "request_id", "catalog", "backends", "client", "entry", "access",
                 "first", "second", "index", "body", "body_sha256", "idempotency_key",
                 "signature", "decision", "facts", "args")

    def __init__(self, request: web.BaseRequest, request_id: str, catalog: Catalog,
                 backends: Backends) -> None:
        self.request = request
        self.request_id = request_id
        self.catalog = catalog
        self.backends = backends
        self.client = ""
        self.entry: ResourceEntry | None = None  # the route's {rid}, once checked
        self.access: Access | None = None  # what the caller may read of it
        self.first: str | None = None  # the route's path parameters, in template order
        self.second: str | None = None
        self.index = -1  # the looked-up parameter's index ({rid} or {service}; -1 unknown)
        self.body = b""
        self.body_sha256 = ""
        self.idempotency_key: str | None = None  # signed: the signature covers it
        self.signature = ""  # names this signed request once
        self.decision: Decision | None = None  # why a personal keyed read was allowed
        self.facts = Facts()
        self.args: dict[str, int | None] = {}  # the endpoint's declared query parameters, checked

    @property
    def query(self) -> Any:
        return self.request.rel_url.query

    @property
    def headers(self) -> Any:
        return self.request.headers

