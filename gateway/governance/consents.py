"""Citizens' consents and the consent rule for keyed reads of personal resources.

A portal subsystem records a consent for a logged-in citizen: consumer, resources,
purpose, expiry. A keyed read of a ``personal`` resource by a consumer must name the
record's citizen in ``X-Exchange-UserId`` and needs a valid consent for that consumer and
resource, unless the consumer's grant names a legal basis. The resource's owner, and a
portal reading for the citizen named in ``X-Exchange-UserId``, need none.
"""

from __future__ import annotations

import datetime as dt
import re
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from gateway.audit import citizen_hash
from gateway.errors import Problem
from gateway.governance.model import Consent
from gateway.wiremodel import ConsentBody, ConsentDoc

if TYPE_CHECKING:
    from gateway.catalog import Access, Catalog, ResourceEntry
    from gateway.governance.store import GovernanceStore

USER_RE = re.compile(r"^[A-Za-z0-9._:@-]{1,128}$")
CONSENT_RE = re.compile(r"^c-[0-9a-f]{32}$")
MAX_DAYS = 3660


def _expiry(value: str) -> float:
    try:
        if len(value) == 10:
            d = dt.date.fromisoformat(value)
            return dt.datetime(d.year, d.month, d.day, tzinfo=dt.UTC).timestamp() + 86400
        t = dt.datetime.fromisoformat(value)
    except ValueError:
        t = None
    if t is None or t.tzinfo is None:
        raise Problem("client.validation_failed",
                      "expires must be YYYY-MM-DD or an RFC 3339 time with a zone (2027-01-01T00:00:00Z)")
    return t.timestamp()


def parse_consent(b: ConsentBody, portal: str, catalog: Catalog, key: bytes,
                  now: float | None = None) -> tuple[Consent, str]:
    """Check a consent request; return the consent and the citizen's raw user id."""
    now = time.time() if now is None else now
    if not USER_RE.match(b.user_id):
        raise Problem("client.validation_failed", "user_id must be 1-128 of A-Z a-z 0-9 . _ : @ -")
    if b.consumer not in catalog.subsystems:
        raise Problem("client.validation_failed", f"consumer {b.consumer[:200]!r} is not a subsystem")
    if not b.resources or len(b.resources) > 100:
        raise Problem("client.validation_failed", "resources must list 1 to 100 resource ids")
    for rid in b.resources:
        entry = catalog.by_id.get(rid)
        if entry is None:
            raise Problem("client.validation_failed", f"unknown resource {rid[:128]!r}")
        if not entry.spec.personal:
            raise Problem("client.validation_failed", f"{rid} is not a personal resource; it needs no consent")
    if not 1 <= len(b.purpose) <= 500:
        raise Problem("client.validation_failed", "purpose must be 1 to 500 characters")
    expires = _expiry(b.expires)
    if expires <= now:
        raise Problem("client.validation_failed", "expires is in the past")
    if expires > now + MAX_DAYS * 86400:
        raise Problem("client.validation_failed", f"expires is more than {MAX_DAYS} days ahead")
    c = Consent(id="c-" + uuid.uuid4().hex, user=citizen_hash(key, b.user_id), consumer=b.consumer,
                resources=sorted(set(b.resources)), purpose=b.purpose, expires=expires, created=now,
                portal=portal)
    return c, b.user_id


def consent_doc(c: Consent, user_id: str | None = None) -> ConsentDoc:
    """The public view of a consent (the user id only when the caller gave it)."""
    return ConsentDoc(id=c.id, consumer=c.consumer, resources=c.resources, purpose=c.purpose,
                      portal=c.portal, created=iso(c.created), expires=iso(c.expires),
                      revoked=iso(c.revoked) if c.revoked else None, user_id=user_id)


def iso(ts: float) -> str:
    """A UNIX time as RFC 3339 UTC, whole seconds."""
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(slots=True)
class Decision:
    """Why a personal read was allowed: its basis, the consent used and the purpose that the
    audit records (the consent's or the grant's, never a header). ``user`` is the citizen
    the caller named, who must be the record's citizen (None: any record may be read)."""

    basis: str
    consent: str | None = None
    purpose: str | None = None
    user: str | None = None


def stated_purpose(headers: Any) -> str | None:
    """The signed ``X-Exchange-Purpose``: UTF-8, percent-encoded where not printable ASCII."""
    raw = headers.get("X-Exchange-Purpose")
    if raw is None:
        return None
    try:
        text = unquote(raw, errors="strict")
    except UnicodeDecodeError:
        raise Problem("client.bad_request", "X-Exchange-Purpose is not percent-encoded UTF-8") from None
    if not 1 <= len(text) <= 500 or not text.isprintable():
        raise Problem("client.bad_request", "X-Exchange-Purpose must be 1 to 500 printable characters")
    return text


async def authorize_personal_read(store: GovernanceStore, catalog: Catalog, key: bytes, client: str,
                                  entry: ResourceEntry, access: Access, headers: Any,
                                  now: float | None = None) -> Decision:
    """Apply the consent rule to a keyed read of a personal resource, before any record is
    read (so that the answer does not depend on whether the key exists)."""
    spec = entry.spec
    if client == spec.owner:
        return Decision("owner")
    grant = access.grant
    purpose = stated_purpose(headers)
    if grant is not None and grant.legal_basis:
        if grant.purpose and purpose != grant.purpose:
            raise Problem("client.access_denied",
                          f"{spec.id} is read under the legal basis of {client}'s grant: "
                          "state the grant's purpose in X-Exchange-Purpose")
        return Decision(grant.legal_basis, purpose=grant.purpose or grant.legal_basis)
    user = headers.get("X-Exchange-UserId")
    if not user:
        raise Problem("client.access_denied",
                      f"{spec.id} is personal: name the citizen in X-Exchange-UserId")
    if not USER_RE.match(user):
        raise Problem("client.bad_request", "X-Exchange-UserId must be 1-128 of A-Z a-z 0-9 . _ : @ -")
    if client in catalog.portals:
        return Decision("citizen", user=user)
    wanted = headers.get("X-Exchange-Consent")
    if wanted is not None and not CONSENT_RE.match(wanted):
        raise Problem("client.bad_request", "X-Exchange-Consent must be a consent id c-<32 hex>")
    if purpose is None:
        raise Problem("client.access_denied",
                      f"{spec.id} is personal: state the purpose of the read in X-Exchange-Purpose")
    now = time.time() if now is None else now
    for c in await store.consents_for(citizen_hash(key, user), client):
        if wanted is not None and c.id != wanted:
            continue
        if spec.id in c.resources and c.valid(now) and c.purpose == purpose:
            return Decision("consent", consent=c.id, purpose=c.purpose, user=user)
    if wanted is not None:
        raise Problem("client.access_denied",
                      f"consent {wanted} does not let {client} read {spec.id} for this purpose "
                      "(unknown, expired, revoked or given for another purpose)")
    raise Problem("client.access_denied",
                  f"no valid consent of this citizen lets {client} read {spec.id} for this purpose")
