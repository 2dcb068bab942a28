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
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import msgspec

from gateway import logs
from gateway.errors import Problem

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
    # Written whole under a private name, then linked into place: of several workers starting
    # at once one wins, the others read its key (never a half-written file).
    tmp = kp.with_name(f".{kp.name}.{os.getpid()}.{os.urandom(4).hex()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(key.hex())
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, kp)
        except FileExistsError:
            return bytes.fromhex(kp.read_text().strip())
    finally:
        tmp.unlink(missing_ok=True)
    return key


class AuditLog:
    """Queues entries and writes them to ``sink`` in batches (group commit).

    ``sink`` is a governance store (``audit_append(list[AuditEntry])``). :meth:`submit`
    never blocks; :meth:`record` waits until its entry is durably written, sharing the
    write with every entry queued meanwhile. After each write the head of the chain goes
    to ``checkpointer`` (``note(seq, hash)``), which signs it (see
    :mod:`gateway.governance.checkpoints`).
    """

    def __init__(self, sink: Any, key: bytes, queue_size: int = 65536, batch: int = 2048,
                 linger_s: float = 0.02, *, checkpointer: Any = None,
                 durable_timeout_s: float = 5.0) -> None:
        self.sink = sink
        self.key = key
        self.linger_s = linger_s  # gather entries this long before a write: fewer, larger batches
        self.queue: asyncio.Queue[AuditEntry] = asyncio.Queue(maxsize=queue_size)
        self.batch = batch
        self.checkpointer = checkpointer
        self.durable_timeout_s = durable_timeout_s
        self.written = 0
        self.writes = 0  # successful sink writes (batches)
        self.failures = 0
        self.head: tuple[int, str] | None = None  # (seq, hash) of the last entry written here
        self._task: asyncio.Task | None = None
        self._writing = False
        self._waiters: dict[int, asyncio.Future[int]] = {}  # id(entry) -> its record() caller
        self._urgent = asyncio.Event()  # a record() caller waits: cut the linger short

    def room(self, reserve: int = 0) -> bool:
        """Whether the queue has room for ``reserve`` more entries than are queued now."""
        return self.queue.qsize() + reserve < self.queue.maxsize

    def start(self) -> None:
        if self.checkpointer is not None:
            self.checkpointer.start()
        self._task = asyncio.get_running_loop().create_task(self._run())

    def submit(self, entry: AuditEntry) -> None:
        """Queue an entry; raise 503 when the queue is full."""
        try:
            self.queue.put_nowait(entry)
        except asyncio.QueueFull:
            raise Problem("server.unavailable", "audit log is saturated; try again shortly",
                          headers={"Retry-After": "1"}) from None

    async def record(self, entry: AuditEntry, timeout: float | None = None) -> int:
        """Queue ``entry`` and return its ``seq`` once it is durably in the governance store.

        Concurrent callers share one write. Raises :class:`Problem` 503 (``Retry-After: 1``)
        when the queue is full, the writer is not running, the write fails, or it is not
        confirmed within ``timeout`` (default ``durable_timeout_s``): the caller must then not
        release the data. An entry whose write failed stays queued and may still be written
        later, so the log may show an access that was answered 503, never the reverse.
        """
        if self._task is None or self._task.done():
            raise Problem("server.unavailable", "audit log writer is not running",
                          headers={"Retry-After": "1"})
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.submit(entry)
        key = id(entry)  # unique while the entry is queued or being written (it is referenced)
        self._waiters[key] = fut
        self._urgent.set()
        limit = self.durable_timeout_s if timeout is None else timeout
        try:
            async with asyncio.timeout(limit):
                return await fut
        except TimeoutError:
            raise Problem("server.unavailable", f"audit log did not confirm the write within {limit:g} s",
                          headers={"Retry-After": "1"}) from None
        finally:
            if self._waiters.get(key) is fut:
                del self._waiters[key]

    def _settle(self, batch: list[AuditEntry], exc: BaseException | None) -> None:
        """Answer the record() callers of ``batch``: their seq, or 503 after ``exc``."""
        if not self._waiters:
            return
        for e in batch:
            fut = self._waiters.pop(id(e), None)
            if fut is None or fut.done():
                continue
            if exc is None:
                fut.set_result(e.seq)
            else:
                fut.set_exception(Problem("server.unavailable", "audit log write failed; retry shortly",
                                          headers={"Retry-After": "1"}))

    async def _run(self) -> None:
        q = self.queue
        while True:
            batch = [await q.get()]
            self._writing = True
            if self.linger_s and not self._waiters and q.qsize() < self.batch:
                self._urgent.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.linger_s):
                        await self._urgent.wait()
            while not q.empty() and len(batch) < self.batch:
                batch.append(q.get_nowait())
            while True:
                try:
                    await self.sink.audit_append(batch)
                    self.written += len(batch)
                    self.writes += 1
                    self._writing = False
                    last = batch[-1]
                    if self.head is not None and batch[0].seq <= self.head[0]:
                        # the store's chain ends before what this process wrote: cut under us
                        logs.event("audit_chain_regressed", level="error", logger=__name__,
                                   had=self.head[0], continued_at=batch[0].seq)
                    self.head = (last.seq, last.hash)
                    self._settle(batch, None)
                    if self.checkpointer is not None:
                        self.checkpointer.note(last.seq, last.hash)
                    break
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - keep the entries, retry; the queue fills -> 503
                    self.failures += 1
                    self._settle(batch, exc)
                    logs.event("audit_write_failed", level="error", logger=__name__, error=str(exc))
                    await asyncio.sleep(0.5)

    async def flush(self, timeout: float = 10.0) -> None:
        """Wait until everything queued so far is written."""
        async with asyncio.timeout(timeout):
            while not self.queue.empty() or self._pending():
                await asyncio.sleep(0.005)

    def _pending(self) -> bool:
        return self._writing and self._task is not None and not self._task.done()

    async def close(self) -> None:
        """Write what is queued, checkpoint the head, then stop."""
        if self._task is not None and not self._task.done():
            with contextlib.suppress(TimeoutError):
                await self.flush()
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._task = None
        if self.checkpointer is not None:
            await self.checkpointer.close()


def iter_file(path: str | Path) -> Iterator[tuple[str, bytes]]:
    """(where, raw JSON) of every non-empty line of an exported JSONL file."""
    with Path(path).open("rb") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                yield f"line {n}", line.rstrip(b"\n")


class ChainWalk:
    """Walks a chain of (where, raw entry JSON) from the genesis on: :meth:`entries` yields
    each entry whose link holds; at the first broken or missing link it stops and sets
    ``problem``. ``count`` is the number of good entries, ``last`` the last good seq."""

    def __init__(self, prev: str = GENESIS, seq: int = 0) -> None:
        self.count = 0
        self.last = seq
        self.problem: str | None = None
        self._start = (prev, seq)  # another point than the genesis: an archive segment's start

    def entries(self, rows: Iterable[tuple[str, bytes]]) -> Iterator[tuple[str, AuditEntry]]:
        prev, seq = self._start
        for where, raw in rows:
            try:
                e = msgspec.json.decode(raw, type=AuditEntry)
            except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as exc:
                self.problem = f"{where}: not a valid entry ({exc})"
                return
            if e.seq != seq + 1:
                self.problem = f"{where}: entry {e.seq} follows {seq}: missing or reordered entries"
                return
            if e.prev != prev:
                self.problem = f"{where}: entry {e.seq} does not link to the previous entry's hash"
                return
            if _digest(prev, e) != e.hash:
                self.problem = f"{where}: entry {e.seq} was altered (hash mismatch)"
                return
            prev, seq = e.hash, e.seq
            self.count, self.last = self.count + 1, seq
            yield where, e


def verify(rows: Iterable[tuple[str, bytes]]) -> tuple[int, str | None]:
    """Check a chain of (where, raw entry JSON) from the genesis on; return
    (entries checked, description of the first broken or missing link, or None)."""
    walk = ChainWalk()
    for _ in walk.entries(rows):
        pass
    return walk.count, walk.problem
