"""The documents on the wire, declared once as msgspec Structs.

Handlers return these, webhook batches are these, and the OpenAPI document's schemas are
generated from them (:mod:`gateway.openapi`). Request bodies are decoded with the same
types (``forbid_unknown_fields``), so what the node accepts and what it documents agree.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

MAX_OFFSET = 2**62
Offset = Annotated[int, msgspec.Meta(ge=0, le=MAX_OFFSET)]
ResourceId = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9.-]{0,127}$")]
SubsystemId = Annotated[str, msgspec.Meta(
    pattern=r"^[A-Z0-9-]{1,16}/[A-Z]{2,8}/[a-z0-9][a-z0-9._-]{0,63}/[a-z0-9][a-z0-9._-]{0,63}$")]
Time = Annotated[str, msgspec.Meta(description="RFC 3339, UTC")]


class OutRecord(msgspec.Struct):
    """One record as a consumer receives it: projected to its grant; ``key`` a per-consumer
    pseudonym ``~`` + 32 hex when the grant does not release the key field in clear."""

    offset: int
    key: str
    ts: Time
    data: Any


class PushedRecord(msgspec.Struct, forbid_unknown_fields=True):
    key: str
    data: dict[str, Any]


class PushBody(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /v1/resources/{rid}/records`` (validated per resource against its schema)."""

    records: Annotated[list[PushedRecord], msgspec.Meta(min_length=1, max_length=1000)]


class PushResult(msgspec.Struct):
    first: int
    last: int
    count: int
    replayed: bool


class PullPage(msgspec.Struct, omit_defaults=True):
    records: list[OutRecord]
    next: int
    earliest: int | None = None  # set when retention removed records after ``after`` (docs/operations.md)


class Cursor(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """``PUT /v1/resources/{rid}/cursor`` and its answer."""

    offset: int
    force: bool = False


class CatalogEntry(msgspec.Struct):
    id: str
    owner: str
    title: str
    description: str
    sharing: Literal["open", "conditional", "restricted"]
    personal: bool
    key: str | None
    schema: dict[str, str]
    visible_fields: list[str]


class CatalogList(msgspec.Struct):
    instance: str
    resources: list[CatalogEntry]


class ServiceItem(msgspec.Struct, omit_defaults=True):
    id: str
    title: str
    path: str
    provider: str | None = None
    methods: list[str] | None = None
    paths: list[str] | None = None
    steps: list[str] | None = None


class ServiceList(msgspec.Struct):
    services: list[ServiceItem]


class CompositeInput(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /v1/composites/{id}``."""

    input: Any = {}


class StepResult(msgspec.Struct, omit_defaults=True):
    name: str
    service: str
    status: Literal["pending", "ok", "failed", "skipped"]
    http_status: int | None = None
    body: Any = None
    error: str | None = None
    ms: float | None = None


class CompositeResult(msgspec.Struct):
    """A composite run that completed (a failed step makes the answer a 502 problem that
    carries ``composite`` and every step's result as well)."""

    composite: str
    request_id: str
    status: Literal["completed"]
    steps: list[StepResult]


class ConsentBody(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /v1/consents``: a portal records a citizen's consent."""

    user_id: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9._:@-]{1,128}$")]
    consumer: str
    resources: Annotated[list[str], msgspec.Meta(min_length=1, max_length=100)]
    purpose: Annotated[str, msgspec.Meta(min_length=1, max_length=500)]
    expires: Annotated[str, msgspec.Meta(description="YYYY-MM-DD (valid through that UTC day) or RFC 3339 with a zone")]


class ConsentDoc(msgspec.Struct, omit_defaults=True):
    id: str
    consumer: str
    resources: list[str]
    purpose: str
    portal: str
    created: Time
    expires: Time
    revoked: Time | None = None
    user_id: str | None = None  # only in the answer to the portal that gave it


class AccessLogEntry(msgspec.Struct):
    time: Time
    client: str
    operation: str
    target: str
    purpose: str | None
    consent: str | None
    status: int
    request_id: str


class AccessLog(msgspec.Struct):
    user_id: str
    entries: list[AccessLogEntry]


class SubscribeBody(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /v1/resources/{rid}/subscriptions``."""

    url: str
    batch: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 100
    after: Offset = 0


class SubscriptionDoc(msgspec.Struct):
    id: str
    consumer: str
    resource: str
    url: str
    cursor: int
    state: Literal["active", "dead", "deleted"]
    batch: int
    attempts: int
    last_error: str
    delivered: int


class SubscriptionList(msgspec.Struct):
    subscriptions: list[SubscriptionDoc]


class WebhookBatch(msgspec.Struct):
    """The body of a webhook delivery (signed with the node's Ed25519 key)."""

    subscription: str
    resource: str
    records: list[OutRecord]
    next: int


class NodeKey(msgspec.Struct, omit_defaults=True):
    id: Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{16}$")]
    alg: Literal["Ed25519"]
    public_key: Annotated[str, msgspec.Meta(description="base64url of the raw 32 bytes")]
    until: str | None = None  # a retired key, listed while its overlap lasts


class NodeKeys(msgspec.Struct):
    keys: list[NodeKey]


class ValidationIssue(msgspec.Struct):
    index: int | None
    field: str
    message: str


class ProblemDoc(msgspec.Struct, omit_defaults=True):
    """RFC 9457 ``application/problem+json``."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    request_id: str
    errors: list[ValidationIssue] | None = None


class Health(msgspec.Struct):
    status: str


class Readiness(msgspec.Struct, omit_defaults=True):
    status: Literal["ready", "not ready"]
    checks: dict[str, bool]
    reason: str | None = None
