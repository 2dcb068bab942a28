"""What the gateway benches share: a synthetic city on disk, a bench node's configuration,
the resource to read, seeding it, and raw signed requests for wrk."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import msgspec

from devkit.synth import synth_catalog, synth_keyring, write_catalog
from harness import node_config_text
from loadtest.errors import LoadTestError
from loadtest.openmodel import raw_request
from loadtest.population import City, ReadTarget, make_record

BATCH = 100
PULL_LIMIT = 1000
SEED_RECORDS = 2000


def write_city(work: Path, resources: int, members: int = 50, seed: int = 1) -> tuple[Path, Path, str]:
    """A synthetic catalog and keyring in ``work``; (catalog, keyring, description)."""
    catalog, keyring = work / "catalog.toml", work / "keyring.toml"
    doc = synth_catalog(resources, members, seed)
    write_catalog(doc, catalog)
    keyring.write_text(synth_keyring(doc))
    os.chmod(keyring, 0o600)  # nodes refuse a keyring that group or others may read
    return catalog, keyring, f"synthetic: {resources} resources, {members} members, seed {seed}"


def write_node_config(
    folder: Path,
    port: int,
    instance: str,
    *,
    catalog: str = "catalog.toml",
    keyring: str = "keyring.toml",
    store: dict[str, Any] | None = None,
) -> Path:
    """A bench node's ``node.toml`` in ``folder``: loopback, no access log, embedded SQLite
    with ``synchronous=FULL`` unless ``store`` says otherwise, limits out of wrk's way
    (every load connection comes from loopback)."""
    path = folder / "node.toml"
    path.write_text(node_config_text(
        {"listen": f"127.0.0.1:{port}", "instance": instance, "catalog": catalog,
         "keyring": keyring, "data_dir": "data", "log_level": "warning", "access_log": False},
        store or {"backend": "sqlite", "synchronous": "FULL"},
        {"max_inflight": 65536, "max_connections_per_ip": 65536},
    ))
    return path


def pick_target(city: City) -> ReadTarget:
    """A keyed resource read through a conditional grant (the full access path)."""
    targets = [t for t in city.read_targets() if t.granted] or city.read_targets()
    if not targets:
        raise LoadTestError("the catalog has no keyed resource that a keyring client may read")
    return targets[0]


def batch_body(fields: dict[str, str], key: str | None, start: int) -> bytes:
    """A 100-record push body for citizens ``start .. start+99``."""
    records = [make_record(fields, key, start + i) for i in range(BATCH)]
    return msgspec.json.encode({"records": records})


async def seed_reads(url: str, target: ReadTarget, fields: dict[str, str], key: str | None) -> int:
    """Push SEED_RECORDS records into the target as its owner; how many one pull returns."""
    from gateway.client import ExchangeClient

    o = target.owner
    async with ExchangeClient(url, o.key_id, o.secret, o.client) as c:
        for start in range(0, SEED_RECORDS, 500):
            recs = [make_record(fields, key, start + i) for i in range(500)]
            await c.push(target.resource, recs, idempotency_key=f"bench-seed-{start}")
    r = target.reader
    async with ExchangeClient(url, r.key_id, r.secret, r.client) as c:
        page = await c.pull(target.resource, after=0, limit=PULL_LIMIT)
        return len(page.records)


def signed_push(signer: Any, host: str, path: str, body: bytes, idempotency_key: str) -> bytes:
    """A raw signed push (v2: Content-Type and Idempotency-Key signed)."""
    headers = signer.headers("POST", path, "", body, headers={
        "Content-Type": "application/json", "Idempotency-Key": idempotency_key})
    return raw_request("POST", path, host, headers, body)


def signed_get(signer: Any, host: str, path: str, query: str = "") -> bytes:
    """A raw signed GET."""
    headers = signer.headers("GET", path, query)
    return raw_request("GET", path + ("?" + query if query else ""), host, headers)
