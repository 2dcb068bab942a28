"""The JetStream store's key index: the latest record of every key in a stream with one
message per subject, written in group commits after the batches are acknowledged."""

from __future__ import annotations

import asyncio
import logging

from fastpath import CorruptBatch, decode_batch, encode_batch
from gateway.redact import redact
from gateway.stores._js_base import _Base
from gateway.stores._js_wire import _digest, _token
from gateway.stores.base import OFFSET_STRIDE, Record, StoreError, StoreUnavailable

log = logging.getLogger("gateway.stores.jetstream")


class _KeyIndex(_Base):
    """Write key entries (group-committed) and answer ``latest``."""

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
