"""The keyring: which key id holds which secret for which subsystem, and the cluster's
citizen key (``citizen_key``: the secret of the keyed hashes of citizen ids, see
:mod:`gateway.citizenkey`)."""

from __future__ import annotations

import datetime as dt
import os
import re
import secrets
import time
from pathlib import Path

import msgspec

from gateway.tomlfile import ConfigError, load_toml

KEY_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
SECRET_RE = re.compile(r"^(?:[0-9a-f]{2}){32,}$")  # whole bytes: an even number of hex digits


class Key(msgspec.Struct, forbid_unknown_fields=True):
    id: str
    client: str
    secret: str
    #: Validity window (UTC; TOML datetimes): a key is refused before ``not_before`` and after
    #: ``not_after``. ``keys rotate`` adds a key and retires the old one after an overlap.
    not_before: dt.datetime | None = None
    not_after: dt.datetime | None = None

    def valid_at(self, now: float) -> bool:
        """Whether the key may sign a request at ``now`` (epoch seconds)."""
        if self.not_before is not None and now < self.not_before.timestamp():
            return False
        return self.not_after is None or now <= self.not_after.timestamp()

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
            for name in ("not_before", "not_after"):
                value = getattr(k, name)
                if value is not None and value.tzinfo is None:
                    raise ConfigError(source, f"keys[{i}].{name}", "must carry a time zone "
                                      "(e.g. 2027-01-31T00:00:00Z)")
            if k.not_before is not None and k.not_after is not None and k.not_after <= k.not_before:
                raise ConfigError(source, f"keys[{i}].not_after", "must be after not_before")
            self.by_id[k.id] = k

    def for_client(self, client: str, now: float | None = None) -> Key | None:
        """The key a subsystem should sign with now (for SDK and tools): of its keys valid now,
        the one that became valid last (the newest after a rotation); else its first key."""
        now = time.time() if now is None else now
        mine = [k for k in self.by_id.values() if k.client == client]
        valid = [k for k in mine if k.valid_at(now)]
        if valid:
            return max(valid, key=lambda k: (k.not_before.timestamp() if k.not_before else 0.0))
        return mine[0] if mine else None

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


def rotate_text(text: str, client: str, overlap_s: int, now: float | None = None) -> tuple[str, str, list[str]]:
    """The keyring ``text`` with a new key for ``client`` (valid from now) and the client's
    current keys retired ``overlap_s`` from now: (new text, new key id, retired key ids).
    The rest of the file (comments, other keys, the citizen key) is kept as written."""
    import tomllib

    doc = tomllib.loads(text)
    now = time.time() if now is None else now
    start = dt.datetime.fromtimestamp(int(now), dt.UTC)
    until = dt.datetime.fromtimestamp(int(now + overlap_s), dt.UTC)
    keys = doc.get("keys", [])
    mine = [k for k in keys if k.get("client") == client]
    if not mine:
        raise ValueError(f"the keyring has no key of {client!r}")
    taken = {k.get("id") for k in keys}
    base = "k-" + client.replace("/", "-").lower()
    n = 2
    while f"{base}-{n}" in taken:
        n += 1
    new_id = f"{base}-{n}"
    retired = []
    lines = text.splitlines()
    # Append not_after to each of the client's keys that has none or a later one.
    blocks = _key_blocks(lines)
    for (start_line, end_line), k in zip(reversed(blocks), reversed(keys), strict=True):
        if k.get("client") != client:
            continue
        current = k.get("not_after")
        if current is not None and current.timestamp() <= until.timestamp():
            continue
        body = [ln for ln in lines[start_line:end_line] if not ln.strip().startswith("not_after")]
        at = max(i for i, ln in enumerate(body) if ln.strip()) + 1
        body.insert(at, f"not_after = {until.strftime('%Y-%m-%dT%H:%M:%SZ')}")
        lines[start_line:end_line] = body
        retired.append(k["id"])
    lines += ["", "[[keys]]", f'id = "{new_id}"', f'client = "{client}"',
              f'secret = "{secrets.token_hex(32)}"', f"not_before = {start.strftime('%Y-%m-%dT%H:%M:%SZ')}"]
    return "\n".join(lines) + "\n", new_id, sorted(retired)


def _key_blocks(lines: list[str]) -> list[tuple[int, int]]:
    """(first, end) line ranges of each ``[[keys]]`` table, in file order."""
    starts = [i for i, ln in enumerate(lines) if ln.strip() == "[[keys]]"]
    blocks = []
    for j, s in enumerate(starts):
        end = starts[j + 1] if j + 1 < len(starts) else len(lines)
        for i in range(s + 1, end):  # a following non-key table ends the block
            if lines[i].strip().startswith("[") and lines[i].strip() != "[[keys]]":
                end = i
                break
        blocks.append((s, end))
    return blocks
