"""Faults in cluster mode: NATS down at start, and kill -9 of a NATS server and a gateway
node (R=3, three-server cluster) while several clients push through several nodes."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from clusterkit import (
    READER,
    GatewayNode,
    client,
    eventually,
    http_status,
    pull_all,
    rec,
    write_files,
)
from support import NatsServer, free_port

from gateway.client import ExchangeError

pytestmark = pytest.mark.cluster


async def _ready(url: str) -> bool:
    return await asyncio.to_thread(http_status, url + "/readyz") == 200


async def test_node_starts_without_nats_and_recovers_by_itself(tmp_path: Path, prefix: str) -> None:
    port = free_port()
    cat, ring = write_files(tmp_path)
    node = GatewayNode(tmp_path / "node", cat, ring, servers=[f"nats://127.0.0.1:{port}"],
                       prefix=prefix)
    server = NatsServer(tmp_path / "nats", port=port)
    try:
        node.start(wait_for="/healthz")
        assert http_status(node.url + "/readyz") == 503
        # A short client timeout: a slow answer would be a transport error, not a 503.
        async with client(node.url, ring, retries=0, timeout=3) as c:
            with pytest.raises(ExchangeError) as info:
                await c.push("test.r0", [rec("a")])
            assert info.value.status == 503
            assert info.value.code == "server.unavailable"
            assert "NATS" in info.value.detail and str(port) in info.value.detail
            with pytest.raises(ExchangeError) as info:
                await c.pull("test.r0")
            assert info.value.status == 503

            server.start()
            await eventually(lambda: _ready(node.url), timeout=30)
            res = await c.push("test.r0", [rec("a", 1)])
            assert res["count"] == 1
            assert [r["key"] for r in await pull_all(c, "test.r0")] == ["a"]
    finally:
        node.stop()
        server.stop()


async def test_kill_nats_server_and_node_during_pushes(
    nats_cluster: list[NatsServer], tmp_path: Path, prefix: str
) -> None:
    cat, ring = write_files(tmp_path)
    urls = [s.url for s in nats_cluster]
    nodes = [
        GatewayNode(tmp_path / f"g{i}", cat, ring, servers=urls, prefix=prefix, replicas=3)
        for i in range(3)
    ]
    rid = "test.r5"
    acked: dict[str, int] = {}  # record key -> offset acknowledged
    after_kill: list[int] = []
    killed = asyncio.Event()
    stop = asyncio.Event()

    async def pusher(i: int) -> None:
        order = [nodes[(i + j) % 3].url for j in range(3)]
        async with client(order, ring, retries=6, backoff=0.2, timeout=30) as c:
            n = 0
            while not stop.is_set():
                keys = [f"p{i}-{n}-{j}" for j in range(10)]
                res: dict[str, Any] | None = None
                for _attempt in range(20):  # the same Idempotency-Key until acknowledged
                    try:
                        res = await c.push(rid, [rec(k) for k in keys], idempotency_key=f"p{i}-{n}")
                        break
                    except ExchangeError:
                        await asyncio.sleep(0.3)
                assert res is not None, f"batch p{i}-{n} was never acknowledged"
                assert res["count"] == 10 and res["last"] - res["first"] == 9
                for j, k in enumerate(keys):
                    acked[k] = res["first"] + j
                if killed.is_set():
                    after_kill.append(res["first"])
                n += 1

    try:
        for node in nodes:
            node.start(wait_for="/readyz")
        for node in nodes:
            await eventually(lambda node=node: _ready(node.url), timeout=30)
        tasks = [asyncio.create_task(pusher(i)) for i in range(4)]
        await eventually(lambda: len(acked) >= 40, timeout=30)  # every pusher under way
        nats_cluster[0].kill()
        nodes[0].kill()
        killed.set()
        await eventually(lambda: len(after_kill) >= 8, timeout=30)  # the cluster carries on
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
        assert after_kill, "no push was acknowledged after the kills"

        for node in nodes[1:]:
            async with client(node.url, ring, READER, retries=6) as c:
                got = await pull_all(c, rid)
            keys = [r["key"] for r in got]
            assert len(keys) == len(set(keys)), "a record was stored twice"
            offsets = {r["key"]: r["offset"] for r in got}
            missing = [k for k in acked if k not in offsets]
            assert not missing, f"{len(missing)} acknowledged records are missing"
            assert all(offsets[k] == off for k, off in acked.items())
    finally:
        stop.set()
        for node in nodes:
            node.stop()
