"""Schema versions of the SQLite store: a database written by the previous release format
(version 1, ``data/schema_v1.sql``) is migrated at open without losing anything; a database
from a newer release is refused with a clear message and left untouched."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from fastpath import encode_batch
from gateway.stores._sqlite_schema import SCHEMA_VERSION
from gateway.stores.base import OFFSET_STRIDE, StoreError
from gateway.stores.retention import RetentionPolicy
from gateway.stores.sqlite import SQLiteStore

V1 = (Path(__file__).parent / "data" / "schema_v1.sql").read_text()
RES = "psb.id-card"
CLIENT = "SH/GOV/psb/hukou"
TS = 1_700_000_000_000


def write_v1(path: Path, batches: int = 5, size: int = 4) -> None:
    """A version 1 database as the previous release's writer left it."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.executescript(V1)
    conn.execute("INSERT INTO meta (k, v) VALUES ('schema_version', 1)")
    conn.execute("INSERT INTO resources (id, name) VALUES (1, ?)", (RES,))
    conn.execute("BEGIN")
    for b in range(1, batches + 1):
        base = b * OFFSET_STRIDE
        framed = [(base + i, TS + b * 1000, f"k{i}", json.dumps({"id": f"k{i}", "b": b}).encode())
                  for i in range(size)]
        conn.execute("INSERT INTO batches (id, resource_id, first_offset, last_offset, count, blob)"
                     " VALUES (?, 1, ?, ?, ?, ?)", (b, base, base + size - 1, size, encode_batch(framed)))
        for off, _ts, key, _d in framed:
            conn.execute('INSERT OR REPLACE INTO latest (resource_id, key, "offset") VALUES (1, ?, ?)',
                         (key, off))
    conn.execute('INSERT INTO cursors (client, resource_id, "offset", updated_ms) VALUES (?, 1, ?, ?)',
                 (CLIENT, 2 * OFFSET_STRIDE, TS))
    conn.execute("INSERT INTO idempotency (client, resource_id, key, body_hash, first, last, count,"
                 " created_ms) VALUES (?, 1, 'idem-1', 'h1', ?, ?, ?, strftime('%s') * 1000)",
                 (CLIENT, batches * OFFSET_STRIDE, batches * OFFSET_STRIDE + size - 1, size))
    conn.execute("COMMIT")
    conn.close()


async def test_upgrade_from_version_1_keeps_everything(tmp_path: Path) -> None:
    path = tmp_path / "exchange.db"
    write_v1(path)
    async with SQLiteStore(path) as store:
        records = await store.read(RES, 0, 1000)
        assert len(records) == 20
        assert [r.offset for r in records] == sorted(r.offset for r in records)
        latest = await store.latest(RES, "k3")
        assert latest is not None and latest.offset == 5 * OFFSET_STRIDE + 3
        assert json.loads(latest.data) == {"id": "k3", "b": 5}
        assert await store.get_cursor(CLIENT, RES) == 2 * OFFSET_STRIDE
        replay = await store.append(RES, [("x", b"{}")], client=CLIENT, idempotency_key="idem-1",
                                    body_hash="h1")
        assert replay.replayed and replay.first == 5 * OFFSET_STRIDE
        fresh = await store.append(RES, [("k0", b'{"id":"k0"}')], client=CLIENT)
        assert fresh.first > records[-1].offset
        # The migrated batches know their age: retention works on them.
        res = await store.apply_retention(RES, RetentionPolicy(max_age_s=1), TS + 3500)
        assert res.batches_dropped == 2 and res.earliest == 2 * OFFSET_STRIDE + 4
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT v FROM meta WHERE k = 'schema_version'").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # incremental
    assert conn.execute("SELECT min(created_ms) FROM batches").fetchone()[0] == TS + 3000
    conn.close()


async def test_a_newer_schema_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "exchange.db"
    async with SQLiteStore(path) as store:
        await store.append(RES, [("a", b"{}")], client=CLIENT)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("UPDATE meta SET v = ? WHERE k = 'schema_version'", (SCHEMA_VERSION + 1,))
    conn.close()
    before = _contents(path)
    store = SQLiteStore(path)
    with pytest.raises(StoreError) as info:
        await store.open()
    message = str(info.value)
    assert f"schema version {SCHEMA_VERSION + 1}" in message and "newer" in message
    assert "docs/operations.md" in message
    await store.close()
    assert _contents(path) == before  # every table and row as it was (pages may be rewritten)


def _contents(path: Path) -> str:
    """The database's schema and rows, as SQL."""
    conn = sqlite3.connect(path)
    try:
        return "\n".join(conn.iterdump())
    finally:
        conn.close()
