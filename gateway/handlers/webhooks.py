"""Webhook subscriptions: a consumer registers a callback URL for a resource it may read.

The pipeline has checked read access to the route's resource; these handlers check the
URL against the catalog's allow-list and the per-client cap, and keep the subscriptions.
"""

from __future__ import annotations

import time
import uuid

from gateway.errors import Problem
from gateway.exchange import Answer, Exchange
from gateway.governance.idempotency import once
from gateway.governance.model import Subscription
from gateway.governance.targets import match, parse_url
from gateway.wire import decode_body
from gateway.wiremodel import SubscribeBody, SubscriptionDoc, SubscriptionList


def _doc(sub: Subscription) -> SubscriptionDoc:
    return SubscriptionDoc(**sub.public())


async def subscribe(x: Exchange) -> Answer:
    """POST /v1/resources/{rid}/subscriptions ``{"url", "batch"?, "after"?}``: 201 with the subscription."""
    entry, b, client = x.entry, x.backends, x.client
    assert entry is not None
    body = decode_body(x.request, x.body, SubscribeBody, "subscription")
    url = parse_url(body.url)
    if isinstance(url, str):
        raise Problem("client.validation_failed", f"url {url}")
    if match(x.catalog.webhook_targets, client, url) is None:
        raise Problem("client.access_denied", f"url is not under any webhook target the catalog allows for {client} "
                                              "([[webhook_targets]]: scheme, host, port and path prefix)")

    async def create() -> tuple[int, dict]:
        sub = Subscription(id="s-" + uuid.uuid4().hex, consumer=client, resource=entry.id,
                           url=body.url, created=time.time(), cursor=body.after, batch=body.batch)
        async with b.webhooks.admission(client):  # count and add under one lock: the cap holds per process
            await _check_cap(x)
            await b.governance.sub_put(sub)
        b.webhooks.kick()
        return 201, sub.public()

    status, doc, replayed = await once(b.governance, "subscribe", client, x.idempotency_key or "",
                                       x.body_sha256, create)
    x.facts.count = 0 if replayed else 1
    headers = {"Location": f"/v1/subscriptions/{doc['id']}"}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return Answer(status, SubscriptionDoc(**doc), headers)


async def _check_cap(x: Exchange) -> None:
    """409 when the caller already holds the catalog's ``max_subscriptions_per_client``."""
    cap = x.catalog.max_subscriptions
    held = sum(1 for s in await x.backends.governance.sub_list(x.client) if s.state != "deleted")
    if held >= cap:
        raise Problem("client.conflict", f"{x.client} already has {held} subscriptions, the most the catalog "
                                         f"allows (max_subscriptions_per_client = {cap}); delete one first")


async def list_for_resource(x: Exchange) -> Answer:
    """GET /v1/resources/{rid}/subscriptions: the caller's subscriptions to the resource."""
    assert x.entry is not None
    subs = await x.backends.governance.sub_list(x.client)
    return Answer(200, SubscriptionList([_doc(s) for s in subs
                                         if s.resource == x.entry.id and s.state != "deleted"]))


async def list_mine(x: Exchange) -> Answer:
    """GET /v1/subscriptions: all the caller's subscriptions."""
    subs = await x.backends.governance.sub_list(x.client)
    return Answer(200, SubscriptionList([_doc(s) for s in subs if s.state != "deleted"]))


async def _own(x: Exchange) -> Subscription:
    sub = await x.backends.governance.sub_get(x.first or "")
    if sub is None or sub.state == "deleted":
        raise Problem("client.not_found", f"unknown subscription {x.first!r}")
    if sub.consumer != x.client:
        raise Problem("client.access_denied", "the subscription belongs to another client")
    return sub


async def get_subscription(x: Exchange) -> Answer:
    """GET /v1/subscriptions/{id}: state, cursor, attempts and last error."""
    return Answer(200, _doc(await _own(x)))


async def unsubscribe(x: Exchange) -> Answer:
    """DELETE /v1/subscriptions/{id}: stop deliveries."""
    sub = await _own(x)
    x.facts.target, x.facts.count = sub.resource, 1
    sub.state = "deleted"
    await x.backends.governance.sub_put(sub)
    return Answer(200, _doc(sub))
