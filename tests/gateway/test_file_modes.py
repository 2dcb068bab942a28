"""File modes: the data directory is 0700 and everything in it 0600 (or 0700), even when
the node is started with umask 022; a keyring, audit.key or node key that group or others
may read is refused at start, naming the file and the fix."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from gwkit import OWNER, NodeProcess, id_card, write_keyring
from test_node_citizen_key import serve_fails, with_citizen_key

from gateway.client import ExchangeClient


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


async def test_data_dir_and_store_files_are_private(tmp_path: Path) -> None:
    ring = with_citizen_key(write_keyring(tmp_path / "dev.toml"), tmp_path / "ring.toml", None)
    old = os.umask(0o022)  # what the node inherits: its files must be private regardless
    try:
        node = NodeProcess(tmp_path / "node", ring).start()
    finally:
        os.umask(old)
    try:
        async with ExchangeClient.from_keyring(node.url, str(ring), OWNER) as owner:
            await owner.push("psb.id-card", [id_card()])
        data = node.data_dir
        names = {p.name for p in data.iterdir()}
        assert {"exchange.db", "exchange.db-wal", "exchange.db-shm", "governance.db",
                "governance.db-wal", "governance.db-shm", "audit.key", "node-signing.key"} <= names
        assert _mode(data) == 0o700
        loose = {str(p.relative_to(data)): oct(_mode(p)) for p in data.rglob("*")
                 if _mode(p) & 0o077}
        assert not loose, loose
    finally:
        node.stop()


def _secret_file(tmp_path: Path, which: str) -> tuple[NodeProcess, Path]:
    """A node whose ``which`` file (keyring, audit.key, node key) is mode 0644."""
    dev = write_keyring(tmp_path / "dev.toml")
    ring = with_citizen_key(dev, tmp_path / "ring.toml", None)  # sqlite fallback: audit.key
    node = NodeProcess(tmp_path / "node", ring)
    if which == "keyring":
        target = ring
    elif which == "audit.key":
        node.data_dir.mkdir(parents=True)
        target = node.data_dir / "audit.key"
        target.write_text("ab" * 32)
    else:
        node.start()  # makes the node key
        node.stop()
        target = node.data_dir / "node-signing.key"
    target.chmod(0o644)
    return node, target


@pytest.mark.parametrize("which", ["keyring", "audit.key", "node key"])
def test_secret_file_others_may_read_is_refused(tmp_path: Path, which: str) -> None:
    node, target = _secret_file(tmp_path, which)
    proc = serve_fails(node)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert f"{target}: permissions 0644 are too open" in proc.stderr
    assert f"run `chmod 600 {target}`" in proc.stderr
    assert "ab" * 32 not in proc.stderr
    target.chmod(0o600)
    node.start()  # the fix works
    node.stop()
