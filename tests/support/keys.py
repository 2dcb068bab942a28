"""Keyring files for test nodes."""

from __future__ import annotations

import secrets
import tomllib
from pathlib import Path

from gateway.keyring import write_private


def catalog_subsystems(catalog: Path) -> list[str]:
    """The subsystem ids of a catalog file, in file order."""
    return [s["id"] for s in tomllib.loads(catalog.read_text()).get("subsystems", [])]


def write_keyring(
    path: Path,
    clients: list[str],
    *,
    citizen_key: str | None = None,
    keys: dict[str, tuple[str, str]] | None = None,
) -> dict[str, tuple[str, str]]:
    """Write a keyring (mode 0600, as nodes require) with a fresh key per client, or
    ``keys`` (client -> (key id, secret)), and ``citizen_key`` (hex) when given; the keys."""
    if keys is None:
        keys = {c: ("k-" + c.replace("/", "-").lower(), secrets.token_hex(32)) for c in clients}
    lines = [f'citizen_key = "{citizen_key}"\n'] if citizen_key else []
    lines += [f'[[keys]]\nid = "{kid}"\nclient = "{c}"\nsecret = "{sec}"\n'
              for c, (kid, sec) in keys.items()]
    write_private(path, "\n".join(lines))
    return keys
