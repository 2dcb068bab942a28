"""Schema versions seen by a starting node: a SQLite database or JetStream streams written by
a newer release make ``serve`` refuse to start with a clear message (no traceback, nothing
changed); JetStream streams from before versions were recorded get version 1."""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys
from pathlib import Path

import nats
import pytest
from clusterkit import ROOT, GatewayNode, write_files

from devkit.nats import NatsServer
from gateway.stores.base import StoreError
from gateway.stores.jetstream import SCHEMA_VERSION, JetStreamStore
from gateway.stores.sqlite import SQLiteStore

pytestmark = pytest.mark.cluster


def _serve(node: GatewayNode) -> subprocess.CompletedProcess[str]:
    node.folder.mkdir(parents=True, exist_ok=True)
    conf = node.folder / "node.toml"
    conf.write_text(node.config_text())
    return subprocess.run([sys.executable, "-m", "gateway", "serve", "--config", str(conf)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)


def _dump(db: Path) -> str:
    conn = sqlite3.connect(db)
    try:
        return hashlib.sha256("\n".join(conn.iterdump()).encode()).hexdigest()
    finally:
        conn.close()


async def test_node_refuses_a_newer_sqlite_database(tmp_path: Path) -> None:
    cat, ring = write_files(tmp_path)
    node = GatewayNode(tmp_path / "node", cat, ring, backend="sqlite")
    db = node.folder / "data" / "exchange.db"
    async with SQLiteStore(db) as store:
        await store.append("test.r0", [("a", b'{"id":"a","n":1}')], client="x")
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("UPDATE meta SET v = 99 WHERE k = 'schema_version'")
    conn.close()
    digest = _dump(db)
    out = _serve(node)
    assert out.returncode == 2
    assert "schema version 99, newer than this release supports" in out.stderr
    assert "Traceback" not in out.stderr
    assert _dump(db) == digest  # nothing stored changed


async def test_jetstream_schema_version(nats_server: NatsServer, tmp_path: Path) -> None:
    prefix = f"sv{tmp_path.name[-6:]}".replace("_", "")
    async with JetStreamStore([nats_server.url], prefix=prefix) as store:
        assert store.schema_error is None
        bucket = store.names["meta"]
    nc = await nats.connect(nats_server.url)
    try:
        kv = await nc.jetstream().key_value(bucket)
        assert (await kv.get("schema_version")).value == str(SCHEMA_VERSION).encode()
        await kv.put("schema_version", str(SCHEMA_VERSION + 1).encode())
    finally:
        await nc.close()
    store = JetStreamStore([nats_server.url], prefix=prefix)
    with pytest.raises(StoreError, match="newer than this release supports"):
        await store.open()
    await store.close()
    cat, ring = write_files(tmp_path)
    node = GatewayNode(tmp_path / "node", cat, ring, servers=[nats_server.url], prefix=prefix)
    out = _serve(node)
    assert out.returncode == 2 and "newer than this release supports" in out.stderr
    assert "Traceback" not in out.stderr


async def test_node_refuses_a_newer_governance_database(tmp_path: Path) -> None:
    from gateway.governance.sqlite import SQLiteGovernance

    cat, ring = write_files(tmp_path)
    node = GatewayNode(tmp_path / "node", cat, ring, backend="sqlite")
    db = node.folder / "data" / "governance.db"
    gov = SQLiteGovernance(db)
    await gov.open()
    await gov.close()
    conn = sqlite3.connect(db, isolation_level=None)
    assert conn.execute("SELECT value FROM meta WHERE name = 'schema_version'").fetchone() == ("1",)
    conn.execute("UPDATE meta SET value = '7' WHERE name = 'schema_version'")
    conn.close()
    digest = _dump(db)
    out = _serve(node)
    assert out.returncode == 2 and "governance database has schema version '7'" in out.stderr
    assert "Traceback" not in out.stderr
    assert _dump(db) == digest
