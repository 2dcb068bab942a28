"""The citizen key is shared configuration (the keyring's ``citizen_key``): a consent granted
via one node is honoured by another, the citizen's access log is one, and a node with
another key (or none) refuses to start."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from clusterkit import ROOT, GatewayNode, eventually
from support import NatsServer, free_port

from gateway.client import ExchangeClient, ExchangeError
from gateway.keyring import dev_keyring_text, load_keyring, write_private
from harness import http_status

pytestmark = pytest.mark.cluster

PORTAL = "SH/GOV/bdc/portal"
OWNER = "SH/GOV/psb/hukou"
CONSUMER = "SH/GOV/hrss/employment"
CITIZEN = "310101199001011234"
PURPOSE = "employment registration"
CATALOG = f"""
instance = "SH"
portals = ["{PORTAL}"]
[[members]]
id = "SH/GOV/bdc"
[[members]]
id = "SH/GOV/psb"
[[members]]
id = "SH/GOV/hrss"
[[subsystems]]
id = "{PORTAL}"
[[subsystems]]
id = "{OWNER}"
[[subsystems]]
id = "{CONSUMER}"
[[resources]]
id = "psb.id-card"
owner = "{OWNER}"
sharing = "conditional"
personal = true
key = "id_number"
fields = {{ id_number = "str", name = "str" }}
[[grants]]
consumer = "{CONSUMER}"
resource = "psb.id-card"
fields = ["id_number", "name"]
purpose = "employment registration"
"""


def _client(url: str, ring: Path, who: str) -> ExchangeClient:
    key = load_keyring(ring).for_client(who)
    assert key is not None
    return ExchangeClient(url, key.id, key.secret, who, retries=0, timeout=10)


def _serve_fails(node: GatewayNode, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run the node in the foreground and expect it to refuse to start."""
    node.folder.mkdir(parents=True, exist_ok=True)
    conf = node.folder / "node.toml"
    conf.write_text(node.config_text())
    return subprocess.run([sys.executable, "-m", "gateway", "serve", "--config", str(conf)],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def cluster(nats_server: NatsServer, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[tuple[GatewayNode, GatewayNode, Path]]:
    folder = tmp_path_factory.mktemp("citizen")
    cat = folder / "catalog.toml"
    cat.write_text(CATALOG)
    ring = folder / "keyring.toml"
    write_private(ring, dev_keyring_text([PORTAL, OWNER, CONSUMER]))  # one citizen_key for both
    nodes = [GatewayNode(folder / n, cat, ring, servers=[nats_server.url], prefix="citizen")
             for n in ("a", "b")]
    try:
        for n in nodes:
            n.start(wait_for="/readyz")
        yield nodes[0], nodes[1], ring
    finally:
        for n in nodes:
            n.stop()


async def test_consent_granted_via_a_works_via_b(cluster) -> None:
    a, b, ring = cluster
    card = {"key": CITIZEN, "data": {"id_number": CITIZEN, "name": "Li Lei"}}
    async with _client(a.url, ring, OWNER) as owner, _client(a.url, ring, PORTAL) as portal_a, \
            _client(b.url, ring, PORTAL) as portal_b, _client(b.url, ring, CONSUMER) as reader_b, \
            _client(a.url, ring, CONSUMER) as reader_a:
        await owner.push("psb.id-card", [card])
        with pytest.raises(ExchangeError) as info:
            await reader_b.get("psb.id-card", CITIZEN, user_id=CITIZEN, purpose=PURPOSE)
        assert info.value.status == 403 and "consent" in info.value.detail
        consent = await portal_a.grant_consent(CITIZEN, CONSUMER, ["psb.id-card"],
                                               purpose=PURPOSE, expires="2030-12-31")
        got = await reader_b.get("psb.id-card", CITIZEN, user_id=CITIZEN, purpose=PURPOSE)  # granted via A
        assert got is not None and got["data"] == {"id_number": CITIZEN, "name": "Li Lei"}
        got = await reader_b.get("psb.id-card", CITIZEN, user_id=CITIZEN, purpose=PURPOSE, consent=consent["id"])
        assert got is not None
        assert await reader_a.get("psb.id-card", CITIZEN, user_id=CITIZEN, purpose=PURPOSE) is not None

        async def reads_of(portal: ExchangeClient) -> list[dict]:
            return [e for e in await portal.access_log(CITIZEN) if e["operation"] == "read"]

        # one access log for the citizen (the three reads that released the record), whichever
        # node wrote or answers it; the refused read released nothing
        for _ in range(100):
            via_a, via_b = await reads_of(portal_a), await reads_of(portal_b)
            if len(via_a) >= 3 and len(via_b) >= 3:
                break
            await asyncio.sleep(0.1)
        assert len(via_a) == 3 and via_a == via_b, (via_a, via_b)
        await portal_b.revoke_consent(consent["id"])
        with pytest.raises(ExchangeError) as info:
            await reader_a.get("psb.id-card", CITIZEN, user_id=CITIZEN, purpose=PURPOSE)
        assert info.value.status == 403


def test_node_with_another_citizen_key_refuses_to_start(cluster, nats_server: NatsServer,
                                                         tmp_path: Path) -> None:
    a, _b, ring = cluster
    other = tmp_path / "other-keyring.toml"
    text = ring.read_text()
    mine = load_keyring(ring).citizen_key
    assert mine is not None
    write_private(other, text.replace(mine.hex(), "ab" * 32))
    node = GatewayNode(tmp_path / "c", a.catalog, other, servers=[nats_server.url], prefix="citizen")
    proc = _serve_fails(node)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"{other}: citizen_key:" in proc.stderr and "fingerprint" in proc.stderr
    assert "same citizen_key" in proc.stderr and "Traceback" not in proc.stderr
    assert "ab" * 32 not in proc.stderr and mine.hex() not in proc.stderr


def test_jetstream_node_without_citizen_key_refuses_to_start(cluster, nats_server: NatsServer,
                                                              tmp_path: Path) -> None:
    a, _b, ring = cluster
    bare = tmp_path / "bare-keyring.toml"
    write_private(bare, "\n".join(line for line in ring.read_text().splitlines()
                                  if not line.startswith("citizen_key")))
    node = GatewayNode(tmp_path / "d", a.catalog, bare, servers=[nats_server.url], prefix="citizen")
    proc = _serve_fails(node)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"{bare}: citizen_key: required" in proc.stderr and "keys init" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "d" / "data" / "audit.key").exists()  # no per-node key made


async def test_key_checked_when_nats_comes_back(tmp_path: Path, prefix: str) -> None:
    """A node started while NATS is down checks its key at the first connection: with
    another key than the cluster's it is not ready and serves no governance call."""
    port = free_port()
    server = NatsServer(tmp_path / "nats", port=port).start()
    cat = tmp_path / "catalog.toml"
    cat.write_text(CATALOG)
    ring = tmp_path / "keyring.toml"
    write_private(ring, dev_keyring_text([PORTAL, OWNER, CONSUMER]))
    other = tmp_path / "other.toml"
    write_private(other, "\n".join(x for x in ring.read_text().splitlines()
                                   if not x.startswith("citizen_key")) + "\n")
    other.write_text(f'citizen_key = "{"ab" * 32}"\n' + other.read_text())
    a = GatewayNode(tmp_path / "a", cat, ring, servers=[server.url], prefix=prefix)
    b = GatewayNode(tmp_path / "b", cat, other, servers=[server.url], prefix=prefix)
    try:
        a.start(wait_for="/readyz")  # records the cluster's fingerprint
        await eventually(lambda: _ready(a.url))
        a.stop()
        server.stop()
        b.start(wait_for="/healthz")  # NATS down: starts, the check waits for NATS
        server.start()

        async def refused() -> bool:
            status, doc = await asyncio.to_thread(_readyz, b.url)
            return status == 503 and "citizen_key" in doc.get("reason", "")

        await eventually(refused, timeout=30)
        _status, doc = await asyncio.to_thread(_readyz, b.url)
        assert "differs from the key of the cluster" in doc["reason"] and doc["checks"]["governance"] is False
        async with _client(b.url, other, PORTAL) as portal:
            with pytest.raises(ExchangeError) as info:
                await portal.grant_consent(CITIZEN, CONSUMER, ["psb.id-card"], purpose="p",
                                           expires="2030-12-31")
            assert info.value.status == 503
        assert http_status(b.url + "/healthz") == 200
    finally:
        b.stop()
        a.stop()
        server.stop()


async def _ready(url: str) -> bool:
    return await asyncio.to_thread(http_status, url + "/readyz") == 200


def _readyz(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url + "/readyz", timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
