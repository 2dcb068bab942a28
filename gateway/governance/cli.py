"""Operator commands on the governance store: audit verify/export, webhook list/replay.

They open ``DATA_DIR/governance.db`` directly (SQLite, WAL: safe while the node runs).
``audit verify`` also reads the signed checkpoints and trusts the node key(s): see
:mod:`gateway.governance.auditverify` and docs/audit.md.
"""

from __future__ import annotations

import datetime as dt
import itertools
import sqlite3
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

import msgspec

from gateway.audit import iter_file, verify
from gateway.governance.checkpoints import FILE_NAME as CHECKPOINT_FILE
from gateway.governance.model import Subscription
from gateway.governance.webhooks import KEY_FILE
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


def verify_defaults(config: str | None, db: str | None) -> tuple[Path, Path]:
    """(checkpoint file, node key file) of the node named by --config, else next to --db."""
    if config and not db:
        from gateway.config import load_node_config
        from gateway.governance.checkpoints import checkpoint_path

        cfg = load_node_config(config)
        return checkpoint_path(cfg), cfg.resolve(cfg.node.data_dir) / KEY_FILE
    base = Path(db).parent if db else Path("var")
    return base / CHECKPOINT_FILE, base / KEY_FILE


def _trusted_keys(key_files: Sequence[str], default: Path | None) -> dict[str, Any]:
    from gateway.governance.auditverify import load_public_keys

    keys: dict[str, Any] = {}
    if key_files:
        for f in key_files:
            keys.update(load_public_keys(f))
    elif default is not None and default.exists():
        keys.update(load_public_keys(default))
    else:
        where = f" ({default} not found)" if default is not None else ""
        raise ValueError(f"no trusted node key{where}: pass --key FILE (a node's node-signing.key, its PEM "
                         "public key, or the JSON of GET /v1/node-keys), once per node")
    return keys


def _checkpoint_rows(files: Sequence[str], default: Path | None) -> list[tuple[str, bytes]]:
    """Every checkpoint line of the files given (each must exist), else of the default file."""
    from gateway.governance.auditverify import iter_checkpoint_file

    paths = [Path(f) for f in files]
    for p in paths:
        if not p.exists():
            raise FileNotFoundError(f"checkpoint file {p} not found")
    if not paths and default is not None and default.exists():
        paths = [default]
    return [row for p in paths for row in iter_checkpoint_file(p)]


def cluster_verify(store: Any, checkpoint_files: Sequence[str] = (), key_files: Sequence[str] = (),
                   defaults: tuple[Path, Path] | None = None) -> int:
    """Verify the shared chain in JetStream against the checkpoints in the stream and in the
    checkpoint file(s), and the citizen index."""
    import asyncio

    from gateway.governance.auditverify import IndexRow, check
    from gateway.stores.base import StoreUnavailable

    cp_default, key_default = defaults or (None, None)
    keys = _trusted_keys(key_files, key_default)
    local = _checkpoint_rows(checkpoint_files, cp_default)

    async def read() -> tuple[list, list, list]:
        await store.open()
        try:  # checkpoints first: each is written after the entries it covers
            cps = await store.audit_checkpoints()
            entries = await store.audit_range(limit=1 << 40)
            index = await store.audit_citizen_index()
            return cps, entries, index
        finally:
            await store.close()

    try:
        cps, entries, index = asyncio.run(read())
    except StoreUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    rows = []
    for where, citizen, raw in index:
        try:
            seq = msgspec.json.decode(raw, type=_Seq).seq
        except (msgspec.DecodeError, msgspec.ValidationError):
            seq = 0  # reported: points at no entry
        rows.append(IndexRow(where, citizen, seq, raw))
    rows.sort(key=lambda r: (r.seq, r.citizen))
    report = check(((f"entry {e.seq}", _enc.encode(e)) for e in entries), [*cps, *local], keys, rows)
    return report.write(sys.stdout)


class _Seq(msgspec.Struct):
    seq: int


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


def audit_verify(path: Path | None, log: str | None = None, checkpoint_files: Sequence[str] = (),
                 key_files: Sequence[str] = (), defaults: tuple[Path, Path] | None = None, *,
                 archive: str | None = None) -> int:
    """Verify the SQLite governance store (or an exported file, ``log``) and print the
    verdict; exit status 0 verified, 1 broken, truncated, rewritten or not vouched for.

    ``defaults`` (checkpoint file, node key file) are used when no ``--checkpoints`` /
    ``--key`` are given; an export is checked against checkpoints only when some are given."""
    from gateway.governance.auditverify import IndexRow, check

    if log:
        if not Path(log).exists():
            raise FileNotFoundError(f"audit export {log} not found")
        if not checkpoint_files:
            count, problem = verify(iter_file(log))
            if problem:
                print(f"BROKEN after {count} good entries: {problem}")
                return 1
            print(f"ok: {count} entries, chain intact")
            print("note: no --checkpoints given: the chain is checked, not its completeness")
            return 0
        keys = _trusted_keys(key_files, None)
        report = check(iter_file(log), _checkpoint_rows(checkpoint_files, None), keys)
        return report.write(sys.stdout)
    assert path is not None
    cp_default, key_default = defaults or (None, None)
    if not path.exists():
        raise FileNotFoundError(f"governance store {path} not found")
    keys = _trusted_keys(key_files, key_default)
    checkpoints = _checkpoint_rows(checkpoint_files, cp_default)  # before the chain is read
    from gateway.governance.archive import ArchiveError, check_signatures, live_start, segment_rows

    db = _open(path)
    try:
        db.execute("BEGIN")  # one snapshot for the chain and the citizen index
        start = live_start(db)
        if start > 1 and not archive:
            print(f"BROKEN: the live log starts at entry {start}: entries 1..{start - 1} were "
                  "archived; pass --archive DIR to verify the archive and the live log as one chain")
            return 1
        index = (IndexRow(f"audit_citizen rowid {rowid}", citizen, seq, entry) for rowid, citizen, seq, entry in
                 db.execute("SELECT rowid, citizen, seq, entry FROM audit_citizen ORDER BY seq, citizen"))
        rows = itertools.chain(segment_rows(archive), _rows(db)) if archive else _rows(db)
        try:
            report = check(rows, checkpoints, keys, index)
        except ArchiveError as exc:
            print(f"BROKEN: {exc}")
            return 1
        if archive:
            for problem in check_signatures(archive, keys):
                report.problem("archive", problem)
            report.ok.append(f"archive {archive}: segments complete, chained and covered by the checks above")
        db.execute("ROLLBACK")
    finally:
        db.close()
    return report.write(sys.stdout)


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


def audit_export(path: Path, since: str | None, until: str | None, out: TextIO, *,
                 archive: str | None = None) -> int:
    """Write the entries with since <= ts < until as JSON lines (the archive's first, when
    given); return how many."""
    lo = parse_time(since, "--since") if since else None
    hi = parse_time(until, "--until") if until else None
    n = 0
    if archive:
        from gateway.governance.archive import ArchiveError, segment_rows

        try:
            for _where, line in segment_rows(archive):
                ts = msgspec.json.decode(line, type=_Ts).ts
                if (lo is None or ts >= lo) and (hi is None or ts < hi):
                    out.write(line.decode() + "\n")
                    n += 1
        except ArchiveError as exc:
            raise ValueError(str(exc)) from None
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
