"""The SQLite store's latest-record cache: keyed reads from memory, never a stale record."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

import pytest

from gateway.stores.latest_cache import LatestCache
from gateway.stores.sqlite import SQLiteStore


def test_a_read_that_saw_the_store_before_a_commit_fills_nothing() -> None:
    cache = LatestCache(8)
    before = cache.generation("r")
    cache.committed("r")  # a commit landed while the read was in flight
    cache.fill("r", "k", "old", before)
    assert cache.get("r", "k") == (False, None)
    now = cache.generation("r")
    cache.fill("r", "k", "new", now)
    assert cache.get("r", "k") == (True, "new")
    cache.fill("r", "none", None, now)
    assert cache.get("r", "none") == (True, None)  # "no record" is remembered too
    other = cache.generation("s")
    cache.clear()  # another process wrote: every read in flight is void
    cache.fill("s", "k", "x", other)
    assert cache.get("s", "k") == (False, None) and len(cache) == 0


def test_the_cache_is_bounded() -> None:
    cache = LatestCache(3)
    for i in range(10):
        cache.fill("r", str(i), i, cache.generation("r"))
    assert len(cache) == 3 and cache.get("r", "9") == (True, 9) and cache.get("r", "0") == (False, None)
    with pytest.raises(ValueError):
        LatestCache(-1)


def rec(key: str, v: int) -> tuple[str, bytes]:
    return key, b'{"v":%d}' % v


async def test_every_acknowledged_push_is_what_the_next_keyed_read_sees(tmp_path: Path) -> None:
    async with SQLiteStore(tmp_path / "x.db", synchronous="NORMAL") as store:
        await asyncio.sleep(0.15)  # the first "alone" check
        assert store.cache_stats()["enabled"] == 1
        keys = [f"k{i}" for i in range(20)]
        version = dict.fromkeys(keys, 0)
        rng = random.Random(7)
        stop = False

        async def reader() -> None:
            while not stop:  # keep reads in flight across commits
                await store.latest("r", rng.choice(keys))
                await asyncio.sleep(0)  # a hit returns without suspending: let the pushes run

        readers = [asyncio.create_task(reader()) for _ in range(8)]
        try:
            for n in range(1, 300):
                key = rng.choice(keys)
                await store.append("r", [rec(key, n)], client="c")
                version[key] = n
                got = await store.latest("r", key)
                assert got is not None and got.data == b'{"v":%d}' % n, (key, n, got)
                other = rng.choice(keys)
                got = await store.latest("r", other)
                assert (got is None and version[other] == 0) or got.data == b'{"v":%d}' % version[other]
        finally:
            stop = True
            await asyncio.gather(*readers)
        stats = store.cache_stats()
        assert stats["hits"] > 0 and stats["misses"] > 0


async def test_a_second_process_on_the_file_turns_the_cache_off(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    async with SQLiteStore(path, synchronous="NORMAL") as a:
        await a.append("r", [rec("k", 1)], client="c")
        await asyncio.sleep(0.15)
        assert a.cache_stats()["enabled"] == 1
        assert (await a.latest("r", "k")).data == b'{"v":1}'
        assert (await a.latest("r", "k")).data == b'{"v":1}'  # from memory now
        async with SQLiteStore(path, synchronous="NORMAL") as b:  # another writer on the file
            await asyncio.sleep(0.25)
            assert a.cache_stats()["enabled"] == 0
            await b.append("r", [rec("k", 2)], client="c")
            assert (await a.latest("r", "k")).data == b'{"v":2}'
        await asyncio.sleep(0.25)
        assert a.cache_stats()["enabled"] == 1  # alone again


async def test_the_cache_can_be_switched_off(tmp_path: Path) -> None:
    async with SQLiteStore(tmp_path / "x.db", synchronous="NORMAL", latest_cache=0) as store:
        await store.append("r", [rec("k", 1)], client="c")
        await asyncio.sleep(0.15)
        assert store.cache_stats()["enabled"] == 0
        assert (await store.latest("r", "k")).data == b'{"v":1}'
        assert store.cache_stats()["hits"] == 0


async def test_retention_takes_removed_keys_out_of_the_cache(tmp_path: Path) -> None:
    from gateway.stores.retention import RetentionPolicy

    async with SQLiteStore(tmp_path / "x.db", synchronous="NORMAL") as store:
        for i in range(5):
            await store.append("r", [rec(f"k{i}", i)], client="c")
        await asyncio.sleep(0.15)
        assert (await store.latest("r", "k0")).data == b'{"v":0}'
        assert (await store.latest("r", "k0")).data == b'{"v":0}'  # cached
        res = await store.apply_retention("r", RetentionPolicy(max_records=2), int(time.time() * 1000))
        assert res.keys_dropped >= 1
        assert await store.latest("r", "k0") is None  # gone from the store, so from the cache
        assert (await store.latest("r", "k4")).data == b'{"v":4}'
