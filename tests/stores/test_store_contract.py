"""The store contract: what handlers may rely on, whatever the backend.

Runs once per backend registered in ``conftest.BACKENDS``. Offsets are only assumed to
be strictly increasing per resource (not contiguous), as DESIGN.md says.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from gateway.stores.base import (
    AppendResult,
    CursorConflict,
    IdempotencyConflict,
    Record,
    Store,
    StoreUnavailable,
)

RES = "psb.id-card"
OTHER = "mps.driver-licence"
CLIENT = "SH/GOV/psb/hukou"


def rec(key: str, **data: object) -> tuple[str, bytes]:
    return key, json.dumps({"id": key, **data}, ensure_ascii=False).encode()


async def read_all(store: Store, resource: str, after: int = 0) -> list[Record]:
    out: list[Record] = []
    while True:
        page = await store.read(resource, after, 1000)
        if not page:
            return out
        out.extend(page)
        after = page[-1].offset


def assert_increasing(offsets: list[int]) -> None:
    assert all(a < b for a, b in zip(offsets, offsets[1:], strict=False)), offsets


async def test_is_a_store(store: Store) -> None:
    assert isinstance(store, Store)
    assert await store.ping() is True


async def test_append_then_read_in_order(store: Store) -> None:
    batches = [[rec(f"k{b}-{i}", n=i) for i in range(b + 1)] for b in range(4)]
    results = [await store.append(RES, batch, client=CLIENT) for batch in batches]
    for result, batch in zip(results, batches, strict=True):
        assert isinstance(result, AppendResult)
        assert result.count == len(batch)
        assert result.replayed is False
        assert result.first <= result.last
    assert_increasing([r.first for r in results])
    assert all(a.last < b.first for a, b in zip(results, results[1:], strict=False))
    assert results[0].first > 0  # offset 0 means "nothing yet" for cursors and after

    got = await read_all(store, RES)
    assert [(r.key, r.data) for r in got] == [pair for batch in batches for pair in batch]
    assert_increasing([r.offset for r in got])
    # Each batch's records lie within its [first, last].
    pos = 0
    for result, batch in zip(results, batches, strict=True):
        chunk = got[pos : pos + len(batch)]
        assert chunk[0].offset == result.first
        assert chunk[-1].offset == result.last
        pos += len(batch)
    now_ms = time.time() * 1000
    assert all(abs(r.ts_ms - now_ms) < 600_000 for r in got)


async def test_read_after_and_limit(store: Store) -> None:
    await store.append(RES, [rec(f"a{i}") for i in range(5)], client=CLIENT)
    await store.append(RES, [rec(f"b{i}") for i in range(5)], client=CLIENT)
    everything = await store.read(RES, 0, 1000)
    assert len(everything) == 10

    paged: list[Record] = []
    after = 0
    for _ in range(20):
        page = await store.read(RES, after, 3)
        assert len(page) <= 3
        if not page:
            break
        paged.extend(page)
        after = page[-1].offset
    assert paged == everything

    third = everything[2].offset
    assert [r.offset for r in await store.read(RES, third, 4)] == [
        r.offset for r in everything[3:7]
    ]
    # `after` between two offsets (offsets need not be contiguous).
    assert (await store.read(RES, third - 1, 1))[0].offset == third
    assert await store.read(RES, everything[-1].offset, 100) == []
    assert await store.read(RES, everything[-1].offset + 10_000, 100) == []
    assert len(await store.read(RES, 0, 1)) == 1


async def test_resources_are_separate_logs(store: Store) -> None:
    await store.append(RES, [rec("x")], client=CLIENT)
    await store.append(OTHER, [rec("y")], client=CLIENT)
    await store.append(RES, [rec("z")], client=CLIENT)
    assert [r.key for r in await read_all(store, RES)] == ["x", "z"]
    assert [r.key for r in await read_all(store, OTHER)] == ["y"]


async def test_latest_by_key(store: Store) -> None:
    assert await store.latest(RES, "310101") is None
    first = await store.append(RES, [rec("310101", v=1), rec("310102", v=1)], client=CLIENT)
    got = await store.latest(RES, "310101")
    assert got is not None
    assert got.key == "310101"
    assert json.loads(got.data)["v"] == 1
    assert got.offset == first.first

    second = await store.append(RES, [rec("310101", v=2)], client=CLIENT)
    got = await store.latest(RES, "310101")
    assert got is not None
    assert json.loads(got.data)["v"] == 2
    assert got.offset == second.first
    other = await store.latest(RES, "310102")
    assert other is not None and json.loads(other.data)["v"] == 1

    # Within one batch the later record wins.
    third = await store.append(RES, [rec("k", v="a"), rec("k", v="b")], client=CLIENT)
    got = await store.latest(RES, "k")
    assert got is not None
    assert json.loads(got.data)["v"] == "b"
    assert got.offset == third.last
    assert await store.latest(OTHER, "310101") is None


async def test_cursor_commit_and_conflict(store: Store) -> None:
    assert await store.get_cursor(CLIENT, RES) == 0
    assert await store.set_cursor(CLIENT, RES, 5000) == 5000
    assert await store.get_cursor(CLIENT, RES) == 5000
    assert await store.set_cursor(CLIENT, RES, 5000) == 5000  # same place is fine
    with pytest.raises(CursorConflict) as info:
        await store.set_cursor(CLIENT, RES, 4000)
    assert (info.value.current, info.value.requested) == (5000, 4000)
    assert await store.get_cursor(CLIENT, RES) == 5000
    assert await store.set_cursor(CLIENT, RES, 4000, force=True) == 4000
    assert await store.get_cursor(CLIENT, RES) == 4000
    assert await store.set_cursor(CLIENT, RES, 9000) == 9000


async def test_cursors_are_per_client_and_resource(store: Store) -> None:
    await store.set_cursor("SH/GOV/a/x", RES, 10)
    await store.set_cursor("SH/GOV/b/y", RES, 20)
    await store.set_cursor("SH/GOV/a/x", OTHER, 30)
    assert await store.get_cursor("SH/GOV/a/x", RES) == 10
    assert await store.get_cursor("SH/GOV/b/y", RES) == 20
    assert await store.get_cursor("SH/GOV/a/x", OTHER) == 30
    assert await store.get_cursor("SH/GOV/b/y", OTHER) == 0
    await store.set_cursor("SH/GOV/b/y", RES, 5, force=True)
    assert await store.get_cursor("SH/GOV/a/x", RES) == 10


async def test_idempotent_replay_appends_nothing(store: Store) -> None:
    batch = [rec("a"), rec("b")]
    first = await store.append(RES, batch, client=CLIENT, idempotency_key="k-1", body_hash="h1")
    again = await store.append(RES, batch, client=CLIENT, idempotency_key="k-1", body_hash="h1")
    assert again.replayed is True
    assert (again.first, again.last, again.count) == (first.first, first.last, first.count)
    assert len(await read_all(store, RES)) == 2


async def test_idempotency_conflict_on_other_body(store: Store) -> None:
    await store.append(RES, [rec("a")], client=CLIENT, idempotency_key="k-1", body_hash="h1")
    with pytest.raises(IdempotencyConflict):
        await store.append(RES, [rec("b")], client=CLIENT, idempotency_key="k-1", body_hash="h2")
    assert [r.key for r in await read_all(store, RES)] == ["a"]
    # Without a key nothing is deduplicated.
    await store.append(RES, [rec("a")], client=CLIENT, body_hash="h1")
    await store.append(RES, [rec("a")], client=CLIENT, body_hash="h1")
    assert len(await read_all(store, RES)) == 3


async def test_idempotency_is_scoped_to_client_and_resource(store: Store) -> None:
    a = await store.append(RES, [rec("a")], client="SH/GOV/a/x", idempotency_key="k", body_hash="h")
    b = await store.append(RES, [rec("a")], client="SH/GOV/b/y", idempotency_key="k", body_hash="h")
    c = await store.append(
        OTHER, [rec("a")], client="SH/GOV/a/x", idempotency_key="k", body_hash="h"
    )
    assert not (a.replayed or b.replayed or c.replayed)
    assert a.first != b.first
    assert len(await read_all(store, RES)) == 2
    assert len(await read_all(store, OTHER)) == 1
    # Another body under the same key for another client is not a conflict.
    d = await store.append(RES, [rec("z")], client="SH/GOV/c/z", idempotency_key="k", body_hash="x")
    assert not d.replayed


async def test_concurrent_same_key_never_duplicates(store: Store) -> None:
    body = [rec("only-once")]
    results = await asyncio.gather(
        *[
            store.append(RES, body, client=CLIENT, idempotency_key="same", body_hash="h")
            for _ in range(20)
        ]
    )
    originals = [r for r in results if not r.replayed]
    assert len(originals) == 1
    assert {(r.first, r.last) for r in results} == {(originals[0].first, originals[0].last)}
    assert [r.key for r in await read_all(store, RES)] == ["only-once"]


async def test_concurrent_same_key_other_bodies_conflict(store: Store) -> None:
    outcomes = await asyncio.gather(
        *[
            store.append(RES, [rec(f"v{i}")], client=CLIENT, idempotency_key="k", body_hash=f"h{i}")
            for i in range(10)
        ],
        return_exceptions=True,
    )
    ok = [o for o in outcomes if isinstance(o, AppendResult)]
    conflicts = [o for o in outcomes if isinstance(o, IdempotencyConflict)]
    assert len(ok) == 1 and len(conflicts) == 9
    assert len(await read_all(store, RES)) == 1


async def test_hundreds_of_concurrent_appends(store: Store) -> None:
    async def push(task: int) -> list[AppendResult]:
        out = []
        for seq in range(3):
            batch = [rec(f"t{task}-s{seq}-{i}") for i in range(1 + (task + seq) % 4)]
            out.append(await store.append(RES if task % 3 else OTHER, batch, client=CLIENT))
        return out

    per_task = await asyncio.gather(*[push(t) for t in range(200)])
    for results in per_task:  # one task's appends are ordered
        assert_increasing([r.first for r in results])
    everything = {RES: await read_all(store, RES), OTHER: await read_all(store, OTHER)}
    total = 0
    for records in everything.values():
        offsets = [r.offset for r in records]
        assert_increasing(offsets)
        assert len(set(offsets)) == len(offsets)
        total += len(records)
    assert total == sum(r.count for results in per_task for r in results)
    keys = {r.key for records in everything.values() for r in records}
    assert len(keys) == total


async def test_wait_wakes_on_append(store: Store) -> None:
    await store.append(RES, [rec("before")], client=CLIENT)
    head = (await read_all(store, RES))[-1].offset
    waiter = asyncio.create_task(store.wait(RES, head, 20))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    await store.append(OTHER, [rec("elsewhere")], client=CLIENT)
    await asyncio.sleep(0.05)
    assert not waiter.done()  # another resource does not satisfy it
    result = await store.append(RES, [rec("after")], client=CLIENT)
    assert await asyncio.wait_for(waiter, 20) is True
    assert [r.offset for r in await store.read(RES, head, 10)] == [result.first]


async def test_wait_on_empty_resource_wakes_on_first_append(store: Store) -> None:
    waiters = [asyncio.create_task(store.wait("new.resource", 0, 20)) for _ in range(5)]
    await asyncio.sleep(0.05)
    await store.append("new.resource", [rec("first")], client=CLIENT)
    assert await asyncio.wait_for(asyncio.gather(*waiters), 20) == [True] * 5


async def test_wait_returns_at_once_when_records_exist(store: Store) -> None:
    result = await store.append(RES, [rec("a")], client=CLIENT)
    assert await store.wait(RES, 0, 0) is True
    assert await store.wait(RES, result.first - 1, 10) is True


async def test_wait_times_out(store: Store) -> None:
    result = await store.append(RES, [rec("a")], client=CLIENT)
    assert await store.wait(RES, result.last, 0.2) is False
    assert await store.wait(RES, result.last, 0) is False
    assert await store.wait("never.written", 0, 0.1) is False


async def test_unknown_resource_reads_empty(store: Store) -> None:
    assert await store.read("no.such", 0, 100) == []
    assert await store.latest("no.such", "k") is None
    assert await store.get_cursor(CLIENT, "no.such") == 0


async def test_large_payloads(store: Store) -> None:
    big = json.dumps({"blob": "x" * (1 << 20)}).encode()
    await store.append(RES, [("big", big)], client=CLIENT)
    many = [rec(f"r{i}", pad="y" * 1000) for i in range(1000)]
    result = await store.append(RES, many, client=CLIENT)
    assert result.count == 1000
    got = await read_all(store, RES)
    assert got[0].data == big
    assert [(r.key, r.data) for r in got[1:]] == many
    latest = await store.latest(RES, "big")
    assert latest is not None and latest.data == big


async def test_unicode_keys_and_data(store: Store) -> None:
    keys = ["身份证-310101199001011234", "Zoë", "ключ", "🚇-line-2", "a b/c?d=e"]
    batch = [rec(k, name="张三", note="ü\u00a0€") for k in keys]
    await store.append(RES, batch, client=CLIENT)
    got = await read_all(store, RES)
    assert [(r.key, r.data) for r in got] == batch
    for key, data in batch:
        latest = await store.latest(RES, key)
        assert latest is not None and latest.data == data
    await store.set_cursor("SH/GOV/民政/婚姻", RES, 7)
    assert await store.get_cursor("SH/GOV/民政/婚姻", RES) == 7


async def test_close_and_reopen_keeps_everything(store_factory) -> None:
    async with store_factory() as store:
        appended = await store.append(
            RES, [rec("a", v=1), rec("b")], client=CLIENT, idempotency_key="k", body_hash="h"
        )
        await store.set_cursor(CLIENT, RES, appended.last)
    async with store_factory() as store:
        got = await read_all(store, RES)
        assert [r.key for r in got] == ["a", "b"]
        assert got[0].offset == appended.first
        assert await store.get_cursor(CLIENT, RES) == appended.last
        latest = await store.latest(RES, "a")
        assert latest is not None and json.loads(latest.data)["v"] == 1
        again = await store.append(
            RES, [rec("a", v=1), rec("b")], client=CLIENT, idempotency_key="k", body_hash="h"
        )
        assert again.replayed and again.first == appended.first
        later = await store.append(RES, [rec("c")], client=CLIENT)
        assert later.first > appended.last


async def test_calls_after_close_are_unavailable(store_factory) -> None:
    async with store_factory() as store:
        await store.append(RES, [rec("a")], client=CLIENT)
    await store.close()  # idempotent
    with pytest.raises(StoreUnavailable):
        await store.append(RES, [rec("b")], client=CLIENT)
    with pytest.raises(StoreUnavailable):
        await store.read(RES, 0, 10)
    with pytest.raises(StoreUnavailable):
        await store.latest(RES, "a")
    with pytest.raises(StoreUnavailable):
        await store.get_cursor(CLIENT, RES)
    with pytest.raises(StoreUnavailable):
        await store.set_cursor(CLIENT, RES, 1)
    with pytest.raises(StoreUnavailable):
        await store.wait(RES, 0, 0.1)
    assert await store.ping() is False


async def test_close_flushes_pending_appends(store_factory) -> None:
    async with store_factory() as store:
        pending = [
            asyncio.create_task(store.append(RES, [rec(f"p{i}")], client=CLIENT)) for i in range(50)
        ]
        await asyncio.sleep(0)  # the appends are queued, not yet answered
    results = await asyncio.gather(*pending, return_exceptions=True)
    acknowledged = [r for r in results if isinstance(r, AppendResult)]
    async with store_factory() as store:
        offsets = {r.offset for r in await read_all(store, RES)}
    assert {r.first for r in acknowledged} <= offsets
    assert len(acknowledged) == 50


async def test_open_is_idempotent(store: Store) -> None:
    await store.open()
    await store.append(RES, [rec("a")], client=CLIENT)
    assert len(await read_all(store, RES)) == 1
