"""SQLite-backend specifics: options, bad files, corruption, group commit, key expiry,
several stores on one file in one process, and the cross-process notify directory."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from pathlib import Path

import pytest

from gateway.stores.base import (
    OFFSET_STRIDE,
    IdempotencyConflict,
    StoreError,
    StoreUnavailable,
)
from gateway.stores.sqlite import MAX_BATCH_RECORDS, SQLiteStore

CLIENT = "SH/GOV/psb/hukou"


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"synchronous": "OFF"}, "synchronous"),
        ({"synchronous": 3}, "synchronous"),
        ({"idempotency_ttl_s": 0}, "idempotency_ttl_s"),
        ({"idempotency_ttl_s": "1d"}, "idempotency_ttl_s"),
        ({"busy_timeout_s": -1}, "busy_timeout_s"),
        ({"readers": 0}, "readers"),
        ({"purge_interval_s": True}, "purge_interval_s"),
    ],
)
def test_bad_options_name_the_option(tmp_path: Path, options: dict, named: str) -> None:
    with pytest.raises(ValueError, match=named):
        SQLiteStore(tmp_path / "x.db", **options)


def test_memory_database_is_refused() -> None:
    with pytest.raises(ValueError, match="file"):
        SQLiteStore(":memory:")


async def test_synchronous_normal_is_accepted(tmp_path: Path) -> None:
    async with SQLiteStore(tmp_path / "n.db", synchronous="normal") as store:
        assert store.synchronous == "NORMAL"
        await store.append("r", [("k", b"{}")], client=CLIENT)
        assert len(await store.read("r", 0, 10)) == 1


async def test_parent_directories_are_created(tmp_path: Path) -> None:
    async with SQLiteStore(tmp_path / "a" / "b" / "x.db") as store:
        assert await store.ping()


async def test_unusable_path_is_unavailable_with_the_path(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    store = SQLiteStore(blocker / "x.db")
    with pytest.raises(StoreUnavailable, match="file"):
        await store.open()


async def test_not_a_database_is_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "garbage.db"
    path.write_bytes(os.urandom(8192))
    store = SQLiteStore(path)
    with pytest.raises(StoreUnavailable, match="garbage.db"):
        await store.open()


async def test_other_schema_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "v.db"
    async with SQLiteStore(path):
        pass
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE meta SET v = 99 WHERE k = 'schema_version'")
    with pytest.raises(StoreError, match="schema version"):
        await SQLiteStore(path).open()


async def test_calls_before_open_are_unavailable(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "x.db")
    with pytest.raises(StoreUnavailable, match="not open"):
        await store.read("r", 0, 1)
    assert await store.ping() is False


async def test_bad_batches_are_refused_without_writing(tmp_path: Path) -> None:
    async with SQLiteStore(tmp_path / "x.db") as store:
        with pytest.raises(ValueError, match="1 to"):
            await store.append("r", [], client=CLIENT)
        with pytest.raises(ValueError, match="1 to"):
            await store.append("r", [("k", b"{}")] * (MAX_BATCH_RECORDS + 1), client=CLIENT)
        with pytest.raises(TypeError, match="record #1"):
            await store.append("r", [("k", b"{}"), (1, b"{}")], client=CLIENT)  # type: ignore[list-item]
        with pytest.raises(ValueError, match="cursor"):
            await store.set_cursor(CLIENT, "r", -1)
        assert await store.read("r", 0, 10) == []


async def test_offsets_follow_the_batch_stride(tmp_path: Path) -> None:
    async with SQLiteStore(tmp_path / "x.db") as store:
        a = await store.append("r", [("k", b"1")] * 3, client=CLIENT)
        b = await store.append("s", [("k", b"2")], client=CLIENT)
        assert a.first % OFFSET_STRIDE == 0 and a.last == a.first + 2
        assert b.first == a.first + OFFSET_STRIDE  # one global sequence of batches


async def test_corrupt_batch_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    async with SQLiteStore(path) as store:
        await store.append("r", [("k", b'{"a":1}')], client=CLIENT)
    with sqlite3.connect(path) as conn:
        blob = bytearray(conn.execute("SELECT blob FROM batches").fetchone()[0])
        blob[-1] ^= 0xFF
        conn.execute("UPDATE batches SET blob = ?", (bytes(blob),))
    async with SQLiteStore(path) as store:
        with pytest.raises(StoreError, match="corrupt") as info:
            await store.read("r", 0, 10)
        assert "'r'" in str(info.value)
        assert not isinstance(info.value, StoreUnavailable)
        with pytest.raises(StoreError, match="corrupt"):
            await store.latest("r", "k")
        # The store keeps working for everything else.
        await store.append("r", [("k2", b"{}")], client=CLIENT)
        latest = await store.latest("r", "k2")
        assert latest is not None and latest.data == b"{}"


async def test_concurrent_appends_are_group_committed(tmp_path: Path) -> None:
    commits: list[tuple[float, int, int]] = []
    async with SQLiteStore(tmp_path / "g.db", on_commit=lambda *a: commits.append(a)) as store:
        await asyncio.gather(
            *[store.append("r", [(f"k{i}", b"{}")] * 10, client=CLIENT) for i in range(300)]
        )
        stats = store.stats()
    assert stats["records"] == 3000
    assert stats["ops"] == 300
    assert stats["largest_group"] > 1
    assert stats["commits"] < 300
    assert sum(c[2] for c in commits) == 3000


async def test_group_with_a_failing_op_commits_the_others(tmp_path: Path) -> None:
    async with SQLiteStore(tmp_path / "x.db") as store:
        await store.append("r", [("a", b"1")], client=CLIENT, idempotency_key="k", body_hash="h")
        outcomes = await asyncio.gather(
            store.append("r", [("b", b"2")], client=CLIENT),
            store.append("r", [("c", b"3")], client=CLIENT, idempotency_key="k", body_hash="x"),
            store.set_cursor(CLIENT, "r", 10),
            store.append("r", [("d", b"4")], client=CLIENT),
            return_exceptions=True,
        )
        assert isinstance(outcomes[1], IdempotencyConflict)
        assert outcomes[2] == 10
        assert [r.key for r in await store.read("r", 0, 10)] == ["a", "b", "d"]


async def test_idempotency_keys_expire(tmp_path: Path) -> None:
    async with SQLiteStore(
        tmp_path / "x.db", idempotency_ttl_s=0.2, purge_interval_s=0.05
    ) as store:
        first = await store.append(
            "r", [("a", b"1")], client=CLIENT, idempotency_key="k", body_hash="h"
        )
        with pytest.raises(IdempotencyConflict):
            await store.append(
                "r", [("a", b"2")], client=CLIENT, idempotency_key="k", body_hash="x"
            )
        await asyncio.sleep(0.3)
        later = await store.append(
            "r", [("a", b"2")], client=CLIENT, idempotency_key="k", body_hash="x"
        )
        assert not later.replayed and later.first > first.last
        await asyncio.sleep(0.3)
        await store.append("r", [("z", b"0")], client=CLIENT)  # a group that purges
        assert store.stats()["purged_keys"] >= 1


async def test_two_stores_on_one_file(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    async with SQLiteStore(path) as a, SQLiteStore(path) as b:
        waiter = asyncio.create_task(a.wait("r", 0, 30))
        await asyncio.sleep(0.05)
        results = await asyncio.gather(
            *[
                (a if i % 2 else b).append("r", [(f"k{i}", b"{}")], client=CLIENT)
                for i in range(100)
            ]
        )
        assert await asyncio.wait_for(waiter, 30) is True
        firsts = [r.first for r in results]
        assert len(set(firsts)) == 100
        for store in (a, b):
            got = await store.read("r", 0, 1000)
            assert sorted(firsts) == [r.offset for r in got]
        # A cursor committed through one is seen by the other.
        await a.set_cursor(CLIENT, "r", firsts[0])
        assert await b.get_cursor(CLIENT, "r") == firsts[0]


async def test_notify_directory_markers_come_and_go(tmp_path: Path) -> None:
    path = tmp_path / "n.db"
    notify_dir = Path(str(path.resolve()) + ".notify")
    async with SQLiteStore(path) as store:
        markers = os.listdir(notify_dir)
        assert len(markers) == 1
        # A marker left by a process killed with -9: nobody is bound to it.
        (notify_dir / "999999-deadbeef0000").touch()
        async with SQLiteStore(path) as other:
            await other.append("r", [("k", b"{}")], client=CLIENT)
            assert await store.wait("r", 0, 10)
        assert sorted(os.listdir(notify_dir)) == markers  # stale one dropped, other's removed
    assert os.listdir(notify_dir) == []


async def test_wait_is_released_by_close(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "x.db")
    await store.open()
    waiter = asyncio.create_task(store.wait("r", 0, 30))
    await asyncio.sleep(0.05)
    await store.close()
    assert await asyncio.wait_for(waiter, 5) is False


async def test_reopen_after_close_is_refused(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "x.db")
    await store.open()
    await store.close()
    with pytest.raises(StoreUnavailable, match="closed"):
        await store.open()


async def test_wait_does_not_poll_the_database(tmp_path: Path) -> None:
    async with SQLiteStore(tmp_path / "x.db") as store:
        before = store.stats()["head_checks"]
        assert await store.wait("r", 0, 0.5) is False
        assert store.stats()["head_checks"] - before == 1  # one check, then it sleeps
        waiter = asyncio.create_task(store.wait("r", 0, 30))
        await asyncio.sleep(0.05)
        await store.append("r", [("k", b"{}")], client=CLIENT)
        assert await waiter is True
        assert store.stats()["head_checks"] - before == 2  # woken by the commit itself


@pytest.mark.skipif(os.name != "posix", reason="flock")
async def test_a_frozen_writer_elsewhere_fails_readiness_then_appends_resume(
    tmp_path: Path,
) -> None:
    import fcntl

    path = tmp_path / "x.db"
    async with SQLiteStore(path) as store:
        await store.append("r", [("a", b"1")], client=CLIENT)
        fd = os.open(str(path) + ".writer-lock", os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # as a process frozen mid-commit would
            pending = asyncio.create_task(store.append("r", [("b", b"2")], client=CLIENT))
            assert await store.ping(timeout=0.3) is False
            assert not pending.done()
        finally:
            os.close(fd)
        result = await asyncio.wait_for(pending, 30)
        assert await store.ping() is True
        assert [(r.key, r.offset) for r in await store.read("r", 0, 10)][1] == ("b", result.first)
