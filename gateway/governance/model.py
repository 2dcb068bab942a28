"""Governance records: consents and webhook subscriptions (audit entries live in gateway.audit)."""

from __future__ import annotations

from typing import Literal

import msgspec


class Consent(msgspec.Struct, omit_defaults=True):
    """A citizen's consent that ``consumer`` reads ``resources`` for ``purpose`` until ``expires``.

    ``user`` is the keyed hash of the citizen's id (the raw id is never stored).
    """

    id: str
    user: str
    consumer: str
    resources: list[str]
    purpose: str
    expires: float
    created: float
    portal: str
    revoked: float | None = None

    def valid(self, now: float) -> bool:
        return self.revoked is None and now < self.expires


SubState = Literal["active", "dead", "deleted"]


class Subscription(msgspec.Struct, omit_defaults=True):
    """A consumer's webhook for a resource, with its delivery cursor and retry state."""

    id: str
    consumer: str
    resource: str
    url: str
    created: float
    cursor: int = 0
    state: SubState = "active"
    batch: int = 100
    attempts: int = 0
    next_attempt: float = 0.0
    last_error: str = ""
    delivered: int = 0
    lag_s: float = 0.0
    lease_owner: str = ""
    lease_until: float = 0.0

    def public(self) -> dict:
        return {"id": self.id, "consumer": self.consumer, "resource": self.resource, "url": self.url,
                "cursor": self.cursor, "state": self.state, "batch": self.batch,
                "attempts": self.attempts, "last_error": self.last_error, "delivered": self.delivered}
