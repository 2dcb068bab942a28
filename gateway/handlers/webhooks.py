"""Webhook subscriptions: a consumer registers a callback URL for a resource it may read."""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING

import msgspec
from aiohttp import web

from gateway.errors import Problem
from gateway.governance.idempotency import once
from gateway.governance.model import Subscription
from gateway.governance.targets import match, parse_url
from gateway.wire import respond

if TYPE_CHECKING:
    from gateway.app import Call


class SubscribeBody(msgspec.Struct, forbid_unknown_fields=True):
    url: str
    batch: int = 100
    after: int = 0


_decode = msgspec.json.Decoder(SubscribeBody)


def _entry(call: Call):  # noqa: ANN202
    cat = call.state.catalog
    entry = cat.by_id.get(call.target or "")
    if entry is None:
        raise Problem("client.not_found", f"unknown resource {call.target!r}")
    if cat.access(call.client or "", entry) is None:
        raise Problem("client.access_denied", f"{call.client} has no read access to {entry.id}")
    return entry


async def subscribe(call: Call) -> web.Response:
    """POST /v1/resources/{rid}/subscriptions ``{"url", "batch"?, "after"?}``: 201 with the subscription."""
    entry = _entry(call)
    try:
        b = _decode.decode(call.body)
    except msgspec.ValidationError as exc:
        raise Problem("client.validation_failed", f"invalid subscription: {exc}") from None
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise Problem("client.bad_request", f"malformed subscription body: {exc}") from None
    url = parse_url(b.url)
    if isinstance(url, str):
        raise Problem("client.validation_failed", f"url {url}")
    if not 1 <= b.batch <= 1000:
        raise Problem("client.validation_failed", "batch must be between 1 and 1000")
    if not 0 <= b.after <= 2**62:
        raise Problem("client.validation_failed", "after must be an offset >= 0")
    client = call.client or ""
    if match(call.state.catalog.webhook_targets, client, url) is None:
        raise Problem("client.access_denied", f"url is not under any webhook target the catalog allows for {client} "
                                              "([[webhook_targets]]: scheme, host, port and path prefix)")
    node = call.node
    call.audit_op, call.target = "subscribe", entry.id
    node.audit_guard()

    async def create() -> tuple[int, dict]:
        sub = Subscription(id="s-" + uuid.uuid4().hex, consumer=client, resource=entry.id,
                           url=b.url, created=time.time(), cursor=b.after, batch=b.batch)
        async with node.webhooks.admission(client):  # count and add under one lock: the cap holds per process
            await _check_cap(call, client)
            await node.governance.sub_put(sub)
        node.webhooks.kick()
        return 201, sub.public()

    status, doc, replayed = await once(node.governance, "subscribe", client, call.idempotency_key or "",
                                       call.body_sha256, create)
    call.count = 0 if replayed else 1
    headers = {"Location": f"/v1/subscriptions/{doc['id']}"}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return respond(call.request, status, doc, headers=headers)


async def _check_cap(call: Call, client: str) -> None:
    """409 when ``client`` already holds the catalog's ``max_subscriptions_per_client``."""
    cap = call.state.catalog.max_subscriptions
    held = sum(1 for s in await call.node.governance.sub_list(client) if s.state != "deleted")
    if held >= cap:
        raise Problem("client.conflict", f"{client} already has {held} subscriptions, the most the catalog allows "
                                         f"(max_subscriptions_per_client = {cap}); delete one first")


async def list_for_resource(call: Call) -> web.Response:
    """GET /v1/resources/{rid}/subscriptions: the caller's subscriptions to the resource."""
    entry = _entry(call)
    subs = await call.node.governance.sub_list(call.client)
    return respond(call.request, 200, {"subscriptions": [s.public() for s in subs
                                                         if s.resource == entry.id and s.state != "deleted"]})


async def list_mine(call: Call) -> web.Response:
    """GET /v1/subscriptions: all the caller's subscriptions."""
    subs = await call.node.governance.sub_list(call.client)
    return respond(call.request, 200, {"subscriptions": [s.public() for s in subs if s.state != "deleted"]})


async def _own(call: Call) -> Subscription:
    sub = await call.node.governance.sub_get(call.target or "")
    if sub is None or sub.state == "deleted":
        raise Problem("client.not_found", f"unknown subscription {call.target!r}")
    if sub.consumer != call.client:
        raise Problem("client.access_denied", "the subscription belongs to another client")
    return sub


async def get_subscription(call: Call) -> web.Response:
    """GET /v1/subscriptions/{id}: state, cursor, attempts and last error."""
    return respond(call.request, 200, (await _own(call)).public())


async def unsubscribe(call: Call) -> web.Response:
    """DELETE /v1/subscriptions/{id}: stop deliveries."""
    sub = await _own(call)
    call.audit_op, call.target, call.count = "unsubscribe", sub.resource, 1
    call.node.audit_guard()
    sub.state = "deleted"
    await call.node.governance.sub_put(sub)
    return respond(call.request, 200, sub.public())


async def node_keys(call: Call) -> web.Response:
    """GET /v1/node-keys (unsigned): the public key this node signs webhook deliveries with.

    In cluster mode every node has its own key; a delivery's ``keyid`` says which node's
    ``/v1/node-keys`` lists it. After a rotation the retired key is listed too (with
    ``until``) while its overlap lasts."""
    return respond(call.request, 200, {"keys": call.node.node_key.public_docs()})
