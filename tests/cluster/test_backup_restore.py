"""Backup while a node serves pushes, restore into a fresh node: every record acknowledged
before the backup started is there, at its offset; keyed reads, cursors and the audit log
come along. The archive is 0600 and nothing it prints carries a secret; a damaged archive or
an occupied target is refused without writing anything."""

from __future__ import annotations

import asyncio
import gzip
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from clusterkit import READER, ROOT, GatewayNode, client, pull_all, rec, write_files

from gateway.keyring import load_keyring

pytestmark = pytest.mark.cluster


def _gateway(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


async def test_backup_during_pushes_and_restore_into_a_fresh_node(tmp_path: Path) -> None:
    cat, ring = write_files(tmp_path)
    node = GatewayNode(tmp_path / "a", cat, ring, backend="sqlite")
    archive = tmp_path / "backups" / "a.tar.gz"
    acked: dict[str, int] = {}
    stop = asyncio.Event()

    async def pusher(i: int) -> None:
        async with client(node.url, ring, retries=3) as c:
            n = 0
            while not stop.is_set():
                keys = [f"p{i}-{n}-{j}" for j in range(50)]
                res: dict[str, Any] = await c.push("test.r1", [rec(k, n) for k in keys])
                for j, k in enumerate(keys):
                    acked[k] = res["first"] + j
                n += 1

    try:
        node.start(wait_for="/readyz")
        async with client(node.url, ring, READER) as reader:
            await reader.commit("test.r0", 7)
        tasks = [asyncio.create_task(pusher(i)) for i in range(3)]
        while len(acked) < 3000:
            await asyncio.sleep(0.05)
        before = dict(acked)  # acknowledged before the backup started
        out = await asyncio.to_thread(_gateway, "backup", "--config", str(node.folder / "node.toml"),
                                      "--out", str(archive))
        assert len(acked) > len(before), "no push was acknowledged during the backup"
        stop.set()
        await asyncio.gather(*tasks)
    finally:
        stop.set()
        node.stop()
    assert out.returncode == 0, out.stderr
    assert "wrote" in out.stdout and "exchange.db (schema 2)" in out.stdout
    assert stat.S_IMODE(os.stat(archive).st_mode) == 0o600
    secrets = [k.secret for k in load_keyring(ring).by_id.values()]
    assert not any(s in out.stdout + out.stderr for s in secrets)

    # A fresh node: its own folder, keyring path and data dir; the restore fills them.
    fresh_ring = tmp_path / "b-config" / "keyring.toml"
    fresh = GatewayNode(tmp_path / "b", cat, fresh_ring, backend="sqlite")
    fresh.folder.mkdir(parents=True, exist_ok=True)  # (NodeProcess makes it too)
    (fresh.folder / "node.toml").write_text(fresh.config_text())
    res = _gateway("restore", str(archive), "--config", str(fresh.folder / "node.toml"))
    assert res.returncode == 0, res.stderr
    assert str(fresh_ring) in res.stdout
    assert stat.S_IMODE(os.stat(fresh.folder / "data" / "exchange.db").st_mode) == 0o600
    # Restoring again over the restored node is refused without --force.
    again = _gateway("restore", str(archive), "--config", str(fresh.folder / "node.toml"))
    assert again.returncode == 2 and "exists; stop the node and pass --force" in again.stderr
    try:
        fresh.start(wait_for="/readyz")
        async with client(fresh.url, fresh_ring, READER) as reader:
            got = {r["key"]: r["offset"] for r in await pull_all(reader, "test.r1")}
            missing = [k for k in before if k not in got]
            assert not missing, f"{len(missing)} of {len(before)} acknowledged records are missing"
            assert all(got[k] == off for k, off in before.items())
            assert all(got[k] == acked[k] for k in got)  # nothing but acknowledged records
            key = next(iter(before))
            assert (await reader.get("test.r1", key))["offset"] == before[key]
            assert (await reader.pull("test.r0")).next == 7  # the committed cursor
    finally:
        fresh.stop()


def test_a_damaged_archive_is_refused(tmp_path: Path) -> None:
    cat, ring = write_files(tmp_path)
    node = GatewayNode(tmp_path / "n", cat, ring, backend="sqlite")
    node.folder.mkdir(parents=True, exist_ok=True)  # (NodeProcess makes it too)
    (node.folder / "node.toml").write_text(node.config_text())
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(gzip.compress(b"not a tar file"))
    res = _gateway("restore", str(bad), "--config", str(node.folder / "node.toml"))
    assert res.returncode == 2 and res.stderr.startswith("error: cannot read")
    assert "Traceback" not in res.stderr
    assert not (node.folder / "data" / "exchange.db").exists()
    missing = _gateway("backup", "--config", str(node.folder / "node.toml"), "--out", str(tmp_path / "x"))
    assert missing.returncode == 2 and "does not exist" in missing.stderr


async def test_cluster_backup_snapshots_jetstream_and_restores_into_a_new_one(
    tmp_path: Path, prefix: str
) -> None:
    from devkit.nats import NatsServer

    cat, ring = write_files(tmp_path)
    old = NatsServer(tmp_path / "nats-old").start()
    new = NatsServer(tmp_path / "nats-new").start()
    node = GatewayNode(tmp_path / "a", cat, ring, servers=[old.url], prefix=prefix)
    archive = tmp_path / "a.tar.gz"
    acked: dict[str, int] = {}
    try:
        node.start(wait_for="/readyz")
        async with client(node.url, ring) as owner, client(node.url, ring, READER) as reader:
            for n in range(20):
                keys = [f"k{n}-{j}" for j in range(50)]
                res = await owner.push("test.r2", [rec(k, n) for k in keys])
                acked.update({k: res["first"] + j for j, k in enumerate(keys)})
            await reader.commit("test.r3", 5)
        out = await asyncio.to_thread(_gateway, "backup", "--config", str(node.folder / "node.toml"),
                                      "--out", str(archive))
        assert out.returncode == 0, out.stderr
        assert stat.S_IMODE(os.stat(archive).st_mode) == 0o600
        node.stop()
        fresh = GatewayNode(tmp_path / "b", cat, tmp_path / "b-ring.toml", servers=[new.url],
                            prefix=prefix)
        fresh.folder.mkdir(parents=True, exist_ok=True)  # (NodeProcess makes it too)
        (fresh.folder / "node.toml").write_text(fresh.config_text())
        res = _gateway("restore", str(archive), "--config", str(fresh.folder / "node.toml"))
        assert res.returncode == 0, res.stderr
        assert f"JetStream stream {prefix}_REC" in res.stdout
        again = _gateway("restore", str(archive), "--config", str(fresh.folder / "node.toml"),
                         "--force")
        assert again.returncode == 2 and "already has" in again.stderr
        fresh.start(wait_for="/readyz")
        async with client(fresh.url, tmp_path / "b-ring.toml", READER) as reader:
            got = {r["key"]: r["offset"] for r in await pull_all(reader, "test.r2")}
            assert got == acked
            assert (await reader.get("test.r2", "k7-3"))["offset"] == acked["k7-3"]
            assert (await reader.pull("test.r3")).next == 5  # the committed cursor
        fresh.stop()
    finally:
        node.stop()
        old.stop()
        new.stop()
