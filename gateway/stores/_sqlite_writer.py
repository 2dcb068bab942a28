"""The SQLite store's single writer thread: group commit of everything queued.

The event loop puts operations on a queue and awaits their futures. The writer takes
everything queued, applies it in one ``BEGIN IMMEDIATE`` transaction, commits (the
fsync), and only then answers every caller in one callback on the loop. Operations are
applied in queue order inside the transaction, so a second push with an
Idempotency-Key already used earlier in the same group sees the first one's row.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

try:
    import fcntl
except ImportError:  # not POSIX
    fcntl = None  # type: ignore[assignment]

from fastpath import encode_batch
from gateway.stores._notify import Notifier
from gateway.stores._sqlite_retention import retain
from gateway.stores._sqlite_schema import connect, initialise
from gateway.stores.base import (
    OFFSET_STRIDE,
    AppendResult,
    CursorConflict,
    IdempotencyConflict,
    StoreError,
    StoreUnavailable,
)
from gateway.stores.retention import RetentionPolicy

#: A group stops growing at this many operations or records (bounds commit latency).
MAX_GROUP_OPS = 1024
MAX_GROUP_RECORDS = 50_000
#: Pages an incremental vacuum after a retention step gives back at most (4 KiB each).
VACUUM_PAGES = 50_000


@dataclass(slots=True)
class AppendOp:
    resource: str
    records: list[tuple[str, bytes]]
    client: str
    idempotency_key: str | None
    body_hash: str
    future: asyncio.Future[Any]


@dataclass(slots=True)
class CursorOp:
    client: str
    resource: str
    offset: int
    force: bool
    future: asyncio.Future[Any]


@dataclass(slots=True)
class RetentionOp:
    resource: str
    policy: RetentionPolicy
    now_ms: int
    budget: int  # at most this many batches dropped or rewritten by this op
    future: asyncio.Future[Any]


@dataclass(slots=True)
class PingOp:
    future: asyncio.Future[Any]


@dataclass(slots=True)
class StopOp:
    pass


Op = AppendOp | CursorOp | RetentionOp | PingOp | StopOp

#: Called on the loop after each commit: ({resource: new head}, outcomes, stats).
Deliver = Callable[
    [dict[str, int], list[tuple[asyncio.Future[Any], Any, BaseException | None]], "CommitInfo"],
    None,
]


@dataclass(slots=True)
class CommitInfo:
    seconds: float
    ops: int
    records: int


@dataclass
class WriterStats:
    commits: int = 0
    ops: int = 0
    records: int = 0
    failed_groups: int = 0
    purged_keys: int = 0
    commit_seconds_total: float = 0.0
    largest_group: int = 0
    extra: dict[str, int] = field(default_factory=dict)


class Writer(threading.Thread):
    """Owns the one writing connection; see the module docstring."""

    def __init__(
        self,
        path: str,
        *,
        synchronous: str,
        busy_timeout_ms: int,
        idempotency_ttl_s: float,
        purge_interval_s: float,
        loop: asyncio.AbstractEventLoop,
        deliver: Deliver,
        notifier: Notifier | None,
    ) -> None:
        super().__init__(name=f"sqlite-writer:{path}", daemon=True)
        self.path = path
        self.queue: queue.SimpleQueue[Op] = queue.SimpleQueue()
        self.stats = WriterStats()
        self._synchronous = synchronous
        self._busy_timeout_ms = busy_timeout_ms
        self._ttl_ms = int(idempotency_ttl_s * 1000)
        self._purge_interval = purge_interval_s
        self._next_purge = 0.0
        self._loop = loop
        self._deliver = deliver
        self.notifier = notifier
        self._conn: sqlite3.Connection | None = None
        self._rids: dict[str, int] = {}
        self._recompact: dict[str, int] = {}  # resource -> batch id where re-compaction goes on
        self.ready: asyncio.Future[None] = loop.create_future()

    # -- thread body -----------------------------------------------------------------------

    def run(self) -> None:
        try:
            self._conn = connect(
                self.path,
                synchronous=self._synchronous,
                busy_timeout_ms=self._busy_timeout_ms,
                readonly=False,
            )
            initialise(self._conn, self._busy_timeout_ms)
            self._process_lock = ProcessLock(self.path + ".writer-lock")
        except BaseException as exc:  # noqa: BLE001 - handed to the opener
            error = (
                exc
                if isinstance(exc, StoreError)
                else StoreUnavailable(f"cannot open SQLite database {self.path!r}: {exc}")
            )
            self._call_loop(_settle, self.ready, None, error)
            if self._conn is not None:
                self._conn.close()
            return
        self._call_loop(_settle, self.ready, None, None)
        try:
            self._serve()
        finally:
            self._conn.close()
            self._process_lock.close()

    def _serve(self) -> None:
        notifier = self.notifier
        while True:
            if notifier is not None and notifier.owes:
                try:
                    first = self.queue.get(timeout=0.005)
                except queue.Empty:
                    notifier.retry_owed()
                    continue
            else:
                first = self.queue.get()
            ops: list[Op] = [first]
            records = len(first.records) if isinstance(first, AppendOp) else 0
            stop = isinstance(first, StopOp)
            # Take the cross-process lock before draining: what queues up while another
            # process commits joins this group.
            with self._process_lock if not stop else contextlib.nullcontext():
                while not stop and len(ops) < MAX_GROUP_OPS and records < MAX_GROUP_RECORDS:
                    try:
                        op = self.queue.get_nowait()
                    except queue.Empty:
                        break
                    ops.append(op)
                    if isinstance(op, StopOp):
                        stop = True
                    elif isinstance(op, AppendOp):
                        records += len(op.records)
                work = [op for op in ops if not isinstance(op, StopOp)]
                if work:
                    self._group(work)
            if stop:
                return

    # -- one group commit ------------------------------------------------------------------

    def _group(self, ops: list[Op]) -> None:
        conn = self._conn
        assert conn is not None
        started = time.perf_counter()
        now_ms = int(time.time() * 1000)
        outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        heads: dict[str, int] = {}
        new_rids: dict[str, int] = {}
        latest: dict[tuple[int, str], int] = {}
        records = 0
        freed = False
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                row = conn.execute(
                    "SELECT seq FROM sqlite_sequence WHERE name = 'batches'"
                ).fetchone()
                next_id = (row[0] if row else 0) + 1
                for op in ops:
                    try:
                        if isinstance(op, AppendOp):
                            result, next_id = self._append(
                                conn, op, now_ms, next_id, new_rids, latest, heads
                            )
                            if not result.replayed:
                                records += result.count
                        elif isinstance(op, CursorOp):
                            result = self._set_cursor(conn, op, now_ms, new_rids)
                        elif isinstance(op, RetentionOp):
                            result = retain(conn, self._rids.get(op.resource), op.resource,
                                            op.policy, op.now_ms, op.budget, self._recompact)
                            freed = freed or result[0].records_dropped > 0
                        else:
                            conn.execute(
                                "INSERT OR REPLACE INTO meta (k, v) VALUES ('pinged_ms', ?)",
                                (now_ms,),
                            )
                            result = True
                    except (IdempotencyConflict, CursorConflict, ValueError, TypeError) as exc:
                        # Raised before this op wrote anything: the rest of the group goes on.
                        outcomes.append((op.future, None, exc))
                    else:
                        outcomes.append((op.future, result, None))
                if latest:
                    conn.executemany(
                        'INSERT INTO latest (resource_id, key, "offset") VALUES (?, ?, ?)'
                        " ON CONFLICT (resource_id, key) DO UPDATE SET"
                        ' "offset" = excluded."offset" WHERE excluded."offset" > latest."offset"',
                        [(rid, key, off) for (rid, key), off in latest.items()],
                    )
                self._maybe_purge(conn, now_ms)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            self.stats.failed_groups += 1
            error = StoreUnavailable(f"SQLite write failed: {exc}")
            self._call_loop(
                self._deliver, {}, [(op.future, None, error) for op in ops], CommitInfo(0.0, 0, 0)
            )
            return
        except BaseException as exc:  # noqa: BLE001 - never let the writer die on a bug
            self.stats.failed_groups += 1
            error = StoreError(f"SQLite write failed unexpectedly: {exc!r}")
            self._call_loop(
                self._deliver, {}, [(op.future, None, error) for op in ops], CommitInfo(0.0, 0, 0)
            )
            return
        self._rids.update(new_rids)
        if freed:  # give the pages back to the file system (its own small write transaction)
            with contextlib.suppress(sqlite3.Error):
                conn.executescript(f"PRAGMA incremental_vacuum({VACUUM_PAGES});")
        seconds = time.perf_counter() - started
        stats = self.stats
        stats.commits += 1
        stats.ops += len(ops)
        stats.records += records
        stats.commit_seconds_total += seconds
        stats.largest_group = max(stats.largest_group, len(ops))
        self._call_loop(self._deliver, heads, outcomes, CommitInfo(seconds, len(ops), records))
        if heads and self.notifier is not None:
            self.notifier.publish(heads)

    def _append(
        self,
        conn: sqlite3.Connection,
        op: AppendOp,
        now_ms: int,
        next_id: int,
        new_rids: dict[str, int],
        latest: dict[tuple[int, str], int],
        heads: dict[str, int],
    ) -> tuple[AppendResult, int]:
        rid = self._resource_id(conn, op.resource, new_rids)
        key = op.idempotency_key
        if key is not None:
            row = conn.execute(
                "SELECT body_hash, first, last, count, created_ms FROM idempotency"
                " WHERE client = ? AND resource_id = ? AND key = ?",
                (op.client, rid, key),
            ).fetchone()
            if row is not None and row[4] >= now_ms - self._ttl_ms:
                if row[0] != op.body_hash:
                    raise IdempotencyConflict(
                        f"Idempotency-Key {key!r} was used for another body on {op.resource!r}"
                    )
                return AppendResult(row[1], row[2], row[3], replayed=True), next_id
        base = next_id * OFFSET_STRIDE
        framed = [(base + i, now_ms, k, data) for i, (k, data) in enumerate(op.records)]
        blob = encode_batch(framed)
        count = len(framed)
        last = base + count - 1
        conn.execute(
            "INSERT INTO batches (id, resource_id, first_offset, last_offset, count, blob,"
            " created_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (next_id, rid, base, last, count, blob, now_ms),
        )
        if key is not None:
            conn.execute(
                "INSERT OR REPLACE INTO idempotency"
                " (client, resource_id, key, body_hash, first, last, count, created_ms)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (op.client, rid, key, op.body_hash, base, last, count, now_ms),
            )
        for off, _ts, k, _data in framed:
            latest[(rid, k)] = off
        heads[op.resource] = last
        return AppendResult(base, last, count), next_id + 1

    def _set_cursor(
        self, conn: sqlite3.Connection, op: CursorOp, now_ms: int, new_rids: dict[str, int]
    ) -> int:
        rid = self._resource_id(conn, op.resource, new_rids)
        row = conn.execute(
            'SELECT "offset" FROM cursors WHERE client = ? AND resource_id = ?', (op.client, rid)
        ).fetchone()
        current = row[0] if row else 0
        if op.offset < current and not op.force:
            raise CursorConflict(current, op.offset)
        conn.execute(
            'INSERT INTO cursors (client, resource_id, "offset", updated_ms) VALUES (?, ?, ?, ?)'
            ' ON CONFLICT (client, resource_id) DO UPDATE SET "offset" = excluded."offset",'
            " updated_ms = excluded.updated_ms",
            (op.client, rid, op.offset, now_ms),
        )
        return op.offset

    def _resource_id(self, conn: sqlite3.Connection, name: str, new_rids: dict[str, int]) -> int:
        """The resource's id, created in this transaction when new (cached after commit)."""
        rid = self._rids.get(name) or new_rids.get(name)
        if rid is None:
            conn.execute("INSERT OR IGNORE INTO resources (name) VALUES (?)", (name,))
            rid = conn.execute("SELECT id FROM resources WHERE name = ?", (name,)).fetchone()[0]
            new_rids[name] = rid
        return rid

    def _maybe_purge(self, conn: sqlite3.Connection, now_ms: int) -> None:
        """Drop expired idempotency keys, at most once per purge interval."""
        now = time.monotonic()
        if now < self._next_purge:
            return
        self._next_purge = now + self._purge_interval
        cur = conn.execute("DELETE FROM idempotency WHERE created_ms < ?", (now_ms - self._ttl_ms,))
        self.stats.purged_keys += max(cur.rowcount, 0)

    def _call_loop(self, fn: Callable[..., Any], *args: Any) -> None:
        # RuntimeError: the loop is closed, nobody is waiting any more.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(fn, *args)


class ProcessLock:
    """Takes turns with the writers of other processes on the same file.

    ``BEGIN IMMEDIATE`` alone would serialise them too, but a writer that finds the
    database locked sleeps in SQLite's busy handler for up to 100 ms at a time, and the
    writer that just committed usually wins again. Here each writer takes two ``flock``
    locks on files next to the database: a turnstile, then the main lock, and it lets go of
    the turnstile once it holds the main lock. While one writer holds the main lock, the
    next one waits on the main lock holding the turnstile. So the writer that just
    committed queues behind it at the turnstile. Blocked ``flock`` calls wake as soon as
    the lock is free. The kernel drops the locks of a process that dies.

    A process that is frozen while it holds the lock (SIGSTOP, a debugger) stalls the
    other writers until it continues or dies. Where ``fcntl`` does not exist, the lock
    does nothing and the busy timeout does the work.
    """

    def __init__(self, path: str) -> None:
        self._main: int | None = None
        self._turnstile: int | None = None
        if fcntl is not None:
            self._main = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            self._turnstile = os.open(path + "-turnstile", os.O_RDWR | os.O_CREAT, 0o600)

    def __enter__(self) -> None:
        if self._main is not None and self._turnstile is not None:
            fcntl.flock(self._turnstile, fcntl.LOCK_EX)
            try:
                fcntl.flock(self._main, fcntl.LOCK_EX)
            finally:
                fcntl.flock(self._turnstile, fcntl.LOCK_UN)

    def __exit__(self, *exc: object) -> None:
        if self._main is not None:
            fcntl.flock(self._main, fcntl.LOCK_UN)

    def close(self) -> None:
        for fd in (self._main, self._turnstile):
            if fd is not None:
                os.close(fd)
        self._main = self._turnstile = None


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
