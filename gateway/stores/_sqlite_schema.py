"""The SQLite store's schema and connection settings."""

from __future__ import annotations

import sqlite3
import time

from gateway.stores._sqlite_migrations import after_migration, migrate
from gateway.stores.base import StoreError, StoreUnavailable

#: Version 1: the first release. Version 2: ``batches.created_ms`` and ``retention``
#: (retention and compaction), incremental auto-vacuum (see :mod:`._sqlite_migrations`).
SCHEMA_VERSION = 2

#: ``batches``: one row per pushed batch; its records' offsets are ``id * OFFSET_STRIDE + index``
#: (compaction may rewrite a batch to fewer records; the offsets stay).
#: ``latest``: per key, the offset of its newest record (the data stays in the batch: random
#: keys dirty one index page per record, so the index rows are kept as small as possible).
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    k TEXT PRIMARY KEY,
    v
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS resources (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS batches (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    resource_id INTEGER NOT NULL,
    first_offset INTEGER NOT NULL,
    last_offset INTEGER NOT NULL,
    count INTEGER NOT NULL,
    blob BLOB NOT NULL,
    created_ms INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS batches_by_resource ON batches (resource_id, last_offset);
CREATE TABLE IF NOT EXISTS latest (
    resource_id INTEGER NOT NULL,
    key TEXT NOT NULL,
    "offset" INTEGER NOT NULL,
    PRIMARY KEY (resource_id, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS cursors (
    client TEXT NOT NULL,
    resource_id INTEGER NOT NULL,
    "offset" INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    PRIMARY KEY (client, resource_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS idempotency (
    client TEXT NOT NULL,
    resource_id INTEGER NOT NULL,
    key TEXT NOT NULL,
    body_hash TEXT NOT NULL,
    first INTEGER NOT NULL,
    last INTEGER NOT NULL,
    count INTEGER NOT NULL,
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (client, resource_id, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS idempotency_by_age ON idempotency (created_ms);
CREATE TABLE IF NOT EXISTS retention (
    resource_id INTEGER PRIMARY KEY,
    earliest INTEGER NOT NULL
);
"""

SYNCHRONOUS_MODES = ("FULL", "NORMAL", "EXTRA")

#: The writer updates index pages all over the file (random keys): give it a big cache.
WRITER_CACHE_KIB = 64 * 1024
#: A group commit of random keys writes thousands of pages: checkpoint every ~40 MB of WAL
#: (not every 4 MB, SQLite's default) so that checkpoints do not follow every commit, and
#: truncate the WAL back to 64 MB after one.
WAL_CHECKPOINT_PAGES = 10_000
WAL_SIZE_LIMIT_BYTES = 64 * 1024 * 1024
#: Readers mostly read batch blobs: a small private cache, and the OS page cache via mmap.
READER_CACHE_KIB = 8 * 1024
READER_MMAP_BYTES = 256 * 1024 * 1024


def connect(
    path: str, *, synchronous: str, busy_timeout_ms: int, readonly: bool
) -> sqlite3.Connection:
    """Open a connection in autocommit mode (transactions are explicit) with our pragmas."""
    conn = sqlite3.connect(
        path,
        isolation_level=None,
        check_same_thread=False,
        timeout=busy_timeout_ms / 1000,
        cached_statements=64,
    )
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    if readonly:
        conn.execute("PRAGMA query_only = ON")
        conn.execute(f"PRAGMA cache_size = -{READER_CACHE_KIB}")
        conn.execute(f"PRAGMA mmap_size = {READER_MMAP_BYTES}")
    else:
        conn.execute(f"PRAGMA cache_size = -{WRITER_CACHE_KIB}")
        conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_CHECKPOINT_PAGES}")
        conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT_BYTES}")
    return conn


def initialise(conn: sqlite3.Connection, busy_timeout_ms: int) -> None:
    """Switch to WAL, create the schema or migrate an older one to :data:`SCHEMA_VERSION`;
    refuse a newer one. Safe when several processes race to do it."""
    deadline = time.monotonic() + busy_timeout_ms / 1000
    # Space freed by retention goes back to the file system (only takes effect on a new file;
    # the migration from version 1 sets it and vacuums once).
    conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
    while True:
        try:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise StoreUnavailable(f"cannot switch the database to WAL: {exc}") from exc
            time.sleep(0.01)
    if str(mode).lower() != "wal":
        raise StoreUnavailable(f"the database refused WAL mode (journal_mode is {mode!r})")
    conn.execute("BEGIN IMMEDIATE")
    try:
        found = stored_version(conn)
        if found is not None and found > SCHEMA_VERSION:
            raise StoreError(newer_message(found))
        if found is None:
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(
                "INSERT INTO meta (k, v) VALUES ('schema_version', ?)", (SCHEMA_VERSION,)
            )
        else:
            migrate(conn, found, SCHEMA_VERSION)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    if found is not None and found < SCHEMA_VERSION:
        after_migration(conn, found)


def stored_version(conn: sqlite3.Connection) -> int | None:
    """The database's schema version, None for a new (empty) database."""
    has_meta = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
    ).fetchone()
    if has_meta is None:
        return None
    row = conn.execute("SELECT v FROM meta WHERE k = 'schema_version'").fetchone()
    if row is None or type(row[0]) is not int:
        raise StoreError(f"the database has no readable schema version ({row!r})")
    return row[0]


def newer_message(found: int) -> str:
    return (
        f"the database has schema version {found}, newer than this release supports "
        f"({SCHEMA_VERSION}): it was written by a newer release of the node. Run that "
        "release, or restore a backup taken before the upgrade (docs/operations.md)"
    )
