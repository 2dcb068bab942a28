"""Operations bench: space given back by retention and the time of a backup, on a resource
of N records (default 1,000,000; distinct keys, 100-record batches), on both stores.

    .venv/bin/python -m bench ops --records 1000000 --keep 100000 --out out/ops-bench.json

Prints a table and writes JSON. SQLite: file size before and after ``retention`` keeps the
newest ``--keep`` records, and ``gateway backup`` time and archive size. JetStream (skipped
without a nats-server): stream bytes before and after, and the snapshot time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path

from gateway.keyring import dev_keyring_text, write_private
from gateway.stores.retention import RetentionPolicy

RES = "bench.r"
CLIENT = "SH/GOV/b/own"


def _batch(b: int, size: int) -> list[tuple[str, bytes]]:
    return [(f"citizen-{b * size + i:09d}",
             json.dumps({"id": f"citizen-{b * size + i:09d}", "name": "Zhang San",
                         "district": "Pudong", "n": b}).encode()) for i in range(size)]


async def _fill(store, records: int, size: int = 100, tasks: int = 16) -> float:
    batches = records // size
    started = time.perf_counter()

    async def worker(k: int) -> None:
        for b in range(k, batches, tasks):
            await store.append(RES, _batch(b, size), client=CLIENT)

    await asyncio.gather(*[worker(k) for k in range(tasks)])
    return time.perf_counter() - started


def _node_files(folder: Path, store_toml: str) -> Path:
    cat = folder / "catalog.toml"
    cat.write_text(f'instance = "SH"\n[[members]]\nid = "SH/GOV/b"\n[[subsystems]]\nid = "{CLIENT}"\n'
                   f'[[resources]]\nid = "{RES}"\nowner = "{CLIENT}"\nsharing = "open"\nkey = "id"\n'
                   'fields = { id = "str", name = "str", district = "str", n = "int" }\n')
    write_private(folder / "keyring.toml", dev_keyring_text([CLIENT]))
    conf = folder / "node.toml"
    conf.write_text(f'[node]\ncatalog = "catalog.toml"\nkeyring = "keyring.toml"\ndata_dir = "data"\n\n'
                    f"{store_toml}")
    return conf


async def bench_sqlite(folder: Path, records: int, keep: int) -> dict:
    from gateway.backup import backup
    from gateway.stores.sqlite import SQLiteStore

    conf = _node_files(folder, '[store]\nbackend = "sqlite"\n')
    db = folder / "data" / "exchange.db"
    async with SQLiteStore(db) as store:
        fill_s = await _fill(store, records)
    size_before = os.path.getsize(db)
    started = time.perf_counter()
    manifest = await asyncio.to_thread(backup, conf, folder / "backup.tar.gz")
    backup_s = time.perf_counter() - started
    async with SQLiteStore(db) as store:
        started = time.perf_counter()
        res = await store.apply_retention(RES, RetentionPolicy(max_records=keep), int(time.time() * 1000))
        retention_s = time.perf_counter() - started
    size_after = os.path.getsize(db)
    return {"backend": "sqlite", "records": records, "kept": keep, "fill_s": round(fill_s, 2),
            "bytes_before": size_before, "bytes_after": size_after,
            "bytes_reclaimed": size_before - size_after, "records_dropped": res.records_dropped,
            "retention_s": round(retention_s, 2), "backup_s": round(backup_s, 2),
            "backup_db_copy_s": manifest["seconds"],
            "backup_bytes": os.path.getsize(folder / "backup.tar.gz")}


async def bench_jetstream(folder: Path, records: int, keep: int) -> dict | None:
    from devkit.nats import NatsServer, find_binary
    from gateway.stores.jetstream import JetStreamStore
    from gateway.stores.jssnapshot import snapshot_all

    if find_binary() is None:
        return None
    server = NatsServer(folder / "nats").start()
    try:
        async with JetStreamStore([server.url], prefix="bench") as store:
            fill_s = await _fill(store, records)
            before = await store.js.stream_info("bench_REC")
            kbefore = await store.js.stream_info("bench_KEYS")
            started = time.perf_counter()
            res = await store.apply_retention(RES, RetentionPolicy(max_records=keep), int(time.time() * 1000))
            retention_s = time.perf_counter() - started
            after = await store.js.stream_info("bench_REC")
            kafter = await store.js.stream_info("bench_KEYS")
            started = time.perf_counter()
            sizes = await snapshot_all([server.url], "bench", folder / "snap")
            snapshot_s = time.perf_counter() - started
    finally:
        server.stop()
    b0 = before.state.bytes + kbefore.state.bytes
    b1 = after.state.bytes + kafter.state.bytes
    return {"backend": "jetstream", "records": records, "kept": keep, "fill_s": round(fill_s, 2),
            "bytes_before": b0, "bytes_after": b1, "bytes_reclaimed": b0 - b1,
            "records_dropped": res.records_dropped, "keys_dropped": res.keys_dropped,
            "retention_s": round(retention_s, 2), "backup_s": round(snapshot_s, 2),
            "backup_bytes": sum(sizes.values())}


def main(argv: list[str] | None = None) -> int:
    """``python -m bench ops``: the table, and the figures as JSON in ``--out``."""
    p = argparse.ArgumentParser(prog="python -m bench ops", description=__doc__.splitlines()[0])
    p.add_argument("--records", type=int, default=1_000_000)
    p.add_argument("--keep", type=int, default=100_000)
    p.add_argument("--out", default="out/ops-bench.json")
    p.add_argument("--backends", default="sqlite,jetstream")
    args = p.parse_args(argv)
    backends = args.backends.split(",")
    if args.records < 1 or not 0 <= args.keep <= args.records or set(backends) - {"sqlite", "jetstream"}:
        p.error("--records >= 1, 0 <= --keep <= --records, --backends of sqlite,jetstream")
    rows = []
    with tempfile.TemporaryDirectory(prefix="ops-bench-") as tmp:
        for backend in backends:
            folder = Path(tmp) / backend
            folder.mkdir()
            fn = bench_sqlite if backend == "sqlite" else bench_jetstream
            row = asyncio.run(fn(folder, args.records, args.keep))
            if row is not None:
                rows.append(row)
    print(f"{'backend':10} {'records':>9} {'before MB':>10} {'after MB':>9} {'freed MB':>9} "
          f"{'retention s':>12} {'backup s':>9} {'backup MB':>10}")
    for r in rows:
        print(f"{r['backend']:10} {r['records']:>9} {r['bytes_before'] / 1e6:>10.1f} "
              f"{r['bytes_after'] / 1e6:>9.1f} {r['bytes_reclaimed'] / 1e6:>9.1f} "
              f"{r['retention_s']:>12.2f} {r['backup_s']:>9.2f} {r['backup_bytes'] / 1e6:>10.1f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
