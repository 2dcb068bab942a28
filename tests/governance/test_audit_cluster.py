"""Cluster mode: two nodes append to one audit chain in JetStream and publish their signed
checkpoints to an append-only stream; ``audit verify`` finds a cut-off end from the stream
alone and a forged citizen-index copy."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import nats
import nats.js.errors
import pytest
from svckit import running_node

from gateway.audit import AuditEntry

ROOT = Path(__file__).resolve().parents[2]
@pytest.fixture
async def prefix(nats_url: str) -> AsyncIterator[str]:
    p = "ga" + uuid.uuid4().hex[:8]
    try:
        yield p
    finally:
        nc = await nats.connect(nats_url)
        js = nc.jetstream()
        for info in await js.streams_info():
            if info.config.name.startswith((p, f"KV_{p}")):
                with contextlib.suppress(Exception):
                    await js.delete_stream(info.config.name)
        await nc.close()


async def verify(*args: str) -> subprocess.CompletedProcess[str]:
    r = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "gateway", "audit", "verify", *args],
                                cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert "Traceback" not in r.stderr, r.stderr
    return r


async def test_cluster_checkpoints_witness_the_shared_chain(tmp_path: Path, prefix: str,
                                                           nats_url: str) -> None:
    store = f'[store]\nbackend = "jetstream"\nservers = ["{nats_url}"]\nprefix = "{prefix}"\n'
    citizen_key = secrets.token_hex(32)  # one per cluster
    async with running_node(tmp_path / "a", store=store, citizen_key=citizen_key) as a, \
            running_node(tmp_path / "b", store=store, keys=a.keys, citizen_key=citizen_key) as b:
        for i in range(3):
            for n in (a, b):
                await n.push("psb.stations", [{"key": f"s{i}", "data": {"code": f"s{i}", "name": "x"}}])
        await a.node.audit.record(AuditEntry(ts=time.time(), request_id="personal", client="c", op="read",
                                             target="psb.id-card", status=200, count=1, citizens=["e" * 32]))
        await b.node.audit.flush()
    # both nodes stopped: each checkpointed the tail its own last batch produced
    cfg = str(tmp_path / "a" / "node.toml")
    keys = ["--key", str(tmp_path / "a" / "data" / "node-signing.key"),
            "--key", str(tmp_path / "b" / "data" / "node-signing.key")]
    r = await verify("--config", cfg, *keys)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ok: 7 entries, chain intact" in r.stdout and "the latest covers entry 7" in r.stdout
    assert "citizen index: 1 rows match the 1 citizens" in r.stdout
    r = await verify("--config", cfg)  # node a's own key only: b's checkpoints are noted, not checked
    assert r.returncode == 0 and "by keys not trusted here" in r.stdout, r.stdout

    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(f"{prefix}_AUDIT_CHECKPOINTS")
        assert info.config.deny_delete and info.config.deny_purge and info.state.messages >= 2
        with pytest.raises(nats.js.errors.APIError):
            await js.delete_msg(f"{prefix}_AUDIT_CHECKPOINTS", 1)

        first = (await js.get_msg(f"{prefix}_AUDIT", 1)).data  # a batch naming no citizen
        copy = msgspec.json.decode(first, type=list[AuditEntry])[0]
        await js.publish(f"{prefix}.auditcit.{'d' * 32}", msgspec.json.encode(copy))
        r = await verify("--config", cfg, *keys)
        assert r.returncode == 1 and "points at entry 1, which does not name that citizen" in r.stdout, r.stdout

        last = await js.get_last_msg(f"{prefix}_AUDIT", f"{prefix}.audit")
        await js.delete_msg(f"{prefix}_AUDIT", last.seq)  # the end of the chain cut off
        kept = 7 - len(msgspec.json.decode(last.data, type=list[AuditEntry]))
    finally:
        await nc.close()
    for node in ("a", "b"):  # the stream alone witnesses it
        (tmp_path / node / "data" / "audit-checkpoints.jsonl").unlink()
    r = await verify("--config", cfg, *keys)
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"ok: {kept} entries, chain intact" in r.stdout
    assert f"the log ends at entry {kept}, but entry 7 was checkpointed" in r.stdout
    assert "were cut off" in r.stdout
