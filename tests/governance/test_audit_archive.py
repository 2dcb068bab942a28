"""``audit archive``: old entries move into compressed, signed, chained segments; pruning
deletes only what was archived and read back; ``audit verify --archive`` checks archive and
live log as one chain against the signed checkpoints; ``audit export --archive`` reads both."""

from __future__ import annotations

import gzip
import json
import os
import sqlite3
import stat
from pathlib import Path

from svckit import running_node, wait_until
from test_audit_verify import checkpoints, cli, five_entries

TOMORROW = "2099-01-01"


def _live_rows(db: Path) -> int:
    con = sqlite3.connect(db)
    try:
        return con.execute("SELECT count(*) FROM audit_log").fetchone()[0]
    finally:
        con.close()


async def test_archive_prune_verify_and_export(tmp_path: Path) -> None:
    site = await five_entries(tmp_path)
    archive = tmp_path / "archive"
    nothing = cli("archive", "--config", site.config, "--before", "2000-01-01", "--out", str(archive))
    assert nothing.returncode == 0 and "nothing to archive" in nothing.stdout
    r = cli("archive", "--config", site.config, "--before", TOMORROW, "--out", str(archive), "--prune")
    assert r.returncode == 0, r.stderr
    assert "archived entries 1..5 (5)" in r.stdout
    assert _live_rows(site.db) == 0
    seg = sorted(archive.glob("*.jsonl.gz"))
    assert len(seg) == 1 and stat.S_IMODE(os.stat(seg[0]).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(archive).st_mode) == 0o700

    # More entries after the pruning, in the live log.
    async with running_node(tmp_path, store='[store]\nsynchronous = "NORMAL"\n') as n:
        for i in range(3):
            await n.push("psb.stations", [{"key": f"t{i}", "data": {"code": f"t{i}", "name": "y"}}])
        await n.node.audit.flush()

        async def covered() -> bool:
            return any(c.seq == 8 for c in checkpoints(site.cp))

        await wait_until(covered, timeout=3.0)
    without = cli("verify", "--config", site.config)
    assert without.returncode == 1 and "entries 1..5 were archived; pass --archive" in without.stdout
    ok = cli("verify", "--config", site.config, "--archive", str(archive))
    assert ok.returncode == 0, ok.stdout
    assert "ok: 8 entries, chain intact" in ok.stdout and "covers entry 8" in ok.stdout
    out = tmp_path / "all.jsonl"
    exp = cli("export", "--config", site.config, "--archive", str(archive), "--out", str(out))
    assert exp.returncode == 0
    assert [json.loads(x)["seq"] for x in out.read_text().splitlines()] == list(range(1, 9))

    # A second segment continues the first; the chain still verifies end to end.
    r2 = cli("archive", "--config", site.config, "--before", TOMORROW, "--out", str(archive), "--prune")
    assert r2.returncode == 0 and "archived entries 6..8 (3)" in r2.stdout
    again = cli("verify", "--config", site.config, "--archive", str(archive))
    assert again.returncode == 0, again.stdout

    # A tampered segment is found; the live log is not touched by a failed check.
    first = sorted(archive.glob("*.jsonl.gz"))[0]
    lines = gzip.decompress(first.read_bytes()).replace(b'"t0"', b'"tX"').replace(b'"s1"', b'"sX"')
    first.write_bytes(gzip.compress(lines))
    bad = cli("verify", "--config", site.config, "--archive", str(archive))
    assert bad.returncode == 1 and "altered (SHA-256 differs from its manifest)" in bad.stdout


async def test_archive_refuses_bad_input(tmp_path: Path) -> None:
    site = await five_entries(tmp_path)
    r = cli("archive", "--config", site.config, "--before", "yesterday", "--out", str(tmp_path / "a"))
    assert r.returncode == 2 and "--before must be YYYY-MM-DD" in r.stderr
    assert _live_rows(site.db) > 0
