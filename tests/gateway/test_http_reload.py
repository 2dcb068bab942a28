"""Hot reload on SIGHUP: keys rotate without a restart; a broken file is refused and the
node keeps serving with what it had."""

from __future__ import annotations

import json
import secrets
import shutil
import signal
from collections.abc import Callable
from pathlib import Path

import aiohttp
from gwkit import CATALOG, GRANTED, ID_CARD, OWNER, NodeProcess, Raw, id_card, wait_until

import fastpath
from gateway.client import ExchangeClient
from gateway.keyring import load_keyring


async def _status(url: str, key_id: str, secret: str, client: str) -> int:
    async with ExchangeClient(url, key_id, secret, client, retries=0) as c:
        try:
            await c.catalog()
            return 200
        except Exception as exc:  # noqa: BLE001 - the status is what we want
            return getattr(exc, "status", -1)


async def test_sighup_rotates_keys_and_refuses_a_broken_catalog(
    make_node: Callable[..., NodeProcess], keyring_path: Path, tmp_path: Path
) -> None:
    ring = tmp_path / "keyring.toml"
    catalog = tmp_path / "catalog.toml"
    shutil.copy(keyring_path, ring)
    shutil.copy(CATALOG, catalog)
    n = make_node(keyring=ring, catalog=catalog)
    old = load_keyring(ring)  # the keys the node started with
    old_key = old.for_client(OWNER)
    assert old_key is not None
    new_secret = secrets.token_hex(32)
    ring.write_text(
        ring.read_text()
        + f'\n[[keys]]\nid = "k-rotated"\nclient = "{OWNER}"\nsecret = "{new_secret}"\n'
    )
    assert await _status(n.url, "k-rotated", new_secret, OWNER) == 401
    n.signal(signal.SIGHUP)
    await wait_until(lambda: _is(n.url, "k-rotated", new_secret, OWNER, 200))
    assert (
        await _status(n.url, old_key.id, old_key.secret, OWNER) == 200
    )  # both keys during the rotation

    # Revoke the old key.
    text = ring.read_text()
    start = text.index(f'id = "{old_key.id}"')
    block_start = text.rindex("[[keys]]", 0, start)
    block_end = text.find("[[keys]]", start)
    ring.write_text(text[:block_start] + (text[block_end:] if block_end >= 0 else ""))
    n.signal(signal.SIGHUP)
    await wait_until(lambda: _is(n.url, old_key.id, old_key.secret, OWNER, 401))

    # A broken catalog is refused; the node keeps serving with the state it had.
    catalog.write_text(catalog.read_text() + "\n[[resources]]\nid = 'BROKEN id'\n")
    n.signal(signal.SIGHUP)
    await wait_until(lambda: '"reload_refused"' in n.log_text())
    refused = [ln for ln in n.log_text().splitlines() if '"reload_refused"' in ln][-1]
    assert str(catalog) in refused and "resources" in refused
    assert await _status(n.url, "k-rotated", new_secret, OWNER) == 200
    async with aiohttp.ClientSession() as session:
        raw = Raw(session, n.url, load_keyring(ring))
        assert (await raw.push(ID_CARD, [id_card()])).status == 200
        assert (
            await raw.request("GET", f"/v1/resources/{ID_CARD}/records", client=GRANTED)
        ).status == 200
        assert (await raw.request("GET", "/readyz", signed=False)).status == 200


async def _is(url: str, key_id: str, secret: str, client: str, status: int) -> bool:
    return await _status(url, key_id, secret, client) == status


async def test_node_runs_the_requested_fastpath(node: NodeProcess) -> None:
    """The node subprocess uses the same implementation as this process (both follow
    GATEWAY_NO_EXTENSIONS), so that ``make test`` really exercises both."""
    listening = next(json.loads(ln) for ln in node.log_text().splitlines() if '"listening"' in ln)
    assert listening["fastpath"] == fastpath.IMPLEMENTATION
