"""Hash-chained audit log, fed from the request path through a bounded queue.

Every exchange writes an :class:`AuditEntry`. A background task takes queued entries in
batches and appends them to the governance store (``DATA_DIR/governance.db`` or
JetStream), which links each entry to the previous one: ``hash`` is SHA-256 over the
previous entry's hash and the entry's canonical JSON (without ``hash``). ``verify``
finds the first broken or missing link. When the queue is (nearly) full the node refuses
requests with 503: an unaudited data access must never happen.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import msgspec

from gateway.errors import Problem
from gateway.redact import redact

GENESIS = "0" * 64
_enc = msgspec.json.Encoder(order="sorted")


class AuditEntry(msgspec.Struct, omit_defaults=True):
    """One exchange: who did what to which resource or service, with what outcome."""

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
    detail: str | None = None
    seq: int = 0
    prev: str = ""
    hash: str = ""


def citizen_hash(secret: bytes, user_id: str) -> str:
    """A keyed hash of a citizen id: linkable in the log, not reversible without the key."""
    return hmac.new(secret, user_id.encode(), hashlib.sha256).hexdigest()[:32]


def _digest(prev: str, entry: AuditEntry) -> str:
    stored = entry.hash
    entry.hash = ""
    try:
        return hashlib.sha256(prev.encode() + _enc.encode(entry)).hexdigest()
    finally:
        entry.hash = stored


def chain_entry(prev: str, entry: AuditEntry) -> str:
    """Link ``entry`` (its ``seq`` already set) to ``prev``; set and return its hash."""
    entry.prev = prev
    entry.ts = float(entry.ts)  # the stored form: what a reader decodes must hash the same
    entry.hash = ""
    entry.hash = _digest(prev, entry)
    return entry.hash


def seal(prev: str, entry: AuditEntry) -> bytes:
    """Link ``entry`` (``seq`` set) to ``prev`` and return its stored JSON in one encode.

    The hash covers the canonical JSON without ``hash``; the stored form is that JSON with
    ``"hash"`` appended (readers decode it; ``verify`` re-encodes canonically).
    """
    entry.prev = prev
    entry.ts = float(entry.ts)
    entry.hash = ""
    body = _enc.encode(entry)
    h = hashlib.sha256(prev.encode() + body).hexdigest()
    entry.hash = h
    return body[:-1] + b',"hash":"' + h.encode() + b'"}'


def load_key(path: str | Path) -> bytes:
    """The secret for citizen hashes (created with mode 0600 when missing)."""
    kp = Path(path)
    if kp.exists():
        return bytes.fromhex(kp.read_text().strip())
    key = os.urandom(32)
    kp.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(kp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key.hex())
    return key


class AuditLog:
    """Queues entries (``submit`` never blocks) and writes them to ``sink`` in batches.

    ``sink`` is a governance store (``audit_append(list[AuditEntry])``).
    """

    def __init__(self, sink: Any, key: bytes, queue_size: int = 65536, batch: int = 2048,
                 linger_s: float = 0.02) -> None:
        self.sink = sink
        self.key = key
        self.linger_s = linger_s  # gather entries this long before a write: fewer, larger batches
        self.queue: asyncio.Queue[AuditEntry] = asyncio.Queue(maxsize=queue_size)
        self.batch = batch
        self.written = 0
        self.failures = 0
        self._task: asyncio.Task | None = None
        self._writing = False

    def room(self, reserve: int = 0) -> bool:
        """Whether the queue has room for ``reserve`` more entries than are queued now."""
        return self.queue.qsize() + reserve < self.queue.maxsize

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
        q = self.queue
        while True:
            batch = [await q.get()]
            self._writing = True
            if self.linger_s and q.qsize() < self.batch:
                await asyncio.sleep(self.linger_s)
            while not q.empty() and len(batch) < self.batch:
                batch.append(q.get_nowait())
            while True:
                try:
                    await self.sink.audit_append(batch)
                    self.written += len(batch)
                    self._writing = False
                    break
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - keep the entries, retry; the queue fills -> 503
                    self.failures += 1
                    print(f'{{"event":"audit_write_failed","error":{_enc.encode(redact(str(exc))).decode()}}}',
                          file=sys.stderr, flush=True)
                    await asyncio.sleep(0.5)

    async def flush(self, timeout: float = 10.0) -> None:
        """Wait until everything queued so far is written."""
        async with asyncio.timeout(timeout):
            while not self.queue.empty() or self._pending():
                await asyncio.sleep(0.005)

    def _pending(self) -> bool:
        return self._writing and self._task is not None and not self._task.done()

    async def close(self) -> None:
        """Write what is queued, then stop."""
        if self._task is not None and not self._task.done():
            with contextlib.suppress(TimeoutError):
                await self.flush()
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._task = None


def iter_file(path: str | Path) -> Iterator[tuple[str, bytes]]:
    """(where, raw JSON) of every non-empty line of an exported JSONL file."""
    with Path(path).open("rb") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                yield f"line {n}", line.rstrip(b"\n")


def verify(rows: Iterable[tuple[str, bytes]]) -> tuple[int, str | None]:
    """Check a chain of (where, raw entry JSON) from the genesis on; return
    (entries checked, description of the first broken or missing link, or None)."""
    prev, seq, count = GENESIS, 0, 0
    for where, raw in rows:
        try:
            e = msgspec.json.decode(raw, type=AuditEntry)
        except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as exc:
            return count, f"{where}: not a valid entry ({exc})"
        if e.seq != seq + 1:
            return count, f"{where}: entry {e.seq} follows {seq}: missing or reordered entries"
        if e.prev != prev:
            return count, f"{where}: entry {e.seq} does not link to the previous entry's hash"
        if _digest(prev, e) != e.hash:
            return count, f"{where}: entry {e.seq} was altered (hash mismatch)"
        prev, seq, count = e.hash, e.seq, count + 1
    return count, None
