"""Key rotation without a restart or a refused request: a client's key (``keys rotate``: a
new key, the old one retired after an overlap) and the node's Ed25519 key (``node-key
rotate``: both listed at /v1/node-keys during the overlap), picked up on SIGHUP."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from clusterkit import OWNER, ROOT, GatewayNode, client, rec, write_files

from gateway.client import ExchangeClient, ExchangeError
from gateway.keyring import load_keyring

pytestmark = pytest.mark.cluster


def _gateway(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


async def _reloaded(node: GatewayNode, count: int) -> None:
    for _ in range(200):
        if node.log_tail(10_000).count('"event":"reloaded"') >= count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the node did not reload:\n{node.log_tail()}")


def _node_keys(node: GatewayNode) -> list[dict]:
    with urllib.request.urlopen(node.url + "/v1/node-keys", timeout=5) as resp:
        return json.load(resp)["keys"]


async def test_rotate_client_and_node_keys_without_a_refused_request(tmp_path: Path) -> None:
    cat, ring = write_files(tmp_path)
    node = GatewayNode(tmp_path / "n", cat, ring, backend="sqlite")
    old_key = load_keyring(ring).for_client(OWNER)
    assert old_key is not None
    failures: list[str] = []
    pushed = 0
    stop = asyncio.Event()

    async def old_client() -> None:
        nonlocal pushed
        async with ExchangeClient(node.url, old_key.id, old_key.secret, OWNER, retries=0) as c:
            n = 0
            while not stop.is_set():
                try:
                    await c.push("test.r0", [rec(f"o{n}", n)])
                    pushed += 1
                except ExchangeError as exc:
                    failures.append(f"{exc.status} {exc.detail}")
                n += 1
                await asyncio.sleep(0.01)

    try:
        node.start(wait_for="/readyz")
        first_node_key = _node_keys(node)
        assert len(first_node_key) == 1
        task = asyncio.create_task(old_client())
        out = _gateway("keys", "rotate", OWNER, "--keyring", str(ring), "--overlap", "6s")
        assert out.returncode == 0, out.stderr
        assert old_key.secret not in out.stdout + out.stderr
        new_key = load_keyring(ring).for_client(OWNER)
        assert new_key is not None and new_key.id != old_key.id
        assert "retiring " + old_key.id in out.stdout and new_key.id in out.stdout
        out = _gateway("node-key", "rotate", "--config", str(node.folder / "node.toml"),
                       "--overlap", "1h")
        assert out.returncode == 0, out.stderr
        os.kill(node.proc.pid, signal.SIGHUP)  # type: ignore[union-attr]
        await _reloaded(node, 1)
        # Both node keys are listed during the overlap; the new one signs from now on.
        keys = _node_keys(node)
        assert [k["id"] for k in keys][1:] == [first_node_key[0]["id"]] and "until" in keys[1]
        assert keys[0]["id"] != first_node_key[0]["id"]
        # The new client key works at once; the old one still works during the overlap.
        async with client(node.url, ring, retries=0) as fresh:
            assert (await fresh.push("test.r1", [rec("n1")]))["count"] == 1
        before = pushed
        await asyncio.sleep(0.5)
        assert pushed > before
        stop.set()
        await task
        assert not failures, failures[:3]
        # After the overlap the old key is refused, with the reason.
        await asyncio.sleep(6.5)
        async with ExchangeClient(node.url, old_key.id, old_key.secret, OWNER, retries=0) as c:
            with pytest.raises(ExchangeError) as info:
                await c.push("test.r0", [rec("late")])
        assert info.value.status == 401 and "validity window" in info.value.detail
    finally:
        stop.set()
        node.stop()


def test_rotate_refuses_bad_input(tmp_path: Path) -> None:
    _cat, ring = write_files(tmp_path)
    text = ring.read_text()
    out = _gateway("keys", "rotate", "SH/GOV/nobody/x", "--keyring", str(ring))
    assert out.returncode == 2 and "has no key of 'SH/GOV/nobody/x'" in out.stderr
    out = _gateway("keys", "rotate", OWNER, "--keyring", str(ring), "--overlap", "soon")
    assert out.returncode == 2 and "--overlap must be a whole number" in out.stderr
    assert ring.read_text() == text and "Traceback" not in out.stderr
