"""Service calls: list what the caller may call, proxy a call, run a composite service."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from gateway.errors import Problem
from gateway.governance.consents import stated_purpose
from gateway.governance.idempotency import REPLAY_WINDOW_S, forward_once, once
from gateway.wire import PROBLEM, json_encode, respond

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

if TYPE_CHECKING:
    from gateway.app import Call


async def list_services(call: Call) -> web.Response:
    """GET /v1/services: the services and composites the caller may call."""
    return respond(call.request, 200, {"services": call.state.catalog.services.callable_by(call.client or "")})


async def call_service(call: Call) -> web.StreamResponse:
    """ANY /v1/services/{INSTANCE}/{CLASS}/{CODE}/{SUBSYSTEM}/{service}/{path...}: proxy."""
    node, request = call.node, call.request
    sid, tail = call.target or "", call.key or ""
    index = call.state.catalog.services
    if sid not in index.by_id:
        raise Problem("client.not_found", f"unknown service {sid[:200]!r}")
    rule = index.rule(call.client or "", sid)
    if rule is None:
        raise Problem("client.access_denied", f"{call.client} may not call {sid}")
    if not rule.allows(request.method, tail):
        raise Problem("client.access_denied",
                      f"{call.client} may not {request.method} {tail or '/'} on {sid}")
    pool = node.services.get(sid)
    if pool is None:
        raise Problem("server.unavailable", f"service {sid} is being reloaded; retry",
                      headers={"Retry-After": "1"})
    call.audit_op, call.count = "call", 1
    call.purpose = stated_purpose(request.headers)  # signed; passed to the backend as sent
    node.audit_guard()
    if request.method not in SAFE_METHODS:  # forwarded at most once: a replay never reaches it
        key = call.idempotency_key or f"sig:{call.signature}"
        await forward_once(node.governance, call.client or "", key, call.body_sha256)
    raw = request.raw_path
    q = raw.find("?")
    return await pool.forward(request, tail, "" if q < 0 else raw[q + 1:], call.body, call.request_id,
                              call.client or "")


async def run_composite(call: Call) -> web.Response:
    """POST /v1/composites/{id}: run a "one transaction" service, answer every step's result."""
    from gateway.services.composite import run

    comp = call.state.catalog.services.composites.get(call.target or "")
    if comp is None:
        raise Problem("client.not_found", f"unknown composite service {call.target!r}")
    if call.client not in comp.consumers:
        raise Problem("client.access_denied", f"{call.client} may not run {comp.id}")
    call.audit_op, call.count = "composite", len(comp.steps)
    call.purpose = stated_purpose(call.request.headers)
    call.node.audit_guard(len(comp.steps) + 1)
    status, doc, replayed = await once(call.node.governance, f"composite:{comp.id}", call.client or "",
                                       call.idempotency_key or "", call.body_sha256,
                                       lambda: run(call, comp), keep_s=REPLAY_WINDOW_S)
    headers = {"Idempotent-Replayed": "true"} if replayed else None
    if replayed:
        call.count = 0
    if status == 200:
        return respond(call.request, 200, doc, headers=headers)
    return web.Response(status=status, body=json_encode(doc), content_type=PROBLEM, headers=headers)
