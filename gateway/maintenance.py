"""Store maintenance from the command line: ``retention apply`` (once, what a node does every
``retention_interval_s``). Output names resources and counts, never a record or a key."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from gateway.stores.retention import apply_all, policies


def retention_apply(config_path: str | Path, *, now_ms: int | None = None) -> int:
    """Apply the catalog's retention policies to the node's store once; print what went."""
    from gateway.catalog import load_catalog
    from gateway.config import load_node_config
    from gateway.stores import open_store

    cfg = load_node_config(config_path)
    wanted = policies(load_catalog(cfg.resolve(cfg.node.catalog)))
    if not wanted:
        print("no resource of the catalog has a retention policy")
        return 0

    async def run() -> list:
        store = open_store(cfg)
        await store.open()
        try:
            return await apply_all(store, wanted, now_ms)
        finally:
            await store.close()

    started = time.perf_counter()
    results = asyncio.run(run())
    for r in results:
        print(f"{r.resource}: dropped {r.batches_dropped} batches, {r.records_dropped} records, "
              f"{r.keys_dropped} key entries; kept {r.records_compacted} compacted; "
              f"earliest offset {r.earliest}")
    print(f"retention applied to {len(wanted)} resources in {time.perf_counter() - started:.1f} s "
          f"({len(results)} changed)")
    return 0
