"""Cluster mode: two nodes on one JetStream share consents, subscriptions and one audit chain."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import subprocess
import sys
from pathlib import Path

import msgspec
from svckit import CONSUMER, PORTAL, running_node

from gateway.audit import verify

ROOT = Path(__file__).resolve().parents[2]
ID = "310101199001011234"
CARD = {"key": ID, "data": {"id_number": ID, "name": "Li Lei"}}


async def test_two_nodes_share_governance_state(tmp_path: Path, prefix: str, nats_url: str) -> None:
    store = f'[store]\nbackend = "jetstream"\nservers = ["{nats_url}"]\nprefix = "{prefix}"\n'
    citizen_key = secrets.token_hex(32)  # every node of a cluster has the keyring's citizen_key
    try:
        async with running_node(tmp_path / "a", store=store, citizen_key=citizen_key) as a:  # noqa: SIM117
            async with running_node(tmp_path / "b", store=store, keys=a.keys, citizen_key=citizen_key) as b:
                await a.push("psb.id-card", [CARD])
                r = await a.request(PORTAL, "POST", "/v1/consents", json_body={
                    "user_id": ID, "consumer": CONSUMER, "resources": ["psb.id-card"], "purpose": "p",
                    "expires": "2030-01-01"})
                assert r.status == 201, r.body
                cid = r.json()["id"]
                read = f"/v1/resources/psb.id-card/records/{ID}"
                r = await b.request(CONSUMER, "GET", read, headers={"X-Exchange-UserId": ID, "X-Exchange-Purpose": "p"})
                assert r.status == 200, r.body  # the consent given on node a is seen by node b
                assert (await b.request(PORTAL, "DELETE", f"/v1/consents/{cid}")).status == 200
                r = await a.request(CONSUMER, "GET", read, headers={"X-Exchange-UserId": ID, "X-Exchange-Purpose": "p"})
                assert r.status == 403  # and its revocation on b by a
                await a.node.audit.flush()
                await b.node.audit.flush()
                log = await a.node.governance.audit_range(limit=1000)
                assert verify((str(e.seq), msgspec.json.encode(e)) for e in log) == (len(log), None)
                assert {e.request_id.split("-")[0] for e in log} == {
                    a.node._id_prefix, b.node._id_prefix}  # one chain, written by both nodes
                r = await b.request(PORTAL, "GET", f"/v1/citizens/{ID}/access-log")
                # newest first; the refused read released nothing, so it is not in the citizen's log
                assert [e["operation"] for e in r.json()["entries"]][:2] == ["consent-revoke", "read"]
        run = lambda *a: subprocess.run([sys.executable, "-m", "gateway", "audit", *a],  # noqa: E731
                                        cwd=ROOT, capture_output=True, text=True, timeout=60)
        r = await asyncio.to_thread(run, "verify", "--config", str(tmp_path / "a" / "node.toml"))
        assert r.returncode == 0 and "chain intact" in r.stdout, r.stdout + r.stderr
        total = int(r.stdout.split()[1])  # the access-log read above is audited too
        assert total == len(log) + 1
        r = await asyncio.to_thread(run, "export", "--config", str(tmp_path / "b" / "node.toml"))
        assert r.returncode == 0 and len(r.stdout.splitlines()) == total
        wh = lambda *a: subprocess.run([sys.executable, "-m", "gateway", "webhooks", *a],  # noqa: E731
                                       cwd=ROOT, capture_output=True, text=True, timeout=60)
        r = await asyncio.to_thread(wh, "replay", "s-none", "--config", str(tmp_path / "a" / "node.toml"))
        assert r.returncode == 2 and "unknown subscription" in r.stderr
    finally:
        import nats

        nc = await nats.connect(nats_url)
        js = nc.jetstream()
        for info in await js.streams_info():
            if info.config.name.startswith((prefix, f"KV_{prefix}")):
                with contextlib.suppress(Exception):
                    await js.delete_stream(info.config.name)
        await nc.close()
