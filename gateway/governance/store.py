"""The governance storage protocol: audit chain, consents, webhook subscriptions.

Two backends behind one protocol (like the record stores): ``sqlite`` (its own file
``DATA_DIR/governance.db``, WAL, every call on a worker thread) and, in cluster mode,
JetStream (audit in a stream, consents and subscriptions in KV buckets).

The audit chain is extended *inside* the backend's write (the tail is read in the same
transaction), so several processes or nodes appending to one log keep one chain.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from gateway.audit import AuditEntry
from gateway.governance.idempotency import Claim
from gateway.governance.model import Consent, Subscription


@runtime_checkable
class GovernanceStore(Protocol):
    """Async storage of governance state; safe to call concurrently from one event loop."""

    refused: str | None  # why every call is refused (a citizen-key mismatch found late), or None

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def key_fingerprint(self, fingerprint: str) -> str:
        """Record the citizen key's fingerprint when none is recorded yet; return the recorded
        one. (JetStream while NATS is away: remembered and checked on connecting; on a
        mismatch the store then refuses every call.)"""

    async def audit_append(self, entries: list[AuditEntry]) -> int:
        """Chain (set seq, prev, hash) and durably store the entries; return the last seq."""

    async def audit_range(self, *, after_seq: int = 0, since: float | None = None,
                          until: float | None = None, limit: int = 1000) -> list[AuditEntry]:
        """Entries in chain order with seq > ``after_seq`` and ``since <= ts < until``."""

    async def audit_for_citizen(self, citizen: str, limit: int = 1000) -> list[AuditEntry]:
        """Entries naming the citizen's keyed hash, newest first."""

    async def consent_put(self, consent: Consent) -> None: ...

    async def consent_get(self, consent_id: str) -> Consent | None: ...

    async def consents_for(self, user: str, consumer: str) -> list[Consent]:
        """Every consent (valid or not) a citizen gave a consumer."""

    async def sub_put(self, sub: Subscription) -> None: ...

    async def sub_get(self, sub_id: str) -> Subscription | None: ...

    async def sub_list(self, consumer: str | None = None) -> list[Subscription]: ...

    async def sub_claim(self, sub_id: str, owner: str, until: float, now: float) -> Subscription | None:
        """Lease a subscription for delivery when no one else holds it; None when taken."""

    async def sub_due(self, owner: str, now: float) -> tuple[list[Subscription], int]:
        """The deliverers' frequent scan, kept cheap: the active subscriptions ``owner`` could
        lease at ``now`` (free, expired or its own), by id, and the number of dead ones. May
        lag the store by a moment (JetStream answers from a watched index); leases are
        still taken with :meth:`sub_claim`."""

    async def claim(self, claim_id: str, claim: Claim, now: float) -> Claim | None:
        """Store ``claim`` unless a live one holds ``claim_id``: None when stored, else the
        live claim (an expired or stale one is replaced)."""

    async def claim_finish(self, claim_id: str, claim: Claim) -> None:
        """Replace our claim with its finished form (status and answer)."""

    async def claim_release(self, claim_id: str) -> None:
        """Drop our unfinished claim (the request created nothing)."""
