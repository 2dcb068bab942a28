"""Records: push a batch, pull after an offset (long-poll), commit a cursor, read by key."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import web

from gateway.errors import Problem
from gateway.release import OutRecord
from gateway.stores.base import CursorConflict, IdempotencyConflict, Record
from gateway.stores.retention import earliest_for, policy_of
from gateway.validation import decode_push
from gateway.wire import MSGPACK, body_format, int_param, respond, wants_msgpack

if TYPE_CHECKING:
    from gateway.app import Call

MAX_OFFSET = 2**62


class _Cursor(msgspec.Struct, forbid_unknown_fields=True):
    offset: int
    force: bool = False


_cursor_json = msgspec.json.Decoder(_Cursor)
_cursor_msgpack = msgspec.msgpack.Decoder(_Cursor)
_encode_data = msgspec.json.Encoder().encode


def _release(call: Call, recs: list[Record], msgpack: bool) -> list[OutRecord]:
    """What the caller may receive of ``recs``; the citizens they concern go to the audit."""
    out, citizens = call.node.releaser.release(call.client or "", call.entry, call.access, recs,
                                               raw_ok=not msgpack)
    if citizens:
        call.citizens = citizens
    return out


async def push(call: Call) -> web.Response:
    """POST /v1/resources/{rid}/records: owner appends a validated batch, answered once durable."""
    node, entry = call.node, call.entry
    if call.client != entry.spec.owner:
        raise Problem("client.access_denied", f"only the owner {entry.spec.owner} may push to {entry.id}")
    msgpack = body_format(call.request)
    idem = call.idempotency_key
    records = decode_push(entry, call.body, msgpack, node.config.limits.max_batch_records)
    items = [(r.key, _encode_data(r.data)) for r in records]
    t0 = time.perf_counter()
    try:
        res = await node.store.append(entry.id, items, client=call.client,
                                      idempotency_key=idem, body_hash=call.body_sha256)
    except IdempotencyConflict:
        raise Problem("client.conflict",
                      "this Idempotency-Key was used with a different body for this resource") from None
    m = node.metrics
    m.store_commit.observe(time.perf_counter() - t0)
    if not res.replayed:
        m.records_pushed.inc(res.count)
        m.batch_size.observe(res.count)
    call.count = res.count
    return respond(call.request, 200, {"first": res.first, "last": res.last,
                                       "count": res.count, "replayed": res.replayed})


async def pull(call: Call) -> web.Response:
    """GET /v1/resources/{rid}/records: records after an offset, long-polling when none."""
    node, q = call.node, call.request.rel_url.query
    after = int_param(q, "after", None, 0, MAX_OFFSET)
    limit = int_param(q, "limit", 100, 1, 1000)
    wait = int_param(q, "wait", 0, 0, 30)
    assert limit is not None and wait is not None
    if after is None:
        after = await node.store.get_cursor(call.client, call.entry.id)
    recs = await node.store.read(call.entry.id, after, limit)
    if not recs and wait and await _wait_unless_draining(node, node.store.wait(call.entry.id, after, float(wait))):
        recs = await node.store.read(call.entry.id, after, limit)
    out = _release(call, recs, wants_msgpack(call.request))
    node.metrics.records_pulled.inc(len(out))
    call.count = len(out)
    page: dict[str, Any] = {"records": out, "next": recs[-1].offset if recs else after}
    earliest = await earliest_for(node.store, call.entry.id) if policy_of(call.entry.spec) else 0
    if earliest > after + 1:  # retention removed records after `after` (docs/operations.md)
        page["earliest"] = earliest
    return respond(call.request, 200, page)


async def _wait_unless_draining(node: Any, waiting: Coroutine[Any, Any, bool]) -> bool:
    """The store's long-poll wait, cut short (False: no records) when the node starts draining."""
    if node.drained.is_set():
        waiting.close()
        return False
    wait_task = asyncio.ensure_future(waiting)
    drain_task = asyncio.ensure_future(node.drained.wait())
    try:
        await asyncio.wait((wait_task, drain_task), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in (wait_task, drain_task):
            if not t.done():
                t.cancel()
    return wait_task.result() if wait_task.done() and not wait_task.cancelled() else False


async def commit_cursor(call: Call) -> web.Response:
    """PUT /v1/resources/{rid}/cursor: commit the caller's offset (409 backwards unless force)."""
    msgpack = body_format(call.request)
    try:
        body = (_cursor_msgpack if msgpack else _cursor_json).decode(call.body)
    except msgspec.ValidationError as exc:
        raise Problem("client.bad_request", f"invalid cursor body: {exc}") from None
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise Problem("client.bad_request", f"malformed cursor body: {exc}") from None
    if not 0 <= body.offset <= MAX_OFFSET:
        raise Problem("client.bad_request", f"offset must be between 0 and {MAX_OFFSET}")
    try:
        offset = await call.node.store.set_cursor(call.client, call.entry.id, body.offset, body.force)
    except CursorConflict as exc:
        raise Problem("client.conflict",
                      f"cursor is at {exc.current}; moving it back to {exc.requested} needs \"force\": true") from None
    return respond(call.request, 200, {"offset": offset})


async def get_by_key(call: Call) -> web.Response:
    """GET /v1/resources/{rid}/records/{key}: the latest record for a key, projected."""
    rec = await call.node.store.latest(call.entry.id, call.key)
    if rec is None:
        raise Problem("client.not_found", f"no record with this key in {call.entry.id}")
    return answer_record(call, rec)


def answer_record(call: Call, rec: Record) -> web.Response:
    """The answer to a keyed read: one released record."""
    call.count = 1
    return respond(call.request, 200, _release(call, [rec], wants_msgpack(call.request))[0])


__all__ = ["push", "pull", "commit_cursor", "get_by_key", "MSGPACK"]
