"""Deterministic fuzzing over HTTP: mutated push bodies, cursor bodies and query strings are
answered with a client error or accepted as valid, never a 500 (``Raw.check``)."""

from __future__ import annotations

import json
import random
from typing import Any

import msgspec
from gwkit import GRANTED, ID_CARD, Raw, id_card

from gateway.catalog import Catalog

SEED = 20261127
PUSH_OK = {200, 400, 413, 415, 422}
RECORDS = f"/v1/resources/{ID_CARD}/records"


def _mutate(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(5)
        i = rng.randrange(len(b)) if b else 0
        if op == 0 and b:
            b[i] = rng.randrange(256)
        elif op == 1:
            b.insert(i, rng.choice(b'{}[]",:\\0123456789-eE.nulltruefalse\xff\x00 '))
        elif op == 2 and b:
            del b[i : i + rng.randint(1, 8)]
        elif op == 3:
            b = b[:i]
        else:
            j = rng.randrange(len(b)) if b else 0
            b[i:i] = b[j : j + rng.randint(1, 16)]
    return bytes(b)


async def _check_accepted(raw: Raw, reply: Any) -> None:
    """A mutation that was accepted must read back as valid records of the schema."""
    res = reply.json()
    r = await raw.request("GET", RECORDS, query=f"after={res['first'] - 1}&limit={res['count']}")
    recs = r.json()["records"]
    assert len(recs) == res["count"]
    for rec in recs:
        assert rec["key"] == rec["data"]["id_number"]
        assert isinstance(rec["data"]["name"], str)


async def test_mutated_json_push_bodies(raw: Raw) -> None:
    rng = random.Random(SEED)
    base = json.dumps({"records": [id_card("fuzz-a"), id_card("fuzz-b")]}).encode()
    seen: set[int] = set()
    for _ in range(150):
        r = await raw.request("POST", RECORDS, body=_mutate(rng, base))
        assert r.status in PUSH_OK, (r.status, r.body[:300])
        seen.add(r.status)
        if r.status == 200:
            await _check_accepted(raw, r)
        else:
            assert r.headers["Content-Type"].startswith("application/problem+json")
    assert {400, 422} <= seen


async def test_mutated_msgpack_push_bodies(raw: Raw) -> None:
    rng = random.Random(SEED + 1)
    base = msgspec.msgpack.encode({"records": [id_card("fuzz-c"), id_card("fuzz-d")]})
    for _ in range(150):
        r = await raw.request(
            "POST", RECORDS, body=_mutate(rng, base), content_type="application/msgpack"
        )
        assert r.status in PUSH_OK, (r.status, r.body[:300])
        if r.status == 200:
            await _check_accepted(raw, r)


async def test_random_values_in_every_field(raw: Raw, catalog: Catalog) -> None:
    """Each field of each record gets values of every JSON type, including extremes."""
    rng = random.Random(SEED + 2)
    values = [
        None,
        True,
        0,
        -1,
        2**53 + 1,
        2**63,
        -(2**63),
        1e308,
        -0.0,
        "",
        "x" * 300,
        "\u0000",
        "😀",
        "2020-02-30",
        "2020-01-02T25:00:00Z",
        [],
        ["a", 1],
        {},
        {"a": {"b": []}},
    ]
    for field in catalog.by_id[ID_CARD].spec.fields:
        for v in rng.sample(values, 8):
            rec = id_card()
            rec["data"][field] = v
            if field == "id_number":
                rec["key"] = v if isinstance(v, str) else str(v)
            r = await raw.push(ID_CARD, [rec])
            assert r.status in (200, 422), (field, v, r.status, r.body[:300])
            if r.status == 200:
                await _check_accepted(raw, r)


async def test_random_cursor_bodies_and_queries(raw: Raw) -> None:
    rng = random.Random(SEED + 3)
    base = b'{"offset": 12, "force": true}'
    for _ in range(80):
        r = await raw.request(
            "PUT", f"/v1/resources/{ID_CARD}/cursor", body=_mutate(rng, base), client=GRANTED
        )
        assert r.status in (200, 400, 409), (r.status, r.body[:300])
    alphabet = "afterlimitwait=&%0123456789-+.x;#?/ "
    for _ in range(120):
        q = (
            "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
            .replace(" ", "%20")
            .replace("#", "%23")
        )
        r = await raw.request("GET", RECORDS, query=q, client=GRANTED)
        assert r.status in (200, 400), (q, r.status, r.body[:300])


async def test_random_optional_headers(raw: Raw) -> None:
    """Correlation, citizen, purpose and consent headers with odd values never break a read."""
    rng = random.Random(SEED + 4)
    rec = id_card()
    await raw.push(ID_CARD, [rec])
    odd = [
        "",
        " ",
        "x" * 4000,
        "c-" + "0" * 32,
        "c-zz",
        "310101199001011234",
        "名字",
        "\t",
        "a,b;c=d",
        "%00",
        "../../etc/passwd",
        "null",
        "{}",
        "c-" + "f" * 31,
    ]
    readers = [
        ("SH/GOV/psb/hukou", f"/v1/resources/{ID_CARD}/records/{rec['key']}"),
        ("SH/GOV/sicenter/pension", f"/v1/resources/{ID_CARD}/records/{rec['key']}"),
        (GRANTED, f"/v1/resources/{ID_CARD}/records/{rec['key']}"),
        (GRANTED, RECORDS),
    ]
    for _ in range(120):
        client, path = rng.choice(readers)
        headers = {
            h: rng.choice(odd)
            for h in (
                "X-Exchange-Id",
                "X-Exchange-UserId",
                "X-Exchange-Purpose",
                "X-Exchange-Consent",
            )
            if rng.random() < 0.6
        }
        r = await raw.request(
            "GET",
            path,
            client=client,
            headers={k: v.encode().decode("latin-1") for k, v in headers.items()},
        )
        assert r.status in (200, 400, 403, 404), (client, headers, r.status, r.body[:300])
