"""The citizen key on the sqlite backend: the keyring's ``citizen_key`` when it has one,
else ``DATA_DIR/audit.key``; a node whose key changed since its data was written refuses
to start (and names the way out)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from gwkit import GRANTED, OWNER, ROOT, NodeProcess, id_card, write_keyring

from gateway.audit import citizen_hash
from gateway.client import ExchangeClient
from gateway.keyring import load_keyring, write_private

PORTAL = "SH/GOV/bdc/portal"


def serve_fails(node: NodeProcess) -> subprocess.CompletedProcess[str]:
    """``serve`` with the node's config, expected to refuse to start."""
    node.write_config()
    return subprocess.run([sys.executable, "-m", "gateway", "serve", "--config", str(node.config)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


def with_citizen_key(src: Path, dst: Path, hex_key: str | None) -> Path:
    """``src``'s keys with ``citizen_key`` set to ``hex_key`` (left out when None)."""
    lines = [x for x in src.read_text().splitlines() if not x.startswith("citizen_key")]
    if hex_key is not None:
        lines.insert(0, f'citizen_key = "{hex_key}"')
    write_private(dst, "\n".join(lines) + "\n")
    return dst


async def _consented_read(url: str, ring: Path, user: str, *, grant: bool) -> dict | None:
    async with ExchangeClient.from_keyring(url, str(ring), GRANTED, retries=0) as reader:
        if grant:
            async with ExchangeClient.from_keyring(url, str(ring), PORTAL, retries=0) as portal:
                await portal.grant_consent(user, GRANTED, ["psb.id-card"], purpose="employment",
                                           expires="2030-12-31")
        return await reader.get("psb.id-card", user, user_id=user, purpose="employment")


async def test_keyring_citizen_key_hashes_citizens(tmp_path: Path) -> None:
    ring = write_keyring(tmp_path / "keyring.toml")  # `keys init` writes a citizen_key
    key = load_keyring(ring).citizen_key
    assert key is not None and len(key) == 32
    node = NodeProcess(tmp_path / "node", ring).start()
    try:
        card = id_card()
        user = card["key"]
        async with ExchangeClient.from_keyring(node.url, str(ring), OWNER) as owner:
            await owner.push("psb.id-card", [card])
        assert await _consented_read(node.url, ring, user, grant=True) is not None
    finally:
        node.stop()
    assert not (node.data_dir / "audit.key").exists()  # no per-node key
    db = sqlite3.connect(node.data_dir / "governance.db")
    try:
        rows = db.execute("SELECT count(*) FROM audit_citizen WHERE citizen = ?",
                          (citizen_hash(key, user),)).fetchone()[0]
    finally:
        db.close()
    assert rows >= 2  # the consent and the read, hashed with the keyring's key


async def test_changed_key_is_refused_and_audit_key_moves_to_the_keyring(tmp_path: Path) -> None:
    dev = write_keyring(tmp_path / "dev.toml")
    bare = with_citizen_key(dev, tmp_path / "bare.toml", None)
    node = NodeProcess(tmp_path / "node", bare).start()  # sqlite, no citizen_key: audit.key
    card = id_card()
    user = card["key"]
    try:
        async with ExchangeClient.from_keyring(node.url, str(bare), OWNER) as owner:
            await owner.push("psb.id-card", [card])
        assert await _consented_read(node.url, bare, user, grant=True) is not None
    finally:
        node.stop()
    audit_key = node.data_dir / "audit.key"
    assert (audit_key.stat().st_mode & 0o777) == 0o600

    # The keyring gains a citizen_key that is not audit.key's: refused, with the way out.
    node.keyring = with_citizen_key(dev, tmp_path / "other.toml", "cd" * 32)
    proc = serve_fails(node)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert f"{node.keyring}: citizen_key: this key (fingerprint" in proc.stderr
    assert f"copy its hex into citizen_key (or remove {audit_key}" in proc.stderr
    assert "cd" * 32 not in proc.stderr

    # audit.key's hex copied into citizen_key: the same key, the old consent still holds.
    node.keyring = with_citizen_key(dev, tmp_path / "moved.toml", audit_key.read_text().strip())
    node.start()
    try:
        assert await _consented_read(node.url, node.keyring, user, grant=False) is not None
    finally:
        node.stop()

    # Without audit.key the recorded fingerprint still refuses another key.
    audit_key.unlink()
    node.keyring = with_citizen_key(dev, tmp_path / "other.toml", "cd" * 32)
    proc = serve_fails(node)
    assert proc.returncode == 2 and "is not the one that hashed the citizen ids" in proc.stderr
