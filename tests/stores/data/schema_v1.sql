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
    blob BLOB NOT NULL
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
