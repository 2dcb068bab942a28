"""The cluster store: NATS JetStream holds the log, the latest record per key, cursors
and idempotency keys, so that any number of stateless gateway nodes share one state.

Layout (``P`` is the prefix, ``exg`` by default)::

    stream P_REC    subjects P.rec.<resource>          one message per pushed batch
    stream P_KEYS   subjects P.key.<resource>.<hash>   latest record per key (1 per subject)
    KV     P_idem   <sha256(client, resource, Idempotency-Key)>   kept 48 h (bucket TTL)
    KV     P_cursors <sha256(client, resource)>

A batch is framed by ``fastpath.encode_batch`` with offsets relative to the batch; its
records' offsets are ``stream sequence * OFFSET_STRIDE + index``, so they are strictly
increasing per resource (the stream sequence is global) and a read finds the batch
holding ``after`` directly: ``after // OFFSET_STRIDE`` is its sequence (direct gets
``next_by_subj``; past four batches, one ephemeral consumer streams the rest). All
requests share one reply inbox, so concurrent publishes pipeline on one connection.

Keyed reads use a second stream with ``max_msgs_per_subject = 1``: after a batch is
acknowledged, each key's last record goes to ``P.key.<resource>.<sha256(key)>``. The
entries of concurrent appends are group-committed (a key written by several of them once,
highest offset wins): fire-and-forget publishes, the last one acknowledged, so that one
round trip confirms the group (JetStream stores one connection's messages to a stream in
order). ``latest`` is then one direct get of the subject's last message. Entries that
fail to be written are re-queued for the next group (the batches themselves are durable).

Idempotency: ``KV.create`` (expected revision 0) claims the key with the body hash before
the batch is published, so two nodes racing on one key cannot both append; the claim is
completed with the offsets. The batch carries ``Nats-Msg-Id`` = the claim, so a node that
takes over a claim whose owner died (after ``takeover_s``) republishes it and JetStream's
duplicate window answers the original sequence instead of appending twice.

Long-polls subscribe (core NATS) to the resource's record subject while they wait: any
node's append wakes them. NATS being down never blocks: calls raise
:class:`StoreUnavailable` at once, and the client reconnects by itself for ever.

A wiped or replaced JetStream would reuse offsets: with ``hwm_path`` the store keeps a
high-water mark of its streams outside them (:mod:`gateway.stores.hwm`) and, on connecting,
after every reconnect (nothing is served until the check is done) and on every ping,
compares the streams with it. On a mismatch every call raises :class:`StoreUnavailable`
with the reason (``/readyz`` shows it) until a start with ``accept_reset``.

One class, several parts (each a module): transport (:mod:`._js_requests`), appends
(:mod:`._js_append`), idempotency (:mod:`._js_idempotency`), the key index
(:mod:`._js_keyindex`), reads (:mod:`._js_reads`), long-polls (:mod:`._js_longpoll`),
cursors (:mod:`._js_cursors`), retention (:mod:`._js_retention`) and the high-water mark (:mod:`._js_marks`); this module
holds the life cycle: connecting, creating streams and buckets, readiness.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from typing import Any

import nats.js.errors
from nats.aio.client import Client as NATS
from nats.aio.subscription import Subscription
from nats.js.api import StorageType, StreamConfig
from nats.js.kv import KeyValue

from gateway.redact import redact, redact_url
from gateway.stores._js_append import _Appends
from gateway.stores._js_cursors import _Cursors
from gateway.stores._js_idempotency import _Claim as _Claim  # re-exported for tests
from gateway.stores._js_idempotency import _Idempotency
from gateway.stores._js_keyindex import _KeyIndex
from gateway.stores._js_longpoll import _LongPoll
from gateway.stores._js_marks import _Marks
from gateway.stores._js_reads import _Reads
from gateway.stores._js_requests import _Requests
from gateway.stores._js_retention import _Retention
from gateway.stores._js_wire import _digest as _digest  # re-exported for tests and tools
from gateway.stores._js_wire import _enc as _enc
from gateway.stores._js_wire import _token as _token
from gateway.stores._js_wire import _WrongLast, names
from gateway.stores.base import MAX_BATCH_RECORDS, AppendResult, StoreError, StoreUnavailable
from gateway.stores.hwm import HighWaterMark

__all__ = ["JetStreamStore", "MAX_BATCH_RECORDS", "SCHEMA_VERSION", "names"]

#: The layout of streams and buckets (``P_meta`` key ``schema_version``). Version 1: records,
#: keys, idempotency, cursors, retention.
SCHEMA_VERSION = 1

log = logging.getLogger("gateway.stores.jetstream")


class JetStreamStore(
    _Appends, _Idempotency, _KeyIndex, _Reads, _LongPoll, _Cursors, _Retention, _Marks, _Requests
):
    """The ``jetstream`` backend of :class:`gateway.stores.base.Store`.

    ``servers`` are ``nats://`` URLs of one cluster; ``replicas`` (1, 3 or 5) is the
    replication of every stream and bucket; ``prefix`` names them (see :func:`names`).
    ``open`` never fails because NATS is down: it waits ``connect_timeout_s`` for a
    first connection and then keeps connecting in the background.
    """

    def __init__(
        self,
        servers: list[str] | str,
        *,
        replicas: int = 1,
        prefix: str = "exg",
        idempotency_ttl_s: float = 86400 * 2,
        duplicate_window_s: float = 600.0,
        takeover_s: float = 3.0,
        op_timeout_s: float = 5.0,
        connect_timeout_s: float = 2.0,
        reconnect_wait_s: float = 0.5,
        hwm_path: str | os.PathLike[str] | None = None,
        accept_reset: bool = False,
    ) -> None:
        self.servers = [servers] if isinstance(servers, str) else list(servers)
        if not self.servers or not all(
            isinstance(u, str) and u.startswith(("nats://", "tls://")) for u in self.servers
        ):
            raise ValueError(f"servers must be nats:// URLs, not {redact(repr(servers))}")
        if replicas not in (1, 3, 5):
            raise ValueError(f"replicas must be 1, 3 or 5, not {replicas!r}")
        if (
            not prefix
            or not prefix.replace("_", "").replace("-", "").isalnum()
            or not prefix.isascii()
        ):
            raise ValueError(f"prefix must be ASCII letters, digits, '-' or '_', not {prefix!r}")
        if takeover_s >= duplicate_window_s:
            raise ValueError("takeover_s must be shorter than duplicate_window_s")
        self.replicas = replicas
        self.prefix = prefix
        self.names = names(prefix)
        self.idempotency_ttl_s = float(idempotency_ttl_s)
        self.duplicate_window_s = float(duplicate_window_s)
        self.takeover_s = float(takeover_s)
        self.op_timeout_s = float(op_timeout_s)
        self.connect_timeout_s = float(connect_timeout_s)
        self.reconnect_wait_s = float(reconnect_wait_s)

        self._state = "new"  # new -> open -> closed
        self.nc: NATS | None = None
        self.js: Any = None
        self._idem: KeyValue | None = None
        self._cursors: KeyValue | None = None
        self._ready: asyncio.Event | None = None  # created on the loop in open()
        self._connector: asyncio.Task[None] | None = None
        self._setup_error: str | None = None
        self._inflight_idem: dict[str, tuple[str, asyncio.Future[AppendResult]]] = {}
        self._subs: dict[str, Subscription] = {}
        self._waiters: dict[str, set[asyncio.Future[None]]] = {}
        self._pending: set[asyncio.Future[Any]] = set()
        self._max_payload = 1 << 20
        self._inbox = ""
        self._replies: dict[str, asyncio.Future[Any]] = {}
        self._reply_seq = 0
        self._idx_pending: dict[str, tuple[int, int, str, bytes]] = {}
        self._idx_waiters: list[asyncio.Future[None]] = []
        self._idx_task: asyncio.Future[None] | None = None
        self._earliest_cache: dict[str, tuple[float, int]] = {}
        self.schema_error: str | None = None  # the streams were written by a newer release
        self.hwm = HighWaterMark(hwm_path) if hwm_path is not None else None
        self._accept_reset = accept_reset  # consumed by the first identity check
        self._verified = False  # the streams were checked against the mark since (re)connecting
        self.reset_reason: str | None = None  # a wiped or replaced JetStream: refuse everything
        self._hwm_task: asyncio.Task[None] | None = None
        self._resetup_task: asyncio.Future[None] | None = None
        self.stats: dict[str, int] = {
            "appends": 0, "records": 0, "replays": 0, "takeovers": 0,
            "index_groups": 0, "index_failures": 0, "bulk_reads": 0,
        }

    # -- life cycle --------------------------------------------------------------------

    async def open(self) -> None:
        """Start connecting; wait up to ``connect_timeout_s`` for NATS. Idempotent."""
        if self._state == "open":
            return
        if self._state == "closed":
            raise StoreUnavailable("the store is closed")
        self._state = "open"
        self._ready = asyncio.Event()
        self._connector = asyncio.get_running_loop().create_task(self._connect_forever())
        if self.hwm is not None:
            self._hwm_task = asyncio.get_running_loop().create_task(self._save_marks())
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.connect_timeout_s):
                await self._ready.wait()
        if self.schema_error is not None:  # written by a newer release: refuse to start
            raise StoreError(self.schema_error)

    async def close(self) -> None:
        """Wait for appends in flight, unsubscribe and close the connection. Idempotent."""
        if self._state != "open":
            self._state = "closed"
            return
        if self._pending:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self.op_timeout_s):
                    await asyncio.gather(*self._pending, return_exceptions=True)
        self._state = "closed"
        for futures in self._waiters.values():
            for fut in futures:
                if not fut.done():
                    fut.set_result(None)
        if self._connector is not None:
            self._connector.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._connector
        leftover = [t for t in (self._resetup_task, self._idx_task, *self._pending) if t is not None]
        for t in leftover:  # (appends still in flight after op_timeout_s fail: NATS is closed next)
            t.cancel()
        await asyncio.gather(*leftover, return_exceptions=True)
        if self._hwm_task is not None:
            self._hwm_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._hwm_task
            await self._write_marks()
        nc, self.nc = self.nc, None
        self._subs.clear()
        if nc is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self.op_timeout_s):
                    await nc.close()

    async def __aenter__(self) -> JetStreamStore:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _connect_forever(self) -> None:
        """Connect (retrying for ever), then create streams and buckets (retrying too)."""

        async def quiet(_exc: Exception) -> None:
            return None

        async def disconnected() -> None:
            if self.hwm is not None:
                self._verified = False  # the server that answers next may have lost our streams

        async def reconnected() -> None:
            if self.hwm is not None:
                self._verified = False
            url = self.nc.connected_url if self.nc else None
            log.info("NATS reconnected to %s", redact_url(url.geturl()) if url else "?")
            # The servers may have come back without our streams (a wiped R=1 server).
            self._schedule_resetup()

        nc = NATS()
        await nc.connect(
            servers=self.servers,
            allow_reconnect=True,
            max_reconnect_attempts=-1,
            reconnect_time_wait=self.reconnect_wait_s,
            connect_timeout=self.connect_timeout_s,
            ping_interval=5,
            max_outstanding_pings=2,
            pending_size=64 * 1024 * 1024,
            flush_timeout=self.op_timeout_s,
            error_cb=quiet,
            disconnected_cb=disconnected,
            reconnected_cb=reconnected,
            name=f"gateway-store-{self.prefix}",
        )
        if self._state != "open":
            await nc.close()
            return
        self._inbox = nc.new_inbox() + "."
        await nc.subscribe(self._inbox + "*", cb=self._on_reply)
        self.nc = nc
        self.js = nc.jetstream(timeout=self.op_timeout_s)
        self._max_payload = nc.max_payload
        while self._state == "open":
            try:
                await self._setup()
                await self._check_identity()
                self._setup_error = None
                break
            except Exception as exc:  # noqa: BLE001 - keep trying; readiness reports it
                self._setup_error = redact(f"{type(exc).__name__}: {exc}")
                log.warning("JetStream set-up failed, retrying: %s", self._setup_error)
                await asyncio.sleep(1.0)
        assert self._ready is not None
        self._ready.set()

    async def _setup(self) -> None:
        js, n, r = self.js, self.names, self.replicas
        await self._ensure_stream(
            StreamConfig(
                name=n["records"],
                subjects=[f"{self.prefix}.rec.>"],
                storage=StorageType.FILE,
                num_replicas=r,
                duplicate_window=self.duplicate_window_s,
                allow_direct=True,
            )
        )
        await self._ensure_stream(
            StreamConfig(
                name=n["keys"],
                subjects=[f"{self.prefix}.key.>"],
                storage=StorageType.FILE,
                num_replicas=r,
                max_msgs_per_subject=1,
                allow_direct=True,
            )
        )
        self._idem = await self._ensure_kv(n["idempotency"], ttl=self.idempotency_ttl_s)
        self._cursors = await self._ensure_kv(n["cursors"], ttl=None)
        await self._ensure_kv(n["retention"], ttl=None)
        await self._ensure_kv(n["meta"], ttl=None)
        await self._check_schema()
        self.js = js

    def _schedule_resetup(self) -> None:
        if self._resetup_task is None or self._resetup_task.done():
            self._resetup_task = asyncio.ensure_future(self._resetup())

    async def _resetup(self) -> None:
        """Set up and check the streams again; retried while connected (calls answer 503 until
        it succeeds when there is a high-water mark to check)."""
        while self._state == "open":
            try:
                await self._setup()
                await self._check_identity()
                return
            except Exception as exc:  # noqa: BLE001 - e.g. no JetStream leader yet: try again
                log.warning("JetStream set-up after reconnect failed: %s", redact(str(exc)))
                if self.nc is None or not self.nc.is_connected:
                    return  # the next reconnect tries again
                await asyncio.sleep(0.25)  # calls answer 503 meanwhile: look again soon

    async def _check_schema(self) -> None:
        """Record the layout's version in the ``P_meta`` bucket; refuse a newer one (every call
        then fails with the reason, and ``open`` raises it when found at start)."""
        bucket = self.names["meta"]
        entry = await self._kv_get(bucket, "schema_version")
        if entry is None:
            # A new JetStream, or one written before versions were recorded (the same layout).
            with contextlib.suppress(_WrongLast):
                await self._kv_write(bucket, "schema_version", str(SCHEMA_VERSION).encode(), 0)
            return
        try:
            found = int(entry[1])
        except ValueError:
            found = -1
        if found > SCHEMA_VERSION or found < 1:
            self.schema_error = self.reset_reason = (
                f"the JetStream streams of prefix {self.prefix!r} have schema version "
                f"{entry[1][:20]!r}, newer than this release supports ({SCHEMA_VERSION}): they "
                "were written by a newer release of the node. Run that release, or restore a "
                "snapshot taken before the upgrade (docs/operations.md)")
            log.error("%s", self.schema_error)

    # -- the high-water mark (a wiped or replaced JetStream) --------------------------------

    async def _ensure_stream(self, config: StreamConfig) -> None:
        try:
            await self.js.stream_info(config.name)
        except nats.js.errors.NotFoundError:
            await self.js.add_stream(config)

    async def _ensure_kv(self, bucket: str, ttl: float | None) -> KeyValue:
        try:
            return await self.js.key_value(bucket)
        except nats.js.errors.BucketNotFoundError:
            return await self.js.create_key_value(
                bucket=bucket,
                history=1,
                ttl=ttl,
                replicas=self.replicas,
                storage=StorageType.FILE,
                direct=True,
            )

    async def destroy(self) -> None:
        """Delete every stream and bucket of this prefix (tests and tools)."""
        self._check()
        n = self.names
        streams = [n["records"], n["keys"]] + [
            f"KV_{n[b]}" for b in ("idempotency", "cursors", "config", "retention", "meta")
        ]
        for stream in streams:
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await self.js.delete_stream(stream)

    async def ping(self) -> bool:
        """True when NATS is connected and JetStream answers (the records stream exists, and
        is the one of the high-water mark)."""
        if self.reset_reason is not None and self.connected:
            self._schedule_resetup()  # restored meanwhile? then the check clears the reason
            return False
        if not self.connected or not self._verified:
            return False
        stream = self.names["records"]
        try:
            async with asyncio.timeout(min(self.op_timeout_s, 2.0)):
                info = await self.js.stream_info(stream)
        except Exception:  # noqa: BLE001 - any failure means not ready
            return False
        if self.hwm is not None:
            problem = self.hwm.problem(stream, info.created, info.state.last_seq)
            if problem is not None:  # replaced under a live connection: check everything again
                self._verified = False
                self._schedule_resetup()
                return False
            self.hwm.note_info(stream, info.created, info.state.last_seq)
        return True

    def info(self) -> dict[str, Any]:
        """Connection and counters for metrics and the bench."""
        nc = self.nc
        return {
            "state": self._state,
            "connected": self.connected,
            "server": nc.connected_url.netloc.rpartition("@")[2]
            if nc is not None and nc.connected_url else None,
            "setup_error": self._setup_error,
            "waiters": sum(len(v) for v in self._waiters.values()),
            **self.stats,
        }
