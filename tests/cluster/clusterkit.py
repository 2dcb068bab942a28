"""Test kit for cluster mode: a small catalog, gateway node processes with the jetstream
store (or sqlite, for ``--workers``), and helpers to wait for them.

A node is ``python -m gateway serve --config <tmp node.toml>`` in a subprocess on a free
loopback port; its stderr goes to ``node.log`` in its folder.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from support import NodeProcess, free_port, wait_until, write_keyring

from gateway.client import ExchangeClient
from gateway.keyring import load_keyring
from harness import http_status as http_status  # re-exported for the cluster tests
from harness import repo_root

ROOT = repo_root()
OWNER = "SH/GOV/t/own"
READER = "SH/GOV/c/read"
RESOURCES = [f"test.r{i}" for i in range(10)]


def catalog_text(extra: list[str] | None = None) -> str:
    """A catalog with open resources ``test.r0..r9`` (and ``extra``), owned by OWNER."""
    parts = [
        'instance = "SH"',
        '[[members]]\nid = "SH/GOV/t"',
        '[[members]]\nid = "SH/GOV/c"',
        f'[[subsystems]]\nid = "{OWNER}"',
        f'[[subsystems]]\nid = "{READER}"',
    ]
    for rid in RESOURCES + (extra or []):
        parts.append(
            f'[[resources]]\nid = "{rid}"\nowner = "{OWNER}"\nsharing = "open"\nkey = "id"\n'
            'fields = { id = "str", n = "int" }'
        )
    return "\n".join(parts) + "\n"


def write_files(folder: Path) -> tuple[Path, Path]:
    """Write the catalog and a dev keyring for it; (catalog, keyring)."""
    folder.mkdir(parents=True, exist_ok=True)
    cat = folder / "catalog.toml"
    cat.write_text(catalog_text())
    ring = folder / "keyring.toml"
    if not ring.exists():  # mode 0600 (nodes refuse a keyring others may read), with a citizen_key
        write_keyring(ring, [OWNER, READER], citizen_key=secrets.token_hex(32))
    return cat, ring


def operator_key(folder: Path) -> tuple[Path, str]:
    """An operator key for signing published bundles: (private key file, public key text)."""
    from gateway.operatorkey import generate

    path = folder / "operator.key"
    return path, generate(path, force=True)


class GatewayNode(NodeProcess):
    """One ``python -m gateway serve`` process (``workers`` > 1: several sharing the port)
    on a free port, with the jetstream store (or sqlite, for ``--workers``)."""

    def __init__(
        self,
        folder: Path,
        catalog: Path,
        keyring: Path,
        *,
        servers: list[str] | None = None,
        prefix: str = "exg",
        replicas: int = 1,
        backend: str = "jetstream",
        workers: int = 1,
        operator_keys: list[str] | None = None,
    ) -> None:
        store: dict[str, Any] = {"backend": backend}
        if backend == "jetstream":
            store.update(servers=servers or [], replicas=replicas, prefix=prefix)
        super().__init__(folder, keyring, catalog=catalog, store=store, port=free_port(),
                         workers=workers,
                         node={"operator_keys": operator_keys or [], "access_log": False})
        self.folder = folder

    def start(self, wait_for: str = "/healthz", timeout: float = 30.0,  # type: ignore[override]
              args: tuple[str, ...] = ()) -> GatewayNode:
        """Start (``serve`` with extra ``args``) and wait until ``wait_for`` answers (any
        status when it is /readyz)."""
        super().start(wait_for, any_status=wait_for == "/readyz", timeout=timeout, args=args)
        return self


def client(urls: str | list[str], keyring: Path, who: str = OWNER, **kw: Any) -> ExchangeClient:
    """An SDK client for ``who`` with its key from the keyring."""
    key = load_keyring(keyring).for_client(who)
    assert key is not None
    return ExchangeClient(urls, key.id, key.secret, who, **kw)


def rec(key: str, n: int = 0) -> dict[str, Any]:
    return {"key": key, "data": {"id": key, "n": n}}


async def pull_all(c: ExchangeClient, rid: str, after: int = 0) -> list[dict[str, Any]]:
    """Every record of a resource after ``after``."""
    out: list[dict[str, Any]] = []
    while True:
        page = await c.pull(rid, after=after, limit=1000)
        if not page.records:
            return out
        out.extend(page.records)
        after = page.next


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 20.0) -> None:
    """Re-run ``check`` until it is true; fail after ``timeout`` seconds."""
    await wait_until(check, timeout, 0.1)
