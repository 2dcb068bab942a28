"""Every route of the node, declared once: its path template and, per method, the handler,
the access policy, whether it needs a signed Idempotency-Key and what the audit calls it.

The fast-path router is compiled from these templates (``fastpath.RouteTable``); the
pipeline (:mod:`gateway.app`) reads the policies. No route knowledge lives anywhere else.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum

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
class Endpoint:
    """One method of a route."""

    handler: Handler
    access: Access = Access.MEMBER
    audit: str | None = None  # the audit operation; None = not audited
    idempotent: bool = False  # creates state: needs a signed Idempotency-Key
    consent: bool = False  # a keyed read: a personal {rid} needs the citizen's consent first


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


def _ops(handler: Handler) -> Mapping[str, Endpoint]:
    return {"GET": Endpoint(handler, Access.ANYONE)}


ROUTES: tuple[Route, ...] = (
    Route("records", "/v1/resources/{rid}/records", {
        "POST": Endpoint(records.push, Access.OWNER, audit="push", idempotent=True),
        "GET": Endpoint(records.pull, Access.READER, audit="pull")}),
    Route("record", "/v1/resources/{rid}/records/{key}", {
        "GET": Endpoint(records.get_by_key, Access.READER, audit="read", consent=True)}, private=True),
    Route("cursor", "/v1/resources/{rid}/cursor", {
        "PUT": Endpoint(records.commit_cursor, Access.READER, audit="cursor")}),
    Route("subscriptions", "/v1/resources/{rid}/subscriptions", {
        "POST": Endpoint(webhooks.subscribe, Access.READER, audit="subscribe", idempotent=True),
        "GET": Endpoint(webhooks.list_for_resource, Access.READER)}),
    Route("catalog", "/v1/catalog", {"GET": Endpoint(catalog.list_catalog)}),
    Route("catalog_item", "/v1/catalog/{rid}", {"GET": Endpoint(catalog.get_entry)}),
    Route("services", "/v1/services", {"GET": Endpoint(services.list_services)}),
    Route("service", "/v1/services/{service}/{tail}", dict.fromkeys(
        ("GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"),
        Endpoint(services.call_service, audit="call"))),
    Route("composite", "/v1/composites/{id}", {
        "POST": Endpoint(services.run_composite, audit="composite", idempotent=True)}),
    Route("consents", "/v1/consents", {
        "POST": Endpoint(consents.create_consent, Access.PORTAL, audit="consent-grant", idempotent=True)}),
    Route("consent", "/v1/consents/{id}", {
        "GET": Endpoint(consents.get_consent),
        "DELETE": Endpoint(consents.revoke_consent, Access.PORTAL, audit="consent-revoke")}),
    Route("access_log", "/v1/citizens/{id}/access-log", {
        "GET": Endpoint(consents.access_log, Access.PORTAL, audit="access-log")}, private=True),
    Route("subscriptions", "/v1/subscriptions", {"GET": Endpoint(webhooks.list_mine)}),
    Route("subscription", "/v1/subscriptions/{id}", {
        "GET": Endpoint(webhooks.get_subscription),
        "DELETE": Endpoint(webhooks.unsubscribe, audit="unsubscribe")}),
    Route("healthz", "/healthz", _ops(ops.healthz)),
    Route("readyz", "/readyz", _ops(ops.readyz)),
    Route("metrics", "/metrics", _ops(ops.metrics)),
    Route("openapi", "/openapi.json", _ops(ops.openapi)),
    Route("node_keys", "/v1/node-keys", _ops(ops.node_keys)),
)

#: Audit operations that hand records to the caller (personal data leaves only once audited).
RELEASES = frozenset({"pull", "read"})
