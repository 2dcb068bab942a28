"""Operator commands on the governance store: audit verify/export, webhook list/replay.

They open ``DATA_DIR/governance.db`` directly (SQLite, WAL: safe while the node runs).
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import msgspec

from gateway.audit import iter_file, verify
from gateway.governance.model import Subscription
from gateway.tomlfile import ConfigError

_dec_sub = msgspec.json.Decoder(Subscription)
_enc = msgspec.json.Encoder(order="sorted")


def cluster_store(config: str | None, db: str | None) -> Any:
    """The JetStream governance store when the node config names the jetstream backend."""
    if db or not config:
        return None
    from gateway.config import load_node_config

    cfg = load_node_config(config)
    if cfg.store.backend != "jetstream":
        return None
    from gateway.governance.jetstream import JetStreamGovernance

    st = cfg.store
    return JetStreamGovernance(st.servers, replicas=st.replicas, prefix=st.prefix)


def db_path(config: str | None, db: str | None) -> Path:
    """The governance database named by --db, or by the node config's data_dir."""
    if db:
        return Path(db)
    if config:
        from gateway.config import load_node_config

        cfg = load_node_config(config)
        if cfg.store.backend != "sqlite":
            raise ConfigError(config, "store.backend", "this command needs the sqlite governance store")
        return cfg.resolve(cfg.node.data_dir) / "governance.db"
    return Path("var/governance.db")


async def _all_entries(store: Any, since: float | None = None, until: float | None = None) -> list:
    await store.open()
    try:
        return await store.audit_range(since=since, until=until, limit=1 << 40)
    finally:
        await store.close()


def cluster_verify(store: Any) -> int:
    """Verify the shared chain in JetStream."""
    import asyncio

    from gateway.stores.base import StoreUnavailable

    try:
        entries = asyncio.run(_all_entries(store))
    except StoreUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    count, problem = verify((f"entry {e.seq}", _enc.encode(e)) for e in entries)
    if problem:
        print(f"BROKEN after {count} good entries: {problem}")
        return 1
    print(f"ok: {count} entries, chain intact")
    return 0


def cluster_export(store: Any, since: str | None, until: str | None, out: TextIO) -> int:
    """Export the shared chain's entries with since <= ts < until as JSON lines."""
    import asyncio

    lo = parse_time(since, "--since") if since else None
    hi = parse_time(until, "--until") if until else None
    from gateway.stores.base import StoreUnavailable

    try:
        entries = asyncio.run(_all_entries(store, lo, hi))
    except StoreUnavailable as exc:
        raise ValueError(str(exc)) from None
    for e in entries:
        out.write(_enc.encode(e).decode() + "\n")
    return len(entries)


def _open(path: Path) -> sqlite3.Connection:
    if not path.exists():
        raise FileNotFoundError(f"governance store {path} not found")
    from gateway.governance.sqlite import connect

    return connect(path)


def _rows(db: sqlite3.Connection) -> Iterator[tuple[str, bytes]]:
    for first, blob in db.execute("SELECT first_seq, entries FROM audit_log ORDER BY first_seq"):
        for i, line in enumerate(blob.split(b"\n")):
            yield f"batch {first} line {i + 1}", line


def audit_verify(path: Path | None, log: str | None = None) -> int:
    """Print the verdict; exit status 0 intact, 1 broken."""
    if log:
        if not Path(log).exists():
            raise FileNotFoundError(f"audit export {log} not found")
        count, problem = verify(iter_file(log))
    else:
        assert path is not None
        with _open(path) as db:
            count, problem = verify(_rows(db))
    if problem:
        print(f"BROKEN after {count} good entries: {problem}")
        return 1
    print(f"ok: {count} entries, chain intact")
    return 0


def parse_time(value: str, flag: str) -> float:
    """A UNIX time from YYYY-MM-DD or an RFC 3339 time (UTC when no zone is given)."""
    try:
        if len(value) == 10:
            d = dt.date.fromisoformat(value)
            return dt.datetime(d.year, d.month, d.day, tzinfo=dt.UTC).timestamp()
        t = dt.datetime.fromisoformat(value)
        return (t if t.tzinfo else t.replace(tzinfo=dt.UTC)).timestamp()
    except ValueError:
        raise ValueError(f"{flag} must be YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS[Z], got {value!r}") from None


def audit_export(path: Path, since: str | None, until: str | None, out: TextIO) -> int:
    """Write the entries with since <= ts < until as JSON lines; return how many."""
    lo = parse_time(since, "--since") if since else None
    hi = parse_time(until, "--until") if until else None
    sql, args = "SELECT entries FROM audit_log WHERE 1=1", []
    if lo is not None:
        sql += " AND ts_last >= ?"
        args.append(lo)
    if hi is not None:
        sql += " AND ts_first < ?"
        args.append(hi)
    n = 0
    with _open(path) as db:
        for (blob,) in db.execute(sql + " ORDER BY first_seq", args):
            for line in blob.split(b"\n"):
                ts = msgspec.json.decode(line, type=_Ts).ts
                if (lo is None or ts >= lo) and (hi is None or ts < hi):
                    out.write(line.decode() + "\n")
                    n += 1
    return n


class _Ts(msgspec.Struct):
    ts: float


def webhooks_list(path: Path, out: TextIO = sys.stdout) -> int:
    with _open(path) as db:
        for (doc,) in db.execute("SELECT doc FROM subscriptions ORDER BY id"):
            s = _dec_sub.decode(doc)
            out.write(_enc.encode(s.public()).decode() + "\n")
    return 0


def webhooks_replay(path: Path, sub_id: str, after: int | None = None) -> str:
    """Bring a dead-lettered (or any) subscription back to active, optionally rewinding its cursor."""
    with _open(path) as db:
        db.execute("BEGIN IMMEDIATE")
        row = db.execute("SELECT doc FROM subscriptions WHERE id = ?", (sub_id,)).fetchone()
        if row is None:
            db.execute("ROLLBACK")
            raise LookupError(f"unknown subscription {sub_id!r}")
        s = _dec_sub.decode(row[0])
        try:
            msg = _reactivate(s, after)
        except LookupError:
            db.execute("ROLLBACK")
            raise
        db.execute("UPDATE subscriptions SET doc = ? WHERE id = ?", (_enc.encode(s), sub_id))
        db.execute("COMMIT")
    return msg


def _reactivate(s: Subscription, after: int | None) -> str:
    if s.state == "deleted":
        raise LookupError(f"subscription {s.id} was deleted by its consumer")
    was = s.state
    s.state, s.attempts, s.next_attempt, s.last_error = "active", 0, 0.0, ""
    s.lease_owner, s.lease_until = "", 0.0
    if after is not None:
        s.cursor = after
    return f"{s.id}: {was} -> active at cursor {s.cursor}"


def cluster_webhooks(store: Any, command: str, sub_id: str | None, after: int | None,
                     out: TextIO = sys.stdout) -> str:
    """``list`` or ``replay`` on the JetStream governance store."""
    import asyncio

    async def run() -> str:
        await store.open()
        try:
            if command == "list":
                for s in await store.sub_list():
                    out.write(_enc.encode(s.public()).decode() + "\n")
                return ""
            s = await store.sub_get(sub_id or "")
            if s is None:
                raise LookupError(f"unknown subscription {sub_id!r}")
            msg = _reactivate(s, after)
            await store.sub_put(s)
            return msg
        finally:
            await store.close()

    return asyncio.run(run())
