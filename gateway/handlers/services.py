"""Service calls: list what the caller may call, proxy a call, run a composite service."""

from __future__ import annotations

import contextlib
import time

from gateway.audit import AuditEntry
from gateway.errors import Problem
from gateway.exchange import Answer, Exchange
from gateway.governance.consents import stated_purpose
from gateway.governance.idempotency import REPLAY_WINDOW_S, forward_once, once
from gateway.services import composite
from gateway.wire import PROBLEM, decode_body, json_encode
from gateway.wiremodel import CompositeInput, ServiceItem, ServiceList

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


async def list_services(x: Exchange) -> Answer:
    """GET /v1/services: the services and composites the caller may call."""
    items = [ServiceItem(**s) for s in x.catalog.services.callable_by(x.client)]
    return Answer(200, ServiceList(services=items))


async def call_service(x: Exchange) -> Answer:
    """ANY /v1/services/{INSTANCE}/{CLASS}/{CODE}/{SUBSYSTEM}/{service}/{path...}: proxy."""
    request, b = x.request, x.backends
    sid, tail = x.first or "", x.second or ""
    x.facts.target = sid
    index = x.catalog.services
    if sid not in index.by_id:
        raise Problem("client.not_found", f"unknown service {sid[:200]!r}")
    rule = index.rule(x.client, sid)
    if rule is None:
        raise Problem("client.access_denied", f"{x.client} may not call {sid}")
    if not rule.allows(request.method, tail):
        raise Problem("client.access_denied", f"{x.client} may not {request.method} {tail or '/'} on {sid}")
    pool = b.services.get(sid)
    if pool is None:
        raise Problem("server.unavailable", f"service {sid} is being reloaded; retry",
                      headers={"Retry-After": "1"})
    x.facts.count = 1
    x.facts.purpose = stated_purpose(request.headers)  # signed; passed to the backend as sent
    if request.method not in SAFE_METHODS:  # forwarded at most once: a replay never reaches it
        key = x.idempotency_key or f"sig:{x.signature}"
        await forward_once(b.governance, x.client, key, x.body_sha256)
    query = request.raw_path.partition("?")[2]
    return Answer(response=await pool.forward(request, tail, query, x.body, x.request_id, x.client))


async def run_composite(x: Exchange) -> Answer:
    """POST /v1/composites/{id}: run a "one transaction" service, answer every step's result."""
    comp = x.catalog.services.composites.get(x.first or "")
    x.facts.target = x.first
    if comp is None:
        raise Problem("client.not_found", f"unknown composite service {x.first!r}")
    if x.client not in comp.consumers:
        raise Problem("client.access_denied", f"{x.client} may not run {comp.id}")
    b = x.backends
    if b.audit is not None and not b.audit.room(len(comp.steps) + 1):
        raise Problem("server.unavailable", "audit log is saturated; retry shortly", headers={"Retry-After": "1"})
    body = decode_body(x.request, x.body, CompositeInput, "composite input") if x.body else CompositeInput()
    x.facts.count = len(comp.steps)
    x.facts.purpose = purpose = stated_purpose(x.request.headers)

    def on_step(service: str, status: int, detail: str) -> None:
        if b.audit is not None:
            with contextlib.suppress(Problem):  # full: the guard above made room for every step
                b.audit.submit(AuditEntry(ts=time.time(), request_id=x.request_id, client=x.client,
                                          op="composite-step", target=service, status=status, count=1,
                                          purpose=purpose, detail=detail))

    async def go() -> tuple[int, dict]:
        return await composite.run(comp, body.input, client=x.client, request_id=x.request_id,
                                   headers=x.request.headers, index=x.catalog.services, pools=b.services,
                                   on_step=on_step)

    status, doc, replayed = await once(b.governance, f"composite:{comp.id}", x.client,
                                       x.idempotency_key or "", x.body_sha256, go, keep_s=REPLAY_WINDOW_S)
    headers = {"Idempotent-Replayed": "true"} if replayed else None
    if replayed:
        x.facts.count = 0
    if status == 200:
        return Answer(200, doc, headers)
    return Answer(status, json_encode(doc), headers, content_type=PROBLEM)
