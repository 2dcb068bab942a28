"""Consents (portals act for citizens) and a citizen's access log.

The consent rule itself runs in the pipeline before a personal keyed read
(:func:`gateway.governance.consents.authorize_personal_read`); these handlers record,
show and revoke consents, and build the access log from the audit.
"""

from __future__ import annotations

import time

import msgspec

from gateway.errors import Problem
from gateway.exchange import Answer, Exchange
from gateway.governance.consents import CONSENT_RE, USER_RE, consent_doc, iso, parse_consent
from gateway.governance.idempotency import once
from gateway.governance.model import Consent
from gateway.wire import decode_body
from gateway.wiremodel import AccessLog, AccessLogEntry, ConsentBody, ConsentDoc


async def create_consent(x: Exchange) -> Answer:
    """POST /v1/consents: a portal records a citizen's consent; 201 with its id."""
    b = x.backends
    body = decode_body(x.request, x.body, ConsentBody, "consent")
    consent, user_id = parse_consent(body, x.client, x.catalog, b.citizen_key)
    x.facts.target, x.facts.citizens, x.facts.purpose = ",".join(consent.resources), [consent.user], consent.purpose

    async def grant() -> tuple[int, dict]:
        await b.governance.consent_put(consent)
        return 201, msgspec.to_builtins(consent_doc(consent))  # stored without the citizen's raw id

    status, doc, replayed = await once(b.governance, "consent", x.client, x.idempotency_key or "",
                                       x.body_sha256, grant)
    x.facts.consent, x.facts.count = doc["id"], 0 if replayed else 1
    headers = {"Location": f"/v1/consents/{doc['id']}"}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return Answer(status, ConsentDoc(**{**doc, "user_id": user_id}), headers)


async def _load(x: Exchange) -> Consent:
    cid = x.first or ""
    if not CONSENT_RE.match(cid):
        raise Problem("client.not_found", "unknown consent")
    c = await x.backends.governance.consent_get(cid)
    if c is None:
        raise Problem("client.not_found", f"unknown consent {cid}")
    return c


async def get_consent(x: Exchange) -> Answer:
    """GET /v1/consents/{id}: for portals and the consumer the consent names."""
    c = await _load(x)
    if x.client not in x.catalog.portals and x.client != c.consumer:
        raise Problem("client.access_denied", "only portals and the consumer may read this consent")
    return Answer(200, consent_doc(c))


async def revoke_consent(x: Exchange) -> Answer:
    """DELETE /v1/consents/{id}: a portal revokes a consent (idempotent)."""
    c = await _load(x)
    x.facts.target, x.facts.citizens, x.facts.consent = ",".join(c.resources), [c.user], c.id
    if c.revoked is None:
        c.revoked = time.time()
        await x.backends.governance.consent_put(c)
    x.facts.count = 1
    return Answer(200, consent_doc(c))


async def access_log(x: Exchange) -> Answer:
    """GET /v1/citizens/{user_id}/access-log: who read which of the citizen's data, when, why."""
    user = x.first or ""
    x.facts.target = "citizen"  # never the citizen's id
    if not USER_RE.match(user):
        raise Problem("client.bad_request", "user id must be 1-128 of A-Z a-z 0-9 . _ : @ -")
    limit = x.args["limit"] or 100
    b = x.backends
    h = b.releaser.citizen_of_user(user)
    x.facts.citizens = [h]
    if b.audit is not None:
        await b.audit.flush()
    entries = await b.governance.audit_for_citizen(h, limit)
    entries.sort(key=lambda e: e.ts, reverse=True)  # several nodes' entries: newest first by time
    out = [AccessLogEntry(time=iso(e.ts), client=e.client, operation=e.op, target=e.target,
                          purpose=e.purpose, consent=e.consent, status=e.status, request_id=e.request_id)
           for e in entries if e.op != "access-log"]
    x.facts.count = len(out)
    return Answer(200, AccessLog(user_id=user, entries=out))
