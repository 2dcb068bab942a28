"""Audit: every exchange is recorded, the chain detects tampering, a full queue refuses access."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import msgspec
from svckit import CONSUMER, OWNER, PORTAL, backend, grant_toml, running_node, service_toml

from gateway.audit import citizen_hash

ROOT = Path(__file__).resolve().parents[2]
SID = "SH/GOV/hrss/employment/register"
CARD = {"key": "310101199001011234", "data": {"id_number": "310101199001011234", "name": "Li Lei"}}


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)


async def entries(n) -> list:  # noqa: ANN001
    await n.node.audit.flush()
    return await n.node.governance.audit_range(limit=10_000)


async def test_every_exchange_is_audited_with_hashed_citizens(tmp_path: Path) -> None:
    async with backend() as (url, _), running_node(
            tmp_path, service_toml(SID, [url]) + grant_toml(PORTAL, SID)) as n:
        await n.push("psb.id-card", [CARD])
        assert (await n.request(CONSUMER, "GET", "/v1/resources/psb.id-card/records")).status == 200
        r = await n.request(PORTAL, "POST", "/v1/consents", json_body={
            "user_id": CARD["key"], "consumer": CONSUMER, "resources": ["psb.id-card"],
            "purpose": "flexible employment registration", "expires": "2030-01-01"})
        assert r.status == 201, r.body
        cid = r.json()["id"]
        r = await n.request(CONSUMER, "GET", f"/v1/resources/psb.id-card/records/{CARD['key']}",
                            headers={"X-Exchange-UserId": CARD["key"],
                                     "X-Exchange-Purpose": "flexible employment registration"})
        assert r.status == 200, r.body
        assert (await n.request(PORTAL, "GET", f"/v1/services/{SID}/echo")).status == 200
        assert (await n.request(PORTAL, "DELETE", f"/v1/consents/{cid}")).status == 200
        log = await entries(n)
        ops = [(e.op, e.client, e.target, e.status) for e in log]
        assert ops == [("push", OWNER, "psb.id-card", 200), ("pull", CONSUMER, "psb.id-card", 200),
                       ("consent-grant", PORTAL, "psb.id-card", 201), ("read", CONSUMER, "psb.id-card", 200),
                       ("call", PORTAL, SID, 200), ("consent-revoke", PORTAL, "psb.id-card", 200)]
        read = log[3]
        h = citizen_hash(n.node.citizen_key, CARD["key"])
        assert read.citizens == [h] and read.consent == cid
        assert read.purpose == "flexible employment registration"  # the consent's
        assert log[1].citizens == [h]  # the pull released that citizen's record too
        assert read.count == 1 and read.request_id
        assert [e.seq for e in log] == list(range(1, 7))
        db = (n.dir / "data" / "governance.db").read_bytes()
        assert CARD["key"].encode() not in db  # only keyed hashes of citizen ids are stored


async def test_full_audit_queue_refuses_access_with_503(tmp_path: Path) -> None:
    async with running_node(tmp_path, audit_queue=4) as n:
        await n.push("psb.stations", [{"key": "s1", "data": {"code": "s1", "name": "People's Square"}}])
        await n.node.audit.flush()
        n.node.audit._task.cancel()  # the writer stalls: the queue can only fill
        statuses = []
        for _ in range(6):
            r = await n.request(CONSUMER, "GET", "/v1/resources/psb.stations/records/s1")
            statuses.append(r.status)
            if r.status == 503:
                assert r.json()["code"] == "server.unavailable" and r.headers["Retry-After"] == "1"
                assert b"People" not in r.body
        assert 503 in statuses
        ok = statuses.count(200)
        queued = [e for e in n.node.audit.queue._queue if e.status == 200]
        assert len(queued) == ok  # every answered read is in the queue: none unaudited


async def test_verify_finds_tampered_and_missing_rows_and_export(tmp_path: Path) -> None:
    async with running_node(tmp_path) as n:
        for i in range(5):
            await n.push("psb.stations", [{"key": f"s{i}", "data": {"code": f"s{i}", "name": "x"}}])
        await n.node.audit.flush()
    db = tmp_path / "data" / "governance.db"
    r = cli("audit", "verify", "--db", str(db))
    assert r.returncode == 0 and "ok: 5 entries" in r.stdout, r.stdout + r.stderr
    r = cli("audit", "verify", "--config", str(tmp_path / "node.toml"))
    assert r.returncode == 0, r.stdout + r.stderr

    out = tmp_path / "export.jsonl"
    r = cli("audit", "export", "--db", str(db), "--out", str(out))
    assert r.returncode == 0 and "exported 5 entries" in r.stderr
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["seq"] for x in lines] == [1, 2, 3, 4, 5]
    assert cli("audit", "verify", "--log", str(out)).returncode == 0
    r = cli("audit", "export", "--db", str(db), "--since", "2000-01-01", "--until", "2001-01-01")
    assert r.returncode == 0 and r.stdout == ""
    r = cli("audit", "export", "--db", str(db), "--since", "yesterday")
    assert r.returncode == 2 and "--since must be" in r.stderr and "Traceback" not in r.stderr

    con = sqlite3.connect(db)
    first, blob = next((f, b) for f, b in con.execute("SELECT first_seq, entries FROM audit_log")
                       if b'"seq":3,' in b or b'"seq":3}' in b)
    lines = blob.split(b"\n")
    i = [json.loads(x)["seq"] for x in lines].index(3)

    def store(new_lines: list[bytes]) -> None:
        con.execute("UPDATE audit_log SET entries = ? WHERE first_seq = ?", (b"\n".join(new_lines), first))
        con.commit()

    store([*lines[:i], lines[i].replace(b'"count":1', b'"count":9'), *lines[i + 1:]])
    r = cli("audit", "verify", "--db", str(db))
    assert r.returncode == 1 and "BROKEN after 2 good entries" in r.stdout and "entry 3 was altered" in r.stdout
    store(lines)
    assert cli("audit", "verify", "--db", str(db)).returncode == 0
    if len(lines) > 1:
        store([*lines[:i], *lines[i + 1:]])
    else:
        con.execute("DELETE FROM audit_log WHERE first_seq = ?", (first,))
        con.commit()
    r = cli("audit", "verify", "--db", str(db))
    assert r.returncode == 1 and "entry 4 follows 2: missing" in r.stdout, r.stdout
    con.close()
    r = cli("audit", "verify", "--db", str(tmp_path / "nope.db"))
    assert r.returncode == 2 and "not found" in r.stderr


async def test_audit_chain_is_one_across_two_writers(tmp_path: Path) -> None:
    """Two nodes (as two worker processes would) append to one governance file: one chain."""
    from gateway.audit import AuditEntry, verify
    from gateway.governance.sqlite import SQLiteGovernance

    a, b = SQLiteGovernance(tmp_path / "g.db"), SQLiteGovernance(tmp_path / "g.db")
    await a.open()
    await b.open()
    try:
        async def write(g, tag):  # noqa: ANN001
            for i in range(20):
                await g.audit_append([AuditEntry(ts=i, request_id=f"{tag}{i}", client="c", op="x",
                                                 target="t", status=200)])

        await asyncio.gather(write(a, "a"), write(b, "b"))
        rows = await a.audit_range(limit=100)
        assert len(rows) == 40
        assert verify((str(e.seq), msgspec.json.encode(e)) for e in rows) == (40, None)
    finally:
        await a.close()
        await b.close()
