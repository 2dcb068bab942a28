"""The keyring: which key id holds which secret for which subsystem, and the cluster's
citizen key (``citizen_key``: the secret of the keyed hashes of citizen ids, see
:mod:`gateway.citizenkey`)."""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

import msgspec

from gateway.tomlfile import ConfigError, load_toml

KEY_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
SECRET_RE = re.compile(r"^(?:[0-9a-f]{2}){32,}$")  # whole bytes: an even number of hex digits


class Key(msgspec.Struct, forbid_unknown_fields=True):
    id: str
    client: str
    secret: str

    def __repr__(self) -> str:  # never print a secret
        return f"Key(id={self.id!r}, client={self.client!r}, secret=<hidden>)"


class KeyringFile(msgspec.Struct, forbid_unknown_fields=True):
    keys: list[Key] = []
    citizen_key: str | None = None  # hex, 32 bytes or more; top-level, before [[keys]]


class Keyring:
    """Keys by id; checked so that a key belongs to exactly one subsystem."""

    def __init__(self, keys: list[Key], source: str = "<keyring>", citizen_key: str | None = None) -> None:
        self.source = source
        if citizen_key is not None and not SECRET_RE.match(citizen_key):
            raise ConfigError(source, "citizen_key", "must be lower-case hex of 32 bytes or more (an even "
                              "number of digits, at least 64); `python -m gateway keys init` writes one")
        #: The secret of citizen-id hashes shared by every node, None when the file has none.
        self.citizen_key: bytes | None = bytes.fromhex(citizen_key) if citizen_key is not None else None
        self.by_id: dict[str, Key] = {}
        for i, k in enumerate(keys):
            if not KEY_ID_RE.match(k.id):
                raise ConfigError(source, f"keys[{i}].id", f"invalid key id {k.id!r}")
            if not SECRET_RE.match(k.secret):
                raise ConfigError(source, f"keys[{i}].secret", "must be lower-case hex of 32 bytes or more (an even number of digits, at least 64)")
            if k.id in self.by_id:
                raise ConfigError(source, f"keys[{i}].id", f"duplicate key id {k.id!r}")
            self.by_id[k.id] = k

    def for_client(self, client: str) -> Key | None:
        """The first key of a subsystem (for SDK and tools)."""
        return next((k for k in self.by_id.values() if k.client == client), None)

    def check_clients(self, subsystems: set[str]) -> None:
        """Refuse keys of subsystems the catalog does not declare."""
        for i, k in enumerate(self.by_id.values()):
            if k.client not in subsystems:
                raise ConfigError(self.source, f"keys[{i}].client", f"unknown subsystem {k.client!r}")


def load_keyring(path: str | Path) -> Keyring:
    """Load and check a keyring file."""
    doc = load_toml(path, KeyringFile)
    return Keyring(doc.keys, str(path), doc.citizen_key)


def dev_keyring_text(clients: list[str]) -> str:
    """A development keyring: a fresh citizen key and one fresh random key per subsystem."""
    lines = ["# Development keyring written by `python -m gateway keys init`. Never commit real secrets.\n"
             "# citizen_key: the secret of citizen-id hashes (consents, audit); every node of a\n"
             "# cluster needs the same one, and it must never change once data is stored.\n"
             f'citizen_key = "{secrets.token_hex(32)}"\n']
    for c in clients:
        kid = "k-" + c.replace("/", "-").lower()
        lines.append(f'[[keys]]\nid = "{kid}"\nclient = "{c}"\nsecret = "{secrets.token_hex(32)}"\n')
    return "\n".join(lines)


def write_private(path: str | Path, text: str) -> None:
    """Write a file readable by its owner only (mode 0600), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
