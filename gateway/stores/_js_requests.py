"""Request/reply on one inbox subscription, acknowledged publishes, direct and leader gets,
and compare-and-set KV writes (the JetStream store's transport)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

import msgspec
import nats.js.errors

from gateway.stores._js_base import _Base
from gateway.stores._js_wire import _UNREACHABLE, T, _ack_dec, _enc, _WrongLast
from gateway.stores.base import StoreError, StoreUnavailable


class _Requests(_Base):
    """Every call to NATS goes through these; transport failures become StoreUnavailable."""

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
