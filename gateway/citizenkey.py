"""The citizen key: the secret of the keyed hashes of citizen ids (consents, audit entries,
citizens' access logs), shared by every node.

It is ``citizen_key`` in the keyring file (``python -m gateway keys init`` writes one;
published keyring bundles carry it). The ``jetstream`` backend requires it. With ``sqlite``
and no ``citizen_key`` the node falls back to ``DATA_DIR/audit.key`` (made on first start):
zero set-up for a single node.

The governance store keeps the key's fingerprint (an HMAC of a fixed label, never the key),
written on first start. A node whose key has another fingerprint refuses to start: nodes
of one cluster must agree, and a key must not change under data it has hashed (the
consents would no longer match their citizens). For a SQLite store written before the
fingerprint existed, the first fingerprint is that of ``audit.key`` when it exists, so that
moving to ``citizen_key`` means copying ``audit.key``'s hex into the keyring.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from pathlib import Path

from gateway.audit import load_key
from gateway.config import NodeConfig
from gateway.filemodes import check_private
from gateway.governance.store import GovernanceStore
from gateway.keyring import Keyring
from gateway.tomlfile import ConfigError

AUDIT_KEY_FILE = "audit.key"
_LABEL = b"onestop-exchange citizen-key fingerprint v1"


def fingerprint(secret: bytes) -> str:
    """The key's fingerprint: HMAC-SHA256 of a fixed label (shows nothing of the key)."""
    return hmac.new(secret, _LABEL, hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class CitizenKey:
    """The node's citizen key and where it came from (for messages)."""

    secret: bytes
    source: str  # the keyring file, or DATA_DIR/audit.key
    legacy: Path | None = None  # sqlite: an audit.key that may have hashed older data
    from_keyring: bool = True

    @classmethod
    def load(cls, config: NodeConfig, keyring: Keyring) -> CitizenKey:
        """The keyring's ``citizen_key``; with sqlite and none, ``DATA_DIR/audit.key``."""
        data_dir = config.resolve(config.node.data_dir)
        audit_key = data_dir / AUDIT_KEY_FILE
        if keyring.citizen_key is not None:
            legacy = audit_key if config.store.backend == "sqlite" and audit_key.exists() else None
            return cls(keyring.citizen_key, keyring.source, legacy)
        if config.store.backend != "sqlite":
            raise ConfigError(keyring.source, "citizen_key",
                              f'required with [store] backend = "{config.store.backend}": every node '
                              "must hash citizen ids with the same key (consents given via one node "
                              "are checked by the others); add a top-level citizen_key = \"<hex, "
                              "32 bytes or more>\" shared by all nodes (`python -m gateway keys init` "
                              "writes one)")
        check_private(audit_key, "the citizen key file")
        try:
            secret = load_key(audit_key)
        except ValueError:
            raise ConfigError(audit_key, "", "not a hex key (the node writes 64 hex digits)") from None
        return cls(secret, str(audit_key), from_keyring=False)

    async def check(self, governance: GovernanceStore) -> None:
        """Record this key's fingerprint on first start; refuse (ConfigError) another key."""
        mine = fingerprint(self.secret)
        first = mine
        if self.legacy is not None:  # data written before fingerprints: hashed with audit.key
            check_private(self.legacy, "the citizen key file")
            try:
                first = fingerprint(bytes.fromhex(self.legacy.read_text().strip()))
            except ValueError:
                raise ConfigError(self.legacy, "", "not a hex key (the node writes 64 hex digits)") from None
        recorded = await governance.key_fingerprint(first)
        if recorded != mine:
            hint = (f"; the data was hashed with {self.legacy}: copy its hex into citizen_key "
                    f"(or remove {self.legacy} if this node's data is new)" if self.legacy else "")
            raise ConfigError(self.source, "citizen_key",
                              f"this key (fingerprint {mine[:16]}) is not the one that hashed the "
                              f"citizen ids already stored (fingerprint {recorded[:16]}, recorded in "
                              "the governance store): every node of a cluster needs the same "
                              "citizen_key, and it cannot change once consents and audit entries "
                              f"are stored{hint}")

    def check_keyring(self, keyring: Keyring, source: str) -> None:
        """Refuse a new keyring (reload, published bundle) that would change the key."""
        if keyring.citizen_key is None:
            if self.from_keyring:
                raise ConfigError(source, "citizen_key", "missing: this node runs with the citizen_key "
                                  f"of {self.source}; a new keyring must carry the same one")
            return
        if not hmac.compare_digest(keyring.citizen_key, self.secret):
            raise ConfigError(source, "citizen_key", "differs from the citizen key this node runs "
                              "with; the key cannot change under stored data (and every node needs "
                              "the same one)")
