"""Migrations of the SQLite store's schema, applied at open inside the opening transaction.

Each step takes a database from version ``n`` to ``n + 1`` and never loses a record; a
step that needs work outside a transaction (a one-time ``VACUUM``) does it in
:func:`after_migration`.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable

from fastpath import CorruptBatch, decode_batch

log = logging.getLogger("gateway.stores.sqlite")


def _v1_to_v2(conn: sqlite3.Connection) -> None:
    """Retention: each batch's creation time (from its first record's timestamp) and the
    ``retention`` table of earliest offsets."""
    conn.execute("ALTER TABLE batches ADD COLUMN created_ms INTEGER NOT NULL DEFAULT 0")
    rows = conn.execute("SELECT id, blob FROM batches").fetchall()
    updates = []
    for batch_id, blob in rows:
        try:
            first = decode_batch(blob, -1, 1)
        except CorruptBatch:
            continue  # left at 0 (oldest): reads report the corruption as before
        if first:
            updates.append((first[0][1], batch_id))
    conn.executemany("UPDATE batches SET created_ms = ? WHERE id = ?", updates)
    conn.execute(
        "CREATE TABLE IF NOT EXISTS retention ("
        " resource_id INTEGER PRIMARY KEY, earliest INTEGER NOT NULL)"
    )


#: version -> the step that takes a database from it to the next version.
STEPS: dict[int, Callable[[sqlite3.Connection], None]] = {1: _v1_to_v2}


def migrate(conn: sqlite3.Connection, found: int, target: int) -> None:
    """Apply the steps from ``found`` to ``target`` (inside the caller's transaction)."""
    for version in range(found, target):
        log.warning("migrating the store database from schema version %d to %d",
                    version, version + 1)
        STEPS[version](conn)
        conn.execute("UPDATE meta SET v = ? WHERE k = 'schema_version'", (version + 1,))


def after_migration(conn: sqlite3.Connection, found: int) -> None:
    """Work outside a transaction: version 1 files get incremental auto-vacuum (one VACUUM)."""
    if found < 2 and conn.execute("PRAGMA auto_vacuum").fetchone()[0] != 2:
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        conn.execute("VACUUM")
