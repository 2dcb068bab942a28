"""Durable audit: ``AuditLog.record`` returns only once the entry is in the governance
store (group-committed with concurrent ones), refuses with 503 within a bound when the
write fails, and survives kill -9 of the process right after; the node signs checkpoints
at most a second after activity and none while idle."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from svckit import free_port

from gateway.audit import AuditEntry, AuditLog
from gateway.errors import Problem
from gateway.governance.checkpoints import Checkpoint, Checkpointer, CheckpointFile, signature_ok
from gateway.governance.jetstream import JetStreamGovernance
from gateway.governance.sqlite import SQLiteGovernance
from gateway.governance.webhooks import load_node_key

HERE = Path(__file__).resolve().parent


def entry(rid: str, citizens: list[str] | None = None) -> AuditEntry:
    return AuditEntry(ts=time.time(), request_id=rid, client="SH/GOV/hrss/employment", op="read",
                      target="psb.id-card", status=200, count=1, citizens=citizens or [])


def stored_request_ids(db: Path) -> list[str]:
    """Request ids in the governance file, read on a connection of its own."""
    con = sqlite3.connect(db)
    try:
        out = []
        for (blob,) in con.execute("SELECT entries FROM audit_log ORDER BY first_seq"):
            out += [msgspec.json.decode(line)["request_id"] for line in blob.split(b"\n")]
        return out
    finally:
        con.close()


@contextlib.asynccontextmanager
async def audit_log(tmp: Path, **kw: object) -> AsyncIterator[tuple[AuditLog, SQLiteGovernance]]:
    gov = SQLiteGovernance(tmp / "governance.db")
    await gov.open()
    log = AuditLog(gov, b"k" * 32, **kw)  # type: ignore[arg-type]
    log.start()
    try:
        yield log, gov
    finally:
        await log.close()
        await gov.close()


async def test_record_returns_once_the_entry_is_stored_and_concurrent_records_share_writes(tmp_path: Path) -> None:
    async with audit_log(tmp_path) as (log, gov):
        assert gov.db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL: fsync'd at commit
        seq = await log.record(entry("r-1", ["c" * 32]))
        assert seq == 1
        assert stored_request_ids(tmp_path / "governance.db") == ["r-1"]  # durable when record returns
        assert [e.request_id for e in await gov.audit_for_citizen("c" * 32)] == ["r-1"]

        before = log.writes
        seqs = await asyncio.gather(*(log.record(entry(f"r-{i}")) for i in range(2, 52)))
        assert sorted(seqs) == list(range(2, 52))
        assert log.writes - before <= 2  # 50 concurrent durable entries: one or two writes, not 50
        assert stored_request_ids(tmp_path / "governance.db") == [f"r-{i}" for i in range(1, 52)]

        log.submit(entry("queued"))  # the non-blocking path stays
        t0 = time.monotonic()
        await log.record(entry("urgent"))
        assert time.monotonic() - t0 < 1.0
        assert stored_request_ids(tmp_path / "governance.db")[-2:] == ["queued", "urgent"]


async def test_record_refuses_with_503_when_the_write_fails_or_hangs(tmp_path: Path) -> None:
    # no NATS on that port: every write fails at once -> 503 at once, not after the bound
    dead = JetStreamGovernance([f"nats://127.0.0.1:{free_port()}"])
    log = AuditLog(dead, b"k" * 32, durable_timeout_s=5.0)
    with pytest.raises(Problem) as err:
        await log.record(entry("not-started"))
    assert err.value.status == 503
    log.start()
    try:
        t0 = time.monotonic()
        with pytest.raises(Problem) as err:
            await log.record(entry("r-1"))
        assert err.value.status == 503 and err.value.headers["Retry-After"] == "1"
        assert time.monotonic() - t0 < 2.0
        assert log.failures >= 1
    finally:
        log._task.cancel()  # type: ignore[union-attr]  (close() would wait for the retries)

    # another process holds the write lock: the write hangs -> 503 once the bound is reached
    async with audit_log(tmp_path) as (log, _):
        blocker = sqlite3.connect(tmp_path / "governance.db", isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            t0 = time.monotonic()
            with pytest.raises(Problem) as err:
                await log.record(entry("r-2"), timeout=0.5)
            assert err.value.status == 503 and 0.4 < time.monotonic() - t0 < 3.0
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        await log.flush()  # the entry stays queued and is written once the lock is free
        assert stored_request_ids(tmp_path / "governance.db") == ["r-2"]


async def test_kill_9_right_after_record_keeps_every_recorded_entry(tmp_path: Path) -> None:
    db = tmp_path / "governance.db"
    ids = [f"k-{i}" for i in range(5)]
    proc = subprocess.Popen([sys.executable, str(HERE / "_audit_child.py"), str(db), *ids],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 30)  # type: ignore[union-attr]
        assert line.startswith("R k-0 "), line + proc.stderr.read()  # type: ignore[union-attr]
        os.kill(proc.pid, signal.SIGKILL)  # at once: no chance to flush anything
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert "k-0" in stored_request_ids(db)  # recorded, then killed: it is there


async def test_checkpoints_follow_activity_within_a_second_and_stop_when_idle(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    key = load_node_key(tmp_path / "node-signing.key")
    path = tmp_path / "cp" / "audit-checkpoints.jsonl"
    cp = Checkpointer(key, "test:1", CheckpointFile(path))
    pub = Ed25519PublicKey.from_public_bytes(key.public)

    def lines() -> list[Checkpoint]:
        if not path.exists():
            return []
        return [msgspec.json.decode(x, type=Checkpoint) for x in path.read_bytes().splitlines()]

    async def until(n: int, bound: float) -> float:
        t0 = time.monotonic()
        async with asyncio.timeout(bound):
            while len(lines()) < n:
                await asyncio.sleep(0.01)
        return time.monotonic() - t0

    async with audit_log(tmp_path, checkpointer=cp) as (log, _):
        assert path.stat().st_mode & 0o777 == 0o600
        await asyncio.sleep(1.2)
        assert lines() == []  # nothing written yet: no checkpoint
        await log.record(entry("a"))
        assert await until(1, 1.5) < 1.5
        first = lines()[0]
        assert (first.seq, first.head, first.key_id) == (1, log.head[1] if log.head else "", key.id)
        assert signature_ok(first, pub)

        t0 = time.monotonic()  # a burst: the next checkpoint covers it, about a second after the first
        for i in range(5):
            await log.record(entry(f"b{i}"))
            await asyncio.sleep(0.05)
        await until(2, 2.0)
        assert 0.5 < time.monotonic() - t0 < 2.0
        assert [c.seq for c in lines()] == [1, 6]

        await asyncio.sleep(1.5)  # idle: no checkpoint
        assert len(lines()) == 2

        path.rename(path.with_name("rotated.jsonl"))  # rotated away: the next one starts a new file
        await log.record(entry("c"))
        await until(1, 1.5)
        assert [c.seq for c in lines()] == [7] and path.stat().st_mode & 0o777 == 0o600
    assert len(lines()) == 1  # closing with nothing new adds none
    assert "audit_checkpoint_file_recreated" in caplog.text  # a warning of the node's log


async def test_a_chain_cut_under_the_writer_raises_an_alarm(tmp_path: Path,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    async with audit_log(tmp_path) as (log, _):
        for i in range(3):
            await log.record(entry(f"r{i}"))
        con = sqlite3.connect(tmp_path / "governance.db")
        with con:
            con.execute("DELETE FROM audit_log WHERE last_seq > 1")
        con.close()
        assert await log.record(entry("after")) == 2  # the store continues after entry 1 ...
        err = caplog.text  # an error line of the node's log
        assert '"event":"audit_chain_regressed","had":3,"continued_at":2' in err  # ... and it is noticed
