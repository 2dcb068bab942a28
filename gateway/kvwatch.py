"""Cluster mode: watch the config bucket and swap catalog, keys and route table live.

A node with the ``jetstream`` store watches ``<prefix>_config/bundle`` (written by
``python -m gateway catalog publish``). Every new revision is verified first: it must be
signed by one of the node's trusted operator keys (``[node] operator_keys``); a node
without any installs no bundle at all. Then it is decoded, checked and compiled off to the
side, and installed with one :meth:`Node.swap_state`. A bundle published before the one
installed last (``DATA_DIR/config-bundle.json`` remembers it across restarts) is a replay
and is refused too. Whatever is refused is logged with the reason (``catalog_refused``)
and the running state stays. The watcher also re-reads the key every ``recheck_s``
seconds, so that it heals by itself after NATS restarts or reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.app import build_state
from gateway.publish import BUNDLE_KEY, bucket_name, decode_bundle, open_signed
from gateway.tomlfile import ConfigError

if TYPE_CHECKING:
    from gateway.app import Node
    from gateway.stores.jetstream import JetStreamStore

STATE_FILE = "config-bundle.json"


class ConfigWatcher:
    """Keeps a node's state equal to the newest good, signed bundle in the config bucket."""

    def __init__(self, node: Node, store: JetStreamStore, trusted: dict[str, Ed25519PublicKey], *,
                 recheck_s: float = 10.0) -> None:
        self.node = node
        self.store = store
        self.trusted = trusted
        self.recheck_s = recheck_s
        self.bucket = bucket_name(store.prefix)
        self.applied_revision = 0
        self.refused_revision = 0
        self.state_file = node.config.resolve(node.config.node.data_dir) / STATE_FILE
        self.applied_ms = _read_applied(self.state_file)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Run in the background until :meth:`stop`."""
        if not self.trusted:
            self.node.log.event("operator_keys_missing", level="warning", bucket=self.bucket,
                                detail="no [node] operator_keys: published bundles are refused")
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

    def apply(self, value: bytes, revision: int) -> bool:
        """Install a bucket value; False (logged, old state kept) when it is bad."""
        if revision <= self.applied_revision or revision == self.refused_revision:
            return False
        source = f"nats:{self.bucket}/{BUNDLE_KEY}@{revision}"
        try:
            inner, signer = open_signed(value, source, self.trusted)  # before looking inside
            catalog, keyring, bundle = decode_bundle(inner, source)
            if bundle.published_ms < self.applied_ms:
                raise ConfigError(source, "", f"refused: published {_when(bundle.published_ms)}, before "
                                  f"the bundle installed last ({_when(self.applied_ms)}): a replayed bundle?")
            if keyring is not None:
                self.node.citizen.check_keyring(keyring, f"{source} (keyring)")
            state = build_state(catalog, keyring or self.node.state.keyring)
        except Exception as exc:  # noqa: BLE001 - anything wrong: keep the running state
            self.refused_revision = revision
            self.node.log.event("catalog_refused", level="warning", source=source, error=str(exc)[:1000])
            return False
        self.node.swap_state(state)
        self.applied_revision = revision
        if bundle.published_ms > self.applied_ms:
            self.applied_ms = bundle.published_ms
            _write_applied(self.state_file, bundle.published_ms, signer)
        self.node.log.event("catalog_swapped", source=source, catalog=bundle.source,
                            resources=len(catalog.resources), keyring=keyring is not None,
                            signed_by=signer)
        return True

    async def _run(self) -> None:
        while True:
            try:
                await self._watch()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - NATS trouble: retry shortly
                self.node.log.event("catalog_watch_retry", level="warning", error=f"{type(exc).__name__}: {exc}"[:500])
            await asyncio.sleep(1.0)

    async def _watch(self) -> None:
        import nats.errors
        import nats.js.errors

        while not self.store.connected:
            await asyncio.sleep(0.5)
        js: Any = self.store.js
        try:
            kv = await js.key_value(self.bucket)
        except nats.js.errors.BucketNotFoundError:
            return  # nothing published yet: the files' state stays; look again later
        watcher = await kv.watch(BUNDLE_KEY)
        try:
            while self.store.connected:
                try:
                    entry = await watcher.updates(timeout=self.recheck_s)
                except nats.errors.TimeoutError:
                    entry = None
                    with contextlib.suppress(nats.js.errors.KeyNotFoundError):
                        entry = await kv.get(BUNDLE_KEY)
                if entry is not None and entry.value and entry.operation is None:
                    self.apply(entry.value, entry.revision)
        finally:
            with contextlib.suppress(Exception):
                await watcher.stop()


def _when(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _read_applied(path: Path) -> int:
    """When the bundle installed last was published (ms), 0 when none or unreadable."""
    try:
        return int(json.loads(path.read_text())["published_ms"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def _write_applied(path: Path, published_ms: int, signer: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"published_ms": published_ms, "signed_by": signer}, f)
        os.replace(tmp, path)
    except OSError:
        pass  # the in-memory mark still guards this run
