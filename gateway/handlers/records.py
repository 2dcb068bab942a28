"""Records: push a batch, pull after an offset (long-poll), commit a cursor, read by key.

The pipeline has checked the caller (owner for a push, reader otherwise) and, for a
personal keyed read, the consent rule; these handlers only talk to the store and release
what the caller may see (:mod:`gateway.release`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from typing import Any

import msgspec

from gateway.errors import Problem
from gateway.exchange import Answer, Exchange
from gateway.release import OutRecord
from gateway.stores.base import CursorConflict, IdempotencyConflict, Record
from gateway.stores.retention import earliest_for, policy_of
from gateway.validation import decode_push
from gateway.wire import body_format, wants_msgpack
from gateway.wiremodel import MAX_OFFSET, Cursor, PullPage, PushResult

_cursor_json = msgspec.json.Decoder(Cursor)
_cursor_msgpack = msgspec.msgpack.Decoder(Cursor)
_encode_data = msgspec.json.Encoder().encode


def _release(x: Exchange, recs: list[Record]) -> list[OutRecord]:
    """What the caller may receive of ``recs``; the citizens they concern go to the audit."""
    assert x.entry is not None and x.access is not None
    out, citizens = x.backends.releaser.release(x.client, x.entry, x.access, recs,
                                                raw_ok=not wants_msgpack(x.request))
    if citizens:
        x.facts.citizens = citizens
    return out


async def push(x: Exchange) -> Answer:
    """POST /v1/resources/{rid}/records: the owner appends a validated batch, answered once durable."""
    entry, b = x.entry, x.backends
    assert entry is not None
    records = decode_push(entry, x.body, body_format(x.request), b.limits.max_batch_records)
    items = [(r.key, _encode_data(r.data)) for r in records]
    t0 = time.perf_counter()
    try:
        res = await b.store.append(entry.id, items, client=x.client,
                                   idempotency_key=x.idempotency_key, body_hash=x.body_sha256)
    except IdempotencyConflict:
        raise Problem("client.conflict",
                      "this Idempotency-Key was used with a different body for this resource") from None
    m = b.metrics
    m.store_commit.observe(time.perf_counter() - t0)
    if not res.replayed:
        m.records_pushed.inc(res.count)
        m.batch_size.observe(res.count)
    x.facts.count = res.count
    return Answer(200, PushResult(first=res.first, last=res.last, count=res.count, replayed=res.replayed))


async def pull(x: Exchange) -> Answer:
    """GET /v1/resources/{rid}/records: records after an offset, long-polling when none."""
    entry, b = x.entry, x.backends
    assert entry is not None
    after, limit, wait = x.args["after"], x.args["limit"], x.args["wait"]
    assert limit is not None and wait is not None
    if after is None:
        after = await b.store.get_cursor(x.client, entry.id)
    recs = await b.store.read(entry.id, after, limit)
    if not recs and wait and await _wait_unless_draining(b.drained, b.store.wait(entry.id, after, float(wait))):
        recs = await b.store.read(entry.id, after, limit)
    out = _release(x, recs)
    b.metrics.records_pulled.inc(len(out))
    x.facts.count = len(out)
    earliest = await earliest_for(b.store, entry.id) if policy_of(entry.spec) else 0
    # retention removed records after `after`: the page says where the log now starts
    return Answer(200, PullPage(records=out, next=recs[-1].offset if recs else after,
                                earliest=earliest if earliest > after + 1 else None))


async def _wait_unless_draining(drained: asyncio.Event, waiting: Coroutine[Any, Any, bool]) -> bool:
    """The store's long-poll wait, cut short (False: no records) when the node starts draining."""
    if drained.is_set():
        waiting.close()
        return False
    wait_task = asyncio.ensure_future(waiting)
    drain_task = asyncio.ensure_future(drained.wait())
    try:
        await asyncio.wait((wait_task, drain_task), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in (wait_task, drain_task):
            if not t.done():
                t.cancel()
    return wait_task.result() if wait_task.done() and not wait_task.cancelled() else False


async def commit_cursor(x: Exchange) -> Answer:
    """PUT /v1/resources/{rid}/cursor: commit the caller's offset (409 backwards unless force)."""
    assert x.entry is not None
    msgpack = body_format(x.request)
    try:
        body = (_cursor_msgpack if msgpack else _cursor_json).decode(x.body)
    except msgspec.ValidationError as exc:
        raise Problem("client.bad_request", f"invalid cursor body: {exc}") from None
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise Problem("client.bad_request", f"malformed cursor body: {exc}") from None
    if not 0 <= body.offset <= MAX_OFFSET:
        raise Problem("client.bad_request", f"offset must be between 0 and {MAX_OFFSET}")
    try:
        offset = await x.backends.store.set_cursor(x.client, x.entry.id, body.offset, body.force)
    except CursorConflict as exc:
        raise Problem("client.conflict",
                      f"cursor is at {exc.current}; moving it back to {exc.requested} needs \"force\": true") from None
    return Answer(200, Cursor(offset=offset))


async def get_by_key(x: Exchange) -> Answer:
    """GET /v1/resources/{rid}/records/{key}: the latest record for a key, projected.

    For a personal resource the pipeline has applied the consent rule (``x.decision``)
    before any record was read; here the record must be the named citizen's, and another
    citizen's record answers as a missing one."""
    entry, key, b = x.entry, x.second, x.backends
    assert entry is not None and key is not None
    d = x.decision
    spec = entry.spec
    if d is not None and d.user is not None and (spec.citizen is None or spec.citizen == spec.key) \
            and d.user != key:
        raise Problem("client.access_denied", "X-Exchange-UserId does not name the citizen of this record")
    rec = await b.store.latest(entry.id, key)
    if rec is not None and d is not None and d.user is not None and spec.citizen not in (None, spec.key) \
            and b.releaser.citizen_of(entry, rec.key, msgspec.json.decode(rec.data)) != \
            b.releaser.citizen_of_user(d.user):
        rec = None  # another citizen's record: answered as if there were none
    if rec is None:
        raise Problem("client.not_found", f"no record with this key in {entry.id}")
    x.facts.count = 1
    return Answer(200, _release(x, [rec])[0])
