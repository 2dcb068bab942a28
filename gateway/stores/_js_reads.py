"""Reads from the JetStream store: direct gets from the batch holding ``after``; when many
small batches are needed, one ephemeral consumer streams the rest."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import msgspec

from fastpath import CorruptBatch, decode_batch
from gateway.stores._js_base import _Base
from gateway.stores._js_wire import _ack_stream_seq, _enc, _token
from gateway.stores.base import OFFSET_STRIDE, Record, StoreError, StoreUnavailable

log = logging.getLogger("gateway.stores.jetstream")

#: Direct gets a read makes before it streams the rest through an ephemeral consumer
#: (when at least _BULK_MIN records are still wanted).
_DIRECT_GETS = 4
_BULK_MIN = 16


class _Reads(_Base):
    """``read``."""

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
