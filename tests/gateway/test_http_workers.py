"""``serve --workers 2``: two processes share one port and one store; SIGTERM stops both."""

from __future__ import annotations

import signal
from collections.abc import Callable

import aiohttp
from gwkit import GRANTED, ID_CARD, NodeProcess, Raw, id_card, wait_until
from support import free_port

from gateway.keyring import Keyring


async def test_two_workers_share_port_and_store(
    make_node: Callable[..., NodeProcess], keyring: Keyring
) -> None:
    port = free_port()
    n = make_node(args=("--workers", "2"), port=port)
    await wait_until(lambda: n.log_text().count('"listening"') == 2, timeout=30)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session:
        raw = Raw(session, n.url, keyring)
        ids = set()
        for _ in range(20):  # new connections: the kernel spreads them over both workers
            r = await raw.push(ID_CARD, [id_card()])
            assert r.status == 200
            ids.add(r.headers["X-Exchange-Request-Id"].rsplit("-", 1)[0])
        snap = await raw.snapshot(ID_CARD, client=GRANTED)
        assert len(snap) == 20  # every worker sees every record
    n.signal(signal.SIGTERM)
    assert n.wait(30) == 0
    text = n.log_text()
    assert text.count('"listening"') == 2 and text.count('"stopped"') == 2, text[-2000:]
    assert len(ids) == 2  # request-id prefixes: both worker processes answered
