"""Two node processes on one data_dir (as ``serve --workers N`` runs them): a push through
one wakes a long-poll on the other, and both serve the same records and cursors."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import aiohttp
from gwkit import GRANTED, ID_CARD, OWNER, NodeProcess, Raw, id_card, inflight, wait_until

from gateway.client import ExchangeClient
from gateway.keyring import Keyring


def _client(node: NodeProcess, keyring: Keyring, sub: str) -> ExchangeClient:
    key = keyring.for_client(sub)
    assert key is not None
    return ExchangeClient(node.url, key.id, key.secret, sub, retries=0)


async def test_push_on_one_node_wakes_a_long_poll_on_the_other(
    make_node: Callable[..., NodeProcess], keyring: Keyring, tmp_path: Path
) -> None:
    shared = {"data_dir": str(tmp_path / "shared")}
    a, b = make_node(node=shared), make_node(node=shared)
    owner_a, consumer_b = _client(a, keyring, OWNER), _client(b, keyring, GRANTED)
    try:
        first = await owner_a.push(ID_CARD, [id_card()])
        poll = asyncio.create_task(consumer_b.pull(ID_CARD, after=first["last"], wait=25))
        async with aiohttp.ClientSession() as session:
            probe = Raw(session, b.url, keyring)
            await wait_until(lambda: _in_flight(probe, poll))  # the poll waits on node b
        rec = id_card()
        res = await owner_a.push(ID_CARD, [rec])
        page = await asyncio.wait_for(poll, 20)
        assert [r["key"] for r in page.records] == [rec["key"]] and page.next == res["last"]

        # Cursors and keyed reads are shared too.
        await consumer_b.commit(ID_CARD, res["last"])
        consumer_a = _client(a, keyring, GRANTED)
        try:
            assert (await consumer_a.pull(ID_CARD)).next == res["last"]
            with_key = await _client(b, keyring, OWNER).get(ID_CARD, rec["key"])
            assert with_key is not None and with_key["offset"] == res["first"]
        finally:
            await consumer_a.close()
    finally:
        await owner_a.close()
        await consumer_b.close()


async def _in_flight(probe: Raw, poll: asyncio.Task) -> bool:
    return poll.done() or await inflight(probe) >= 2
