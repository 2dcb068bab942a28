"""kill -9 right after a personal release: the audit entry of every answered personal read
and pull is already durable (a release of personal data is audited before its answer)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

import aiohttp
from gwkit import GRANTED, ID_CARD, NodeProcess, Raw, id_card

from gateway.audit import AuditEntry
from gateway.governance.sqlite import _dec_entry
from gateway.keyring import Keyring

PORTAL = "SH/GOV/bdc/portal"
PURPOSE = "flexible employment registration"


def audited(node: NodeProcess) -> dict[str, AuditEntry]:
    """Every audit entry in the (killed) node's governance database, by request id."""
    db = sqlite3.connect(node.data_dir / "governance.db")
    try:
        rows = db.execute("SELECT entries FROM audit_log ORDER BY first_seq").fetchall()
    finally:
        db.close()
    return {e.request_id: e for (blob,) in rows for e in map(_dec_entry.decode, blob.split(b"\n"))}


async def test_personal_reads_answered_before_a_kill_are_in_the_audit_log(
        make_node: Callable[..., NodeProcess], keyring: Keyring) -> None:
    n = make_node()
    async with aiohttp.ClientSession() as session:
        await _read_then_kill(n, Raw(session, n.url, keyring))


async def _read_then_kill(n: NodeProcess, raw: Raw) -> None:
    rec = id_card()
    citizen = rec["key"]
    assert (await raw.push(ID_CARD, [rec])).status == 200
    r = await raw.request("POST", "/v1/consents", client=PORTAL, json_body={
        "user_id": citizen, "consumer": GRANTED, "resources": [ID_CARD], "purpose": PURPOSE,
        "expires": "2030-01-01"})
    assert r.status == 201, r.body
    answered = []
    read = await raw.request("GET", f"/v1/resources/{ID_CARD}/records/{citizen}", client=GRANTED,
                             headers={"X-Exchange-UserId": citizen, "X-Exchange-Purpose": PURPOSE})
    assert read.status == 200, read.body
    answered.append(read.headers["X-Exchange-Request-Id"])
    pull = await raw.request("GET", f"/v1/resources/{ID_CARD}/records", query="after=0&limit=1000",
                             client=GRANTED)
    assert pull.status == 200 and pull.json()["records"]
    answered.append(pull.headers["X-Exchange-Request-Id"])
    n.kill()  # at once: nothing queued in memory survives this
    log = audited(n)
    for rid in answered:
        assert rid in log, f"the answered personal release {rid} left no audit entry"
        assert log[rid].citizens, log[rid]
    assert log[answered[0]].purpose == PURPOSE and log[answered[0]].consent == r.json()["id"]
