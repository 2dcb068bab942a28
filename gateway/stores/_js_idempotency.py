"""Idempotency-Keys in the JetStream store: a KV claim per (client, resource, key) made before
the batch is published, completed with the offsets; stale claims are taken over and the
batch's ``Nats-Msg-Id`` lets JetStream answer the original sequence."""

from __future__ import annotations

import asyncio
import contextlib
import time

import msgspec

from gateway.stores._js_base import _Base
from gateway.stores._js_wire import _digest, _enc, _WrongLast
from gateway.stores.base import AppendResult, IdempotencyConflict, StoreError, StoreUnavailable


class _Claim(msgspec.Struct, omit_defaults=True):
    """An idempotency key's value: the body hash, then the offsets once appended."""

    h: str
    t: int  # ms when claimed (a stale pending claim may be taken over)
    first: int = 0
    last: int = 0
    count: int = 0


_claim_dec = msgspec.json.Decoder(_Claim)


class _Idempotency(_Base):
    """The idempotent path of an append."""

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
