"""A wiped JetStream is detected, never silently reused: the node's high-water mark
(``DATA_DIR/jetstream-hwm.json``) finds the streams younger than the ones it used, /readyz
answers 503 with the reason and pushes and reads are refused, until ``serve --accept-reset``."""

from __future__ import annotations

import asyncio
import json
import shutil
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from clusterkit import READER, GatewayNode, client, eventually, pull_all, rec, write_files
from support import NatsServer, free_port

from gateway.client import ExchangeError

pytestmark = pytest.mark.cluster


def _readyz(url: str) -> tuple[int | None, dict]:
    try:
        with urllib.request.urlopen(url + "/readyz", timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
    except OSError:
        return None, {}


async def _status(url: str) -> tuple[int | None, dict]:
    return await asyncio.to_thread(_readyz, url)


async def _refused(node: GatewayNode, ring: Path) -> None:
    """/readyz is 503 with the reason; a push and a pull are 503 with the same reason."""
    async def reset_seen() -> bool:
        status, doc = await _status(node.url)
        return status == 503 and "wiped or replaced" in doc.get("reason", "")

    await eventually(reset_seen, timeout=30)
    _status_code, doc = await _status(node.url)
    assert "--accept-reset" in doc["reason"] and "offsets would be reused" in doc["reason"]
    async with client(node.url, ring, retries=0, timeout=10) as c:
        for call in (c.push("test.r0", [rec("after-wipe")]), c.pull("test.r0", after=0)):
            with pytest.raises(ExchangeError) as info:
                await call
            assert info.value.status == 503 and "wiped or replaced" in info.value.detail


async def test_wiped_jetstream_is_refused_until_accepted(tmp_path: Path, prefix: str) -> None:
    port = free_port()
    server = NatsServer(tmp_path / "nats", port=port).start()
    cat, ring = write_files(tmp_path)
    node = GatewayNode(tmp_path / "node", cat, ring, servers=[server.url], prefix=prefix)
    hwm = tmp_path / "node" / "data" / "jetstream-hwm.json"
    try:
        node.start(wait_for="/readyz")
        await eventually(lambda: _ok(node.url))
        async with client(node.url, ring) as c:
            for i in range(3):
                await c.push("test.r0", [rec(f"k{i}", i)])
            last = (await c.push("test.r0", [rec("k3", 3)]))["last"]
        await eventually(lambda: _check(hwm.exists() and json.loads(hwm.read_text())[f"{prefix}_REC"]
                                        ["last_seq"] >= 4))
        assert hwm.stat().st_mode & 0o777 == 0o600

        # a restart of NATS that keeps its data is no reset
        server.stop()
        server.start()
        await eventually(lambda: _ok(node.url), timeout=30)
        async with client(node.url, ring) as c:
            assert (await c.push("test.r0", [rec("k4", 4)]))["first"] > last

        # NATS wiped under a running node: detected on reconnect
        server.stop()
        shutil.rmtree(tmp_path / "nats" / "js")
        server.start()
        await _refused(node, ring)

        # a restart without the flag: still refused (the mark is on disk)
        node.stop()
        node.start(wait_for="/readyz")
        await _refused(node, ring)
        assert '"event":"listening"' in node.log_tail(200)

        # the operator accepts the reset: the node serves again and the mark starts over
        node.stop()
        node.start(wait_for="/readyz", args=("--accept-reset",))
        await eventually(lambda: _ok(node.url), timeout=30)
        assert "accepted a JetStream reset" in node.log_tail(500)
        async with client(node.url, ring) as c, client(node.url, ring, READER) as r:
            assert (await c.push("test.r0", [rec("fresh")]))["count"] == 1
            assert [x["key"] for x in await pull_all(r, "test.r0")] == ["fresh"]

        # and later starts without the flag are ready (the new stream is the one marked)
        node.stop()
        node.start(wait_for="/readyz")
        await eventually(lambda: _ok(node.url), timeout=30)
    finally:
        node.stop()
        server.stop()


async def _ok(url: str) -> bool:
    return (await _status(url))[0] == 200


async def _check(value: bool) -> bool:
    return value
