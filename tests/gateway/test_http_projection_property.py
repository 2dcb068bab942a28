"""Property: for random records and every grant of psb.id-card, what a consumer pulls is
exactly the grant's fields of the record, masked as the grant says (DESIGN: projection)."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import aiohttp
from gwkit import ID_CARD, OWNER, NodeProcess, Raw, today
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.catalog import Catalog
from gateway.keyring import Keyring

text = st.text(min_size=0, max_size=24)
id_numbers = st.text(alphabet="0123456789X", min_size=1, max_size=20)
dates = st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date(2100, 12, 31)).map(
    dt.date.isoformat
)


@st.composite
def id_cards(draw: st.DrawFn) -> dict[str, Any]:
    data = {
        "id_number": draw(id_numbers),
        "name": draw(text),
        "gender": draw(text),
        "ethnicity": draw(text),
        "birth_date": draw(dates),
        "address": draw(text),
        "issuing_authority": draw(text),
        "valid_from": draw(dates),
    }
    if draw(st.booleans()):
        data["valid_until"] = draw(dates)
    return {"key": data["id_number"], "data": data}


def masked(value: str, head: int, tail: int) -> str:
    n = len(value)
    return (
        "*" * n if n <= head + tail else value[:head] + "*" * (n - head - tail) + value[n - tail :]
    )


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rec=id_cards())
def test_pulls_are_the_grants_projection(
    node: NodeProcess, keyring: Keyring, catalog: Catalog, rec: dict[str, Any]
) -> None:
    grants = [
        g
        for g in catalog.doc.grants
        if g.resource == ID_CARD and (g.expires is None or g.expires >= today())
    ]
    assert len(grants) >= 5

    async def run() -> None:
        async with aiohttp.ClientSession() as session:
            raw = Raw(session, node.url, keyring)
            r = await raw.push(ID_CARD, [rec], client=OWNER)
            assert r.status == 200, r.body
            first = r.json()["first"]
            for g in grants:
                got = await raw.request(
                    "GET",
                    f"/v1/resources/{ID_CARD}/records",
                    query=f"after={first - 1}&limit=1",
                    client=g.consumer,
                )
                assert got.status == 200, got.body
                data = got.json()["records"][0]["data"]
                allowed = set(rec["data"]) if g.fields == ["*"] else set(g.fields)
                expected = {
                    f: (masked(v, *g.masks[f]) if f in g.masks else v)
                    for f, v in rec["data"].items()
                    if f in allowed
                }
                assert data == expected, (g.consumer, data, expected)

    asyncio.run(run())
