"""SIGHUP with a Shanghai-scale catalog (16,000 resources): the node keeps answering while it
parses and compiles the new catalog off the event loop, then swaps it in."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from clusterkit import ROOT, GatewayNode


def test_requests_are_answered_during_a_large_reload(tmp_path: Path) -> None:
    cat, ring = tmp_path / "catalog.toml", tmp_path / "keyring.toml"
    for args in (["catalog", "synth", "--resources", "16000", "--out", str(cat)],
                 ["keys", "init", "--catalog", str(cat), "--out", str(ring)]):
        subprocess.run([sys.executable, "-m", "gateway", *args], cwd=ROOT, check=True,
                       capture_output=True, timeout=300)
    node = GatewayNode(tmp_path / "n", cat, ring, backend="sqlite")
    try:
        node.start(wait_for="/readyz", timeout=120)
        log = node.folder / "node.log"
        os.kill(node.proc.pid, signal.SIGHUP)  # type: ignore[union-attr]
        answered_before_swap = 0
        deadline = time.monotonic() + 120
        while '"event":"reloaded"' not in log.read_text():
            assert time.monotonic() < deadline, node.log_tail()
            with urllib.request.urlopen(node.url + "/healthz", timeout=30) as resp:
                assert resp.status == 200
            if '"event":"reloaded"' not in log.read_text():
                answered_before_swap += 1
        assert answered_before_swap >= 3, "the node did not answer while it reloaded"
    finally:
        node.stop()
