"""Retention and compaction on both stores: what goes, what stays, offsets, keyed reads,
earliest offsets, and (SQLite) the space given back to the file system."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from gateway.stores.base import Store
from gateway.stores.retention import RetentionPolicy, parse_duration
from gateway.stores.sqlite import SQLiteStore

RES = "psb.id-card"
OTHER = "mps.driver-licence"
CLIENT = "SH/GOV/psb/hukou"
DAY_MS = 86_400_000


def rec(key: str, n: int = 0) -> tuple[str, bytes]:
    return key, json.dumps({"id": key, "n": n}).encode()


async def read_all(store: Store, resource: str, after: int = 0) -> list:
    out: list = []
    while True:
        page = await store.read(resource, after, 1000)
        if not page:
            return out
        out.extend(page)
        after = page[-1].offset


async def push_batches(store: Store, resource: str, batches: int, size: int, prefix: str = "k") -> list:
    results = []
    for b in range(batches):
        results.append(await store.append(
            resource, [rec(f"{prefix}{b * size + i}", b) for i in range(size)], client=CLIENT))
    return results


def test_parse_duration() -> None:
    assert parse_duration("400d") == 400 * 86400
    assert parse_duration("12h") == 43200 and parse_duration("30m") == 1800
    assert parse_duration("90s") == 90
    for bad in ("", "0d", "1w", "1.5d", "-1d", "d", " 1d", "1d ", "10000000000d", 5):
        try:
            parse_duration(bad)  # type: ignore[arg-type]
        except ValueError as exc:
            assert "unit" in str(exc)
        else:
            raise AssertionError(f"{bad!r} was accepted")


async def test_max_records_drops_oldest_batches_whole(store: Store) -> None:
    pushed = await push_batches(store, RES, 10, 10)
    other = await store.append(OTHER, [rec("x")], client=CLIENT)
    now = int(time.time() * 1000)
    res = await store.apply_retention(RES, RetentionPolicy(max_records=35), now)  # type: ignore[attr-defined]
    # A batch goes when the newer ones alone hold 35 records: batches 0..5 go, 6..9 (40) stay.
    assert res.batches_dropped == 6 and res.records_dropped == 60
    assert res.earliest == pushed[5].last + 1
    assert await store.earliest(RES) == pushed[5].last + 1  # type: ignore[attr-defined]
    left = await read_all(store, RES)
    assert [r.key for r in left] == [f"k{i}" for i in range(60, 100)]
    assert all(r.offset >= res.earliest for r in left)
    assert [r.key for r in await store.read(RES, pushed[6].first, 5)] == [f"k{i}" for i in range(61, 66)]
    # Not compacting: keyed reads of removed records answer none; kept ones still answer.
    assert await store.latest(RES, "k0") is None
    assert (await store.latest(RES, "k99")).offset == pushed[9].last  # type: ignore[union-attr]
    # Other resources are untouched; offsets keep increasing.
    assert [r.key for r in await read_all(store, OTHER)] == ["x"]
    assert await store.earliest(OTHER) == 0  # type: ignore[attr-defined]
    after = await store.append(RES, [rec("new")], client=CLIENT)
    assert after.first > pushed[9].last and after.first > other.last
    # A second pass finds nothing more to do.
    again = await store.apply_retention(RES, RetentionPolicy(max_records=35), now)  # type: ignore[attr-defined]
    assert again.batches_dropped == 0 and again.earliest == res.earliest


async def test_age_drops_what_is_older_than_the_retention(store: Store) -> None:
    pushed = await push_batches(store, RES, 3, 5)
    now = int(time.time() * 1000)
    policy = RetentionPolicy(max_age_s=parse_duration("1d"))
    kept = await store.apply_retention(RES, policy, now)  # type: ignore[attr-defined]
    assert kept.batches_dropped == 0 and len(await read_all(store, RES)) == 15
    gone = await store.apply_retention(RES, policy, now + 2 * DAY_MS)  # type: ignore[attr-defined]
    assert gone.batches_dropped == 3 and gone.records_dropped == 15
    assert gone.earliest == pushed[-1].last + 1
    assert await read_all(store, RES) == []
    assert await store.latest(RES, "k0") is None
    fresh = await store.append(RES, [rec("k0", 9)], client=CLIENT)
    assert fresh.first >= gone.earliest
    assert [r.key for r in await read_all(store, RES)] == ["k0"]
    assert (await store.latest(RES, "k0")).offset == fresh.first  # type: ignore[union-attr]


async def test_compaction_keeps_every_keys_latest_for_keyed_reads(store: Store) -> None:
    # Keys a0..a9 are written in every batch; u<n> once each.
    results = []
    for b in range(6):
        results.append(await store.append(
            RES, [rec(f"a{i}", b) for i in range(10)] + [rec(f"u{b}", b)], client=CLIENT))
    now = int(time.time() * 1000)
    policy = RetentionPolicy(max_records=11, compact=True)
    res = await store.apply_retention(RES, policy, now)  # type: ignore[attr-defined]
    assert res.earliest == results[4].last + 1
    assert res.keys_dropped == 0
    # Pulls start at the earliest offset: only the last batch.
    assert [r.key for r in await read_all(store, RES)] == [f"a{i}" for i in range(10)] + ["u5"]
    # Every key keeps its latest record: the a-keys from the last batch, u0..u4 compacted.
    for b in range(5):
        got = await store.latest(RES, f"u{b}")
        assert got is not None and got.offset == results[b].last
        assert json.loads(got.data) == {"id": f"u{b}", "n": b}
    a0 = await store.latest(RES, "a0")
    assert a0 is not None and a0.offset == results[5].first
    # A compacted key written again, then compacted again: the newer record wins.
    newer = await store.append(RES, [rec("u0", 99)], client=CLIENT)
    for _ in range(2):
        await store.append(RES, [rec(f"z{i}") for i in range(11)], client=CLIENT)
    await store.apply_retention(RES, policy, now)  # type: ignore[attr-defined]
    got = await store.latest(RES, "u0")
    assert got is not None and got.offset == newer.first and json.loads(got.data)["n"] == 99


async def test_sqlite_gives_space_back(tmp_path: Path) -> None:
    path = tmp_path / "big.db"
    pad = "x" * 400
    async with SQLiteStore(path) as store:
        for b in range(60):
            await store.append(RES, [(f"k{b}-{i}", json.dumps({"id": f"k{b}-{i}", "p": pad}).encode())
                                     for i in range(100)], client=CLIENT)
    before = os.path.getsize(path)  # closed: the WAL is checkpointed into the file
    async with SQLiteStore(path) as store:
        res = await store.apply_retention(RES, RetentionPolicy(max_records=1000),
                                          int(time.time() * 1000), budget=7)
        assert res.batches_dropped == 50 and res.keys_dropped == 5000
        assert len(await read_all(store, RES)) == 1000
    after = os.path.getsize(path)
    assert after < before * 0.4, (before, after)


async def test_retention_job_applies_the_current_catalog(tmp_path: Path) -> None:
    from gateway.catalog import catalog_from_obj
    from gateway.stores.retention import RetentionJob

    def catalog(max_records: int | None):
        res = {"id": RES, "owner": CLIENT, "sharing": "open", "key": "id", "fields": {"id": "str", "n": "int"}}
        if max_records is not None:
            res["max_records"] = max_records
        return catalog_from_obj({"instance": "SH", "members": [{"id": "SH/GOV/psb"}],
                                 "subsystems": [{"id": CLIENT}], "resources": [res]})

    current = {"cat": catalog(None)}
    async with SQLiteStore(tmp_path / "job.db") as store:
        await push_batches(store, RES, 4, 5)
        job = RetentionJob(store, lambda: current["cat"], interval_s=3600, first_s=3600)
        assert await job.run_once() == []  # no policy yet
        current["cat"] = catalog(5)  # a reload adds one
        (res,) = await job.run_once()
        assert res.resource == RES and res.batches_dropped == 3
        assert len(await read_all(store, RES)) == 5
        job.start()
        await job.stop()
