"""JetStream governance storage (cluster mode): every node shares one audit chain,
the consents and the webhook subscriptions.

Layout (``P`` is the store prefix, ``exg`` by default)::

    stream P_AUDIT      subject P.audit            one message per written batch of entries
    stream P_AUDITCIT   subjects P.auditcit.<hash> a copy of each entry naming a citizen
    stream P_AUDIT_CHECKPOINTS  subject P.auditckpt  the nodes' signed checkpoints of the
                                chain's head (deletes and purges denied; see checkpoints.py)
    KV     P_consents   id.<consent id> -> consent; u.<user hash>.<consumer hash>.<id> -> "";
                        meta.citizen-key -> the fingerprint of the citizen key that hashed them
    KV     P_subs       <subscription id> -> subscription (leases use compare-and-set)
    KV     P_claims     <claim id> -> idempotency claim (create = claim; 24 h TTL)

The deliverers' frequent scan (:meth:`JetStreamGovernance.sub_due`) never lists the
bucket: a KV watch keeps an in-memory index of the subscriptions current, and every
``rescan_s`` a fresh watch (whose first values are the whole bucket) rebuilds it, the
safety net should the watch ever miss an update. (``keys()`` would create a consumer
on every call, once a second on every node.)

The chain is extended with optimistic concurrency: a batch is chained after the last
entry of the stream's last message and published with ``Nats-Expected-Last-Sequence``;
when another node appended first, the batch is re-chained on the new tail and sent again.
So the stream's order is the chain's order: one linear chain, ``seq`` global across nodes.
Each node checkpoints the tail its own last acknowledged batch produced, which vouches for
its entries and every earlier entry of every node; all nodes' checkpoints go to one stream.
The citizen copies are published (acknowledged) after the batch; one that fails is retried
with the next batch, never by appending the batch again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from typing import Any

import msgspec
import nats
import nats.errors
import nats.js.errors
from nats.js.api import DeliverPolicy, StorageType, StreamConfig

from gateway.audit import GENESIS, AuditEntry, chain_entry
from gateway.governance.idempotency import KEEP_S, Claim
from gateway.governance.model import Consent, Subscription
from gateway.logs import ConnectionLog, event
from gateway.redact import redact_urls
from gateway.stores.base import StoreUnavailable

_enc = msgspec.json.Encoder(order="sorted")
_dec_batch = msgspec.json.Decoder(list[AuditEntry])
_dec_entry = msgspec.json.Decoder(AuditEntry)
_dec_consent = msgspec.json.Decoder(Consent)
_dec_sub = msgspec.json.Decoder(Subscription)
_dec_claim = msgspec.json.Decoder(Claim)


_FINGERPRINT_KEY = "meta.citizen-key"


def _mismatch(mine: str, recorded: str, bucket: str) -> str:
    return (f"refused: this node's citizen_key (fingerprint {mine[:16]}) differs from the key of "
            f"the cluster (fingerprint {recorded[:16]}, recorded in KV {bucket}); every node needs "
            "the same citizen_key: restart this node with the cluster's keyring")


def _h(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:24]


class JetStreamGovernance:
    """The governance store on NATS JetStream."""

    def __init__(self, servers: list[str], *, replicas: int = 1, prefix: str = "exg",
                 connect_timeout_s: float = 5.0, rescan_s: float = 30.0) -> None:
        self.servers = servers
        self.replicas = replicas
        self.prefix = prefix
        self.connect_timeout_s = connect_timeout_s
        self._conn: Any = None  # set once connected and the streams and buckets exist
        self._jsctx: Any = None
        self._consents_kv: Any = None
        self._subs_kv: Any = None
        self._claims_kv: Any = None
        self._connecting: asyncio.Task | None = None
        self._lock = asyncio.Lock()
        self._tail: tuple[int, int, str] | None = None  # (stream seq, entry seq, hash)
        self.rescan_s = rescan_s
        self._index: dict[str, tuple[int, Subscription]] | None = None  # id -> (revision, sub)
        self._follower: asyncio.Task | None = None
        self._cit_pending: list[tuple[str, bytes]] = []  # citizen copies not yet acknowledged
        self._fingerprint: str | None = None  # the citizen key's, checked on every connect
        self.refused: str | None = None  # why this store refuses every call (a key mismatch)
        self._nats_log = ConnectionLog("governance")  # one log line per connection state

    @property
    def audit_stream(self) -> str:
        return f"{self.prefix}_AUDIT"

    @property
    def citizen_stream(self) -> str:
        return f"{self.prefix}_AUDITCIT"

    @property
    def checkpoint_stream(self) -> str:
        return f"{self.prefix}_AUDIT_CHECKPOINTS"

    def _need(self, value: Any) -> Any:
        if self.refused is not None:
            raise StoreUnavailable(self.refused)
        if value is None:
            raise StoreUnavailable(f"NATS JetStream is not reachable at {redact_urls(self.servers)}")
        return value

    @property
    def _nc(self) -> Any:
        return self._need(self._conn)

    @property
    def _js(self) -> Any:
        return self._need(self._jsctx)

    @property
    def _consents(self) -> Any:
        return self._need(self._consents_kv)

    @property
    def _subs(self) -> Any:
        return self._need(self._subs_kv)

    @property
    def _claims(self) -> Any:
        return self._need(self._claims_kv)

    async def open(self, wait_s: float = 2.0) -> None:
        """Connect and create streams and buckets; when NATS is down, keep trying in the
        background (calls answer StoreUnavailable meanwhile) so that the node still starts."""
        if self._connecting is None:
            self._connecting = asyncio.get_running_loop().create_task(self._connect())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._connecting), wait_s)

    async def _connect(self) -> None:
        while True:
            nc = None
            try:
                nc = await nats.connect(servers=self.servers, connect_timeout=self.connect_timeout_s,
                                        max_reconnect_attempts=-1, allow_reconnect=True,
                                        **self._nats_log.callbacks())
                self._nats_log.connected()
                js = nc.jetstream()
                p, r = self.prefix, self.replicas
                for name, subjects, append_only in ((f"{p}_AUDIT", [f"{p}.audit"], False),
                                                    (f"{p}_AUDITCIT", [f"{p}.auditcit.*"], False),
                                                    (self.checkpoint_stream, [f"{p}.auditckpt"], True)):
                    cfg = StreamConfig(name=name, subjects=subjects, storage=StorageType.FILE,
                                       num_replicas=r)
                    if append_only:
                        cfg.deny_delete = cfg.deny_purge = True
                    try:
                        await js.add_stream(cfg)
                    except nats.js.errors.BadRequestError:
                        await js.update_stream(cfg)
                consents = await js.create_key_value(bucket=f"{p}_consents", replicas=r, history=1)
                subs = await js.create_key_value(bucket=f"{p}_subs", replicas=r, history=1)
                claims = await js.create_key_value(bucket=f"{p}_claims", replicas=r, history=1,
                                                   ttl=KEEP_S + 3600)
                if self._fingerprint is not None:  # asked for while NATS was away: check it now
                    recorded = await self._claim_fingerprint(consents, self._fingerprint)
                    if recorded != self._fingerprint:
                        self.refused = _mismatch(self._fingerprint, recorded, f"{p}_consents")
                        await nc.close()
                        return
            except (nats.errors.Error, nats.js.errors.Error, OSError, TimeoutError):
                if nc is not None:
                    with contextlib.suppress(Exception):
                        await nc.close()
                await asyncio.sleep(1.0)  # e.g. no JetStream leader elected yet: try again
                continue
            self._conn, self._jsctx, self._consents_kv, self._subs_kv = nc, js, consents, subs
            self._claims_kv = claims
            return

    async def close(self) -> None:
        if self._follower is not None:
            self._follower.cancel()
            await asyncio.wait([self._follower], timeout=2.0)
            self._follower = None
        self._index = None
        if self._connecting is not None:
            self._connecting.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._connecting
            self._connecting = None
        if self._conn is not None:
            nc, self._conn = self._conn, None
            self._jsctx = self._consents_kv = self._subs_kv = self._claims_kv = None
            self._nats_log.closing()
            await nc.close()

    # -- the citizen key's fingerprint ---------------------------------------------------

    async def key_fingerprint(self, fingerprint: str) -> str:
        self._fingerprint = fingerprint
        if self._consents_kv is None:
            return fingerprint  # checked by _connect before the store serves anything
        return await self._guard(self._claim_fingerprint(self._consents_kv, fingerprint))

    @staticmethod
    async def _claim_fingerprint(kv: Any, fingerprint: str) -> str:
        """Create ``meta.citizen-key`` when missing (the first node wins); the recorded value."""
        with contextlib.suppress(nats.js.errors.KeyWrongLastSequenceError):
            await kv.create(_FINGERPRINT_KEY, fingerprint.encode())
        return (await kv.get(_FINGERPRINT_KEY)).value.decode()

    async def _guard(self, coro: Any) -> Any:
        try:
            return await coro
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError, nats.errors.ConnectionClosedError,
                nats.errors.ConnectionReconnectingError) as exc:
            raise StoreUnavailable(f"NATS: {type(exc).__name__}") from None

    # -- audit -------------------------------------------------------------------------

    async def _read_tail(self) -> tuple[int, int, str]:
        try:
            msg = await self._js.get_last_msg(self.audit_stream, f"{self.prefix}.audit")
        except nats.js.errors.NotFoundError:
            return 0, 0, GENESIS
        last = _dec_batch.decode(msg.data)[-1]
        return msg.seq, last.seq, last.hash

    async def audit_append(self, entries: list[AuditEntry]) -> int:
        async with self._lock:
            for _ in range(100):
                if self._tail is None:
                    self._tail = await self._guard(self._read_tail())
                stream_seq, seq, prev = self._tail
                for e in entries:
                    seq += 1
                    e.seq = seq
                    prev = chain_entry(prev, e)
                try:
                    ack = await self._guard(self._js.publish(
                        f"{self.prefix}.audit", _enc.encode(entries), stream=self.audit_stream,
                        headers={"Nats-Expected-Last-Sequence": str(stream_seq)}))
                except nats.js.errors.APIError as exc:
                    if getattr(exc, "err_code", None) == 10071 or "wrong last sequence" in str(exc):
                        self._tail = None  # another node appended first: re-chain on its tail
                        continue
                    raise
                self._tail = (ack.seq, seq, prev)
                self._cit_pending.extend((f"{self.prefix}.auditcit.{c}", _enc.encode(e))
                                         for e in entries for c in e.citizens)
                await self._publish_citizen_copies()
                return seq
            raise StoreUnavailable("audit append kept losing the race for the chain's tail")

    async def _publish_citizen_copies(self) -> None:
        """Publish the pending citizen copies, acknowledged; keep the failed ones for the
        next append (the batch itself is committed: raising would append it twice)."""
        pending, self._cit_pending = self._cit_pending, []
        if not pending:
            return
        try:
            js = self._js
            results = await asyncio.gather(*(js.publish(subject, data, stream=self.citizen_stream)
                                             for subject, data in pending), return_exceptions=True)
        except Exception as exc:  # noqa: BLE001 - NATS away: every copy stays pending
            results = [exc] * len(pending)
        failed = [p for p, r in zip(pending, results, strict=True) if isinstance(r, BaseException)]
        if failed:
            self._cit_pending = failed + self._cit_pending
            event("audit_citizen_index_failed", level="warning", logger=__name__,
                  pending=len(self._cit_pending))

    async def audit_checkpoint_append(self, line: bytes) -> None:
        """Publish one signed checkpoint (acknowledged) to the checkpoint stream."""
        await self._guard(self._js.publish(f"{self.prefix}.auditckpt", line, stream=self.checkpoint_stream))

    async def audit_checkpoints(self) -> list[tuple[str, bytes]]:
        """Every checkpoint in the stream: (where, raw line)."""
        return [(f"{self.checkpoint_stream} message {seq}", data) for seq, _, data in
                await self._guard(self._scan_all(self.checkpoint_stream, f"{self.prefix}.auditckpt"))]

    async def audit_citizen_index(self) -> list[tuple[str, str, bytes]]:
        """Every citizen copy: (where, citizen hash, raw entry), in stream order."""
        prefix = f"{self.prefix}.auditcit."
        return [(f"{self.citizen_stream} message {seq}", subject.removeprefix(prefix), data)
                for seq, subject, data in
                await self._guard(self._scan_all(self.citizen_stream, f"{self.prefix}.auditcit.*"))]

    async def _scan_all(self, stream: str, subject: str) -> list[tuple[int, str, bytes]]:
        """(stream seq, subject, data) of every message on ``subject`` up to the stream's last now."""
        try:
            info = await self._js.stream_info(stream)
        except nats.js.errors.NotFoundError:
            return []
        last = info.state.last_seq
        if not info.state.messages:
            return []
        sub = await self._js.subscribe(subject, ordered_consumer=True)
        out: list[tuple[int, str, bytes]] = []
        try:
            while True:
                try:
                    msg = await sub.next_msg(timeout=2)
                except nats.errors.TimeoutError:
                    break
                seq = msg.metadata.sequence.stream
                out.append((seq, msg.subject, msg.data))
                if seq >= last:
                    break
        finally:
            await sub.unsubscribe()
        return out

    async def _scan(self, stream: str, subject: str, since: float | None, max_msgs: int,
                    whole_stream: bool = False) -> list[bytes]:
        """Every message on ``subject`` (from ``since``) up to its last one right now.

        ``whole_stream``: ``subject`` is the stream's only one; when its last message was
        deleted (nats-server 2.9 then answers "not found" for the subject's last message)
        read what is left up to the stream's last sequence."""
        try:
            last = (await self._js.get_last_msg(stream, subject)).seq
        except nats.js.errors.NotFoundError:
            if not whole_stream:
                return []
            state = (await self._js.stream_info(stream)).state
            if not state.messages:
                return []
            last = state.last_seq
        kw: dict[str, Any] = {"ordered_consumer": True}
        if since is not None:
            import datetime as dt

            kw["config"] = nats.js.api.ConsumerConfig(
                deliver_policy=DeliverPolicy.BY_START_TIME,
                opt_start_time=dt.datetime.fromtimestamp(since, dt.UTC).isoformat())
        sub = await self._js.subscribe(subject, **kw)
        out: list[bytes] = []
        try:
            while len(out) < max_msgs:
                try:
                    msg = await sub.next_msg(timeout=2)
                except nats.errors.TimeoutError:
                    break  # nothing at or after ``since``
                out.append(msg.data)
                if msg.metadata.sequence.stream >= last:
                    break
        finally:
            await sub.unsubscribe()
        return out

    async def audit_range(self, *, after_seq: int = 0, since: float | None = None,
                          until: float | None = None, limit: int = 1000) -> list[AuditEntry]:
        out: list[AuditEntry] = []
        for data in await self._guard(self._scan(self.audit_stream, f"{self.prefix}.audit", since, 1 << 30,
                                                        whole_stream=True)):
            for e in _dec_batch.decode(data):
                if e.seq <= after_seq or (since is not None and e.ts < since):
                    continue
                if until is not None and e.ts >= until:
                    return out
                out.append(e)
                if len(out) >= limit:
                    return out
        return out

    async def audit_for_citizen(self, citizen: str, limit: int = 1000) -> list[AuditEntry]:
        rows = await self._guard(self._scan(f"{self.prefix}_AUDITCIT", f"{self.prefix}.auditcit.{citizen}", None, 1 << 30))
        return [_dec_entry.decode(d) for d in reversed(rows)][:limit]

    # -- consents ----------------------------------------------------------------------

    async def consent_put(self, consent: Consent) -> None:
        await self._guard(self._consents.put(f"id.{consent.id}", _enc.encode(consent)))
        index = f"u.{consent.user}.{_h(consent.consumer)}"
        for _ in range(100):  # add the id to the (user, consumer) index with compare-and-set
            try:
                e = await self._guard(self._consents.get(index))
                ids, rev = msgspec.json.decode(e.value, type=list[str]), e.revision
            except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError):
                ids, rev = [], 0
            if consent.id in ids:
                return
            try:
                if rev:
                    await self._guard(self._consents.update(index, _enc.encode([*ids, consent.id]), last=rev))
                else:
                    await self._guard(self._consents.create(index, _enc.encode([consent.id])))
                return
            except nats.js.errors.KeyWrongLastSequenceError:
                continue
        raise StoreUnavailable("consent index kept changing under us")

    async def consent_get(self, consent_id: str) -> Consent | None:
        try:
            e = await self._guard(self._consents.get(f"id.{consent_id}"))
        except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError):
            return None
        return _dec_consent.decode(e.value)

    async def consents_for(self, user: str, consumer: str) -> list[Consent]:
        try:
            e = await self._guard(self._consents.get(f"u.{user}.{_h(consumer)}"))
        except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError):
            return []
        out = []
        for cid in msgspec.json.decode(e.value, type=list[str]):
            c = await self.consent_get(cid)
            if c is not None:
                out.append(c)
        return out

    # -- subscriptions -----------------------------------------------------------------

    async def sub_put(self, sub: Subscription) -> None:
        rev = await self._guard(self._subs.put(sub.id, _enc.encode(sub)))
        self._note(sub.id, rev, sub)

    async def sub_get(self, sub_id: str) -> Subscription | None:
        try:
            e = await self._guard(self._subs.get(sub_id))
        except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError):
            return None
        return _dec_sub.decode(e.value)

    async def sub_list(self, consumer: str | None = None) -> list[Subscription]:
        try:
            keys = await self._guard(self._subs.keys())
        except nats.js.errors.NoKeysError:
            return []
        out = []
        for k in sorted(keys):
            s = await self.sub_get(k)
            if s is not None and (consumer is None or s.consumer == consumer):
                out.append(s)
        return out

    async def sub_claim(self, sub_id: str, owner: str, until: float, now: float) -> Subscription | None:
        try:
            e = await self._guard(self._subs.get(sub_id))
        except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError):
            return None
        s = _dec_sub.decode(e.value)
        if s.lease_owner not in ("", owner) and s.lease_until > now:
            return None
        s.lease_owner, s.lease_until = owner, until
        try:
            rev = await self._guard(self._subs.update(sub_id, _enc.encode(s), last=e.revision))
        except nats.js.errors.KeyWrongLastSequenceError:
            return None
        self._note(sub_id, rev, s)
        return s

    # -- idempotency claims ------------------------------------------------------------

    async def claim(self, claim_id: str, claim: Claim, now: float) -> Claim | None:
        kv = self._claims
        for _ in range(100):
            try:
                await self._guard(kv.create(claim_id, _enc.encode(claim)))
                return None
            except nats.js.errors.KeyWrongLastSequenceError:
                pass  # exists: look at it
            try:
                e = await self._guard(kv.get(claim_id))
            except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError):
                continue  # released meanwhile: create again
            held = _dec_claim.decode(e.value)
            if held.live(now):
                return held
            try:
                await self._guard(kv.update(claim_id, _enc.encode(claim), last=e.revision))
                return None
            except nats.js.errors.KeyWrongLastSequenceError:
                continue
        raise StoreUnavailable("idempotency claim kept changing under us")

    async def claim_finish(self, claim_id: str, claim: Claim) -> None:
        await self._guard(self._claims.put(claim_id, _enc.encode(claim)))

    async def claim_release(self, claim_id: str) -> None:
        await self._guard(self._claims.delete(claim_id))

    # -- the watched subscription index ------------------------------------------------

    async def sub_due(self, owner: str, now: float) -> tuple[list[Subscription], int]:
        self._subs  # noqa: B018 - StoreUnavailable while NATS is not there
        if self._follower is None or self._follower.done():
            self._follower = asyncio.get_running_loop().create_task(self._follow())
        if self._index is None:  # the watch has not delivered the bucket yet: read it once
            subs = await self.sub_list()
        else:
            subs = [v[1] for _, v in sorted(self._index.items())]
        due = [s for s in subs
               if s.state == "active" and (s.lease_owner in ("", owner) or s.lease_until <= now)]
        return due, sum(1 for s in subs if s.state == "dead")

    def _note(self, sub_id: str, rev: Any, sub: Subscription) -> None:
        """Our own write, into the index at once (the watch brings it again, or a newer one)."""
        if self._index is not None and isinstance(rev, int):
            old = self._index.get(sub_id)
            if old is None or old[0] < rev:
                self._index[sub_id] = (rev, msgspec.structs.replace(sub))

    @staticmethod
    def _apply(index: dict[str, tuple[int, Subscription]], e: Any) -> None:
        old = index.get(e.key)
        rev = e.revision or 0
        if old is not None and old[0] >= rev:
            return
        if e.operation in ("DEL", "PURGE") or not e.value:
            index.pop(e.key, None)
            return
        try:
            index[e.key] = (rev, _dec_sub.decode(e.value))
        except msgspec.DecodeError:
            index.pop(e.key, None)  # not a subscription: nothing to deliver

    async def _follow(self) -> None:
        """Keep ``_index`` current from a KV watch; every ``rescan_s`` a fresh watch, whose
        first values are the whole bucket, rebuilds it."""
        while True:
            watcher = rescan = None
            try:
                watcher = await self._guard(self._subs.watchall())
                rescan = asyncio.get_running_loop().create_task(self._stop_later(watcher))
                fresh: dict[str, tuple[int, Subscription]] | None = {}
                async for e in watcher:  # (not updates(): its wait_for can swallow a cancel)
                    if e is not None:
                        self._apply(fresh if fresh is not None else self._index, e)  # type: ignore[arg-type]
                    elif fresh is not None:  # the end of the bucket's current values
                        for k, (rev, sub) in (self._index or {}).items():
                            if k in fresh and fresh[k][0] < rev:
                                fresh[k] = (rev, sub)  # our own newer write
                        self._index, fresh = fresh, None
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - NATS away or the watch broke: full reads until back
                self._index = None
                await asyncio.sleep(1.0)
            finally:
                if rescan is not None and not rescan.done():
                    rescan.cancel()
                    await asyncio.wait([rescan])
                    if watcher is not None:
                        with contextlib.suppress(Exception):
                            await watcher.stop()

    async def _stop_later(self, watcher: Any) -> None:
        await asyncio.sleep(self.rescan_s)
        await watcher.stop()  # ends the ``async for``: a fresh watch follows
