"""``audit verify`` against signed checkpoints (SQLite governance): a cut-off end, entries
rewritten and re-sealed, forged or missing checkpoints and a tampered citizen index are
all reported with exit status 1; usage problems exit 2 without a traceback."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import msgspec
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from svckit import running_node, wait_until

from gateway.audit import AuditEntry, AuditLog, seal
from gateway.governance.checkpoints import Checkpoint, Checkpointer, CheckpointFile
from gateway.governance.sqlite import SQLiteGovernance
from gateway.governance.webhooks import NodeKey, load_node_key

ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([sys.executable, "-m", "gateway", "audit", *args], cwd=ROOT, capture_output=True,
                       text=True, timeout=60)
    assert "Traceback" not in r.stderr, r.stderr
    return r


def chain(db: Path) -> list[AuditEntry]:
    con = sqlite3.connect(db)
    try:
        return [msgspec.json.decode(line, type=AuditEntry)
                for (blob,) in con.execute("SELECT entries FROM audit_log ORDER BY first_seq")
                for line in blob.split(b"\n")]
    finally:
        con.close()


def store_chain(db: Path, lines: list[bytes]) -> None:
    """Replace the whole stored chain by ``lines`` (one batch), as an intruder with the file would."""
    first, last = (msgspec.json.decode(lines[i], type=AuditEntry) for i in (0, -1))
    con = sqlite3.connect(db)
    with con:
        con.execute("DELETE FROM audit_log")
        con.execute("INSERT INTO audit_log(first_seq, last_seq, ts_first, ts_last, entries) VALUES (?, ?, ?, ?, ?)",
                    (first.seq, last.seq, first.ts, last.ts, b"\n".join(lines)))
    con.close()


def checkpoints(path: Path) -> list[Checkpoint]:
    if not path.exists():
        return []
    return [msgspec.json.decode(x, type=Checkpoint) for x in path.read_bytes().splitlines()]


@dataclass
class Site:
    dir: Path
    db: Path
    cp: Path
    key: Path

    @property
    def config(self) -> str:
        return str(self.dir / "node.toml")


async def five_entries(tmp: Path, node_lines: str = "") -> Site:
    """A node that audited five pushes, stopped; its checkpoint covers entry 5."""
    async with running_node(tmp, store=node_lines + '[store]\nsynchronous = "NORMAL"\n') as n:
        for i in range(5):
            await n.push("psb.stations", [{"key": f"s{i}", "data": {"code": f"s{i}", "name": "x"}}])
        await n.node.audit.flush()
        cp = n.node.audit.checkpointer.file.path

        async def covered() -> bool:
            return any(c.seq == 5 for c in checkpoints(cp))

        await wait_until(covered, timeout=3.0)  # at most about a second after the activity
    return Site(tmp, tmp / "data" / "governance.db", cp, tmp / "data" / "node-signing.key")


async def test_a_cut_off_end_is_detected_after_a_checkpoint(tmp_path: Path) -> None:
    site = await five_entries(tmp_path, 'audit_checkpoints = "witness/checkpoints.jsonl"\n')
    assert site.cp == tmp_path / "witness" / "checkpoints.jsonl"  # [node] audit_checkpoints
    assert site.cp.stat().st_mode & 0o777 == 0o600
    r = cli("verify", "--config", site.config)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ok: 5 entries, chain intact" in r.stdout and "the latest covers entry 5" in r.stdout

    export = tmp_path / "export.jsonl"
    assert cli("export", "--db", str(site.db), "--out", str(export)).returncode == 0
    witness = ["--checkpoints", str(site.cp), "--key", str(site.key)]
    assert cli("verify", "--log", str(export), *witness).returncode == 0

    lines = [e for e in chain(site.db)]
    store_chain(site.db, [msgspec.json.encode(e) for e in lines[:3]])  # the last two entries deleted
    for args in (["--config", site.config], ["--db", str(site.db), *witness]):
        r = cli("verify", *args)
        assert r.returncode == 1, r.stdout + r.stderr
        assert "ok: 3 entries, chain intact" in r.stdout  # the chain alone cannot tell
        assert "the log ends at entry 3, but entry 5 was checkpointed" in r.stdout
        assert "entries 4..5 (at least) were cut off" in r.stdout and "NOT VERIFIED" in r.stdout

    export.write_text("".join(line + "\n" for line in export.read_text().splitlines()[:4]))
    r = cli("verify", "--log", str(export), *witness)
    assert r.returncode == 1 and "the log ends at entry 4" in r.stdout, r.stdout


async def test_rewritten_and_resealed_entries_are_detected(tmp_path: Path) -> None:
    site = await five_entries(tmp_path)
    entries = chain(site.db)
    entries[1].count = 9  # entry 2 rewritten, then every later entry re-sealed with the public hash
    lines, prev = [msgspec.json.encode(entries[0])], entries[0].hash
    for e in entries[1:]:
        lines.append(seal(prev, e))
        prev = e.hash
    store_chain(site.db, lines)
    r = cli("verify", "--db", str(site.db))  # checkpoints and key next to the database
    assert r.returncode == 1, r.stdout + r.stderr
    assert "ok: 5 entries, chain intact" in r.stdout
    assert "entry 5 is not the entry checkpointed by node" in r.stdout
    assert "were rewritten or replaced" in r.stdout


async def test_forged_foreign_and_missing_checkpoints(tmp_path: Path) -> None:
    site = await five_entries(tmp_path)
    entries = chain(site.db)
    store_chain(site.db, [msgspec.json.encode(e) for e in entries[:3]])
    original = site.cp.read_bytes()

    # the intruder makes the checkpoints agree with the cut log, keeping the node's key id
    forged = []
    for c in checkpoints(site.cp):
        if c.seq > 3:
            c.seq, c.head = 3, entries[2].hash
        forged.append(msgspec.json.encode(c))
    site.cp.write_bytes(b"\n".join(forged) + b"\n")
    r = cli("verify", "--config", site.config)
    assert r.returncode == 1, r.stdout
    assert "checkpoint of entry 3 by node" in r.stdout and "the signature does not verify" in r.stdout

    # ... or signs them with a key of its own: not trusted, so the log is not vouched for
    own = NodeKey(Ed25519PrivateKey.generate())
    from gateway.governance.checkpoints import sign_checkpoint

    site.cp.write_bytes(sign_checkpoint(own, "intruder:1", 3, entries[2].hash).line())
    r = cli("verify", "--config", site.config)
    assert r.returncode == 1, r.stdout
    assert f"1 checkpoints by keys not trusted here ({own.id})" in r.stdout
    assert "no checkpoint signed by a trusted key covers this log" in r.stdout

    site.cp.unlink()  # ... or removes the file
    r = cli("verify", "--config", site.config)
    assert r.returncode == 1 and "no checkpoint signed by a trusted key" in r.stdout, r.stdout

    site.cp.write_bytes(original + b"\n")  # the genuine file, with the intruder's line appended
    with site.cp.open("ab") as f:
        f.write(sign_checkpoint(own, "intruder:1", 3, entries[2].hash).line())
    r = cli("verify", "--config", site.config)
    assert r.returncode == 1 and "entries 4..5 (at least) were cut off" in r.stdout, r.stdout


async def test_citizen_index_tampering_is_detected(tmp_path: Path) -> None:
    db, cp_file = tmp_path / "gov" / "governance.db", tmp_path / "witness.jsonl"
    key = load_node_key(tmp_path / "node.key")
    keys_json = tmp_path / "node-keys.json"  # what GET /v1/node-keys answers
    keys_json.write_text(json.dumps({"keys": [key.public_doc()]}))
    gov = SQLiteGovernance(db)
    await gov.open()
    log = AuditLog(gov, b"k" * 32, checkpointer=Checkpointer(key, "test:1", CheckpointFile(cp_file)))
    log.start()
    a, b = "a" * 32, "b" * 32
    for i, cits in enumerate([[a], [], [b], [a, b], []]):
        await log.record(AuditEntry(ts=time.time(), request_id=f"r{i}", client="c", op="read", target="t",
                                    status=200, count=1, citizens=cits))
    await log.close()
    await gov.close()
    witness = ["--db", str(db), "--checkpoints", str(cp_file), "--key", str(keys_json)]
    r = cli("verify", *witness)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ok: citizen index: 4 rows match the 4 citizens named" in r.stdout

    con = sqlite3.connect(db, isolation_level=None)
    rowid, seq, blob = con.execute("SELECT rowid, seq, entry FROM audit_citizen WHERE citizen = ? AND seq = 4",
                                   (a,)).fetchone()
    con.execute("DELETE FROM audit_citizen WHERE rowid = ?", (rowid,))  # hide a read from citizen a
    r = cli("verify", *witness)
    assert r.returncode == 1 and f"entry 4 names citizen {a[:12]}…, but the citizen index has no row" in r.stdout
    con.execute("INSERT INTO audit_citizen(citizen, seq, entry) VALUES (?, ?, ?)", (a, seq, blob))
    assert cli("verify", *witness).returncode == 0

    # a read that never happened, shown in citizen c's access log
    con.execute("INSERT INTO audit_citizen(citizen, seq, entry) VALUES (?, ?, ?)", ("c" * 32, seq, blob))
    r = cli("verify", *witness)
    assert r.returncode == 1 and "points at entry 4, which does not name that citizen" in r.stdout, r.stdout
    con.execute("DELETE FROM audit_citizen WHERE citizen = ?", ("c" * 32,))
    # a copy that says something else than the log
    con.execute("UPDATE audit_citizen SET entry = ? WHERE citizen = ? AND seq = 1",
                (blob.replace(b'"request_id":"r3"', b'"request_id":"zz"'), a))
    r = cli("verify", *witness)
    assert r.returncode == 1 and "holds a copy of entry 1 that differs from the log" in r.stdout, r.stdout
    con.close()


async def test_verify_usage_errors_are_clear(tmp_path: Path) -> None:
    gov = SQLiteGovernance(tmp_path / "governance.db")
    await gov.open()
    await gov.audit_append([AuditEntry(ts=1.0, request_id="r", client="c", op="x", target="t", status=200)])
    await gov.close()
    db = str(tmp_path / "governance.db")
    r = cli("verify", "--db", db)
    assert r.returncode == 2 and "no trusted node key" in r.stderr and "--key" in r.stderr, r.stderr
    (tmp_path / "junk.key").write_text("not a key")
    r = cli("verify", "--db", db, "--key", str(tmp_path / "junk.key"))
    assert r.returncode == 2 and "neither PEM nor JSON" in r.stderr, r.stderr
    pem = Ed25519PrivateKey.generate().public_key().public_bytes(serialization.Encoding.PEM,
                                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    (tmp_path / "pub.pem").write_bytes(pem)
    r = cli("verify", "--db", db, "--key", str(tmp_path / "pub.pem"), "--checkpoints", str(tmp_path / "none"))
    assert r.returncode == 2 and "checkpoint file" in r.stderr and "not found" in r.stderr, r.stderr
    r = cli("verify", "--db", db, "--key", str(tmp_path / "pub.pem"))
    assert r.returncode == 1 and "no checkpoint signed by a trusted key" in r.stdout, r.stdout
