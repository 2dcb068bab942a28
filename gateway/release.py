"""What leaves the node for a consumer: records projected to its grant, keys it may see,
and the citizens whose data went out.

Every path that hands records to a consumer (pull, keyed read, webhook delivery) goes
through :class:`Releaser`, so minimisation and the citizens' access log cannot drift
apart:

- **fields**: the grant's projection and masks (``fastpath.project``);
- **key**: in clear only when the grant releases the resource's key field in clear;
  otherwise a stable per-consumer pseudonym ``~`` + 32 hex (HMAC of consumer, resource
  and key under a key derived from the cluster's citizen key), so the consumer can tell
  records apart and follow a key's updates without learning the key;
- **citizens**: for ``personal`` resources, the keyed hash of each released record's
  citizen (``citizen`` field, else the ``key`` field, else the record key), which the
  audit entry carries and the citizen's access log is built from.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from typing import Any

import msgspec

from fastpath import project
from gateway.audit import citizen_hash
from gateway.catalog import Access, ResourceEntry
from gateway.stores.base import Record
from gateway.wire import iso_ms
from gateway.wiremodel import OutRecord

PSEUDONYM_PREFIX = "~"
_decode = msgspec.json.decode


class Releaser:
    """Builds what a consumer may receive of stored records; one per node (keyed by the
    cluster's citizen key, so every node releases the same pseudonyms)."""

    def __init__(self, citizen_secret: bytes) -> None:
        self._citizen_secret = citizen_secret
        derived = hmac.new(citizen_secret, b"exchange record-key pseudonym v1", hashlib.sha256).digest()
        self._mac = hmac.new(derived, digestmod=hashlib.sha256)

    def pseudonym(self, consumer: str, resource: str, key: str) -> str:
        """The stable pseudonym of ``key`` for ``consumer`` (never the same for two consumers)."""
        mac = self._mac.copy()
        mac.update(f"{consumer}\0{resource}\0{key}".encode())
        return PSEUDONYM_PREFIX + mac.hexdigest()[:32]

    def release(self, consumer: str, entry: ResourceEntry, access: Access, recs: Sequence[Record],
                raw_ok: bool = True) -> tuple[list[OutRecord], list[str]]:
        """The records ``consumer`` receives and the citizen hashes they concern (personal
        resources only; sorted, without repeats). ``raw_ok``: stored JSON may pass through
        unparsed when the grant cuts nothing (JSON answers)."""
        plan = access.plan
        passthrough = raw_ok and plan.is_identity
        personal = entry.spec.personal
        citizens: set[str] = set()
        out: list[OutRecord] = []
        for r in recs:
            data = None if passthrough and not personal else _decode(r.data)
            if personal:
                citizens.add(self.citizen_of(entry, r.key, data))
            key = r.key if access.key_clear else self.pseudonym(consumer, entry.id, r.key)
            body = msgspec.Raw(r.data) if passthrough else project(plan, data)
            out.append(OutRecord(r.offset, key, iso_ms(r.ts_ms), body))
        return out, sorted(citizens)

    def citizen_of_user(self, user_id: str) -> str:
        """The keyed hash of a citizen named by id."""
        return citizen_hash(self._citizen_secret, user_id)

    def citizen_of(self, entry: ResourceEntry, key: str, data: Any) -> str:
        """The keyed hash of the citizen a personal record concerns."""
        spec = entry.spec
        name = spec.citizen or spec.key
        value = data.get(name) if name is not None and isinstance(data, dict) else None
        return citizen_hash(self._citizen_secret, key if value is None else str(value))
