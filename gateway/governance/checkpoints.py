"""Signed audit checkpoints: the node vouches for the head of the audit chain.

The hash chain alone cannot tell a cut-off end from a log that simply ends, nor a
rewritten entry re-sealed with the public hash function from the original. So at most a
second after it appended entries (never while idle) a node signs the head it wrote last
with its Ed25519 key (``node-signing.key``, the webhook-signing key) and writes the
checkpoint *outside* the governance store:

- appended to a JSON-lines file (``[node] audit_checkpoints``, default
  ``DATA_DIR/audit-checkpoints.jsonl``; ``O_APPEND``, fsync'd, mode 0600);
- in cluster mode also published, acknowledged, to the JetStream stream
  ``PREFIX_AUDIT_CHECKPOINTS`` (created with deletes and purges denied).

A checkpoint names the node, its key id, an entry's ``seq`` and ``hash`` (``head``) and
the time; ``sig`` is Ed25519 over the UTF-8 bytes of::

    "\\n".join(["EXG-AUDIT-CHECKPOINT-V1", node, key_id, str(seq), head, time])

``python -m gateway audit verify`` checks the chain against every checkpoint signed by a
trusted key (see :mod:`gateway.governance.auditverify` and docs/audit.md).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import stat
import time
from pathlib import Path
from typing import Any

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway import logs
from gateway.config import NodeConfig
from gateway.governance.webhooks import NodeKey, b64url
from gateway.tomlfile import ConfigError
from gateway.wire import iso_ms

ALGORITHM = "EXG-AUDIT-CHECKPOINT-V1"
FILE_NAME = "audit-checkpoints.jsonl"
_enc = msgspec.json.Encoder(order="sorted")


class Checkpoint(msgspec.Struct, forbid_unknown_fields=True):
    """A node's signed statement: entry ``seq`` of the audit chain has hash ``head``."""

    node: str
    key_id: str
    seq: int
    head: str
    time: str
    sig: str

    def signed_bytes(self) -> bytes:
        """The canonical string the signature covers."""
        return signing_string(self.node, self.key_id, self.seq, self.head, self.time)

    def line(self) -> bytes:
        """The stored form: canonical JSON and a newline."""
        return _enc.encode(self) + b"\n"


def signing_string(node: str, key_id: str, seq: int, head: str, when: str) -> bytes:
    return "\n".join((ALGORITHM, node, key_id, str(seq), head, when)).encode()


def sign_checkpoint(key: NodeKey, node: str, seq: int, head: str, at: float | None = None) -> Checkpoint:
    """A checkpoint of (``seq``, ``head``) signed by ``key`` at ``at`` (now by default)."""
    when = iso_ms(int((time.time() if at is None else at) * 1000))
    sig = key.sign(signing_string(node, key.id, seq, head, when))
    return Checkpoint(node=node, key_id=key.id, seq=seq, head=head, time=when, sig=b64url(sig))


def signature_ok(cp: Checkpoint, public: Ed25519PublicKey) -> bool:
    """Whether ``cp.sig`` is ``public``'s Ed25519 signature of the checkpoint."""
    try:
        raw = base64.urlsafe_b64decode(cp.sig + "=" * (-len(cp.sig) % 4))
        public.verify(raw, cp.signed_bytes())
    except (InvalidSignature, ValueError):
        return False
    return True


class CheckpointFile:
    """An append-only JSON-lines file of checkpoints (``O_APPEND``, fsync per write, 0600)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._fd: int | None = None

    def open(self) -> None:
        """Open (create) the file; a path that cannot be opened is a ConfigError."""
        if self._fd is not None:
            return
        try:
            self._open()
        except OSError as exc:
            raise ConfigError(self.path, "node.audit_checkpoints",
                              f"cannot open the audit checkpoint file ({exc.strerror or exc})") from None

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        created = not self.path.exists()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            if stat.S_IMODE(os.fstat(fd).st_mode) & 0o077:
                os.fchmod(fd, 0o600)
            if created:  # make the new directory entry durable too
                dfd = os.open(self.path.parent, os.O_RDONLY)
                try:
                    os.fsync(dfd)
                finally:
                    os.close(dfd)
        except OSError:
            os.close(fd)
            raise
        self._fd = fd

    def append(self, line: bytes) -> None:
        """Write one line with a single ``write`` and fsync it (blocking: run it on a thread).

        A file moved away (rotated) or removed since the last write is created anew."""
        if self._fd is None:  # not opened yet, or its re-creation failed last time
            self._open()
        try:
            moved = os.stat(self.path).st_ino != os.fstat(self._fd).st_ino
        except FileNotFoundError:
            moved = True
        if moved:
            self.close()
            self._open()
            _event("audit_checkpoint_file_recreated", path=str(self.path))
        assert self._fd is not None
        view = memoryview(line)
        while view:
            view = view[os.write(self._fd, view):]
        os.fsync(self._fd)

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)


def _event(event: str, **fields: object) -> None:
    logs.event(event, level="warning", logger=__name__, **fields)


class Checkpointer:
    """Signs the head this process last wrote, at most every ``interval_s`` and only
    after new entries; writes each checkpoint to the file, then to ``remote`` (a JetStream
    governance store, when given: ``audit_checkpoint_append(bytes)``)."""

    def __init__(self, key: NodeKey, node: str, file: CheckpointFile, *, remote: Any = None,
                 interval_s: float = 1.0) -> None:
        if not node or "\n" in node:
            raise ValueError("a checkpoint's node name must be one non-empty line")
        self.key = key
        self.node = node
        self.file = file
        self.remote = remote
        self.interval_s = interval_s
        self.written = 0
        self.failures = 0
        self.last: Checkpoint | None = None
        self._head: tuple[int, str] | None = None  # newest head not yet checkpointed
        self._dirty = asyncio.Event()
        self._last_at = float("-inf")
        self._task: asyncio.Task | None = None
        self._lock = asyncio.Lock()

    def start(self) -> None:
        self.file.open()
        self._task = asyncio.get_running_loop().create_task(self._run())

    def note(self, seq: int, head: str) -> None:
        """The writer appended entries up to ``seq`` whose hash is ``head``."""
        if self._head is None or seq > self._head[0]:
            self._head = (seq, head)
            self._dirty.set()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._dirty.wait()
            delay = self._last_at + self.interval_s - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            # shielded: a close() arriving mid-write waits for it instead of writing it twice
            if not await asyncio.shield(self.checkpoint()):
                await asyncio.sleep(self.interval_s)  # the file failed: try again a moment later

    async def checkpoint(self) -> bool:
        """Sign and write the pending head now (no-op when there is none); False on failure."""
        async with self._lock:
            head = self._head
            self._dirty.clear()
            if head is None:
                return True
            self._last_at = asyncio.get_running_loop().time()
            cp = sign_checkpoint(self.key, self.node, *head)
            line = cp.line()
            try:
                await asyncio.to_thread(self.file.append, line)
            except Exception as exc:  # noqa: BLE001 - keep the head pending, try again shortly
                self.failures += 1
                self._dirty.set()
                _event("audit_checkpoint_failed", path=str(self.file.path), error=str(exc))
                return False
            if self._head == head:
                self._head = None
            self.last = cp
            self.written += 1
            if self.remote is not None:
                try:
                    await self.remote.audit_checkpoint_append(line)
                except Exception as exc:  # noqa: BLE001 - the file holds it; the next one supersedes
                    self.failures += 1
                    _event("audit_checkpoint_publish_failed", error=f"{type(exc).__name__}: {exc}")
            return True

    async def close(self) -> None:
        """Checkpoint what is pending, then stop."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(Exception):
            await self.checkpoint()
        self.file.close()


def checkpoint_path(config: NodeConfig) -> Path:
    """``[node] audit_checkpoints``, by default ``DATA_DIR/audit-checkpoints.jsonl``."""
    if config.node.audit_checkpoints:
        return config.resolve(config.node.audit_checkpoints)
    return config.resolve(config.node.data_dir) / FILE_NAME


def node_checkpointer(config: NodeConfig, key: NodeKey, governance: Any) -> Checkpointer:
    """The node's checkpointer: its file, and the JetStream stream in cluster mode."""
    remote = governance if hasattr(governance, "audit_checkpoint_append") else None
    return Checkpointer(key, f"{os.uname().nodename}:{config.port}", CheckpointFile(checkpoint_path(config)),
                        remote=remote)
