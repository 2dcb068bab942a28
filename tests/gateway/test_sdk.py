"""The Python SDK against a real node: the pull iterator resumes from its committed cursor,
fail-over to the next node URL, and errors surface as ExchangeError with the problem."""

from __future__ import annotations

import pytest
from gwkit import ID_CARD, OWNER, UNGRANTED, NodeProcess, id_card
from support import free_port

from gateway.client import ExchangeClient, ExchangeError
from gateway.keyring import Keyring

READER = "SH/GOV/samr/registry"  # psb.id-card: id_number, name; used by this module only


async def test_records_iterator_commits_and_resumes(sdk) -> None:
    owner, reader = sdk(OWNER), sdk(READER)
    start = await owner.push(ID_CARD, [id_card()])
    await reader.commit(ID_CARD, start["last"])
    batch = [id_card() for _ in range(3)]
    await owner.push(ID_CARD, batch)

    seen = []
    async for rec in reader.records(ID_CARD, wait=1, limit=2):
        seen.append(rec)
        if len(seen) == 3:
            break
    assert [r["key"] for r in seen] == [r["key"] for r in batch]
    # The first page (2 records) was committed when the iterator moved on; the last record
    # was handed out but its page not yet committed: a new iterator sees it again.
    again = []
    async for rec in reader.records(ID_CARD, wait=1, limit=2):
        again.append(rec)
        break
    assert again[0]["key"] == batch[2]["key"]
    assert set(again[0]["data"]) == {"id_number", "name"}


async def test_fail_over_to_the_next_node_url(node: NodeProcess, keyring: Keyring) -> None:
    dead = f"http://127.0.0.1:{free_port()}"  # a port where nothing listens
    key = keyring.for_client(OWNER)
    assert key is not None
    async with ExchangeClient(
        [dead, node.url], key.id, key.secret, OWNER, retries=2, backoff=0.01
    ) as c:
        res = await c.push(ID_CARD, [id_card()])
        assert res["count"] == 1 and res["replayed"] is False
    async with ExchangeClient([dead], key.id, key.secret, OWNER, retries=1, backoff=0.01) as c:
        with pytest.raises(ExchangeError) as exc:
            await c.catalog()
        assert exc.value.status == 0 and exc.value.code == "transport"


async def test_problems_surface_as_exchange_errors(sdk) -> None:
    with pytest.raises(ExchangeError) as exc:
        await sdk(UNGRANTED).pull(ID_CARD)
    assert exc.value.status == 403 and exc.value.code == "client.access_denied"
    assert exc.value.problem["request_id"]
    with pytest.raises(ExchangeError) as exc:
        await sdk(OWNER).push(ID_CARD, [])
    assert exc.value.status == 422 and exc.value.problem["errors"]
