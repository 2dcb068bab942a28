"""Durability of the SQLite store with real processes: kill -9 mid-stream, several
writers on one file, and cross-process long-poll wake-ups."""

from __future__ import annotations

import asyncio
import json
import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway.stores.base import Record
from gateway.stores.sqlite import SQLiteStore

sys.path.insert(0, str(Path(__file__).parent))
from _append_child import CLIENT, batch_for, body_hash  # noqa: E402

CHILD = Path(__file__).with_name("_append_child.py")
RESOURCES = ("dur.a", "dur.b")
pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")


def spawn(db: Path, name: str, tmp_path: Path, *args: str) -> subprocess.Popen[bytes]:
    err = open(tmp_path / f"{name}.stderr", "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(
        [sys.executable, str(CHILD), "--db", str(db), "--name", name, *args],
        stdout=subprocess.PIPE,
        stderr=err,
    )
    err.close()
    return proc


def parse(lines: list[bytes]) -> tuple[dict[str, dict], dict[str, dict]]:
    """(sent, acknowledged) pushes by batch id, from complete output lines."""
    sent: dict[str, dict] = {}
    acked: dict[str, dict] = {}
    for line in lines:
        kind, _, body = line.decode().partition(" ")
        item = json.loads(body)
        (sent if kind == "S" else acked)[item["id"]] = item
    return sent, acked


def run_until_acks(proc: subprocess.Popen[bytes], acks: int, timeout: float) -> list[bytes]:
    """Read the child's lines until ``acks`` acknowledgements, then SIGKILL it."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    os.set_blocking(fd, False)
    buf = b""
    seen = 0
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while seen < acks:
            left = deadline - time.monotonic()
            assert left > 0, f"only {seen} acknowledgements before the deadline"
            if not sel.select(left):
                continue
            chunk = os.read(fd, 1 << 16)
            assert chunk, f"the child exited early (code {proc.wait()})"
            buf += chunk
            seen = buf.count(b"\nA ") + buf.startswith(b"A ")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    while True:  # whatever the child wrote before it died
        try:
            chunk = os.read(fd, 1 << 16)
        except BlockingIOError:
            break
        if not chunk:
            break
        buf += chunk
    proc.stdout.close()
    complete = buf[: buf.rfind(b"\n") + 1]  # a torn last line is not an acknowledgement
    return [line for line in complete.split(b"\n") if line]


def run_to_end(proc: subprocess.Popen[bytes], timeout: float) -> list[bytes]:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"child failed with {proc.returncode}"
    return [line for line in out.split(b"\n") if line]


async def read_log(db: Path) -> dict[str, list[Record]]:
    async with SQLiteStore(db) as store:
        logs = {}
        for resource in RESOURCES:
            records: list[Record] = []
            after = 0
            while page := await store.read(resource, after, 1000):
                records.extend(page)
                after = page[-1].offset
            logs[resource] = records
        return logs


def check_log(logs: dict[str, list[Record]], acked: dict[str, dict]) -> set[str]:
    """Every acknowledged batch is at its offsets with its data; nothing is stored twice."""
    by_key: dict[str, Record] = {}
    for records in logs.values():
        offsets = [r.offset for r in records]
        assert offsets == sorted(set(offsets)), "offsets must be unique and increasing"
        for r in records:
            assert r.key not in by_key, f"record {r.key} stored twice"
            by_key[r.key] = r
    for batch_id, ack in acked.items():
        expected = batch_for(batch_id)
        assert ack["count"] == len(expected)
        assert ack["last"] == ack["first"] + len(expected) - 1
        for i, (key, data) in enumerate(expected):
            got = by_key.get(key)
            assert got is not None, f"acknowledged record {key} is missing"
            assert got.offset == ack["first"] + i, f"record {key} moved"
            assert got.data == data, f"record {key} has other data"
    return {key.rsplit("/", 1)[0] for key in by_key}


@pytest.mark.parametrize("synchronous", ["FULL", "NORMAL"])
def test_kill_9_loses_no_acknowledged_record(tmp_path: Path, synchronous: str) -> None:
    """NORMAL is durable against process crashes too (not against power loss)."""
    db = tmp_path / "durable.db"
    acked: dict[str, dict] = {}
    in_doubt: dict[str, dict] = {}
    retry_file = tmp_path / "retry.jsonl"
    for cycle in range(4):
        extra = ["--tasks", "8", "--synchronous", synchronous]
        if in_doubt:
            retry_file.write_text("".join(json.dumps(p) + "\n" for p in in_doubt.values()))
            extra += ["--retry", str(retry_file)]
        proc = spawn(db, f"c{cycle}", tmp_path, *extra)
        lines = run_until_acks(proc, acks=150 + len(in_doubt), timeout=60)
        sent, cycle_acked = parse(lines)
        for batch_id, ack in cycle_acked.items():
            if batch_id in acked:  # a retry of an earlier acknowledged push: a replay
                assert ack["replayed"] and ack["first"] == acked[batch_id]["first"]
            acked[batch_id] = ack
        in_doubt = {k: v for k, v in {**in_doubt, **sent}.items() if k not in acked}
        print(f"cycle {cycle}: {len(cycle_acked)} acknowledged, {len(in_doubt)} in doubt")
        stored_batches = check_log(asyncio.run(read_log(db)), acked)
        assert set(acked) <= stored_batches

    # A last client retries what is still in doubt: each lands exactly once.
    retry_file.write_text("".join(json.dumps(p) + "\n" for p in in_doubt.values()))
    proc = spawn(db, "final", tmp_path, "--batches", "0", "--retry", str(retry_file))
    _, final_acked = parse(run_to_end(proc, timeout=60))
    assert set(final_acked) == set(in_doubt)
    acked.update(final_acked)
    check_log(asyncio.run(read_log(db)), acked)


def test_several_processes_append_to_one_file(tmp_path: Path) -> None:
    db = tmp_path / "shared.db"
    procs = [spawn(db, f"p{i}", tmp_path, "--tasks", "4", "--batches", "10") for i in range(3)]
    acked: dict[str, dict] = {}
    for proc in procs:
        _, child_acked = parse(run_to_end(proc, timeout=120))
        assert len(child_acked) == 40
        acked.update(child_acked)
    firsts = [a["first"] for a in acked.values()]
    assert len(set(firsts)) == len(firsts)
    stored = check_log(asyncio.run(read_log(db)), acked)
    assert stored == set(acked)


async def test_wait_wakes_on_another_process_append(tmp_path: Path) -> None:
    db = tmp_path / "notify.db"
    async with SQLiteStore(db) as store:
        first = await store.append(
            "dur.a", batch_for("seed"), client=CLIENT, body_hash=body_hash("seed")
        )
        waiter = asyncio.create_task(store.wait("dur.a", first.last, 60))
        await asyncio.sleep(0.05)
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(CHILD),
            "--db",
            str(db),
            "--name",
            "other",
            "--tasks",
            "1",
            "--batches",
            "1",
            "--resources",
            "dur.a",
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0
        assert await asyncio.wait_for(waiter, 60) is True
        assert store.stats()["notify_received"] >= 1
        records = await store.read("dur.a", first.last, 100)
        assert [r.key for r in records] == [k for k, _ in batch_for("other-t0-0")]
        _, acked = parse([line for line in out.split(b"\n") if line])
        assert acked["other-t0-0"]["first"] == records[0].offset


def test_killing_one_writer_process_leaves_the_others_working(tmp_path: Path) -> None:
    db = tmp_path / "workers.db"
    survivor = spawn(db, "survivor", tmp_path, "--tasks", "4", "--batches", "100")
    victim = spawn(db, "victim", tmp_path, "--tasks", "8")
    _, victim_acked = parse(run_until_acks(victim, acks=60, timeout=60))
    _, survivor_acked = parse(run_to_end(survivor, timeout=120))
    assert len(survivor_acked) == 400
    acked = {**victim_acked, **survivor_acked}
    assert set(acked) <= check_log(asyncio.run(read_log(db)), acked)
