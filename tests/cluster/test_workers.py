"""``serve --workers 2``: two processes share one port (SO_REUSEPORT), for both backends."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import pytest
from clusterkit import OWNER, READER, GatewayNode, client, pull_all, rec, write_files
from support import NatsServer

from gateway.keyring import load_keyring
from gateway.signing import Signer

pytestmark = pytest.mark.cluster


async def _push_spread(url: str, ring: Path, rid: str, batches: int) -> set[str]:
    """Push ``batches`` batches, each on a new connection; the workers that answered."""
    key = load_keyring(ring).for_client(OWNER)
    assert key is not None
    signer = Signer(key.id, key.secret, OWNER)
    workers: set[str] = set()
    connector = aiohttp.TCPConnector(force_close=True)  # a new connection per request
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(b: int) -> None:
            raw = json.dumps({"records": [rec(f"b{b}-{i}", i) for i in range(5)]}).encode()
            path = f"/v1/resources/{rid}/records"
            headers = signer.headers("POST", path, "", raw, headers={
                "Content-Type": "application/json", "Idempotency-Key": f"spread-{b}"})
            async with session.post(url + path, data=raw, headers=headers) as resp:
                assert resp.status == 200, await resp.text()
                workers.add(resp.headers["X-Exchange-Request-Id"].split("-")[0])

        for start in range(0, batches, 10):
            await asyncio.gather(*[one(b) for b in range(start, min(start + 10, batches))])
    return workers


async def _check(node: GatewayNode, ring: Path, rid: str) -> None:
    workers = await _push_spread(node.url, ring, rid, 60)
    assert len(workers) == 2, f"expected both workers to answer, saw {workers}"
    async with client(node.url, ring, READER) as c:
        got = await pull_all(c, rid)
    keys = [r["key"] for r in got]
    assert sorted(keys) == sorted(f"b{b}-{i}" for b in range(60) for i in range(5))
    offsets = [r["offset"] for r in got]
    assert offsets == sorted(set(offsets))


async def test_two_workers_sqlite(tmp_path: Path) -> None:
    cat, ring = write_files(tmp_path)
    node = GatewayNode(tmp_path / "node", cat, ring, backend="sqlite", workers=2)
    try:
        node.start(wait_for="/readyz")
        await _check(node, ring, "test.r6")
    finally:
        node.stop()


async def test_two_workers_jetstream(nats_server: NatsServer, tmp_path: Path, prefix: str) -> None:
    cat, ring = write_files(tmp_path)
    node = GatewayNode(tmp_path / "node", cat, ring, servers=[nats_server.url], prefix=prefix,
                       workers=2)
    try:
        node.start(wait_for="/readyz")
        await _check(node, ring, "test.r7")
    finally:
        node.stop()


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


async def test_a_dead_worker_is_replaced(tmp_path: Path) -> None:
    import os
    import signal

    cat, ring = write_files(tmp_path)
    node = GatewayNode(tmp_path / "node", cat, ring, backend="sqlite", workers=2)
    try:
        node.start(wait_for="/readyz")
        assert node.proc is not None
        cmdlines = {p: Path(f"/proc/{p}/cmdline").read_bytes().decode(errors="replace")
                    for p in _children(node.proc.pid)}
        workers = [p for p, cmd in cmdlines.items()
                   if "spawn_main" in cmd and "resource_tracker" not in cmd]
        assert len(workers) == 2, cmdlines
        victim = max(workers)
        os.kill(victim, signal.SIGKILL)
        for _ in range(200):
            if '"event":"worker_replaced"' in node.log_tail(10_000) and \
                    node.log_tail(10_000).count('"event":"listening"') >= 3:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError(f"the worker was not replaced:\n{node.log_tail()}")
        await _check(node, ring, "test.r8")  # both workers answer again
    finally:
        node.stop()


def test_workers_racing_to_create_audit_key_share_one(tmp_path: Path) -> None:
    import multiprocessing as mp

    from gateway.audit import load_key

    path = tmp_path / "audit.key"
    with mp.get_context("fork").Pool(8) as pool:
        keys = pool.map(load_key, [path] * 32)
    assert len({k.hex() for k in keys}) == 1
    assert path.read_text().strip() == keys[0].hex()
