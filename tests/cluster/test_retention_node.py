"""Retention through a running node on both backends: ``retention apply`` while the node
serves, pulls below the earliest offset carry ``earliest``, keyed reads of compacted keys
keep working, and offsets keep increasing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from clusterkit import OWNER, READER, ROOT, GatewayNode, client, write_files

from devkit.nats import NatsServer

pytestmark = pytest.mark.cluster

CATALOG = f"""instance = "SH"
[[members]]
id = "SH/GOV/t"
[[members]]
id = "SH/GOV/c"
[[subsystems]]
id = "{OWNER}"
[[subsystems]]
id = "{READER}"
[[resources]]
id = "test.kept"
owner = "{OWNER}"
sharing = "open"
key = "id"
fields = {{ id = "str", n = "int" }}
max_records = 25
compact = true
[[resources]]
id = "test.plain"
owner = "{OWNER}"
sharing = "open"
key = "id"
fields = {{ id = "str", n = "int" }}
"""


@pytest.mark.parametrize("backend", ["sqlite", "jetstream"])
async def test_retention_through_a_node(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    _cat, ring = write_files(tmp_path)
    cat = tmp_path / "retention-catalog.toml"
    cat.write_text(CATALOG)
    servers: list[str] = []
    prefix = f"ret{tmp_path.name[-8:].replace('_', '')}".lower()
    if backend == "jetstream":
        nats: NatsServer = request.getfixturevalue("nats_server")
        servers = [nats.url]
    node = GatewayNode(tmp_path / "node", cat, ring, servers=servers, prefix=prefix, backend=backend)
    try:
        node.start(wait_for="/readyz")
        async with client(node.url, ring) as owner, client(node.url, ring, READER) as reader:
            pushed = []
            for b in range(5):  # s0..s8 in every batch, u<b> once
                recs = [{"key": k, "data": {"id": k, "n": b}} for k in [f"s{i}" for i in range(9)] + [f"u{b}"]]
                pushed.append(await owner.push("test.kept", recs))
            plain = await owner.push("test.plain", [{"key": "p", "data": {"id": "p", "n": 0}}])
            out = subprocess.run(
                [sys.executable, "-m", "gateway", "retention", "apply", "--config",
                 str(node.folder / "node.toml")],
                cwd=ROOT, capture_output=True, text=True, timeout=120)
            assert out.returncode == 0, out.stderr
            assert "test.kept: dropped" in out.stdout
            assert "test.plain" not in out.stdout and "u0" not in out.stdout + out.stderr
            earliest = pushed[1]["last"] + 1
            page = await reader.pull("test.kept", after=0, limit=1000)
            assert page.earliest == earliest
            assert [r["key"] for r in page.records] == [
                k for b in range(2, 5) for k in [f"s{i}" for i in range(9)] + [f"u{b}"]]
            assert (await reader.pull("test.kept", after=pushed[1]["last"])).earliest is None
            assert (await reader.pull("test.kept", after=pushed[2]["first"])).earliest is None
            # Compacted: the records beyond retention still answer keyed reads.
            got = await reader.get("test.kept", "u0")
            assert got is not None and got["offset"] == pushed[0]["last"]
            assert (await reader.get("test.kept", "s3"))["offset"] == pushed[4]["first"] + 3
            # Resources without a policy are untouched; offsets keep increasing.
            assert (await reader.pull("test.plain", after=0)).earliest is None
            again = await owner.push("test.kept", [{"key": "z", "data": {"id": "z", "n": 9}}])
            assert again["first"] > max(pushed[-1]["last"], plain["last"])
    finally:
        node.stop()
