"""Retention and compaction in the SQLite store (run by the writer thread, inside its group
transaction; see :mod:`gateway.stores.retention` for the contract).

Batches beyond the policy are taken oldest first, at most ``budget`` per step. Without
compaction a batch row is deleted with the ``latest`` rows that point into it. With
compaction a batch keeps the records that are still their key's latest (its blob is
rewritten to them, its offsets stay) and is deleted once none is. Compacted batches (below
``earliest``) are looked at again, a few per step, as newer records supersede theirs.
"""

from __future__ import annotations

import sqlite3

from fastpath import CorruptBatch, decode_batch, encode_batch
from gateway.stores.base import OFFSET_STRIDE, StoreError
from gateway.stores.retention import RetentionPolicy, RetentionResult

Row = tuple[int, int, int, int, bytes]  # id, first_offset, last_offset, count, blob


def retain(
    conn: sqlite3.Connection,
    rid: int | None,
    name: str,
    policy: RetentionPolicy,
    now_ms: int,
    budget: int,
    recompact: dict[str, int] | None = None,
) -> tuple[RetentionResult, bool]:
    """One bounded step: (what it did, whether batches beyond the policy remain)."""
    res = RetentionResult(name)
    if rid is None:
        row = conn.execute("SELECT id FROM resources WHERE name = ?", (name,)).fetchone()
        if row is None:
            return res, False
        rid = row[0]
    row = conn.execute("SELECT earliest FROM retention WHERE resource_id = ?", (rid,)).fetchone()
    earliest = res.earliest = row[0] if row else 0
    cut = _cut(conn, rid, earliest, policy, now_ms)
    rows: list[Row] = conn.execute(
        "SELECT id, first_offset, last_offset, count, blob FROM batches"
        " WHERE resource_id = ? AND last_offset >= ? AND id <= ? ORDER BY id LIMIT ?",
        (rid, earliest, cut, budget),
    ).fetchall()
    for batch in rows:
        _shrink(conn, rid, name, batch, policy.compact, res)
        earliest = max(earliest, batch[2] + 1)
    if rows:
        conn.execute(
            "INSERT INTO retention (resource_id, earliest) VALUES (?, ?) ON CONFLICT (resource_id)"
            " DO UPDATE SET earliest = max(earliest, excluded.earliest)",
            (rid, earliest),
        )
        res.earliest = earliest
    more = len(rows) == budget
    left = budget - len(rows)
    if policy.compact and left > 0 and recompact is not None:
        start = recompact.get(name, 0)
        old: list[Row] = conn.execute(
            "SELECT id, first_offset, last_offset, count, blob FROM batches"
            " WHERE resource_id = ? AND last_offset < ? AND id > ? ORDER BY id LIMIT ?",
            (rid, earliest, start, left),
        ).fetchall()
        for batch in old:
            _shrink(conn, rid, name, batch, True, res)
        recompact[name] = old[-1][0] if len(old) == left else 0  # from the start next time
    return res, more


def _cut(
    conn: sqlite3.Connection, rid: int, earliest: int, policy: RetentionPolicy, now_ms: int
) -> int:
    """The newest batch id beyond the policy (0: none) among those not yet processed."""
    cut = 0
    if policy.max_age_s is not None:
        row = conn.execute(
            "SELECT max(id) FROM batches WHERE resource_id = ? AND last_offset >= ?"
            " AND created_ms < ?",
            (rid, earliest, now_ms - policy.max_age_s * 1000),
        ).fetchone()
        cut = max(cut, row[0] or 0)
    if policy.max_records is not None:
        # A batch goes when the newer batches alone hold max_records records.
        row = conn.execute(
            "SELECT max(id) FROM (SELECT id, count, sum(count) OVER (ORDER BY id DESC) AS c"
            " FROM batches WHERE resource_id = ? AND last_offset >= ?) WHERE c - count >= ?",
            (rid, earliest, policy.max_records),
        ).fetchone()
        cut = max(cut, row[0] or 0)
    return cut


def _shrink(
    conn: sqlite3.Connection, rid: int, name: str, batch: Row, compact: bool, res: RetentionResult
) -> None:
    batch_id, _first, _last, _count, blob = batch
    try:
        records = decode_batch(blob, -1, OFFSET_STRIDE)
    except CorruptBatch as exc:
        raise StoreError(f"stored batch {batch_id} of resource {name!r} is corrupt: {exc}") from exc
    keep = []
    for off, ts, key, data in records:
        if compact:
            row = conn.execute(
                'SELECT "offset" FROM latest WHERE resource_id = ? AND key = ?', (rid, key)
            ).fetchone()
            if row is not None and row[0] == off:
                keep.append((off, ts, key, data))
        else:
            cur = conn.execute(
                'DELETE FROM latest WHERE resource_id = ? AND key = ? AND "offset" = ?',
                (rid, key, off),
            )
            res.keys_dropped += max(cur.rowcount, 0)
    if len(keep) == len(records):
        return  # a compacted batch whose records are all still their key's latest
    res.records_dropped += len(records) - len(keep)
    if keep:
        conn.execute(
            "UPDATE batches SET blob = ?, first_offset = ?, last_offset = ?, count = ? WHERE id = ?",
            (encode_batch(keep), keep[0][0], keep[-1][0], len(keep), batch_id),
        )
        res.records_compacted += len(keep)
    else:
        conn.execute("DELETE FROM batches WHERE id = ?", (batch_id,))
        res.batches_dropped += 1
