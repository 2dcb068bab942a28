"""``python -m gateway``: serve a node, check configs, manage dev keys, synthesize catalogs,
audit (verify, export), webhooks (list, replay), retention, backup and restore."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from gateway.stores.base import StoreError
from gateway.tomlfile import ConfigError, read_toml


def _cmd_serve(args: argparse.Namespace) -> int:
    from gateway.config import load_node_config
    from gateway.filemodes import PRIVATE_UMASK
    from gateway.operatorkey import trusted_keys
    from gateway.server import load_state, serve

    os.umask(PRIVATE_UMASK)  # whatever the node creates is its own (docs/security.md)
    cfg = load_node_config(args.config)
    load_state(cfg)  # refuse a bad catalog or keyring before binding the port
    trusted_keys(cfg)  # and a missing or bad operator_keys_file
    if args.listen:
        cfg.node.listen = args.listen
    if args.workers > 1:
        from gateway.workers import serve_workers

        return serve_workers(cfg, args.workers, accept_reset=args.accept_reset)
    serve(cfg, accept_reset=args.accept_reset)
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    from gateway.catalog import load_catalog
    from gateway.config import load_node_config
    from gateway.keyring import load_keyring
    from gateway.server import load_state, ssl_context

    path = Path(args.file)
    kind = args.kind
    if kind == "auto":
        try:
            doc = read_toml(path)
        except ConfigError:
            doc = {"node": None}  # let the node loader report the precise error
        kind = "node" if "node" in doc else "catalog" if "instance" in doc else "keyring" if "keys" in doc else "node"
    if kind == "node":
        from gateway.operatorkey import trusted_keys

        cfg = load_node_config(path)
        state = load_state(cfg)
        ssl_context(cfg)  # TLS files exist and load
        trusted_keys(cfg)
        print(f"ok: node config {path} (catalog: {len(state.catalog.resources)} resources, "
              f"{len(state.catalog.subsystems)} subsystems; keyring: {len(state.keyring.by_id)} keys; "
              f"store: {cfg.store.backend})")
    elif kind == "catalog":
        cat = load_catalog(path)
        print(f"ok: catalog {path} ({len(cat.members)} members, {len(cat.subsystems)} subsystems, "
              f"{len(cat.resources)} resources, {len(cat.grants)} grants)")
    else:
        ring = load_keyring(path)
        print(f"ok: keyring {path} ({len(ring.by_id)} keys)")
    return 0


def _cmd_keys_init(args: argparse.Namespace) -> int:
    from gateway.catalog import load_catalog
    from gateway.keyring import dev_keyring_text, write_private

    out = Path(args.out)
    if out.exists() and not args.force:
        print(f"{out} exists; keeping it (use --force to replace it)", file=sys.stderr)
        return 0
    cat = load_catalog(args.catalog)
    write_private(out, dev_keyring_text(sorted(cat.subsystems)))
    print(f"wrote {out} with {len(cat.subsystems)} development keys and a citizen_key (mode 0600)")
    return 0


def _cmd_operator_key_init(args: argparse.Namespace) -> int:
    from gateway.operatorkey import generate

    try:
        public = generate(args.out, force=args.force)
    except FileExistsError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(f"wrote the operator key {args.out} (mode 0600; keep it off the nodes) and {args.out}.pub")
    print(f"public key, for the nodes' [node] operator_keys: {public}")
    return 0


def _cmd_catalog_synth(argv: list[str]) -> int:
    # The synthesiser is a development tool (devkit/, beside the product, not installed
    # with it): it makes made-up catalogs for scale tests and benchmarks.
    try:
        from devkit.synth import main as synth_main
    except ImportError as exc:
        print(f"error: `catalog synth` is a development tool (devkit/synth.py), not installed "
              f"with the package ({exc.name} is missing): run it from the root folder of a "
              "source checkout with the dev extra installed (pip install -e '.[dev]')",
              file=sys.stderr)
        return 2
    return synth_main(argv)


def _cmd_audit_verify(args: argparse.Namespace) -> int:
    from gateway.governance.cli import (
        audit_verify,
        cluster_store,
        cluster_verify,
        db_path,
        verify_defaults,
    )

    try:
        if args.log:
            return audit_verify(None, args.log, args.checkpoints, args.key)
        defaults = verify_defaults(args.config, args.db)
        cluster = cluster_store(args.config, args.db)
        if cluster is not None:
            return cluster_verify(cluster, args.checkpoints, args.key, defaults)
        return audit_verify(db_path(args.config, args.db), None, args.checkpoints, args.key, defaults,
                            archive=args.archive)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _cmd_audit_archive(args: argparse.Namespace) -> int:
    from gateway.governance.archive import ArchiveError, archive
    from gateway.governance.cli import db_path, parse_time
    from gateway.governance.webhooks import KEY_FILE, load_node_key

    try:
        before = parse_time(args.before, "--before")
        db = db_path(args.config, args.db)
        key = load_node_key(db.parent / KEY_FILE)
        done = archive(db, Path(args.out), before, key, prune=args.prune)
    except (ValueError, ArchiveError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not done["archived"]:
        print("nothing to archive: no block of the live log ends before --before after the archive")
        return 0
    print(f"archived entries {done['first']}..{done['last']} ({done['archived']}) into "
          f"{done['segment']}; pruned {done['pruned']} blocks from the live log")
    return 0


def _cmd_audit_export(args: argparse.Namespace) -> int:
    from gateway.governance.cli import audit_export, cluster_export, cluster_store, db_path

    cluster = cluster_store(args.config, args.db)
    path = None if cluster is not None else db_path(args.config, args.db)

    def export(out) -> int:  # noqa: ANN001
        if cluster is not None:
            return cluster_export(cluster, args.since, args.until, out)
        assert path is not None
        return audit_export(path, args.since, args.until, out, archive=args.archive)

    try:
        if args.out and args.out != "-":
            with open(args.out, "w") as f:
                n = export(f)
        else:
            n = export(sys.stdout)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"exported {n} entries", file=sys.stderr)
    return 0


def _cmd_webhooks(args: argparse.Namespace) -> int:
    from gateway.governance.cli import (
        cluster_store,
        cluster_webhooks,
        db_path,
        webhooks_list,
        webhooks_replay,
    )

    after = getattr(args, "after", None)
    sub_id = getattr(args, "subscription", None)
    try:
        cluster = cluster_store(args.config, args.db)
        if cluster is not None:
            msg = cluster_webhooks(cluster, args.webhooks_command, sub_id, after)
        elif args.webhooks_command == "list":
            return webhooks_list(db_path(args.config, args.db))
        else:
            msg = webhooks_replay(db_path(args.config, args.db), sub_id, after)
    except LookupError as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return 2
    if msg:
        print(msg)
    return 0


def _cmd_retention_apply(args: argparse.Namespace) -> int:
    from gateway.maintenance import retention_apply

    return retention_apply(args.config)


def _cmd_backup(args: argparse.Namespace) -> int:
    from gateway.backup import BackupError, backup

    try:
        manifest = backup(args.config, args.out, force=args.force)
    except BackupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    size = Path(args.out).stat().st_size
    dbs = ", ".join(f"{k} (schema {v['schema_version']})" for k, v in manifest["databases"].items())
    print(f"wrote {args.out} (mode 0600, {size} bytes, {len(manifest['files'])} files: {dbs}) "
          f"in {manifest['seconds']:.2f} s")
    if manifest["backend"] == "jetstream":
        print(f"cluster mode: JetStream snapshot of {len(manifest.get('jetstream', {}))} streams "
              "and buckets included")
    return 0


def _cmd_restore(args: argparse.Namespace) -> int:
    from gateway.backup import BackupError, restore

    try:
        written = restore(args.archive, args.config, force=args.force)
    except BackupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for path in written:
        print(f"restored {path}")
    return 0


def _overlap(text: str) -> int:
    from gateway.stores.retention import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--overlap {exc}") from None


def _cmd_keys_rotate(args: argparse.Namespace) -> int:
    from gateway.keyring import load_keyring, rotate_text, write_private

    path = Path(args.keyring)
    load_keyring(path)  # a bad file is refused with file: key: reason before anything changes
    try:
        text, new_id, retired = rotate_text(path.read_text(), args.client, args.overlap)
    except ValueError as exc:
        print(f"error: {path}: {exc}", file=sys.stderr)
        return 2
    write_private(path, text)
    load_keyring(path)
    print(f"added key {new_id} for {args.client}; retiring {', '.join(retired) or 'nothing'} in "
          f"{args.overlap} s. Reload the nodes (SIGHUP, or catalog publish in cluster mode) and "
          "give the new key to the client (its secret is in the keyring)")
    return 0


def _cmd_node_key_rotate(args: argparse.Namespace) -> int:
    from gateway.config import load_node_config
    from gateway.governance.webhooks import KEY_FILE, rotate_node_key

    cfg = load_node_config(args.config)
    old, new = rotate_node_key(cfg.resolve(cfg.node.data_dir) / KEY_FILE, args.overlap)
    print(f"node key {new} replaces {old}, which stays listed at /v1/node-keys for "
          f"{args.overlap} s; send the node SIGHUP to sign with the new key")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m gateway", description=__doc__)
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    s = sub.add_parser("serve", help="run a gateway node")
    s.add_argument("--config", required=True, help="node config TOML (see configs/node.toml)")
    s.add_argument("--workers", type=int, default=1, help="processes sharing the port (SO_REUSEPORT)")
    s.add_argument("--listen", help="override [node] listen, host:port")
    s.add_argument("--accept-reset", action="store_true",
                   help="jetstream: accept a wiped or replaced JetStream found at this start (offsets "
                        "start over; the node's high-water mark DATA_DIR/jetstream-hwm.json is reset)")
    s.set_defaults(func=_cmd_serve)

    c = sub.add_parser("check-config", help="validate a node, catalog or keyring file without starting")
    c.add_argument("file")
    c.add_argument("--kind", choices=["auto", "node", "catalog", "keyring"], default="auto")
    c.set_defaults(func=_cmd_check)

    k = sub.add_parser("keys", help="manage keys")
    ksub = k.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    ki = ksub.add_parser("init", help="write a development keyring (mode 0600), one key per subsystem")
    ki.add_argument("--catalog", default="configs/catalog/shanghai.toml")
    ki.add_argument("--out", default="configs/keyring.dev.toml")
    ki.add_argument("--force", action="store_true", help="replace an existing keyring")
    ki.set_defaults(func=_cmd_keys_init)

    kr = ksub.add_parser("rotate", help="add a new key for a client and retire its current keys "
                         "after an overlap (keyring: not_before / not_after)")
    kr.add_argument("client", help="the subsystem, e.g. SH/GOV/psb/hukou")
    kr.add_argument("--keyring", required=True, help="the keyring file (rewritten, mode 0600)")
    kr.add_argument("--overlap", type=_overlap, default="7d",
                    help="how long the old keys stay valid: 7d (default), 12h, 30m, 90s")
    kr.set_defaults(func=_cmd_keys_rotate)

    nk = sub.add_parser("node-key", help="the node's Ed25519 key (webhook deliveries, audit checkpoints)")
    nksub = nk.add_subparsers(dest="node_key_command", metavar="ACTION", required=True)
    nkr = nksub.add_parser("rotate", help="make a new node key; the old one stays listed at "
                           "/v1/node-keys for the overlap; SIGHUP the node to use it")
    nkr.add_argument("--config", required=True, help="the node's config TOML (its data_dir)")
    nkr.add_argument("--overlap", type=_overlap, default="7d", help="7d (default), 12h, ...")
    nkr.set_defaults(func=_cmd_node_key_rotate)

    o = sub.add_parser("operator-key", help="the operator's Ed25519 key that signs published bundles")
    osub = o.add_subparsers(dest="operator_key_command", metavar="ACTION", required=True)
    oi = osub.add_parser("init", help="write a new private key (mode 0600) and FILE.pub; print the public key")
    oi.add_argument("--out", required=True, help="private key file (PEM)")
    oi.add_argument("--force", action="store_true", help="replace an existing key")
    oi.set_defaults(func=_cmd_operator_key_init)

    cat = sub.add_parser("catalog", help="catalog tools: synth (and publish in cluster mode)")
    cat.add_argument("catalog_command", choices=["synth", "publish"], metavar="ACTION",
                     help="synth: a Shanghai-scale catalog; publish: to JetStream KV")
    cat.add_argument("rest", nargs=argparse.REMAINDER, help="options of the action (see ACTION --help)")
    cat.set_defaults(func=None)

    a = sub.add_parser("audit", help="audit log tools (the hash-chained log in the governance store)")
    asub = a.add_subparsers(dest="audit_command", metavar="ACTION", required=True)
    av = asub.add_parser("verify", help="check the hash chain, the signed checkpoints (truncation, rewriting) "
                                        "and the citizen index; exit 1 when any fails")
    ae = asub.add_parser("export", help="write entries as JSON lines (verifiable with verify --log)")
    aa = asub.add_parser("archive", help="move entries older than --before into a compressed, signed, "
                                         "chained segment in --out (with --prune: delete them from the "
                                         "live log once the segment reads back intact)")
    for x in (av, ae, aa):
        x.add_argument("--config", help="node config TOML (finds DATA_DIR/governance.db)")
        x.add_argument("--db", help="governance database file (default var/governance.db)")
    for x in (av, ae):
        x.add_argument("--archive", metavar="DIR", help="the archive folder: its segments come first "
                                                        "(needed once entries were pruned)")
    aa.add_argument("--before", required=True, help="YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ (UTC)")
    aa.add_argument("--out", required=True, metavar="DIR", help="the archive folder (made 0700)")
    aa.add_argument("--prune", action="store_true", help="delete the archived entries from the live log")
    aa.set_defaults(func=_cmd_audit_archive)
    av.add_argument("--log", help="verify an exported JSON-lines file instead of the store")
    av.add_argument("--checkpoints", action="append", default=[], metavar="FILE",
                    help="signed checkpoint file (repeatable; default: the node's [node] audit_checkpoints, "
                         "or audit-checkpoints.jsonl next to --db)")
    av.add_argument("--key", action="append", default=[], metavar="FILE",
                    help="a trusted node key: node-signing.key, a PEM public key or GET /v1/node-keys JSON "
                         "(repeatable; default: the node's own node-signing.key)")
    av.set_defaults(func=_cmd_audit_verify)
    ae.add_argument("--since", help="first time, inclusive: YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ")
    ae.add_argument("--until", help="end time, exclusive: YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ")
    ae.add_argument("--out", help="output file (default: standard output)")
    ae.set_defaults(func=_cmd_audit_export)

    r = sub.add_parser("retention", help="retention and compaction (catalog: retention, max_records, compact)")
    rsub = r.add_subparsers(dest="retention_command", metavar="ACTION", required=True)
    ra = rsub.add_parser("apply", help="apply the catalog's retention policies to the store once "
                         "(a node does it every [store] retention_interval_s)")
    ra.add_argument("--config", required=True, help="node config TOML (its catalog file and store)")
    ra.set_defaults(func=_cmd_retention_apply)

    b = sub.add_parser("backup", help="back up a node while it serves: databases (SQLite online "
                       "backup), keys and config into one tar.gz (mode 0600)")
    b.add_argument("--config", required=True, help="the node's config TOML")
    b.add_argument("--out", required=True, help="the archive to write (refused if it exists)")
    b.add_argument("--force", action="store_true", help="overwrite --out")
    b.set_defaults(func=_cmd_backup)
    rs = sub.add_parser("restore", help="restore a backup into a stopped (or new) node")
    rs.add_argument("archive", help="a file written by backup")
    rs.add_argument("--config", required=True, help="config TOML of the node to restore into")
    rs.add_argument("--force", action="store_true",
                    help="overwrite existing databases, keys, keyring and catalog")
    rs.set_defaults(func=_cmd_restore)

    w = sub.add_parser("webhooks", help="webhook subscriptions: list, replay a dead-lettered one")
    wsub = w.add_subparsers(dest="webhooks_command", metavar="ACTION", required=True)
    wl = wsub.add_parser("list", help="every subscription with its state, cursor and last error (JSON lines)")
    wr = wsub.add_parser("replay", help="re-activate a subscription (dead-lettered ones too)")
    wr.add_argument("subscription", help="subscription id (s-...)")
    wr.add_argument("--after", type=int, help="rewind (or skip) the delivery cursor to this offset")
    for x in (wl, wr):
        x.add_argument("--config", help="node config TOML (finds DATA_DIR/governance.db)")
        x.add_argument("--db", help="governance database file (default var/governance.db)")
        x.set_defaults(func=_cmd_webhooks)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "catalog":
            if args.catalog_command == "synth":
                return _cmd_catalog_synth(args.rest)
            try:
                import nats  # noqa: F401 - publishing talks to JetStream
            except ImportError:
                print("error: `catalog publish` (cluster mode) needs nats-py, which is not "
                      "installed: pip install 'onestop-exchange[cluster]'", file=sys.stderr)
                return 2
            from gateway.publish import main as publish_main

            return publish_main(args.rest)
        return args.func(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except StoreError as exc:  # e.g. a database written by a newer release
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
