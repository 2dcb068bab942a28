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
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import os
import re
import time
from collections.abc import Awaitable
from typing import Any, TypeVar

import msgspec
import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NATS
from nats.aio.subscription import Subscription
from nats.js.api import StorageType, StreamConfig
from nats.js.kv import KeyValue

from fastpath import CorruptBatch, decode_batch, encode_batch
from gateway.redact import redact, redact_url, redact_urls
from gateway.stores.base import (
    MAX_BATCH_RECORDS,
    OFFSET_STRIDE,
    AppendResult,
    CursorConflict,
    IdempotencyConflict,
    Record,
    StoreError,
    StoreUnavailable,
    check_batch,
)
from gateway.stores.hwm import HighWaterMark

__all__ = ["JetStreamStore", "MAX_BATCH_RECORDS", "names"]

log = logging.getLogger("gateway.stores.jetstream")

#: The most records one append may carry (offsets of a batch share one stride).

T = TypeVar("T")

#: nats-py errors that mean "the server cannot be reached right now".
_UNREACHABLE: tuple[type[BaseException], ...] = (
    nats.errors.TimeoutError,
    nats.errors.NoRespondersError,
    nats.errors.ConnectionClosedError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.ConnectionDrainingError,
    nats.errors.OutboundBufferLimitError,
    nats.errors.StaleConnectionError,
    nats.errors.UnexpectedEOF,
    nats.js.errors.NoStreamResponseError,
    nats.js.errors.ServiceUnavailableError,
    asyncio.TimeoutError,
    ConnectionError,
)


class _Claim(msgspec.Struct, omit_defaults=True):
    """An idempotency key's value: the body hash, then the offsets once appended."""

    h: str
    t: int  # ms when claimed (a stale pending claim may be taken over)
    first: int = 0
    last: int = 0
    count: int = 0


_claim_dec = msgspec.json.Decoder(_Claim)


class _ApiError(msgspec.Struct):
    code: int = 0
    err_code: int = 0
    description: str = ""


class _PubAck(msgspec.Struct):
    stream: str = ""
    seq: int = 0
    duplicate: bool = False
    error: _ApiError | None = None


_ack_dec = msgspec.json.Decoder(_PubAck)


def _ack_stream_seq(reply: str) -> int:
    """The stream sequence in a consumer message's ack subject (both 2.9 and 2.10+ forms:
    ``$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>...`` / ``$JS.ACK.<domain>.<hash>.<stream>...``)."""
    tokens = reply.split(".")
    return int(tokens[7] if len(tokens) >= 12 else tokens[5])


#: Direct gets a read makes before it streams the rest through an ephemeral consumer
#: (when at least _BULK_MIN records are still wanted).
_DIRECT_GETS = 4
_BULK_MIN = 16


class _WrongLast(Exception):
    """A KV write's expected revision was not the key's last (someone wrote first)."""
_enc = msgspec.json.encode


def names(prefix: str) -> dict[str, str]:
    """The streams and buckets a store with this prefix uses (for tools and tests)."""
    return {
        "records": f"{prefix}_REC",
        "keys": f"{prefix}_KEYS",
        "idempotency": f"{prefix}_idem",
        "cursors": f"{prefix}_cursors",
        "config": f"{prefix}_config",
    }


_TOKENS = re.compile(r"^[a-z0-9][a-z0-9-]*(?:\.[a-z0-9][a-z0-9-]*)*$")


@functools.lru_cache(maxsize=65536)
def _token(resource: str) -> str:
    """The resource's part of a subject: its id when that forms valid subject tokens,
    else ``_x.<hex of the id>`` (ids never start with ``_``, so the two cannot collide)."""
    if len(resource) <= 200 and _TOKENS.match(resource):
        return resource
    return "_x." + resource.encode("utf-8", "surrogatepass").hex()


def _digest(*parts: str) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode("utf-8", "surrogatepass"))
        h.update(b"\0")
    return h.hexdigest()[:40]


class JetStreamStore:
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
                await asyncio.sleep(1.0)

    # -- the high-water mark (a wiped or replaced JetStream) --------------------------------

    async def _check_identity(self) -> None:
        """Compare the streams with the mark: on a mismatch set :attr:`reset_reason` (every call
        then refuses) unless a reset is accepted; then serve again (``_verified``)."""
        hwm = self.hwm
        if hwm is None:
            self._verified = True
            return
        problems = []
        for stream in (self.names["records"], self.names["keys"]):
            info = await self.js.stream_info(stream)
            problem = hwm.problem(stream, info.created, info.state.last_seq)
            if problem is not None and self._accept_reset:
                log.warning("accepted a JetStream reset (--accept-reset): %s", problem)
                hwm.reset(stream, info.created, info.state.last_seq)
            elif problem is not None:
                problems.append(problem)
            else:
                hwm.note_info(stream, info.created, info.state.last_seq)
        self._accept_reset = False
        if problems:
            self.reset_reason = (
                "; ".join(problems) + ": offsets would be reused (consumers holding `after` would "
                "miss new records), so this node refuses pushes and reads. If the reset is intended, "
                f"restart the node with `python -m gateway serve --accept-reset` (it starts {hwm.path} "
                "over); otherwise restore JetStream's data")
            log.error("%s", self.reset_reason)
        else:
            self.reset_reason = None
        await self._write_marks()
        self._verified = True

    async def _write_marks(self) -> None:
        if self.hwm is None:
            return
        text = self.hwm.dump()
        if text is not None:
            try:
                await asyncio.to_thread(self.hwm.write, text)
            except OSError as exc:
                self.hwm.dirty = True
                log.warning("cannot write %s: %s", self.hwm.path, exc)

    async def _save_marks(self) -> None:
        """Write the mark once a second when it moved (appends and reads raise it)."""
        while True:
            await asyncio.sleep(1.0)
            await self._write_marks()

    def _note(self, stream: str, seq: int) -> None:
        if self.hwm is not None:
            self.hwm.note_seq(stream, seq)

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
            f"KV_{n[b]}" for b in ("idempotency", "cursors", "config")
        ]
        for stream in streams:
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await self.js.delete_stream(stream)

    # -- state checks ------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True when the NATS connection is up and the streams exist."""
        nc = self.nc
        return (
            self._state == "open"
            and nc is not None
            and nc.is_connected
            and self._ready is not None
            and self._ready.is_set()
        )

    def _check(self) -> None:
        if self._state != "open":
            raise StoreUnavailable(
                "the store is closed" if self._state == "closed" else "the store is not open"
            )
        if self.reset_reason is not None:
            raise StoreUnavailable(self.reset_reason)
        if not self._verified and self.connected:
            raise StoreUnavailable("checking the JetStream streams after a reconnect; retry shortly")
        if not self.connected:
            why = self._setup_error or "no connection"
            raise StoreUnavailable(
                f"NATS JetStream is not reachable at {redact_urls(self.servers)} ({why})"
            )

    def unready_reason(self) -> str | None:
        """Why the store cannot serve now (for /readyz), None when it can."""
        if self._state != "open":
            return "the store is closed" if self._state == "closed" else "the store is not open"
        if self.reset_reason is not None:
            return self.reset_reason
        if not self.connected:
            why = self._setup_error or "no connection"
            return f"NATS JetStream is not reachable at {redact_urls(self.servers)} ({why})"
        if not self._verified:
            return "checking the JetStream streams after a reconnect"
        return None

    async def _call(self, aw: Awaitable[T]) -> T:
        """Await a NATS operation, mapping transport failures to StoreUnavailable."""
        try:
            return await aw
        except _UNREACHABLE as exc:
            raise StoreUnavailable(
                f"NATS JetStream did not answer ({type(exc).__name__}: {exc})"
            ) from exc
        except (nats.js.errors.KeyValueError, nats.js.errors.NotFoundError):
            raise  # answers, not failures: the caller decides
        except nats.js.errors.APIError as exc:
            if exc.code in (503, 504) or exc.err_code in (10008, 10023):  # no quorum / JS off
                raise StoreUnavailable(f"JetStream unavailable: {exc}") from exc
            raise StoreError(f"JetStream refused the operation: {exc}") from exc

    async def _on_reply(self, msg: Any) -> None:
        fut = self._replies.pop(msg.subject, None)
        if fut is not None and not fut.done():
            fut.set_result(msg)

    async def _request(
        self,
        subject: str,
        payload: bytes,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> Any:
        """Publish with a reply subject on our one inbox subscription; await the answer.

        Cheaper than nats-py's request() (no task per call), so that many concurrent
        publishes pipeline on one connection.
        """
        nc = self.nc
        if nc is None:
            raise StoreUnavailable("not connected to NATS")
        self._reply_seq += 1
        reply = f"{self._inbox}{self._reply_seq:x}"
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._replies[reply] = fut
        try:
            await self._call(nc.publish(subject, payload, reply=reply, headers=headers))
            async with asyncio.timeout(timeout or self.op_timeout_s):
                msg = await fut
        except TimeoutError:
            raise StoreUnavailable(
                f"NATS JetStream did not answer within {timeout or self.op_timeout_s:g} s"
            ) from None
        finally:
            self._replies.pop(reply, None)
        return msg

    async def _publish_acked(
        self, subject: str, payload: bytes, headers: dict[str, str] | None = None
    ) -> tuple[int, bool]:
        """Publish to a stream and wait for its acknowledgement: (sequence, duplicate)."""
        msg = await self._request(subject, payload, headers)
        hdrs = msg.headers or {}
        if hdrs.get("Status") == "503":
            raise StoreUnavailable(f"no JetStream stream answered for {subject!r} (no quorum?)")
        try:
            ack = _ack_dec.decode(msg.data)
        except msgspec.DecodeError as exc:
            raise StoreError(f"unreadable JetStream acknowledgement: {exc}") from exc
        if ack.error is not None:
            err = ack.error
            if err.err_code in (10071, 10164):
                raise _WrongLast(err.description)
            if err.code in (503, 504) or err.err_code in (10008, 10023):
                raise StoreUnavailable(f"JetStream unavailable: {err.description}")
            raise StoreError(f"JetStream refused the publish: {err.code} {err.description}")
        return ack.seq, ack.duplicate

    async def _kv_get(self, bucket: str, key: str) -> tuple[int, bytes] | None:
        """(revision, value) of a KV key, None when it has none."""
        request = {"last_by_subj": f"$KV.{bucket}.{key}"}
        if self.replicas > 1:
            return await self._leader_get(f"KV_{bucket}", request)
        return await self._direct_get(f"KV_{bucket}", request)

    async def _kv_write(self, bucket: str, key: str, value: bytes, last: int) -> int:
        """Write a KV key if its revision is still ``last`` (0: create); _WrongLast if not."""
        headers = {"Nats-Expected-Last-Subject-Sequence": str(last)}
        seq, _dup = await self._publish_acked(f"$KV.{bucket}.{key}", value, headers)
        return seq

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

    # -- appends -----------------------------------------------------------------------

    async def append(
        self,
        resource: str,
        records: list[tuple[str, bytes]],
        *,
        client: str,
        idempotency_key: str | None = None,
        body_hash: str = "",
    ) -> AppendResult:
        """Durably append ``(key, data)`` records: one stream message per batch."""
        self._check()
        check_batch(records)
        fut = asyncio.ensure_future(
            self._append(resource, records, client, idempotency_key, body_hash)
        )
        self._pending.add(fut)
        fut.add_done_callback(self._pending.discard)
        return await asyncio.shield(fut)

    async def _append(
        self,
        resource: str,
        records: list[tuple[str, bytes]],
        client: str,
        idempotency_key: str | None,
        body_hash: str,
    ) -> AppendResult:
        if idempotency_key is None:
            result, _dup = await self._publish_batch(resource, records, None)
            return result
        claim = _digest(client, resource, idempotency_key)
        while True:
            mine = self._inflight_idem.get(claim)
            if mine is None:
                break
            # Same node, same key in flight: wait for it instead of racing in NATS.
            other_hash, other = mine
            try:
                result = await asyncio.shield(other)
            except (StoreUnavailable, StoreError):
                continue  # the first attempt failed; try ourselves
            if other_hash != body_hash:
                raise IdempotencyConflict(
                    f"Idempotency-Key {idempotency_key!r} was used for another body on {resource!r}"
                )
            return AppendResult(result.first, result.last, result.count, replayed=True)
        fut: asyncio.Future[AppendResult] = asyncio.get_running_loop().create_future()
        self._inflight_idem[claim] = (body_hash, fut)
        try:
            result = await self._append_claimed(
                resource, records, claim, body_hash, idempotency_key
            )
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # retrieved: waiters re-raise or retry
            raise
        else:
            fut.set_result(result)
            return result
        finally:
            self._inflight_idem.pop(claim, None)

    async def _append_claimed(
        self,
        resource: str,
        records: list[tuple[str, bytes]],
        claim: str,
        body_hash: str,
        idempotency_key: str,
    ) -> AppendResult:
        bucket = self.names["idempotency"]
        deadline = time.monotonic() + self.takeover_s + 2 * self.op_timeout_s
        pending = _Claim(body_hash, int(time.time() * 1000))
        revision: int | None
        try:
            revision = await self._kv_write(bucket, claim, _enc(pending), 0)
        except _WrongLast:
            revision = None
        while revision is None:
            # Someone holds the claim: replay, conflict, wait, or take over a stale one.
            entry = await self._kv_get(bucket, claim)
            if entry is None:  # expired meanwhile
                try:
                    revision = await self._kv_write(bucket, claim, _enc(pending), 0)
                except _WrongLast:
                    continue
                break
            entry_revision, value = entry
            try:
                held = _claim_dec.decode(value)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                raise StoreError(f"idempotency claim {claim} is unreadable: {exc}") from exc
            if held.h != body_hash:
                raise IdempotencyConflict(
                    f"Idempotency-Key {idempotency_key!r} was used for another body on {resource!r}"
                )
            if held.count:
                self.stats["replays"] += 1
                return AppendResult(held.first, held.last, held.count, replayed=True)
            if time.time() * 1000 - held.t > self.takeover_s * 1000:
                try:
                    revision = await self._kv_write(bucket, claim, _enc(pending), entry_revision)
                    self.stats["takeovers"] += 1
                    break
                except _WrongLast:
                    continue
            if time.monotonic() > deadline:
                raise StoreUnavailable(
                    f"Idempotency-Key {idempotency_key!r} is being appended by another node; retry"
                )
            await asyncio.sleep(0.02)
        result, duplicate = await self._publish_batch(resource, records, claim)
        done = _Claim(body_hash, pending.t, result.first, result.last, result.count)
        # Taken over meanwhile: the taker republished with our Msg-Id (the same offsets).
        with contextlib.suppress(_WrongLast):
            await self._kv_write(bucket, claim, _enc(done), revision)
        if duplicate:
            return AppendResult(result.first, result.last, result.count, replayed=True)
        return result

    async def _publish_batch(
        self, resource: str, records: list[tuple[str, bytes]], msg_id: str | None
    ) -> tuple[AppendResult, bool]:
        """Publish one batch message and the keys' latest entries; (result, was duplicate)."""
        now_ms = int(time.time() * 1000)
        payload = encode_batch([(i, now_ms, k, bytes(d)) for i, (k, d) in enumerate(records)])
        if len(payload) > self._max_payload:
            raise StoreError(
                f"a batch of {len(payload)} bytes exceeds the NATS max_payload of "
                f"{self._max_payload} bytes; raise max_payload in the nats-server configuration"
            )
        headers = {"Nats-Msg-Id": msg_id} if msg_id else None
        subject = f"{self.prefix}.rec.{_token(resource)}"
        seq, duplicate = await self._publish_acked(subject, payload, headers)
        self._note(self.names["records"], seq)
        base = seq * OFFSET_STRIDE
        count = len(records)
        result = AppendResult(base, base + count - 1, count)
        if duplicate:
            # Appended before by a node that may have died before writing its key entries.
            await self._reindex(resource, seq)
            return result, True
        await self._index(resource, records, base, now_ms)
        self.stats["appends"] += 1
        self.stats["records"] += count
        return result, False

    async def _reindex(self, resource: str, seq: int) -> None:
        """Write the key entries of stored batch ``seq`` that are missing or older."""
        if self.replicas > 1:
            got = await self._leader_get(self.names["records"], {"seq": seq})
        else:
            got = await self._direct_get(self.names["records"], {"seq": seq})
        if got is None:
            return
        stored: list[Record] = []
        self._decode_into(stored, resource, seq, got[1], -1, OFFSET_STRIDE)
        last = {r.key: r for r in stored}
        currents = await asyncio.gather(*[self.latest(resource, k) for k in last])
        stale = [r for r, cur in zip(last.values(), currents, strict=True)
                 if cur is None or cur.offset < r.offset]
        if not stale:
            return
        pre = f"{self.prefix}.key.{_token(resource)}."
        for r in stale:
            subject = pre + _digest(r.key)
            cur = self._idx_pending.get(subject)
            if cur is None or cur[0] < r.offset:
                self._idx_pending[subject] = (r.offset, r.ts_ms, r.key, r.data)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._idx_waiters.append(fut)
        if self._idx_task is None or self._idx_task.done():
            self._idx_task = asyncio.ensure_future(self._flush_index())
        await fut

    async def _index(
        self, resource: str, records: list[tuple[str, bytes]], base: int, now_ms: int
    ) -> None:
        """Queue each record as its key's latest and wait for the next index group commit.

        Concurrent appends share one group: a key written by several of them is written
        once (the highest offset wins), and one acknowledged publish confirms the group.
        """
        pending = self._idx_pending
        pre = f"{self.prefix}.key.{_token(resource)}."
        for i, (k, d) in enumerate(records):
            subject = pre + _digest(k)
            off = base + i
            cur = pending.get(subject)
            if cur is None or cur[0] < off:
                pending[subject] = (off, now_ms, k, bytes(d))
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._idx_waiters.append(fut)
        if self._idx_task is None or self._idx_task.done():
            self._idx_task = asyncio.ensure_future(self._flush_index())
        await fut

    async def _flush_index(self) -> None:
        """Write queued key entries group by group until none are left."""
        while self._idx_pending:
            group, self._idx_pending = self._idx_pending, {}
            waiters, self._idx_waiters = self._idx_waiters, []
            try:
                nc = self.nc
                if nc is None:
                    raise StoreUnavailable("not connected")
                items = list(group.items())
                for subject, rec in items[:-1]:
                    await self._call(nc.publish(subject, encode_batch([rec])))
                subject, rec = items[-1]
                seq, _dup = await self._publish_acked(subject, encode_batch([rec]))
                self._note(self.names["keys"], seq)
            except Exception as exc:  # noqa: BLE001 - the batches are durable; keep the entries
                # Re-queue (newer entries win) for the next group; the appends still succeed:
                # their batches were acknowledged, only keyed reads may lag until then.
                self.stats["index_failures"] += 1
                log.warning("writing %d key entries failed, re-queued: %s", len(group), redact(str(exc)))
                for subject, rec in group.items():
                    cur = self._idx_pending.get(subject)
                    if cur is None or cur[0] < rec[0]:
                        self._idx_pending[subject] = rec
                for w in waiters:
                    if not w.done():
                        w.set_result(None)
                return
            self.stats["index_groups"] += 1
            for w in waiters:
                if not w.done():
                    w.set_result(None)

    # -- reads -------------------------------------------------------------------------

    async def _direct_get(self, stream: str, request: dict[str, Any]) -> tuple[int, bytes] | None:
        """(sequence, payload) of a direct get, None when there is no such message."""
        msg = await self._request(f"$JS.API.DIRECT.GET.{stream}", _enc(request))
        hdrs = msg.headers or {}
        status = hdrs.get("Status")
        if status == "404":
            if self.replicas > 1:
                # A lagging follower may have answered; ask the stream leader.
                return await self._leader_get(stream, request)
            return None
        if status:
            raise StoreUnavailable(
                f"JetStream direct get failed: {status} {hdrs.get('Description', '')}"
            )
        return int(hdrs["Nats-Sequence"]), msg.data

    async def _leader_get(self, stream: str, request: dict[str, Any]) -> tuple[int, bytes] | None:
        try:
            raw = await self._call(
                self.js._jsm.get_msg(
                    stream,
                    seq=request.get("seq"),
                    subject=request.get("next_by_subj") or request.get("last_by_subj"),
                    next="next_by_subj" in request,
                )
            )
        except nats.js.errors.NotFoundError:
            return None
        return raw.seq, raw.data or b""

    async def read(self, resource: str, after: int, limit: int) -> list[Record]:
        """Records with offset > ``after``: direct gets from the batch holding ``after``;
        when many small batches are needed, one ephemeral consumer streams the rest."""
        self._check()
        if limit <= 0:
            return []
        subject = f"{self.prefix}.rec.{_token(resource)}"
        stream = self.names["records"]
        seq = max(after // OFFSET_STRIDE, 1) if after > 0 else 1
        out: list[Record] = []
        gets = 0
        while len(out) < limit:
            if gets == _DIRECT_GETS and limit - len(out) >= _BULK_MIN:
                try:
                    bulk = await self._bulk_read(
                        stream, subject, resource, seq, after, limit - len(out)
                    )
                except StoreUnavailable as exc:  # e.g. no JetStream meta leader right now
                    log.info("bulk read failed, going on with direct gets: %s", exc)
                    bulk = None
                if bulk is not None:
                    out.extend(bulk)
                    break
            got = await self._direct_get(stream, {"seq": seq, "next_by_subj": subject})
            gets += 1
            if got is None:
                break
            mseq, payload = got
            self._note(stream, mseq)
            self._decode_into(out, resource, mseq, payload, after, limit)
            seq = mseq + 1
        return out

    def _decode_into(
        self, out: list[Record], resource: str, seq: int, payload: bytes, after: int, limit: int
    ) -> None:
        base = seq * OFFSET_STRIDE
        try:
            decoded = decode_batch(payload, max(after - base, -1), limit - len(out))
        except CorruptBatch as exc:
            raise StoreError(f"batch {seq} of resource {resource!r} is corrupt: {exc}") from exc
        out.extend([Record(base + off, key, ts, data) for off, ts, key, data in decoded])

    async def _bulk_read(
        self, stream: str, subject: str, resource: str, seq: int, after: int, limit: int
    ) -> list[Record] | None:
        """Up to ``limit`` records from batches at or after ``seq`` through one ephemeral
        consumer; None when the consumer cannot be made (the caller goes on with gets)."""
        nc = self.nc
        assert nc is not None
        config = {
            "deliver_policy": "by_start_sequence",
            "opt_start_seq": seq,
            "filter_subject": subject,
            "ack_policy": "none",
            "inactive_threshold": 10_000_000_000,  # ns: the server drops it if we vanish
            "mem_storage": True,
            "num_replicas": 1,
        }
        msg = await self._request(
            f"$JS.API.CONSUMER.CREATE.{stream}",
            _enc({"stream_name": stream, "config": config}),
            timeout=min(self.op_timeout_s, 2.0),
        )
        try:
            name = msgspec.json.decode(msg.data)["name"]
        except (msgspec.DecodeError, KeyError, TypeError):
            log.warning("ephemeral consumer refused: %s", msg.data[:300])
            return None
        out: list[Record] = []
        done = asyncio.get_running_loop().create_future()
        failure: list[BaseException] = []

        async def on_msg(m: Any) -> None:
            if done.done():
                return
            status = (m.headers or {}).get("Status")
            if status:  # 404 no messages / 408 timeout: nothing more now
                done.set_result(None)
                return
            try:
                mseq = _ack_stream_seq(m.reply)
                self._note(stream, mseq)
                self._decode_into(out, resource, mseq, m.data, after, limit)
            except (StoreError, ValueError, IndexError, AttributeError) as exc:
                failure.append(exc)
                done.set_result(None)
                return
            if len(out) >= limit:
                done.set_result(None)

        inbox = nc.new_inbox()
        sub = await self._call(nc.subscribe(inbox, cb=on_msg))
        try:
            request = {"batch": limit, "no_wait": True, "max_bytes": 32 * 1024 * 1024}
            await self._call(
                nc.publish(f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{name}", _enc(request), reply=inbox)
            )
            try:
                async with asyncio.timeout(min(self.op_timeout_s, 2.0)):
                    await done
            except TimeoutError:
                raise StoreUnavailable("the ephemeral consumer did not deliver in time") from None
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
            with contextlib.suppress(Exception):
                await nc.publish(f"$JS.API.CONSUMER.DELETE.{stream}.{name}", b"")
        if failure:
            if isinstance(failure[0], StoreError):
                raise failure[0]
            raise StoreError(f"unexpected message from the consumer: {failure[0]}")
        self.stats["bulk_reads"] += 1
        return out[:limit]

    async def latest(self, resource: str, key: str) -> Record | None:
        """The last record written with this key: one direct get of its keys-stream subject."""
        self._check()
        subject = f"{self.prefix}.key.{_token(resource)}.{_digest(key)}"
        stream = self.names["keys"]
        if self.replicas > 1:
            got = await self._leader_get(stream, {"last_by_subj": subject})
        else:
            got = await self._direct_get(stream, {"last_by_subj": subject})
        if got is None:
            return None
        try:
            decoded = decode_batch(got[1])
        except CorruptBatch as exc:
            raise StoreError(f"key entry of {resource!r} is corrupt: {exc}") from exc
        if len(decoded) != 1 or decoded[0][2] != key:
            return None  # a digest collision: not this key
        off, ts, k, data = decoded[0]
        return Record(off, k, ts, data)

    async def wait(self, resource: str, after: int, timeout: float) -> bool:
        """Wait for a record > ``after``: a subscription on the resource's subject wakes us."""
        self._check()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(timeout, 0.0)
        waiters = self._waiters.setdefault(resource, set())
        fut: asyncio.Future[None] = loop.create_future()
        waiters.add(fut)
        try:
            await self._subscribe(resource)
            while True:
                # Subscribed before the check: an append in between still wakes us.
                if await self.read(resource, after, 1):
                    return True
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return False
                try:
                    async with asyncio.timeout(remaining):
                        await fut
                except TimeoutError:
                    return False
                if self._state != "open":
                    return False
                waiters.discard(fut)
                fut = loop.create_future()
                waiters.add(fut)
        finally:
            waiters.discard(fut)
            if not waiters:
                self._waiters.pop(resource, None)
                sub = self._subs.pop(resource, None)
                if sub is not None and self.connected:
                    with contextlib.suppress(Exception):
                        await sub.unsubscribe()

    async def _subscribe(self, resource: str) -> None:
        if resource in self._subs:
            return
        nc = self.nc
        assert nc is not None

        async def woke(_msg: Any) -> None:
            for f in self._waiters.get(resource, ()):
                if not f.done():
                    f.set_result(None)

        sub = await self._call(nc.subscribe(f"{self.prefix}.rec.{_token(resource)}", cb=woke))
        if resource in self._subs:  # another waiter subscribed meanwhile
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
            return
        self._subs[resource] = sub
        await self._call(nc.flush(timeout=self.op_timeout_s))

    # -- cursors -----------------------------------------------------------------------

    async def get_cursor(self, client: str, resource: str) -> int:
        """The client's committed offset, 0 when none."""
        self._check()
        entry = await self._kv_get(self.names["cursors"], _digest(client, resource))
        return int(entry[1] or b"0") if entry is not None else 0

    async def set_cursor(self, client: str, resource: str, offset: int, force: bool = False) -> int:
        """Commit with compare-and-set on the bucket's revision; CursorConflict when backwards."""
        self._check()
        if type(offset) is not int or offset < 0:
            raise ValueError(f"cursor offset must be an integer >= 0, not {offset!r}")
        bucket = self.names["cursors"]
        key = _digest(client, resource)
        value = str(offset).encode()
        for _ in range(100):
            entry = await self._kv_get(bucket, key)
            revision, current = (entry[0], int(entry[1] or b"0")) if entry is not None else (0, 0)
            if offset < current and not force:
                raise CursorConflict(current, offset)
            if entry is not None and offset == current:
                return offset
            try:
                await self._kv_write(bucket, key, value, revision)
                return offset
            except _WrongLast:
                continue  # another commit came first: look again
        raise StoreUnavailable("cursor commit kept racing with other commits; retry")

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
