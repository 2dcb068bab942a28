"""Retention and compaction in the JetStream store (see :mod:`gateway.stores.retention`).

A pass walks the resource's batch messages oldest first (one ephemeral consumer filtered
to its subject): with only ``retention`` it stops at the first batch young enough; with
``max_records`` it reads them all to count. The batches beyond the policy are purged from
the records stream with a subject-filtered purge below the first kept sequence (JetStream
frees the space). Without compaction, the key entries whose record was purged are purged
too (each below its own sequence, so that a newer entry written meanwhile stays); with
compaction the keys stream keeps them, so keyed reads find every key's latest record.
The earliest offset is kept per resource in the ``P_retention`` bucket (only ever raised).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import msgspec

from fastpath import CorruptBatch, decode_batch
from gateway.stores._js_base import _Base
from gateway.stores._js_wire import _ack_stream_seq, _digest, _enc, _token, _WrongLast
from gateway.stores.base import OFFSET_STRIDE, StoreError, StoreUnavailable
from gateway.stores.retention import RetentionPolicy, RetentionResult

#: Seconds a node trusts its copy of a resource's earliest offset.
_EARLIEST_TTL_S = 2.0
#: Key entries written this long after their batch are checked one by one, not by time.
_INDEX_LAG_MS = 60_000


class _Batch(msgspec.Struct, array_like=True):
    seq: int
    count: int
    ts_ms: int
    keys: list[str]


class _Retention(_Base):
    """``apply_retention`` and ``earliest``."""

    _earliest_cache: dict[str, tuple[float, int]]

    async def earliest(self, resource: str) -> int:
        """One more than the last offset retention removed; 0 when it removed none."""
        self._check()
        now = time.monotonic()
        hit = self._earliest_cache.get(resource)
        if hit is not None and hit[0] > now:
            return hit[1]
        entry = await self._kv_get(self.names["retention"], _digest(resource))
        value = int(entry[1] or b"0") if entry is not None else 0
        self._earliest_cache[resource] = (now + _EARLIEST_TTL_S, value)
        return value

    async def apply_retention(
        self, resource: str, policy: RetentionPolicy, now_ms: int
    ) -> RetentionResult:
        """Purge the resource's batches beyond ``policy`` (and, unless it compacts, their
        keys' entries where those are still the purged records)."""
        self._check()
        started_ms = int(time.time() * 1000)
        res = RetentionResult(resource, earliest=await self.earliest(resource))
        subject = f"{self.prefix}.rec.{_token(resource)}"
        age_cut = now_ms - policy.max_age_s * 1000 if policy.max_age_s is not None else None
        batches = await self._scan(
            subject, need_keys=not policy.compact,
            stop_at_ms=age_cut if policy.max_records is None else None)
        drop = 0  # batches[:drop] go
        if age_cut is not None:
            while drop < len(batches) and batches[drop].ts_ms < age_cut:
                drop += 1
        if policy.max_records is not None:
            newer = 0
            for i in range(len(batches) - 1, -1, -1):
                if newer >= policy.max_records:
                    drop = max(drop, i + 1)
                    break
                newer += batches[i].count
        if drop == 0:
            return res
        last = batches[drop - 1]
        earliest = last.seq * OFFSET_STRIDE + last.count
        await self._purge(self.names["records"], {"filter": subject, "seq": last.seq + 1})
        res.batches_dropped = drop
        res.records_dropped = sum(b.count for b in batches[:drop])
        if not policy.compact:
            # Key entries are written right after their batch: those written before the first
            # kept batch (or before this pass began) belong to removed records; one purge takes
            # them. The few written later (index lag) are checked one by one.
            cutoff_ms = batches[drop].ts_ms if drop < len(batches) else started_ms
            res.keys_dropped = await self._purge_keys_before(resource, cutoff_ms)
            late = {k for b in batches[:drop] if b.ts_ms >= cutoff_ms - _INDEX_LAG_MS for k in b.keys}
            res.keys_dropped += await self._drop_keys(resource, late, earliest)
        res.earliest = await self._raise_earliest(resource, earliest)
        return res

    async def _purge_keys_before(self, resource: str, cutoff_ms: int) -> int:
        """Purge the resource's key entries written before ``cutoff_ms``; how many went."""
        nc = self.nc
        assert nc is not None
        stream = self.names["keys"]
        subject = f"{self.prefix}.key.{_token(resource)}.*"
        start = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(cutoff_ms // 1000))
        start += f".{cutoff_ms % 1000:03d}Z"
        # Entries written after this are never purged here (whatever their time).
        last_before = (await self._call(self.js.stream_info(stream))).state.last_seq
        config = {"deliver_policy": "by_start_time", "opt_start_time": start,
                  "filter_subject": subject, "ack_policy": "none", "mem_storage": True,
                  "num_replicas": 1, "inactive_threshold": 10_000_000_000}
        msg = await self._request(f"$JS.API.CONSUMER.CREATE.{stream}",
                                  _enc({"stream_name": stream, "config": config}))
        try:
            answer = msgspec.json.decode(msg.data)
            name = answer["name"]
            pending = answer.get("num_pending", 0)
        except (msgspec.DecodeError, KeyError, TypeError):
            raise StoreUnavailable(f"cannot look up key entries: {msg.data[:200]!r}") from None
        seq: int | None = None
        try:
            if pending:
                got: asyncio.Queue[Any] = asyncio.Queue()
                inbox = nc.new_inbox()
                sub = await self._call(nc.subscribe(inbox, cb=got.put))
                try:
                    await self._call(nc.publish(f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{name}",
                                                _enc({"batch": 1, "no_wait": True}), reply=inbox))
                    async with asyncio.timeout(self.op_timeout_s):
                        first = await got.get()
                finally:
                    with contextlib.suppress(Exception):
                        await sub.unsubscribe()
                if not (first.headers or {}).get("Status") and first.reply:
                    seq = _ack_stream_seq(first.reply)
        finally:
            with contextlib.suppress(Exception):
                await nc.publish(f"$JS.API.CONSUMER.DELETE.{stream}.{name}", b"")
        if seq is None:  # nothing written since the cutoff: every entry up to last_before goes
            seq = last_before + 1
        seq = min(seq, last_before + 1)
        msg = await self._request(f"$JS.API.STREAM.PURGE.{stream}",
                                  _enc({"filter": subject, "seq": seq}))
        answer = msgspec.json.decode(msg.data or b"{}")
        if not isinstance(answer, dict) or answer.get("error"):
            raise StoreError(f"JetStream refused a purge of {stream}: {answer!r}")
        return int(answer.get("purged", 0))

    async def _drop_keys(self, resource: str, keys: set[str], earliest: int) -> int:
        """Purge each key's entry whose record lies below ``earliest``."""
        stream = self.names["keys"]
        pre = f"{self.prefix}.key.{_token(resource)}."
        dropped = 0
        sem = asyncio.Semaphore(256)

        async def one(key: str) -> None:
            nonlocal dropped
            subject = pre + _digest(key)
            async with sem:
                got = await self._direct_get(stream, {"last_by_subj": subject})
                if got is None:
                    return
                try:
                    decoded = decode_batch(got[1])
                except CorruptBatch:
                    return
                if decoded and decoded[0][0] < earliest:
                    await self._purge(stream, {"filter": subject, "seq": got[0] + 1})
                    dropped += 1

        await asyncio.gather(*[one(k) for k in keys])
        return dropped

    async def _raise_earliest(self, resource: str, earliest: int) -> int:
        bucket, key = self.names["retention"], _digest(resource)
        for _ in range(100):
            entry = await self._kv_get(bucket, key)
            revision, current = (entry[0], int(entry[1] or b"0")) if entry else (0, 0)
            if current >= earliest:
                earliest = current
                break
            try:
                await self._kv_write(bucket, key, str(earliest).encode(), revision)
                break
            except _WrongLast:
                continue
        self._earliest_cache[resource] = (time.monotonic() + _EARLIEST_TTL_S, earliest)
        return earliest

    async def _purge(self, stream: str, request: dict[str, Any]) -> None:
        msg = await self._request(f"$JS.API.STREAM.PURGE.{stream}", _enc(request))
        answer = msgspec.json.decode(msg.data or b"{}")
        if not isinstance(answer, dict) or answer.get("error"):
            raise StoreError(f"JetStream refused a purge of {stream}: {answer!r}")

    async def _scan(
        self, subject: str, *, need_keys: bool, stop_at_ms: int | None
    ) -> list[_Batch]:
        """The subject's batch messages oldest first (up to the first one not older than
        ``stop_at_ms``, when given)."""
        nc = self.nc
        assert nc is not None
        stream = self.names["records"]
        config = {
            "deliver_policy": "all", "filter_subject": subject, "ack_policy": "none",
            "inactive_threshold": 30_000_000_000, "mem_storage": True, "num_replicas": 1,
        }
        msg = await self._request(f"$JS.API.CONSUMER.CREATE.{stream}",
                                  _enc({"stream_name": stream, "config": config}))
        try:
            name = msgspec.json.decode(msg.data)["name"]
        except (msgspec.DecodeError, KeyError, TypeError):
            raise StoreUnavailable(f"cannot scan {subject}: {msg.data[:200]!r}") from None
        out: list[_Batch] = []
        queue: asyncio.Queue[Any] = asyncio.Queue()
        inbox = nc.new_inbox()
        sub = await self._call(nc.subscribe(inbox, cb=queue.put))
        try:
            while True:
                await self._call(nc.publish(
                    f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{name}",
                    _enc({"batch": 256, "no_wait": True}), reply=inbox))
                got = 0
                while got < 256:
                    async with asyncio.timeout(self.op_timeout_s):
                        m = await queue.get()
                    if (m.headers or {}).get("Status"):
                        break  # 404 / 408: no more now
                    got += 1
                    seq = _ack_stream_seq(m.reply)
                    try:
                        recs = decode_batch(m.data)
                    except CorruptBatch as exc:
                        raise StoreError(f"batch {seq} of {subject} is corrupt: {exc}") from exc
                    if not recs:
                        continue
                    batch = _Batch(seq, len(recs), recs[0][1],
                                   [r[2] for r in recs] if need_keys else [])
                    if stop_at_ms is not None and batch.ts_ms >= stop_at_ms:
                        return out
                    out.append(batch)
                if got < 256:
                    return out
        except TimeoutError:
            raise StoreUnavailable(f"scanning {subject} timed out") from None
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
            with contextlib.suppress(Exception):
                await nc.publish(f"$JS.API.CONSUMER.DELETE.{stream}.{name}", b"")
