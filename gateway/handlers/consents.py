"""Consents (portals act for citizens), personal keyed reads under the consent rule,
and a citizen's access log."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import msgspec
from aiohttp import web

from gateway.audit import citizen_hash
from gateway.errors import Problem
from gateway.governance.consents import (
    CONSENT_RE,
    USER_RE,
    _iso,
    authorize_personal_read,
    consent_doc,
    parse_consent,
)
from gateway.governance.idempotency import once
from gateway.handlers import records
from gateway.wire import int_param, respond

if TYPE_CHECKING:
    from gateway.app import Call


def _portal(call: Call) -> str:
    client = call.client or ""
    if client not in call.state.catalog.portals:
        raise Problem("client.access_denied", f"{client} is not a portal acting for citizens")
    return client


async def create_consent(call: Call) -> web.Response:
    """POST /v1/consents: a portal records a citizen's consent; 201 with its id."""
    portal = _portal(call)
    node = call.node
    consent, user_id = parse_consent(call.body, portal, call.state.catalog, node.citizen_key)
    call.audit_op, call.target = "consent-grant", ",".join(consent.resources)
    call.citizens, call.purpose = [consent.user], consent.purpose
    node.audit_guard()

    async def grant() -> tuple[int, dict]:
        await node.governance.consent_put(consent)
        return 201, consent_doc(consent)  # stored without the citizen's raw id

    status, doc, replayed = await once(node.governance, "consent", portal, call.idempotency_key or "",
                                       call.body_sha256, grant)
    call.consent, call.count = doc["id"], 0 if replayed else 1
    headers = {"Location": f"/v1/consents/{doc['id']}"}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return respond(call.request, status, {**doc, "user_id": user_id}, headers=headers)


async def _load(call: Call):  # noqa: ANN202
    cid = call.target or ""
    if not CONSENT_RE.match(cid):
        raise Problem("client.not_found", "unknown consent")
    c = await call.node.governance.consent_get(cid)
    if c is None:
        raise Problem("client.not_found", f"unknown consent {cid}")
    return c


async def get_consent(call: Call) -> web.Response:
    """GET /v1/consents/{id}: for portals and the consumer the consent names."""
    c = await _load(call)
    if call.client not in call.state.catalog.portals and call.client != c.consumer:
        raise Problem("client.access_denied", "only portals and the consumer may read this consent")
    return respond(call.request, 200, consent_doc(c))


async def revoke_consent(call: Call) -> web.Response:
    """DELETE /v1/consents/{id}: a portal revokes a consent (idempotent)."""
    _portal(call)
    c = await _load(call)
    call.audit_op, call.target = "consent-revoke", ",".join(c.resources)
    call.citizens, call.consent = [c.user], c.id
    call.node.audit_guard()
    if c.revoked is None:
        c.revoked = time.time()
        await call.node.governance.consent_put(c)
    call.count = 1
    return respond(call.request, 200, consent_doc(c))


async def access_log(call: Call) -> web.Response:
    """GET /v1/citizens/{user_id}/access-log: who read which of the citizen's data, when, why."""
    _portal(call)
    user = call.target or ""
    if not USER_RE.match(user):
        raise Problem("client.bad_request", "user id must be 1-128 of A-Z a-z 0-9 . _ : @ -")
    limit = int_param(call.request.rel_url.query, "limit", 100, 1, 1000) or 100
    node = call.node
    h = citizen_hash(node.citizen_key, user)
    call.audit_op, call.target, call.citizens = "access-log", "citizen", [h]
    node.audit_guard()
    if node.audit is not None:
        await node.audit.flush()
    entries = await node.governance.audit_for_citizen(h, limit)
    entries.sort(key=lambda e: e.ts, reverse=True)  # several nodes' entries: newest first by time
    out = [{"time": _iso(e.ts), "client": e.client, "operation": e.op, "target": e.target,
            "purpose": e.purpose, "consent": e.consent, "status": e.status, "request_id": e.request_id}
           for e in entries if e.op != "access-log"]
    call.count = len(out)
    return respond(call.request, 200, {"user_id": user, "entries": out})


async def personal_read(call: Call) -> web.Response:
    """GET /v1/resources/{rid}/records/{key} of a personal resource: the consent rule first,
    then the record, answered alike for unknown keys and other citizens' records."""
    node, entry, access = call.node, call.entry, call.access
    assert entry is not None and access is not None and call.key is not None
    d = await authorize_personal_read(node.governance, call.state.catalog, node.citizen_key,
                                      call.client or "", entry, access, call.request.headers)
    call.consent, call.purpose = d.consent, d.purpose
    spec = entry.spec
    if d.user is not None and (spec.citizen is None or spec.citizen == spec.key) and d.user != call.key:
        raise Problem("client.access_denied", "X-Exchange-UserId does not name the citizen of this record")
    rec = await node.store.latest(entry.id, call.key)
    if rec is not None and d.user is not None and spec.citizen not in (None, spec.key) and \
            node.releaser.citizen_of(entry, rec.key, msgspec.json.decode(rec.data)) != \
            citizen_hash(node.citizen_key, d.user):
        rec = None  # another citizen's record: answered as if there were none
    if rec is None:
        raise Problem("client.not_found", f"no record with this key in {entry.id}")
    return records.answer_record(call, rec)
