"""Cluster mode: watch the config bucket and swap catalog, keys and route table live.

A node with the ``jetstream`` store watches ``<prefix>_config/bundle`` (written by
``python -m gateway catalog publish``). Every new revision is decoded, checked and compiled
off to the side, then installed with one :meth:`Node.swap_state`; a bad value is logged
and ignored, the running state stays. The watcher also re-reads the key every
``recheck_s`` seconds, so that it heals by itself after NATS restarts or reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

from gateway.app import build_state
from gateway.publish import BUNDLE_KEY, bucket_name, decode_bundle

if TYPE_CHECKING:
    from gateway.app import Node
    from gateway.stores.jetstream import JetStreamStore


class ConfigWatcher:
    """Keeps a node's state equal to the newest good bundle in the config bucket."""

    def __init__(self, node: Node, store: JetStreamStore, *, recheck_s: float = 10.0) -> None:
        self.node = node
        self.store = store
        self.recheck_s = recheck_s
        self.bucket = bucket_name(store.prefix)
        self.applied_revision = 0
        self.refused_revision = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Run in the background until :meth:`stop`."""
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
            catalog, keyring, bundle = decode_bundle(value, source)
            if keyring is not None:
                self.node.citizen.check_keyring(keyring, f"{source} (keyring)")
            state = build_state(catalog, keyring or self.node.state.keyring)
        except Exception as exc:  # noqa: BLE001 - anything wrong: keep the running state
            self.refused_revision = revision
            self.node.log.event("catalog_refused", source=source, error=str(exc)[:1000])
            return False
        self.node.swap_state(state)
        self.applied_revision = revision
        self.node.log.event("catalog_swapped", source=source, catalog=bundle.source,
                            resources=len(catalog.resources), keyring=keyring is not None)
        return True

    async def _run(self) -> None:
        while True:
            try:
                await self._watch()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - NATS trouble: retry shortly
                self.node.log.event("catalog_watch_retry", error=f"{type(exc).__name__}: {exc}"[:500])
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
