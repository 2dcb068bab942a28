"""Hash-chained audit log, fed from the request path through a bounded queue.

Each entry is one JSON line whose ``hash`` is SHA-256 over the previous entry's hash
and the entry's canonical JSON (without ``hash``). ``verify`` finds the first broken
or missing link. When the queue is full the request is refused (503): an unaudited
data access must never happen.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec

from gateway.errors import Problem

GENESIS = "0" * 64
_enc = msgspec.json.Encoder(order="sorted")


class AuditEntry(msgspec.Struct, omit_defaults=True):
    """One exchange: who did what to which resource, with what outcome."""

    ts: float
    request_id: str
    client: str
    op: str
    target: str
    status: int
    count: int = 0
    citizens: list[str] = []
    purpose: str | None = None
    consent: str | None = None
    seq: int = 0
    prev: str = ""
    hash: str = ""


def citizen_hash(secret: bytes, user_id: str) -> str:
    """A keyed hash of a citizen id: linkable in the log, not reversible without the key."""
    return hmac.new(secret, user_id.encode(), hashlib.sha256).hexdigest()[:32]


def _chain(prev: str, entry: AuditEntry) -> str:
    entry.prev = prev
    entry.hash = ""
    return hashlib.sha256(prev.encode() + _enc.encode(entry)).hexdigest()


class AuditLog:
    """Appends entries to ``path`` from a background task; ``submit`` never blocks."""

    def __init__(self, path: str | Path, queue_size: int = 65536, fsync: bool = False) -> None:
        self.path = Path(path)
        self.queue: asyncio.Queue[AuditEntry] = asyncio.Queue(maxsize=queue_size)
        self.fsync = fsync
        self._task: asyncio.Task | None = None
        self._seq, self._prev = self._tail()
        self.key = self._load_key()

    def _load_key(self) -> bytes:
        kp = self.path.with_suffix(".key")
        if kp.exists():
            return bytes.fromhex(kp.read_text().strip())
        key = os.urandom(32)
        kp.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(kp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(key.hex())
        return key

    def _tail(self) -> tuple[int, str]:
        if not self.path.exists():
            return 0, GENESIS
        last = None
        with self.path.open("rb") as f:
            for line in f:
                if line.strip():
                    last = line
        if last is None:
            return 0, GENESIS
        try:
            e = msgspec.json.decode(last, type=AuditEntry)
            return e.seq, e.hash
        except msgspec.DecodeError:
            return 0, GENESIS  # a torn last line; verify will report it

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def submit(self, entry: AuditEntry) -> None:
        """Queue an entry; raise 503 when the queue is full."""
        try:
            self.queue.put_nowait(entry)
        except asyncio.QueueFull:
            raise Problem("server.unavailable", "audit log is saturated; try again shortly",
                          headers={"Retry-After": "1"}) from None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        f = self.path.open("ab")
        try:
            while True:
                first = await self.queue.get()
                batch = [first]
                while not self.queue.empty() and len(batch) < 4096:
                    batch.append(self.queue.get_nowait())
                lines = []
                for e in batch:
                    self._seq += 1
                    e.seq = self._seq
                    h = _chain(self._prev, e)
                    e.hash = h
                    self._prev = h
                    lines.append(_enc.encode(e))
                data = b"\n".join(lines) + b"\n"
                await loop.run_in_executor(None, self._write, f, data)
        finally:
            f.close()

    def _write(self, f: Any, data: bytes) -> None:
        f.write(data)
        f.flush()
        if self.fsync:
            os.fsync(f.fileno())

    async def close(self) -> None:
        """Write what is queued, then stop."""
        while not self.queue.empty() and self._task and not self._task.done():
            await asyncio.sleep(0.01)
        await asyncio.sleep(0)
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


def iter_entries(path: str | Path) -> Iterator[tuple[int, bytes]]:
    """(line number, raw line) of every non-empty line."""
    with Path(path).open("rb") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                yield n, line.rstrip(b"\n")


def verify(path: str | Path) -> tuple[int, str | None]:
    """Check the chain; return (entries checked, description of the first broken link or None)."""
    prev, seq, count = GENESIS, 0, 0
    for n, line in iter_entries(path):
        try:
            e = msgspec.json.decode(line, type=AuditEntry)
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            return count, f"line {n}: not a valid entry ({exc})"
        if e.seq != seq + 1:
            return count, f"line {n}: entry {e.seq} follows {seq}: missing or reordered entries"
        if e.prev != prev:
            return count, f"line {n}: entry {e.seq} does not link to the previous entry's hash"
        stored = e.hash
        if _chain(prev, e) != stored:
            return count, f"line {n}: entry {e.seq} was altered (hash mismatch)"
        prev, seq, count = stored, e.seq, count + 1
    return count, None
