"""Backup and restore of one node: ``python -m gateway backup`` / ``restore``.

A backup is one ``tar.gz`` file (mode 0600: it holds the keyring's secrets and the node's
keys) with ``manifest.json`` (what is inside, SHA-256 of every member, schema versions):

    data/exchange.db          the record store (SQLite backend), a consistent snapshot
    data/governance.db        audit log, consents, webhook subscriptions, idempotency claims
    data/<key and state files> audit.key, node-signing.key, audit-checkpoints.jsonl, ...
    config/node.toml, config/keyring.toml, config/catalog.toml (and operator_keys_file)

The databases are copied with SQLite's online backup API in one step while the node serves:
the copy is the database as of the moment the step began (WAL readers never block the
writer), so every push acknowledged before the backup started is in it. In cluster mode the
records and governance state live in JetStream: the archive then holds a JetStream snapshot
of every stream and bucket of the prefix (``jetstream/``, see :mod:`gateway.stores.jssnapshot`)
besides the node's own files.

``restore`` checks every member against the manifest, then writes the databases and data
files into the target configuration's ``data_dir`` (and store ``path``), and the keyring and
catalog to the target's paths where those files do not exist yet. It refuses to overwrite a
store or key file unless ``force`` (never while a node runs on them: stop it first). In
cluster mode it restores the streams into the target's JetStream (refusing streams that
exist) and starts the node's high-water mark over.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import io
import json
import os
import sqlite3
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

from gateway.config import NodeConfig, load_node_config
from gateway.filemodes import private_dir
from gateway.redact import redact

#: Files of DATA_DIR that a backup carries besides the databases (the node's keys and state).
DATA_FILES = ("audit.key", "node-signing.key", "audit-checkpoints.jsonl", "jetstream-hwm.json")
FORMAT = 1


class BackupError(Exception):
    """A backup or restore that cannot be done; the message says why (never a secret)."""


def _store_path(cfg: NodeConfig) -> Path:
    data_dir = cfg.resolve(cfg.node.data_dir)
    return cfg.resolve(cfg.store.path) if cfg.store.path else data_dir / "exchange.db"


def _snapshot(src: Path, dst: Path) -> dict[str, Any]:
    """Copy a live SQLite database in one backup step; (schema version, size)."""
    source = sqlite3.connect(f"file:{src}?mode=ro", uri=True, timeout=30)
    target = sqlite3.connect(dst)
    try:
        source.backup(target)  # pages=-1: one step, one consistent read transaction
    finally:
        source.close()
    try:
        target.execute("PRAGMA journal_mode = DELETE")  # a self-contained file in the archive
        row = None
        for query in ("SELECT v FROM meta WHERE k = 'schema_version'",
                      "SELECT value FROM meta WHERE name = 'schema_version'"):
            try:
                row = target.execute(query).fetchone()
                break
            except sqlite3.OperationalError:
                continue
        ok = target.execute("PRAGMA quick_check").fetchone()[0]
        if ok != "ok":
            raise BackupError(f"the copy of {src.name} failed its integrity check: {ok}")
    finally:
        target.close()
    return {"schema_version": row[0] if row else None}


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def backup(config_path: str | Path, out: str | Path, *, force: bool = False) -> dict[str, Any]:
    """Write a backup of the node at ``config_path`` to ``out`` (mode 0600); its manifest."""
    cfg = load_node_config(config_path)
    out = Path(out)
    if out.exists() and not force:
        raise BackupError(f"{out} exists; choose another file or pass --force")
    data_dir = cfg.resolve(cfg.node.data_dir)
    started = time.time()
    members: list[tuple[str, Path]] = []
    manifest: dict[str, Any] = {
        "format": FORMAT, "created": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "backend": cfg.store.backend, "prefix": cfg.store.prefix, "files": {}, "databases": {}}
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".backup-", dir=out.parent) as tmp:
        work = Path(tmp)
        os.chmod(work, 0o700)
        databases = [("governance.db", data_dir / "governance.db")]
        if cfg.store.backend == "sqlite":
            databases.insert(0, ("exchange.db", _store_path(cfg)))
        for name, path in databases:
            if not path.exists():
                if name == "exchange.db":
                    raise BackupError(f"the store database {path} does not exist")
                continue
            copy = work / name
            manifest["databases"][name] = _snapshot(path, copy)
            members.append((f"data/{name}", copy))
        for name in DATA_FILES:  # copied once (the node may append meanwhile), then hashed
            if (data_dir / name).is_file():
                body = (data_dir / name).read_bytes()
                if name.endswith(".jsonl"):
                    body = body[: body.rfind(b"\n") + 1]  # whole lines only
                (work / name).write_bytes(body)
                members.append((f"data/{name}", work / name))
        if cfg.store.backend == "jetstream":
            import nats.errors  # cluster mode: [cluster] is installed

            from gateway.stores.jssnapshot import SnapshotError, snapshot_all

            try:
                sizes = asyncio.run(snapshot_all(cfg.store.servers, cfg.store.prefix, work / "js"))
            except (SnapshotError, OSError, TimeoutError, nats.errors.Error) as exc:
                raise BackupError(f"JetStream snapshot failed: {redact(str(exc))}") from None
            manifest["jetstream"] = sizes
            for f in sorted((work / "js").iterdir()):
                members.append((f"jetstream/{f.name}", f))
        members.append(("config/node.toml", Path(cfg.source)))
        members.append(("config/keyring.toml", cfg.resolve(cfg.node.keyring)))
        members.append(("config/catalog.toml", cfg.resolve(cfg.node.catalog)))
        if cfg.node.operator_keys_file:
            members.append(("config/operator_keys", cfg.resolve(cfg.node.operator_keys_file)))
        for arc, path in members:
            if not path.is_file():
                raise BackupError(f"cannot read {path}")
            manifest["files"][arc] = {"sha256": _digest(path), "bytes": path.stat().st_size}
        manifest["seconds"] = round(time.time() - started, 3)
        partial = out.with_name(out.name + ".partial")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
            body = json.dumps(manifest, indent=1, sort_keys=True).encode()
            info = tarfile.TarInfo("manifest.json")
            info.size, info.mode, info.mtime = len(body), 0o600, int(started)
            tar.addfile(info, io.BytesIO(body))
            for arc, path in members:
                info = tar.gettarinfo(str(path), arcname=arc)
                info.mode, info.uid, info.gid, info.uname, info.gname = 0o600, 0, 0, "", ""
                with open(path, "rb") as f:
                    tar.addfile(info, f)
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(partial, out)
    manifest["seconds"] = round(time.time() - started, 3)
    return manifest


def _read_archive(archive: Path, work: Path) -> dict[str, Any]:
    """Extract into ``work`` and check every member against the manifest; the manifest."""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            names = tar.getnames()
            if "manifest.json" not in names:
                raise BackupError(f"{archive} is not a backup of this tool (no manifest.json)")
            for name in names:
                if name.startswith("/") or ".." in Path(name).parts:
                    raise BackupError(f"{archive} holds an unsafe member name {name[:80]!r}")
            tar.extractall(work, filter="data")
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise BackupError(f"cannot read {archive}: {exc}") from None
    try:
        manifest = json.loads((work / "manifest.json").read_text())
        files = manifest["files"]
    except (ValueError, KeyError, TypeError) as exc:
        raise BackupError(f"{archive}: unreadable manifest ({exc})") from None
    if manifest.get("format") != FORMAT:
        raise BackupError(f"{archive}: backup format {manifest.get('format')!r} is not {FORMAT}")
    for arc, meta in files.items():
        path = work / arc
        if not path.is_file() or _digest(path) != meta.get("sha256"):
            raise BackupError(f"{archive}: {arc} does not match its SHA-256 in the manifest")
    return manifest


def _place(src: Path, dst: Path, force: bool) -> None:
    if dst.exists() and not force:
        raise BackupError(f"{dst} exists; stop the node and pass --force to overwrite it")
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".restoring")
    with open(src, "rb") as f, os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as g:
        while chunk := f.read(1 << 20):
            g.write(chunk)
        g.flush()
        os.fsync(g.fileno())
    for side in ("-wal", "-shm"):  # a database's stale side files would be replayed over it
        Path(str(dst) + side).unlink(missing_ok=True)
    os.replace(tmp, dst)


def restore(archive: str | Path, config_path: str | Path, *, force: bool = False) -> list[str]:
    """Restore ``archive`` into the node described by ``config_path``; what was written."""
    archive = Path(archive)
    cfg = load_node_config(config_path)
    data_dir = private_dir(cfg.resolve(cfg.node.data_dir))
    written: list[str] = []
    with tempfile.TemporaryDirectory(prefix=".restore-", dir=data_dir) as tmp:
        work = Path(tmp)
        manifest = _read_archive(archive, work)
        if manifest.get("backend") != cfg.store.backend:
            raise BackupError(f"{archive} is a backup of a {manifest.get('backend')} node; "
                              f"{config_path} uses {cfg.store.backend}")
        files = manifest["files"]
        targets: list[tuple[str, Path, bool]] = []  # archive name, destination, overwrite?
        for arc in files:
            name = arc.partition("/")[2]
            if arc == "data/jetstream-hwm.json":
                continue  # the restored streams start the mark over (below)
            if arc == "data/exchange.db":
                targets.append((arc, _store_path(cfg), force))
            elif arc.startswith("data/"):
                targets.append((arc, data_dir / name, force))
        for _arc, dst, overwrite in targets:  # check all before writing any
            if dst.exists() and not overwrite:
                raise BackupError(f"{dst} exists; stop the node and pass --force to overwrite it")
        if cfg.store.backend == "jetstream":
            import nats.errors  # cluster mode: [cluster] is installed

            from gateway.stores.jssnapshot import SnapshotError, restore_all

            try:
                streams = asyncio.run(restore_all(cfg.store.servers, cfg.store.prefix,
                                                  work / "jetstream"))
            except (SnapshotError, OSError, TimeoutError, nats.errors.Error) as exc:
                raise BackupError(f"JetStream restore failed: {redact(str(exc))}") from None
            written.extend(f"JetStream stream {s}" for s in streams)
            (data_dir / "jetstream-hwm.json").unlink(missing_ok=True)
        for arc, dst, overwrite in targets:
            _place(work / arc, dst, overwrite)
            written.append(str(dst))
        for arc, dst in (("config/keyring.toml", cfg.resolve(cfg.node.keyring)),
                         ("config/catalog.toml", cfg.resolve(cfg.node.catalog))):
            if arc in files and (force or not dst.exists()):
                _place(work / arc, dst, True)
                written.append(str(dst))
    return written
