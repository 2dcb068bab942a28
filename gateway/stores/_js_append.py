"""Appends to the JetStream store: one stream message per batch, then the key index."""

from __future__ import annotations

import asyncio
import time

from fastpath import encode_batch
from gateway.stores._js_base import _Base
from gateway.stores._js_wire import _token
from gateway.stores.base import OFFSET_STRIDE, AppendResult, StoreError, check_batch


class _Appends(_Base):
    """``append``: publish a framed batch, acknowledge once the stream stored it and the
    key index group holding its keys was written."""

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
