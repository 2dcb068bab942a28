"""Property test of the store contract: random sequences of appends (with and without
Idempotency-Keys) and cursor commits, checked against a plain in-memory model.
Runs on every backend in ``conftest.BACKENDS``."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.stores.base import AppendResult, CursorConflict, IdempotencyConflict, Store

RESOURCES = ["r.one", "r.two"]
CLIENTS = ["SH/GOV/a/x", "SH/GOV/b/y"]

records_st = st.lists(
    st.tuples(st.sampled_from(["k1", "k2", "k3", "身份"]), st.binary(max_size=20)),
    min_size=1,
    max_size=5,
)
append_st = st.tuples(
    st.just("append"),
    st.sampled_from(RESOURCES),
    st.sampled_from(CLIENTS),
    records_st,
    st.one_of(st.none(), st.sampled_from(["i1", "i2"])),
)
cursor_st = st.tuples(
    st.just("cursor"),
    st.sampled_from(RESOURCES),
    st.sampled_from(CLIENTS),
    st.integers(min_value=0, max_value=5000),
    st.booleans(),
)
ops_st = st.lists(st.one_of(append_st, cursor_st), min_size=1, max_size=25)


def body_hash(records: list[tuple[str, bytes]]) -> str:
    h = hashlib.sha256()
    for key, data in records:
        h.update(key.encode() + b"\0" + data + b"\0")
    return h.hexdigest()


@dataclass
class Model:
    logs: dict[str, list[tuple[str, bytes]]] = field(default_factory=dict)
    idem: dict[tuple[str, str, str], tuple[str, AppendResult]] = field(default_factory=dict)
    cursors: dict[tuple[str, str], int] = field(default_factory=dict)


async def run_ops(store: Store, ops: list[tuple], concurrent: bool) -> None:
    model = Model()
    if concurrent:
        # All at once: each (client, resource, key) is used once, so the outcome is known.
        seen: set[tuple] = set()
        unique = []
        for op in ops:
            if op[0] != "append":
                continue
            if op[4] is not None:
                if (op[1], op[2], op[4]) in seen:
                    continue
                seen.add((op[1], op[2], op[4]))
            unique.append(op)
        ops = unique
        results = await asyncio.gather(
            *[
                store.append(r, recs, client=c, idempotency_key=k, body_hash=body_hash(recs))
                for _, r, c, recs, k in ops
            ]
        )
        for (_, _r, _c, recs, _k), result in zip(ops, results, strict=True):
            assert not result.replayed and result.count == len(recs)
        for r in RESOURCES:
            got = await store.read(r, 0, 1000)
            expected = sorted(
                (res.first + i, key, data)
                for (_, rr, _c, recs, _k), res in zip(ops, results, strict=True)
                if rr == r
                for i, (key, data) in enumerate(recs)
            )
            assert [(x.key, x.data) for x in got] == [(k, d) for _, k, d in expected]
        return

    last_first: dict[str, int] = {}
    for op in ops:
        if op[0] == "append":
            _, r, c, recs, k = op
            h = body_hash(recs)
            prior = model.idem.get((c, r, k)) if k is not None else None
            if prior is not None and prior[0] != h:
                with pytest.raises(IdempotencyConflict):
                    await store.append(r, recs, client=c, idempotency_key=k, body_hash=h)
                continue
            result = await store.append(r, recs, client=c, idempotency_key=k, body_hash=h)
            if prior is not None:
                assert result.replayed
                assert (result.first, result.last) == (prior[1].first, prior[1].last)
                continue
            assert not result.replayed and result.count == len(recs)
            assert result.first > last_first.get(r, 0)
            last_first[r] = result.first
            model.logs.setdefault(r, []).extend(recs)
            if k is not None:
                model.idem[(c, r, k)] = (h, result)
        else:
            _, r, c, offset, force = op
            current = model.cursors.get((c, r), 0)
            if offset < current and not force:
                with pytest.raises(CursorConflict):
                    await store.set_cursor(c, r, offset, force)
            else:
                assert await store.set_cursor(c, r, offset, force) == offset
                model.cursors[(c, r)] = offset

    for r in RESOURCES:
        got = await store.read(r, 0, 1000)
        assert [(x.key, x.data) for x in got] == model.logs.get(r, [])
        offsets = [x.offset for x in got]
        assert offsets == sorted(set(offsets))
        newest: dict[str, bytes] = {}
        for key, data in model.logs.get(r, []):
            newest[key] = data
        for key in ["k1", "k2", "k3", "身份"]:
            latest = await store.latest(r, key)
            assert (latest.data if latest else None) == newest.get(key)
        for c in CLIENTS:
            assert await store.get_cursor(c, r) == model.cursors.get((c, r), 0)


@pytest.mark.parametrize("concurrent", [False, True], ids=["sequential", "concurrent"])
@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=ops_st)
def test_store_matches_the_model(
    fresh_store_factory: Callable[[], Any], concurrent: bool, ops: list[tuple]
) -> None:
    factory = fresh_store_factory()  # a new namespace for every example

    async def scenario() -> None:
        async with factory() as store:
            await run_ops(store, ops, concurrent)

    asyncio.run(scenario())
