"""Every route of the node, declared once: its path template and, per method, the handler,
the access policy, whether it needs a signed Idempotency-Key and what the audit calls it.

The fast-path router is compiled from these templates (``fastpath.RouteTable``); the
pipeline (:mod:`gateway.app`) reads the policies. No route knowledge lives anywhere else.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum

from gateway import wiremodel as w
from gateway.exchange import Answer, Exchange
from gateway.handlers import catalog, consents, ops, records, services, webhooks

Handler = Callable[[Exchange], Awaitable[Answer]]


class Access(Enum):
    """Who may call an endpoint (checked by the pipeline before the handler runs)."""

    ANYONE = "anyone"  # unsigned: liveness, readiness, metrics, the OpenAPI document, node keys
    MEMBER = "member"  # any authenticated member; the handler may narrow it further
    OWNER = "owner"  # the owner of the route's {rid}
    READER = "reader"  # the owner of {rid} and consumers with read access (catalog grants)
    PORTAL = "portal"  # a portal acting for citizens (the catalog's ``portals``)


@dataclass(frozen=True, slots=True)
class Query:
    """A decimal integer query parameter in [lo, hi] (anything else is a 400 naming it)."""

    name: str
    lo: int
    hi: int
    default: int | None
    doc: str


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One method of a route: who may call it, what it takes and gives, how it is audited."""

    handler: Handler
    access: Access = Access.MEMBER
    audit: str | None = None  # the audit operation; None = not audited
    idempotent: bool = False  # creates state: needs a signed Idempotency-Key
    consent: bool = False  # a keyed read: a personal {rid} needs the citizen's consent first
    body: type | None = None  # the request body's wire type (documentation; handlers decode it)
    answer: type | None = None  # the answer's wire type; None = not a JSON document
    ok: int = 200
    query: tuple[Query, ...] = ()


@dataclass(frozen=True, slots=True)
class Route:
    """A path template and its methods (``{rid}``, ``{key}``, ``{id}``, ``{service}``, ``{tail}``)."""

    name: str  # for metrics and the access log
    path: str
    methods: Mapping[str, Endpoint]
    private: bool = False  # its parameters name citizens: logged as the template, never as sent
    resource: bool = field(init=False)  # the path names a resource ({rid}): 404 when unknown

    def __post_init__(self) -> None:
        object.__setattr__(self, "resource", "{rid}" in self.path)

    @property
    def signed(self) -> bool:
        return any(e.access is not Access.ANYONE for e in self.methods.values())

    def allow(self) -> str:
        return ", ".join(self.methods)


def _ops(handler: Handler, answer: type | None) -> Mapping[str, Endpoint]:
    return {"GET": Endpoint(handler, Access.ANYONE, answer=answer)}


PULL_QUERY = (Query("after", 0, w.MAX_OFFSET, None, "records with a greater offset (default: the caller's cursor)"),
              Query("limit", 1, 1000, 100, "at most this many records"),
              Query("wait", 0, 30, 0, "long-poll up to this many seconds when there are none"))

ROUTES: tuple[Route, ...] = (
    Route("records", "/v1/resources/{rid}/records", {
        "POST": Endpoint(records.push, Access.OWNER, audit="push", idempotent=True, body=w.PushBody,
                         answer=w.PushResult),
        "GET": Endpoint(records.pull, Access.READER, audit="pull", answer=w.PullPage, query=PULL_QUERY)}),
    Route("record", "/v1/resources/{rid}/records/{key}", {
        "GET": Endpoint(records.get_by_key, Access.READER, audit="read", consent=True, answer=w.OutRecord)},
        private=True),
    Route("cursor", "/v1/resources/{rid}/cursor", {
        "PUT": Endpoint(records.commit_cursor, Access.READER, audit="cursor", body=w.Cursor, answer=w.Cursor)}),
    Route("subscriptions", "/v1/resources/{rid}/subscriptions", {
        "POST": Endpoint(webhooks.subscribe, Access.READER, audit="subscribe", idempotent=True,
                         body=w.SubscribeBody, answer=w.SubscriptionDoc, ok=201),
        "GET": Endpoint(webhooks.list_for_resource, Access.READER, answer=w.SubscriptionList)}),
    Route("catalog", "/v1/catalog", {"GET": Endpoint(catalog.list_catalog, answer=w.CatalogList)}),
    Route("catalog_item", "/v1/catalog/{rid}", {"GET": Endpoint(catalog.get_entry, answer=w.CatalogEntry)}),
    Route("services", "/v1/services", {"GET": Endpoint(services.list_services, answer=w.ServiceList)}),
    Route("service", "/v1/services/{service}/{tail}", dict.fromkeys(
        ("GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"),
        Endpoint(services.call_service, audit="call"))),
    Route("composite", "/v1/composites/{id}", {
        "POST": Endpoint(services.run_composite, audit="composite", idempotent=True, body=w.CompositeInput,
                         answer=w.CompositeResult)}),
    Route("consents", "/v1/consents", {
        "POST": Endpoint(consents.create_consent, Access.PORTAL, audit="consent-grant", idempotent=True,
                         body=w.ConsentBody, answer=w.ConsentDoc, ok=201)}),
    Route("consent", "/v1/consents/{id}", {
        "GET": Endpoint(consents.get_consent, answer=w.ConsentDoc),
        "DELETE": Endpoint(consents.revoke_consent, Access.PORTAL, audit="consent-revoke", answer=w.ConsentDoc)}),
    Route("access_log", "/v1/citizens/{id}/access-log", {
        "GET": Endpoint(consents.access_log, Access.PORTAL, audit="access-log", answer=w.AccessLog,
                        query=(Query("limit", 1, 1000, 100, "at most this many entries, newest first"),))},
        private=True),
    Route("subscriptions", "/v1/subscriptions", {"GET": Endpoint(webhooks.list_mine, answer=w.SubscriptionList)}),
    Route("subscription", "/v1/subscriptions/{id}", {
        "GET": Endpoint(webhooks.get_subscription, answer=w.SubscriptionDoc),
        "DELETE": Endpoint(webhooks.unsubscribe, audit="unsubscribe", answer=w.SubscriptionDoc)}),
    Route("healthz", "/healthz", _ops(ops.healthz, w.Health)),
    Route("readyz", "/readyz", _ops(ops.readyz, w.Readiness)),
    Route("metrics", "/metrics", _ops(ops.metrics, None)),
    Route("openapi", "/openapi.json", _ops(ops.openapi, None)),
    Route("node_keys", "/v1/node-keys", _ops(ops.node_keys, w.NodeKeys)),
)

#: Audit operations that hand records to the caller (personal data leaves only once audited).
RELEASES = frozenset({"pull", "read"})
