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
