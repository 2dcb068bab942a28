"""While NATS is down a node's log holds one line per change of state, never a traceback
or a line per reconnect attempt; when NATS comes up, one line says so."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from clusterkit import GatewayNode, http_status, write_files

from devkit.nats import NatsServer, find_binary
from harness import free_port

pytestmark = pytest.mark.cluster


def _events(node: GatewayNode) -> list[dict]:
    return [json.loads(ln) for ln in node.log_tail(100_000).splitlines()]


def _wait(pred, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.1)


def test_nats_down_then_up_is_one_line_each(tmp_path: Path, prefix: str) -> None:
    if find_binary() is None:
        pytest.skip("nats-server is not installed (make deps installs it)")
    port = free_port()  # nothing listens there yet: NATS is down
    cat, ring = write_files(tmp_path)
    node = GatewayNode(tmp_path / "node", cat, ring, servers=[f"nats://127.0.0.1:{port}"], prefix=prefix)
    server = None
    try:
        node.start(wait_for="/healthz")
        time.sleep(4.0)  # several reconnect attempts of both NATS clients (1 s apart)
        down = _events(node)
        errors = [e for e in down if e["event"] == "nats_error"]
        assert [(e["client"], e["level"]) for e in errors] == [("governance", "warning")], down
        assert "Connection refused" in errors[0]["error"]
        scans = [e for e in down if e.get("message") == "subscription scan failed"]
        assert len(scans) == 1, down  # the webhook scan fails every second: reported once
        server = NatsServer(tmp_path / "nats", port=port).start()
        _wait(lambda: any(e["event"] == "nats_connected" for e in _events(node)))
        _wait(lambda: http_status(node.url + "/readyz") == 200)
    finally:
        node.stop()
        if server is not None:
            server.stop()
    text = node.log_tail(100_000)
    assert "Traceback" not in text and "nats: encountered error" not in text, text[-3000:]
    assert [e["event"] for e in _events(node)].count("nats_connected") == 1
