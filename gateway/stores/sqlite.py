"""The embedded store: one SQLite file in WAL mode, a group-committing writer thread,
reader threads with their own connections, and long-poll wake-ups without polling.

Records are kept one row per pushed batch, framed by ``fastpath.encode_batch``; the
batch row's id (a global AUTOINCREMENT sequence) gives the records' offsets
``id * OFFSET_STRIDE + index``, so offsets are strictly increasing per resource and
unique across processes sharing the file (their writers serialise on ``BEGIN IMMEDIATE``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar

from fastpath import CorruptBatch, decode_batch
from gateway.filemodes import private_file
from gateway.stores import _notify
from gateway.stores._sqlite_readers import ReaderPool
from gateway.stores._sqlite_schema import SYNCHRONOUS_MODES, connect
from gateway.stores._sqlite_writer import (
    AppendOp,
    CommitInfo,
    CursorOp,
    PingOp,
    RetentionOp,
    StopOp,
    Writer,
)
from gateway.stores.base import (
    MAX_BATCH_RECORDS,
    OFFSET_STRIDE,
    AppendResult,
    Record,
    StoreError,
    StoreUnavailable,
    check_batch,
)
from gateway.stores.latest_cache import LatestCache
from gateway.stores.retention import RetentionPolicy, RetentionResult

__all__ = ["SQLiteStore", "MAX_BATCH_RECORDS"]

#: The most records one append may carry (offsets of a batch share one stride).

#: Without cross-process notification (non-Linux), waiters re-check this often.
_FALLBACK_RECHECK_S = 1.0

T = TypeVar("T")
CommitObserver = Callable[[float, int, int], None]


class SQLiteStore:
    """The ``sqlite`` backend of :class:`gateway.stores.base.Store`.

    ``synchronous`` is ``FULL`` (every commit is fsynced before it is answered),
    ``NORMAL`` (WAL durability across process crashes, not power loss) or ``EXTRA``.
    ``idempotency_ttl_s`` is how long Idempotency-Keys are honoured (the contract
    requires at least 24 h; shorter values are for tests). ``on_commit`` is called on the
    event loop after every group commit with (seconds, operations, records appended).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: str = "FULL",
        idempotency_ttl_s: float = 86400 * 2,
        busy_timeout_s: float = 10.0,
        readers: int = 4,
        purge_interval_s: float = 60.0,
        cross_process_notify: bool = True,
        on_commit: CommitObserver | None = None,
        latest_cache: int = 65536,
    ) -> None:
        self.path = os.fspath(path)
        if not self.path or self.path == ":memory:":
            raise ValueError("SQLiteStore path must name a file (':memory:' cannot be shared)")
        mode = str(synchronous).upper()
        if mode not in SYNCHRONOUS_MODES:
            raise ValueError(
                f"synchronous must be one of {', '.join(SYNCHRONOUS_MODES)}, not {synchronous!r}"
            )
        _positive("idempotency_ttl_s", idempotency_ttl_s)
        _positive("busy_timeout_s", busy_timeout_s)
        _positive("purge_interval_s", purge_interval_s)
        if not isinstance(readers, int) or readers < 1:
            raise ValueError(f"readers must be an integer >= 1, not {readers!r}")
        self.synchronous = mode
        self.idempotency_ttl_s = float(idempotency_ttl_s)
        self._busy_timeout_ms = int(busy_timeout_s * 1000)
        self._readers = readers
        self._purge_interval_s = float(purge_interval_s)
        self._want_notify = cross_process_notify and _notify.supported()
        self.on_commit = on_commit

        self._state = "new"  # new -> open -> closed
        self._open_lock: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._writer: Writer | None = None
        self._pool: ReaderPool | None = None
        self._notifier: _notify.Notifier | None = None
        self._rids: dict[str, int] = {}
        self._heads: dict[str, int] = {}
        self._waiters: dict[str, set[asyncio.Future[int | None]]] = {}
        self._last_commit = CommitInfo(0.0, 0, 0)
        self._head_checks = 0
        # Keyed reads from memory while no other process has the file open (see
        # latest_cache.py); off until open() finds us alone, and without cross-process
        # notifications (we could not tell).
        self._latest = LatestCache(latest_cache)
        self._latest.enabled = False
        self._alone_timer: asyncio.TimerHandle | None = None

    # -- life cycle --------------------------------------------------------------------------

    async def open(self) -> None:
        """Create the file and schema if needed, start the writer and readers. Idempotent."""
        if self._state == "open":
            return
        if self._state == "closed":
            raise StoreUnavailable("the store is closed")
        if self._open_lock is None:
            self._open_lock = asyncio.Lock()
        async with self._open_lock:
            if self._state != "new":
                return await self.open()
            loop = asyncio.get_running_loop()
            parent = os.path.dirname(os.path.abspath(self.path))
            try:
                await asyncio.to_thread(os.makedirs, parent, exist_ok=True)
                await asyncio.to_thread(private_file, self.path)  # 0600; -wal and -shm follow it
            except OSError as exc:
                raise StoreUnavailable(f"cannot create the directory {parent!r}: {exc}") from exc
            notifier = _notify.Notifier(self.path) if self._want_notify else None
            writer = Writer(
                self.path,
                synchronous=self.synchronous,
                busy_timeout_ms=self._busy_timeout_ms,
                idempotency_ttl_s=self.idempotency_ttl_s,
                purge_interval_s=self._purge_interval_s,
                loop=loop,
                deliver=self._delivered,
                notifier=notifier,
            )
            writer.start()
            try:
                await writer.ready  # raises StoreUnavailable when the file cannot be opened
            except asyncio.CancelledError:
                writer.queue.put(StopOp())
                raise
            self._loop, self._writer = loop, writer
            self._pool = ReaderPool(self._readers, self._connect_reader, loop)
            if notifier is not None:
                try:
                    await asyncio.to_thread(notifier.bind)
                    notifier.attach(loop, self._wake_external)
                    self._notifier = notifier
                except OSError:
                    # Long-polls fall back to a re-check every second.
                    writer.notifier = None
                    self._notifier = None
            self._state = "open"
            self._check_alone()

    async def close(self) -> None:
        """Commit what is queued, stop the writer and readers, close connections. Idempotent."""
        if self._state != "open":
            self._state = "closed"
            return
        self._state = "closed"
        if self._alone_timer is not None:
            self._alone_timer.cancel()
        self._latest.enabled = False
        writer, pool = self._writer, self._pool
        assert writer is not None and pool is not None
        for futures in self._waiters.values():  # long-polls end (they see the store closed)
            for fut in futures:
                if not fut.done():
                    fut.set_result(None)
        # Readers first: the writer's connection, closed last, checkpoints the WAL into the file
        # (read-only connections cannot), so a closed store is one self-contained file.
        await asyncio.to_thread(pool.close)
        writer.queue.put(StopOp())
        await asyncio.to_thread(writer.join)
        await asyncio.sleep(0)  # let the writer's last deliveries run
        if self._notifier is not None:
            self._notifier.detach()
            await asyncio.to_thread(self._notifier.release)

    async def __aenter__(self) -> SQLiteStore:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- writes (through the writer thread) --------------------------------------------------

    async def append(
        self,
        resource: str,
        records: list[tuple[str, bytes]],
        *,
        client: str,
        idempotency_key: str | None = None,
        body_hash: str = "",
    ) -> AppendResult:
        """Durably append ``(key, data)`` records; answered only after the commit."""
        writer = self._ready_writer()
        check_batch(records)
        fut: asyncio.Future[AppendResult] = self._loop.create_future()  # type: ignore[union-attr]
        if self._latest.enabled:  # whatever becomes of the caller, the commit drops these keys
            keys = [k for k, _ in records]
            fut.add_done_callback(lambda _f: self._latest.forget(resource, keys))
        writer.queue.put(AppendOp(resource, records, client, idempotency_key, body_hash, fut))
        return await fut

    async def set_cursor(self, client: str, resource: str, offset: int, force: bool = False) -> int:
        """Commit the client's cursor; :class:`CursorConflict` when it would move backwards."""
        writer = self._ready_writer()
        if type(offset) is not int or offset < 0:
            raise ValueError(f"cursor offset must be an integer >= 0, not {offset!r}")
        fut: asyncio.Future[int] = self._loop.create_future()  # type: ignore[union-attr]
        writer.queue.put(CursorOp(client, resource, offset, bool(force), fut))
        return await fut

    async def ping(self, timeout: float = 5.0) -> bool:
        """True when the file is reachable and a write transaction commits within ``timeout``."""
        if self._state != "open":
            return False
        writer = self._ready_writer()
        fut: asyncio.Future[bool] = self._loop.create_future()  # type: ignore[union-attr]
        writer.queue.put(PingOp(fut))
        try:
            async with asyncio.timeout(timeout):
                return await fut
        except (TimeoutError, StoreError):
            return False

    async def apply_retention(
        self, resource: str, policy: RetentionPolicy, now_ms: int, *, budget: int = 256
    ) -> RetentionResult:
        """Drop (or compact) the resource's batches beyond ``policy``, ``budget`` batches per
        write transaction so that pushes never wait long behind it."""
        total = RetentionResult(resource)
        while True:
            writer = self._ready_writer()
            fut: asyncio.Future[tuple[RetentionResult, bool]] = self._loop.create_future()  # type: ignore[union-attr]
            writer.queue.put(RetentionOp(resource, policy, now_ms, budget, fut))
            step, more = await fut
            if step.keys_dropped:
                self._latest.forget_resource(resource)  # keys whose records retention removed
            total.earliest = step.earliest
            total.batches_dropped += step.batches_dropped
            total.records_dropped += step.records_dropped
            total.records_compacted += step.records_compacted
            total.keys_dropped += step.keys_dropped
            if not more:
                return total

    async def earliest(self, resource: str) -> int:
        """One more than the last offset retention removed; 0 when it removed none."""
        return await self._run(self._earliest_sync, resource)

    # -- reads (reader threads) --------------------------------------------------------------

    async def read(self, resource: str, after: int, limit: int) -> list[Record]:
        """Records with offset > ``after`` in offset order, at most ``limit``."""
        if limit <= 0:
            self._ready_writer()
            return []
        records = await self._run(self._read_sync, resource, after, limit)
        if records:
            self._note_head(resource, records[-1].offset)
        return records

    async def latest(self, resource: str, key: str) -> Record | None:
        """The most recently appended record with this key, or None."""
        cache = self._latest
        if not cache.enabled:
            return await self._run(self._latest_sync, resource, key)
        found, record = cache.get(resource, key)
        if found:
            self._ready_writer()
            return record
        generation = cache.generation(resource)
        record = await self._run(self._latest_sync, resource, key)
        cache.fill(resource, key, record, generation)
        return record

    def _check_alone(self) -> None:
        """Every 100 ms: the latest-record cache is on only while no other process has the
        file open (its notify marker would be there); another process's start takes far
        longer than that before it can commit, and its commits also clear the cache."""
        notifier = self._notifier
        alone = notifier is not None and self._latest.max_entries > 0 and not notifier.peers()
        if not alone and self._latest.enabled:
            self._latest.clear()
        self._latest.enabled = alone
        if self._state == "open" and self._loop is not None:
            self._alone_timer = self._loop.call_later(0.1, self._check_alone)

    def cache_stats(self) -> dict[str, int]:
        """The latest-record cache: entries, hits, misses."""
        c = self._latest
        return {"entries": len(c), "hits": c.hits, "misses": c.misses, "enabled": int(c.enabled)}

    async def get_cursor(self, client: str, resource: str) -> int:
        """The client's committed offset, 0 when none."""
        return await self._run(self._cursor_sync, client, resource)

    async def head(self, resource: str) -> int:
        """The resource's last offset, 0 when it has no records."""
        self._head_checks += 1
        value = await self._run(self._head_sync, resource)
        self._note_head(resource, value)
        return value

    async def wait(self, resource: str, after: int, timeout: float) -> bool:
        """Wait until a record with offset > ``after`` exists or ``timeout`` elapses."""
        self._ready_writer()
        if self._heads.get(resource, 0) > after:
            return True
        loop = self._loop
        assert loop is not None
        deadline = loop.time() + max(timeout, 0.0)
        waiters = self._waiters
        while True:
            fut: asyncio.Future[int | None] = loop.create_future()
            waiters.setdefault(resource, set()).add(fut)
            try:
                # Registered before the check: a commit in between still wakes us.
                if await self.head(resource) > after:
                    return True
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return False
                if self._notifier is None:
                    remaining = min(remaining, _FALLBACK_RECHECK_S)
                try:
                    async with asyncio.timeout(remaining):
                        woken = await fut
                except TimeoutError:
                    if loop.time() >= deadline:
                        return False
                    continue
                if self._state != "open":
                    return False
                if woken is not None and woken > after:
                    return True
            finally:
                bucket = waiters.get(resource)
                if bucket is not None:
                    bucket.discard(fut)
                    if not bucket:
                        del waiters[resource]

    def stats(self) -> dict[str, Any]:
        """Counters for metrics and the bench: commits, operations, records, queue depth."""
        writer = self._writer
        out: dict[str, Any] = {
            "state": self._state,
            "synchronous": self.synchronous,
            "waiters": sum(len(v) for v in self._waiters.values()),
            "head_checks": self._head_checks,
            "last_commit_seconds": self._last_commit.seconds,
        }
        if writer is not None:
            s = writer.stats
            out.update(
                commits=s.commits,
                ops=s.ops,
                records=s.records,
                failed_groups=s.failed_groups,
                purged_keys=s.purged_keys,
                largest_group=s.largest_group,
                mean_group=(s.ops / s.commits) if s.commits else 0.0,
                mean_commit_seconds=(s.commit_seconds_total / s.commits) if s.commits else 0.0,
                queued=writer.queue.qsize(),
            )
        if self._notifier is not None:
            out.update(
                notify_sent=self._notifier.sent,
                notify_received=self._notifier.received,
                notify_dropped_peers=self._notifier.dropped_peers,
            )
        return out

    # -- internals ---------------------------------------------------------------------------

    def _ready_writer(self) -> Writer:
        if self._state != "open" or self._writer is None:
            raise StoreUnavailable(
                "the store is closed" if self._state == "closed" else "the store is not open"
            )
        return self._writer

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        self._ready_writer()
        assert self._loop is not None and self._pool is not None
        try:
            return await self._pool.submit(fn, *args)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"SQLite read failed: {exc}") from exc

    def _connect_reader(self) -> sqlite3.Connection:
        return connect(
            self.path,
            synchronous=self.synchronous,
            busy_timeout_ms=self._busy_timeout_ms,
            readonly=True,
        )

    def _rid(self, conn: sqlite3.Connection, name: str) -> int | None:
        rid = self._rids.get(name)
        if rid is None:
            row = conn.execute("SELECT id FROM resources WHERE name = ?", (name,)).fetchone()
            if row is None:
                return None
            rid = self._rids[name] = row[0]
        return rid

    def _read_sync(
        self, conn: sqlite3.Connection, name: str, after: int, limit: int
    ) -> list[Record]:
        rid = self._rid(conn, name)
        if rid is None:
            return []
        # Compacted records below the earliest offset serve keyed reads only.
        row = conn.execute("SELECT earliest FROM retention WHERE resource_id = ?", (rid,)).fetchone()
        if row is not None and row[0] > after + 1:
            after = row[0] - 1
        out: list[Record] = []
        # Every batch selected holds at least one record > after, hence LIMIT limit.
        cur = conn.execute(
            "SELECT id, blob FROM batches WHERE resource_id = ? AND last_offset > ?"
            " ORDER BY last_offset LIMIT ?",
            (rid, after, limit),
        )
        try:
            for batch_id, blob in cur:
                try:
                    decoded = decode_batch(blob, after, limit - len(out))
                except CorruptBatch as exc:
                    raise StoreError(
                        f"stored batch {batch_id} of resource {name!r} is corrupt: {exc}"
                    ) from exc
                out.extend([Record(off, key, ts, data) for off, ts, key, data in decoded])
                if len(out) >= limit:
                    break
        finally:
            cur.close()
        return out

    def _latest_sync(self, conn: sqlite3.Connection, name: str, key: str) -> Record | None:
        rid = self._rid(conn, name)
        if rid is None:
            return None
        row = conn.execute(
            f'SELECT l."offset", b.blob FROM latest AS l LEFT JOIN batches AS b'
            f' ON b.id = l."offset" / {OFFSET_STRIDE} WHERE l.resource_id = ? AND l.key = ?',
            (rid, key),
        ).fetchone()
        if row is None:
            return None
        offset, blob = row
        batch_id = offset // OFFSET_STRIDE
        if blob is None:
            raise StoreError(f"the latest {key!r} of {name!r} points at missing batch {batch_id}")
        try:
            decoded = decode_batch(blob, offset - 1, 1)
        except CorruptBatch as exc:
            raise StoreError(
                f"stored batch {batch_id} of resource {name!r} is corrupt: {exc}"
            ) from exc
        if not decoded or decoded[0][0] != offset or decoded[0][2] != key:
            raise StoreError(f"the latest {key!r} of {name!r} points at a missing offset {offset}")
        off, ts, k, data = decoded[0]
        return Record(off, k, ts, data)

    def _earliest_sync(self, conn: sqlite3.Connection, name: str) -> int:
        rid = self._rid(conn, name)
        if rid is None:
            return 0
        row = conn.execute("SELECT earliest FROM retention WHERE resource_id = ?", (rid,)).fetchone()
        return row[0] if row else 0

    def _cursor_sync(self, conn: sqlite3.Connection, client: str, name: str) -> int:
        rid = self._rid(conn, name)
        if rid is None:
            return 0
        row = conn.execute(
            'SELECT "offset" FROM cursors WHERE client = ? AND resource_id = ?', (client, rid)
        ).fetchone()
        return row[0] if row else 0

    def _head_sync(self, conn: sqlite3.Connection, name: str) -> int:
        rid = self._rid(conn, name)
        if rid is None:
            return 0
        row = conn.execute(
            "SELECT max(last_offset) FROM batches WHERE resource_id = ?", (rid,)
        ).fetchone()
        return row[0] or 0

    def _note_head(self, resource: str, offset: int) -> None:
        if offset > self._heads.get(resource, 0):
            self._heads[resource] = offset

    def _delivered(
        self,
        heads: dict[str, int],
        outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]],
        info: CommitInfo,
    ) -> None:
        """On the loop after a group commit: answer callers, then wake long-polls."""
        for fut, result, error in outcomes:
            if fut.done():
                continue
            if error is not None:
                fut.set_exception(error)
            else:
                fut.set_result(result)
        for resource, head in heads.items():
            self._latest.committed(resource)  # reads in flight must not cache what they saw
            self._note_head(resource, head)
            for fut in self._waiters.get(resource, ()):
                if not fut.done():
                    fut.set_result(head)
        if info.ops:
            self._last_commit = info
            if self.on_commit is not None:
                # An observer (metrics) must never break the store.
                with contextlib.suppress(Exception):
                    self.on_commit(info.seconds, info.ops, info.records)

    def _wake_external(self, names: set[str] | None) -> None:
        """Another process committed to these resources (None: maybe any)."""
        self._latest.clear()
        self._latest.enabled = False  # until the next check finds us alone
        targets = self._waiters.keys() if names is None else names & self._waiters.keys()
        for resource in list(targets):
            for fut in self._waiters.get(resource, ()):
                if not fut.done():
                    fut.set_result(None)


def _positive(name: str, value: float) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
        raise ValueError(f"{name} must be a number > 0, not {value!r}")
