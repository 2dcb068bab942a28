"""SQLite governance storage: ``DATA_DIR/governance.db``, WAL, one worker thread.

Every call runs on a single-thread executor with its own connection, so nothing blocks
the event loop; several node processes may share the file (writes use BEGIN IMMEDIATE).
"""

from __future__ import annotations

import asyncio
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import msgspec

from gateway.audit import GENESIS, AuditEntry, seal
from gateway.filemodes import private_file
from gateway.governance.idempotency import Claim
from gateway.governance.model import Consent, Subscription
from gateway.stores.base import StoreError

SCHEMA = """
CREATE TABLE IF NOT EXISTS audit_log (first_seq INTEGER PRIMARY KEY, last_seq INTEGER NOT NULL,
                                      ts_first REAL NOT NULL, ts_last REAL NOT NULL, entries BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS audit_log_ts ON audit_log(ts_last);
CREATE TABLE IF NOT EXISTS audit_citizen (citizen TEXT NOT NULL, seq INTEGER NOT NULL, entry BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS audit_citizen_i ON audit_citizen(citizen, seq);
CREATE TABLE IF NOT EXISTS consents (id TEXT PRIMARY KEY, user TEXT NOT NULL, consumer TEXT NOT NULL,
                                     doc BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS consents_uc ON consents(user, consumer);
CREATE TABLE IF NOT EXISTS subscriptions (id TEXT PRIMARY KEY, consumer TEXT NOT NULL, doc BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS claims (id TEXT PRIMARY KEY, expires REAL NOT NULL, doc BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS claims_expires ON claims(expires);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

_enc = msgspec.json.Encoder(order="sorted")
_dec_entry = msgspec.json.Decoder(AuditEntry)
_dec_consent = msgspec.json.Decoder(Consent)
_dec_sub = msgspec.json.Decoder(Subscription)
_dec_claim = msgspec.json.Decoder(Claim)


def connect(path: str | Path) -> sqlite3.Connection:
    """A connection in WAL mode with a busy timeout (shared by the store and the CLI)."""
    db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("PRAGMA busy_timeout=30000")
    db.executescript(SCHEMA)
    check_schema(db, path)
    return db


#: Version 1: the layout above (databases from before versions were recorded have it too).
SCHEMA_VERSION = 1


def check_schema(db: sqlite3.Connection, path: str | Path) -> None:
    """Record the schema version in a new database; refuse one written by a newer release."""
    db.execute("INSERT OR IGNORE INTO meta (name, value) VALUES ('schema_version', ?)",
               (str(SCHEMA_VERSION),))
    found = db.execute("SELECT value FROM meta WHERE name = 'schema_version'").fetchone()[0]
    if not str(found).isdigit() or int(found) > SCHEMA_VERSION:
        db.close()
        raise StoreError(
            f"{path}: the governance database has schema version {str(found)[:20]!r}, newer than "
            f"this release supports ({SCHEMA_VERSION}): it was written by a newer release of the "
            "node. Run that release, or restore a backup taken before the upgrade "
            "(docs/operations.md)")


class SQLiteGovernance:
    """The governance store on one SQLite file: a writer thread and a reader thread, each
    with its own connection (WAL lets reads proceed while a write waits for its fsync)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="governance")
        self._rpool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="governance-read")
        self._db: sqlite3.Connection | None = None
        self._rdb: sqlite3.Connection | None = None
        self.refused: str | None = None  # a key mismatch refuses the start instead

    async def _run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def _read(self, fn: Any, *args: Any) -> Any:
        if self._rdb is None:
            raise RuntimeError("governance store is not open")
        return await asyncio.get_running_loop().run_in_executor(self._rpool, fn, self._rdb, *args)

    async def open(self) -> None:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            await self._run(private_file, self.path)  # 0600; SQLite's -wal and -shm follow it
            self._db = await self._run(connect, self.path)
            self._rdb = await asyncio.get_running_loop().run_in_executor(self._rpool, connect, self.path)

    async def close(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            await self._run(db.close)
        if self._rdb is not None:
            rdb, self._rdb = self._rdb, None
            await asyncio.get_running_loop().run_in_executor(self._rpool, rdb.close)
        self._pool.shutdown(wait=True)
        self._rpool.shutdown(wait=True)

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("governance store is not open")
        return self._db

    # -- the citizen key's fingerprint ---------------------------------------------------

    def _key_fingerprint(self, fingerprint: str) -> str:
        db = self.db  # autocommit: the insert is one transaction; the first writer wins
        db.execute("INSERT OR IGNORE INTO meta(name, value) VALUES ('citizen_key_fingerprint', ?)",
                   (fingerprint,))
        return db.execute("SELECT value FROM meta WHERE name = 'citizen_key_fingerprint'").fetchone()[0]

    async def key_fingerprint(self, fingerprint: str) -> str:
        return await self._run(self._key_fingerprint, fingerprint)

    # -- audit -------------------------------------------------------------------------

    def _append(self, entries: list[AuditEntry]) -> int:
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            row = db.execute("SELECT entries FROM audit_log ORDER BY first_seq DESC LIMIT 1").fetchone()
            if row is None:  # empty, or every entry archived and pruned: go on from there
                pruned = db.execute("SELECT value FROM meta WHERE name = 'audit_pruned_head'").fetchone()
                seq, prev = (int(pruned[0].split()[0]), pruned[0].split()[1]) if pruned else (0, GENESIS)
            else:
                last = _dec_entry.decode(row[0].rpartition(b"\n")[2])
                seq, prev = last.seq, last.hash
            first = seq + 1
            lines, cits = [], []
            for e in entries:
                seq += 1
                e.seq = seq
                line = seal(prev, e)
                prev = e.hash
                lines.append(line)
                if e.citizens:
                    cits.extend((c, seq, line) for c in e.citizens)
            db.execute("INSERT INTO audit_log(first_seq, last_seq, ts_first, ts_last, entries) VALUES (?, ?, ?, ?, ?)",
                       (first, seq, min(e.ts for e in entries), max(e.ts for e in entries),
                        b"\n".join(lines)))
            if cits:
                db.executemany("INSERT INTO audit_citizen(citizen, seq, entry) VALUES (?, ?, ?)", cits)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return seq

    async def audit_append(self, entries: list[AuditEntry]) -> int:
        return await self._run(self._append, entries)

    @staticmethod
    def _range(db: sqlite3.Connection, after_seq: int, since: float | None, until: float | None,
               limit: int) -> list[AuditEntry]:
        sql, args = "SELECT entries FROM audit_log WHERE last_seq > ?", [after_seq]
        if since is not None:
            sql += " AND ts_last >= ?"
            args.append(since)
        if until is not None:
            sql += " AND ts_first < ?"
            args.append(until)
        out: list[AuditEntry] = []
        for (blob,) in db.execute(sql + " ORDER BY first_seq", args):
            for line in blob.split(b"\n"):
                e = _dec_entry.decode(line)
                if e.seq <= after_seq or (since is not None and e.ts < since) \
                        or (until is not None and e.ts >= until):
                    continue
                out.append(e)
                if len(out) >= limit:
                    return out
        return out

    async def audit_range(self, *, after_seq: int = 0, since: float | None = None,
                          until: float | None = None, limit: int = 1000) -> list[AuditEntry]:
        return await self._read(self._range, after_seq, since, until, limit)

    @staticmethod
    def _for_citizen(db: sqlite3.Connection, citizen: str, limit: int) -> list[AuditEntry]:
        rows = db.execute("SELECT entry FROM audit_citizen WHERE citizen = ? ORDER BY seq DESC LIMIT ?",
                               (citizen, limit))
        return [_dec_entry.decode(r[0]) for r in rows]

    async def audit_for_citizen(self, citizen: str, limit: int = 1000) -> list[AuditEntry]:
        return await self._read(self._for_citizen, citizen, limit)

    # -- consents ----------------------------------------------------------------------

    def _consent_put(self, c: Consent) -> None:
        self.db.execute("INSERT OR REPLACE INTO consents(id, user, consumer, doc) VALUES (?, ?, ?, ?)",
                        (c.id, c.user, c.consumer, _enc.encode(c)))

    async def consent_put(self, consent: Consent) -> None:
        await self._run(self._consent_put, consent)

    @staticmethod
    def _consent_get(db: sqlite3.Connection, cid: str) -> Consent | None:
        row = db.execute("SELECT doc FROM consents WHERE id = ?", (cid,)).fetchone()
        return None if row is None else _dec_consent.decode(row[0])

    async def consent_get(self, consent_id: str) -> Consent | None:
        return await self._read(self._consent_get, consent_id)

    @staticmethod
    def _consents_for(db: sqlite3.Connection, user: str, consumer: str) -> list[Consent]:
        rows = db.execute("SELECT doc FROM consents WHERE user = ? AND consumer = ?", (user, consumer))
        return [_dec_consent.decode(r[0]) for r in rows]

    async def consents_for(self, user: str, consumer: str) -> list[Consent]:
        return await self._read(self._consents_for, user, consumer)

    # -- subscriptions -----------------------------------------------------------------

    def _sub_put(self, s: Subscription) -> None:
        self.db.execute("INSERT OR REPLACE INTO subscriptions(id, consumer, doc) VALUES (?, ?, ?)",
                        (s.id, s.consumer, _enc.encode(s)))

    async def sub_put(self, sub: Subscription) -> None:
        await self._run(self._sub_put, sub)

    @staticmethod
    def _sub_get(db: sqlite3.Connection, sid: str) -> Subscription | None:
        row = db.execute("SELECT doc FROM subscriptions WHERE id = ?", (sid,)).fetchone()
        return None if row is None else _dec_sub.decode(row[0])

    async def sub_get(self, sub_id: str) -> Subscription | None:
        return await self._read(self._sub_get, sub_id)

    @staticmethod
    def _sub_list(db: sqlite3.Connection, consumer: str | None) -> list[Subscription]:
        if consumer is None:
            rows = db.execute("SELECT doc FROM subscriptions ORDER BY id")
        else:
            rows = db.execute("SELECT doc FROM subscriptions WHERE consumer = ? ORDER BY id", (consumer,))
        return [_dec_sub.decode(r[0]) for r in rows]

    async def sub_list(self, consumer: str | None = None) -> list[Subscription]:
        return await self._read(self._sub_list, consumer)

    @staticmethod
    def _sub_due(db: sqlite3.Connection, owner: str, now: float) -> tuple[list[Subscription], int]:
        # the fields are in the JSON document (defaults omitted); only candidates are decoded
        rows = db.execute(
            "SELECT doc FROM (SELECT id, doc, CAST(doc AS TEXT) AS d FROM subscriptions)"
            " WHERE coalesce(json_extract(d, '$.state'), 'active') = 'active'"
            " AND (coalesce(json_extract(d, '$.lease_owner'), '') IN ('', ?)"
            " OR coalesce(json_extract(d, '$.lease_until'), 0) <= ?) ORDER BY id", (owner, now)).fetchall()
        dead = db.execute("SELECT count(*) FROM subscriptions"
                          " WHERE json_extract(CAST(doc AS TEXT), '$.state') = 'dead'").fetchone()[0]
        return [_dec_sub.decode(r[0]) for r in rows], dead

    async def sub_due(self, owner: str, now: float) -> tuple[list[Subscription], int]:
        return await self._read(self._sub_due, owner, now)

    def _sub_claim(self, sid: str, owner: str, until: float, now: float) -> Subscription | None:
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            s = self._sub_get(db, sid)
            if s is None or (s.lease_owner not in ("", owner) and s.lease_until > now):
                db.execute("ROLLBACK")
                return None
            s.lease_owner, s.lease_until = owner, until
            self._sub_put(s)
            db.execute("COMMIT")
            return s
        except BaseException:
            db.execute("ROLLBACK")
            raise

    async def sub_claim(self, sub_id: str, owner: str, until: float, now: float) -> Subscription | None:
        return await self._run(self._sub_claim, sub_id, owner, until, now)

    # -- idempotency claims ------------------------------------------------------------

    def _claim(self, cid: str, claim: Claim, now: float) -> Claim | None:
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            row = db.execute("SELECT doc FROM claims WHERE id = ?", (cid,)).fetchone()
            held = None if row is None else _dec_claim.decode(row[0])
            if held is not None and held.live(now):
                db.execute("ROLLBACK")
                return held
            db.execute("DELETE FROM claims WHERE id IN (SELECT id FROM claims WHERE expires < ? LIMIT 100)",
                       (now,))
            db.execute("INSERT OR REPLACE INTO claims(id, expires, doc) VALUES (?, ?, ?)",
                       (cid, claim.expires, _enc.encode(claim)))
            db.execute("COMMIT")
            return None
        except BaseException:
            db.execute("ROLLBACK")
            raise

    async def claim(self, claim_id: str, claim: Claim, now: float) -> Claim | None:
        return await self._run(self._claim, claim_id, claim, now)

    async def claim_finish(self, claim_id: str, claim: Claim) -> None:
        await self._run(lambda: self.db.execute("UPDATE claims SET expires = ?, doc = ? WHERE id = ?",
                                                (claim.expires, _enc.encode(claim), claim_id)))

    async def claim_release(self, claim_id: str) -> None:
        await self._run(lambda: self.db.execute("DELETE FROM claims WHERE id = ?", (claim_id,)))
