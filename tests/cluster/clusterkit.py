"""Test kit for cluster mode: a small catalog, gateway node processes with the jetstream
store (or sqlite, for ``--workers``), and helpers to wait for them.

A node is ``python -m gateway serve --config <tmp node.toml>`` in a subprocess on a free
loopback port; its stderr goes to ``node.log`` in its folder.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from gateway.client import ExchangeClient
from gateway.keyring import dev_keyring_text, load_keyring, write_private
from gateway.stores.natsproc import free_port

ROOT = Path(__file__).resolve().parents[2]
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
        write_private(ring, dev_keyring_text([OWNER, READER]))
    return cat, ring


def operator_key(folder: Path) -> tuple[Path, str]:
    """An operator key for signing published bundles: (private key file, public key text)."""
    from gateway.operatorkey import generate

    path = folder / "operator.key"
    return path, generate(path, force=True)


class GatewayNode:
    """One ``python -m gateway serve`` process (``workers`` > 1: several sharing the port)."""

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
        self.folder = folder
        self.catalog = catalog
        self.keyring = keyring
        self.servers = servers or []
        self.prefix = prefix
        self.replicas = replicas
        self.backend = backend
        self.workers = workers
        self.operator_keys = operator_keys or []  # trusted signers of published bundles
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def config_text(self) -> str:
        store = f'[store]\nbackend = "{self.backend}"\n'
        if self.backend == "jetstream":
            store += (
                f"servers = {json.dumps(self.servers)}\nreplicas = {self.replicas}\n"
                f'prefix = "{self.prefix}"\n'
            )
        return (
            f'[node]\nlisten = "127.0.0.1:{self.port}"\ncatalog = "{self.catalog}"\n'
            f'keyring = "{self.keyring}"\ndata_dir = "{self.folder / "data"}"\n'
            f"operator_keys = {json.dumps(self.operator_keys)}\n"
            f"access_log = false\n\n{store}"
        )

    def start(self, wait_for: str = "/healthz", timeout: float = 30.0, args: tuple[str, ...] = ()
              ) -> GatewayNode:
        """Start (``serve`` with extra ``args``) and wait until ``wait_for`` answers (any status
        when it is /readyz)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        conf = self.folder / "node.toml"
        conf.write_text(self.config_text())
        cmd = [sys.executable, "-m", "gateway", "serve", "--config", str(conf)]
        if self.workers > 1:
            cmd += ["--workers", str(self.workers)]
        cmd += list(args)
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        with open(self.folder / "node.log", "ab") as log:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=log,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"node exited with {self.proc.returncode}:\n{self.log_tail()}")
            status = http_status(self.url + wait_for)
            listening = self.log_tail(10_000).count('"event":"listening"')
            if (status is not None and (status == 200 or wait_for == "/readyz")
                    and listening >= self.workers):
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"node did not answer {wait_for} within {timeout} s:\n{self.log_tail()}")

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join((self.folder / "node.log").read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def kill(self) -> None:
        """kill -9 the node (and its workers)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 15 s. Idempotent."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def http_status(url: str, timeout: float = 2.0) -> int | None:
    """The status of a GET, None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (OSError, ValueError):
        return None


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
    deadline = time.monotonic() + timeout
    while True:
        if await check():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.1)
