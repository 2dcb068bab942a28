"""Bad input over HTTP: each is answered with the documented status and problem code,
changes no stored data and is never a 500 (``Raw.check`` asserts that on every reply)."""

from __future__ import annotations

import gzip
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import msgspec
import pytest
from gwkit import (
    EXPIRED,
    GRANTED,
    HUKOU,
    ID_CARD,
    OPEN,
    OWNER,
    RESTRICTED,
    RESTRICTED_OWNER,
    UNGRANTED,
    NodeProcess,
    Raw,
    assert_problem,
    id_card,
    raw_http,
    record_for,
    today,
    unchanged,
    wait_until,
)

from gateway.catalog import Catalog
from gateway.client import purpose_header
from gateway.keyring import Keyring

RECORDS = f"/v1/resources/{ID_CARD}/records"
CURSOR = f"/v1/resources/{ID_CARD}/cursor"


@pytest.fixture(scope="module")
def small_node(make_node: Callable[..., NodeProcess]) -> NodeProcess:
    """A node with small limits: 2 KiB bodies, 5 records a batch, 1 s to send a body."""
    return make_node(
        limits={"max_body_bytes": 2048, "max_batch_records": 5, "body_timeout_s": 1.0}
    )


@pytest.fixture
async def small(small_node: NodeProcess, keyring: Keyring) -> AsyncIterator[Raw]:
    async with aiohttp.ClientSession() as session:
        yield Raw(session, small_node.url, keyring)


# -- resources and access ---------------------------------------------------------------


async def test_unknown_resource_is_404(raw: Raw) -> None:
    rid = "no.such-resource"
    for method, path, body in (
        ("POST", f"/v1/resources/{rid}/records", {"records": [id_card()]}),
        ("GET", f"/v1/resources/{rid}/records", None),
        ("GET", f"/v1/resources/{rid}/records/abc", None),
        ("PUT", f"/v1/resources/{rid}/cursor", {"offset": 1}),
        ("GET", f"/v1/catalog/{rid}", None),
    ):
        r = await raw.request(method, path, json_body=body)
        assert_problem(r, 404, "client.not_found")


async def test_push_by_non_owner_is_403(raw: Raw, catalog: Catalog) -> None:
    check = await unchanged(raw)
    for client in (GRANTED, UNGRANTED, RESTRICTED_OWNER):
        r = await raw.push(ID_CARD, [id_card()], client=client)
        assert_problem(r, 403, "client.access_denied")
    check_open = await unchanged(raw, OPEN)
    r = await raw.push(
        OPEN, [record_for(catalog, OPEN)], client=GRANTED
    )  # open is read-only to others
    assert_problem(r, 403, "client.access_denied")
    await check()
    await check_open()


@pytest.mark.parametrize(
    ("client", "rid"),
    [(GRANTED, RESTRICTED), (OWNER, RESTRICTED), (UNGRANTED, ID_CARD), (EXPIRED, HUKOU)],
)
async def test_read_without_access_is_403(raw: Raw, client: str, rid: str) -> None:
    for method, path, body in (
        ("GET", f"/v1/resources/{rid}/records", None),
        ("GET", f"/v1/resources/{rid}/records/some-key", None),
        ("PUT", f"/v1/resources/{rid}/cursor", {"offset": 1}),
    ):
        r = await raw.request(method, path, json_body=body, client=client)
        assert_problem(r, 403, "client.access_denied")


async def test_restricted_owner_reads_its_own(raw: Raw, catalog: Catalog) -> None:
    rec = record_for(catalog, RESTRICTED)
    r = await raw.push(RESTRICTED, [rec], client=RESTRICTED_OWNER)
    assert r.status == 200
    r = await raw.request(
        "GET", f"/v1/resources/{RESTRICTED}/records/{rec['key']}", client=RESTRICTED_OWNER
    )
    assert r.status == 200 and r.json()["data"] == rec["data"]


async def test_expired_grant_shows_no_visible_fields(raw: Raw) -> None:
    r = await raw.request("GET", f"/v1/catalog/{HUKOU}", client=EXPIRED)
    assert r.status == 200 and r.json()["visible_fields"] == []


async def test_projection_never_leaks_a_field_outside_the_grant(raw: Raw, catalog: Catalog) -> None:
    """For every grant of the catalog: pulls and keyed reads return only granted fields
    (masked where the grant says so), and expired grants give no access at all."""
    pushed: dict[str, tuple[int, dict[str, Any]]] = {}
    grants = catalog.doc.grants
    for rid in sorted({g.resource for g in grants}):
        rec = record_for(catalog, rid)
        r = await raw.push(rid, [rec], client=catalog.by_id[rid].spec.owner)
        assert r.status == 200, r.body
        pushed[rid] = (r.json()["first"], rec)
    checked = 0
    for g in grants:
        first, rec = pushed[g.resource]
        allowed = set(rec["data"]) if g.fields == ["*"] else set(g.fields)
        pull = await raw.request(
            "GET",
            f"/v1/resources/{g.resource}/records",
            query=f"after={first - 1}&limit=1",
            client=g.consumer,
        )
        # Keyed reads of personal records need the citizen's consent unless the grant names a
        # legal basis (governance); check the projection of keyed reads where none is needed.
        keyed = not catalog.by_id[g.resource].spec.personal or bool(g.legal_basis)
        key = (
            await raw.request(
                "GET", f"/v1/resources/{g.resource}/records/{rec['key']}", client=g.consumer,
                headers={"X-Exchange-Purpose": purpose_header(g.purpose)} if g.purpose else None,
            )
            if keyed
            else pull
        )
        if g.expires is not None and g.expires < today():
            assert_problem(pull, 403, "client.access_denied")
            assert_problem(key, 403, "client.access_denied")
            entry = await raw.request("GET", f"/v1/catalog/{g.resource}", client=g.consumer)
            assert entry.json()["visible_fields"] == []
            continue
        assert pull.status == 200 and key.status == 200, (g, pull.body, key.body)
        entry = await raw.request("GET", f"/v1/catalog/{g.resource}", client=g.consumer)
        assert set(entry.json()["visible_fields"]) == allowed & set(rec["data"]), g
        datas = [pull.json()["records"][0]["data"]] + ([key.json()["data"]] if keyed else [])
        for data in datas:
            assert set(data) <= allowed, (g.consumer, g.resource, set(data) - allowed)
            assert set(data) == allowed & set(rec["data"])
            for f, value in data.items():
                if f in g.masks:
                    assert value != rec["data"][f] and "*" in value, (g, f, value)
                else:
                    assert value == rec["data"][f]
        checked += 1
    assert checked >= 20


# -- bodies -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b'{"records": [',
        b"not json",
        b'{"records": []} trailing',
        b"\x00\x01",
        b'{"records": [{"key": "a", "data": {]}',
        b"{'records': []}",
        b'{"records":[{"key":"a","data":{"name":"x\\ud800"}}]',
        b'\xef\xbb\xbf{"records": []}',
    ],
)
async def test_malformed_json_is_400(raw: Raw, body: bytes) -> None:
    check = await unchanged(raw)
    r = await raw.request("POST", RECORDS, body=body)
    assert_problem(r, 400, "client.bad_request")
    await check()


@pytest.mark.parametrize(
    "body",
    [
        b"\xc1",
        b"\x81\xa7records",
        b"\x81\xa7records\x91\x82",
        b"\x81\xa7records\xc1",
        msgspec.msgpack.encode({"records": []})[:-1],
    ],
)
async def test_malformed_msgpack_is_400(raw: Raw, body: bytes) -> None:
    check = await unchanged(raw)
    r = await raw.request("POST", RECORDS, body=body, content_type="application/msgpack")
    assert_problem(r, 400, "client.bad_request")
    await check()


@pytest.mark.parametrize(
    "ctype",
    [
        "text/plain",
        "application/xml",
        "multipart/form-data; boundary=x",
        "application/x-www-form-urlencoded",
        "application/octet-stream",
    ],
)
async def test_wrong_content_type_is_415(raw: Raw, ctype: str) -> None:
    check = await unchanged(raw)
    body = json.dumps({"records": [id_card()]}).encode()
    r = await raw.request("POST", RECORDS, body=body, content_type=ctype)
    assert_problem(r, 415, "client.unsupported_media_type")
    r = await raw.request("PUT", CURSOR, body=b'{"offset": 1}', content_type=ctype, client=GRANTED)
    assert_problem(r, 415, "client.unsupported_media_type")
    await check()


@pytest.mark.parametrize("coding", ["gzip", "deflate", "br", "zstd", "x-unknown"])
@pytest.mark.parametrize("payload", ["compressed", "bomb", "garbage"])
async def test_content_encoding_is_415(raw: Raw, coding: str, payload: str) -> None:
    """Bodies are signed as sent: compressed bodies are refused, never inflated (no zip bomb)."""
    check = await unchanged(raw)
    plain = json.dumps({"records": [id_card()]}).encode()
    body = {
        "compressed": gzip.compress(plain),
        "bomb": gzip.compress(b" " * 20_000_000 + plain),
        "garbage": b"not compressed at all",
    }[payload]
    r = await raw.request("POST", RECORDS, body=body, headers={"Content-Encoding": coding})
    assert_problem(r, 415, "client.unsupported_media_type")
    await check()


async def test_identity_content_encoding_is_fine(raw: Raw) -> None:
    r = await raw.push(ID_CARD, [id_card()], headers={"Content-Encoding": "identity"})
    assert r.status == 200


SCHEMA_CASES = {
    "wrong type": (lambda rec: rec["data"].update(name=123), "name"),
    "wrong type of date": (lambda rec: rec["data"].update(birth_date="yesterday"), "birth_date"),
    "null required": (lambda rec: rec["data"].update(name=None), "name"),
    "missing required field": (lambda rec: rec["data"].pop("name"), "name"),
    "unknown field": (lambda rec: rec["data"].update(favourite_colour="blue"), "favourite_colour"),
    "missing key": (lambda rec: rec.pop("key"), "key"),
    "unknown record field": (lambda rec: rec.update(extra=1), "extra"),
    "data not an object": (lambda rec: rec.update(data=[1, 2]), "data"),
    "key not a string": (lambda rec: rec.update(key=310101), "key"),
}


@pytest.mark.parametrize("case", sorted(SCHEMA_CASES))
@pytest.mark.parametrize("fmt", ["json", "msgpack"])
async def test_record_failing_the_schema_is_422(raw: Raw, case: str, fmt: str) -> None:
    check = await unchanged(raw)
    batch = [id_card() for _ in range(3)]
    mutate, field = SCHEMA_CASES[case]
    mutate(batch[1])
    if fmt == "json":
        r = await raw.push(ID_CARD, batch)
    else:
        r = await raw.request(
            "POST",
            RECORDS,
            body=msgspec.msgpack.encode({"records": batch}),
            content_type="application/msgpack",
        )
    doc = assert_problem(r, 422, "client.validation_failed")
    assert doc["errors"], doc
    assert {"index": 1, "field": field} == {k: doc["errors"][0][k] for k in ("index", "field")}, doc
    assert all(e["message"] for e in doc["errors"])
    await check()


async def test_every_bad_record_is_reported(raw: Raw) -> None:
    batch = [id_card() for _ in range(5)]
    batch[0]["data"]["name"] = 1
    batch[3]["data"].pop("address")
    doc = assert_problem(await raw.push(ID_CARD, batch), 422, "client.validation_failed")
    assert [(e["index"], e["field"]) for e in doc["errors"]] == [(0, "name"), (3, "address")]


async def test_key_not_matching_data_is_422(raw: Raw) -> None:
    check = await unchanged(raw)
    batch = [id_card(), id_card()]
    batch[1]["key"] = batch[0]["key"]
    doc = assert_problem(await raw.push(ID_CARD, batch), 422, "client.validation_failed")
    assert [(e["index"], e["field"]) for e in doc["errors"]] == [(1, "key")]
    await check()


@pytest.mark.parametrize(
    "body",
    [
        {"records": []},
        {},
        {"records": None},
        {"records": {}},
        {"records": [None]},
        {"records": [], "extra": 1},
        [],
        "records",
        5,
    ],
)
async def test_empty_or_shapeless_batch_is_422(raw: Raw, body: Any) -> None:
    check = await unchanged(raw)
    r = await raw.request(
        "POST", RECORDS, json_body=body if body != [] else None, body=b"[]" if body == [] else None
    )
    assert_problem(r, 422, "client.validation_failed")
    assert r.json()["errors"]
    await check()


async def test_empty_body_is_a_client_error(raw: Raw) -> None:
    check = await unchanged(raw)
    r = await raw.request("POST", RECORDS, body=b"")
    assert r.status in (400, 422)
    assert_problem(
        r, r.status, "client.bad_request" if r.status == 400 else "client.validation_failed"
    )
    await check()


@pytest.mark.parametrize("value", [2**63, -(2**63) - 1, 10**30, 10**400, 1e300, "7", True])
async def test_huge_or_wrong_integers_are_422(raw: Raw, catalog: Catalog, value: Any) -> None:
    check = await unchanged(raw, OPEN)
    rec = record_for(catalog, OPEN, rooms=value)
    body = b'{"records":[' + json.dumps(rec).encode() + b"]}"
    r = await raw.request("POST", f"/v1/resources/{OPEN}/records", body=body, client=UNGRANTED)
    doc = assert_problem(r, 422, "client.validation_failed")
    assert doc["errors"][0]["index"] == 0 and doc["errors"][0]["field"] == "rooms"
    await check()


@pytest.mark.parametrize("literal", [b"1e400", b"-1e400", b"1" + b"0" * 400, b"NaN", b"Infinity"])
async def test_out_of_range_floats_never_store_garbage(
    raw: Raw, catalog: Catalog, literal: bytes
) -> None:
    """A float that JSON cannot carry back (inf, nan) is refused; it must not come back as null."""
    check = await unchanged(raw, OPEN)
    rec = record_for(catalog, OPEN)
    body = (
        json.dumps({"records": [rec]})
        .encode()
        .replace(b'"area_sqm": 1.5', b'"area_sqm": ' + literal)
    )
    r = await raw.request("POST", f"/v1/resources/{OPEN}/records", body=body, client=UNGRANTED)
    if literal in (b"NaN", b"Infinity"):
        assert_problem(r, 400, "client.bad_request")
    elif r.status == 200:  # a finite value stored: it must read back as a number, never null
        got = await raw.request(
            "GET", f"/v1/resources/{OPEN}/records/{rec['key']}", client=UNGRANTED
        )
        assert isinstance(got.json()["data"]["area_sqm"], float), got.body
        return
    else:
        assert_problem(r, 422, "client.validation_failed")
    await check()


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
async def test_invalid_utf8_is_400(raw: Raw, fmt: str) -> None:
    check = await unchanged(raw)
    rec = id_card(name="NAME-PLACEHOLDER")
    if fmt == "json":
        body = json.dumps({"records": [rec]}).encode().replace(b"NAME-PLACEHOLDER", b"\xff\xfe\xc3")
        r = await raw.request("POST", RECORDS, body=body)
    else:
        body = msgspec.msgpack.encode({"records": [rec]}).replace(
            b"NAME-PLACEHOLDER", b"\xff\xfe\xc3" + b"x" * 13
        )
        r = await raw.request("POST", RECORDS, body=body, content_type="application/msgpack")
    assert_problem(r, 400, "client.bad_request")
    await check()


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
async def test_invalid_utf8_after_a_schema_failure_is_400(raw: Raw, fmt: str) -> None:
    """The per-record re-check that names failing fields must not trip over a later bad record."""
    check = await unchanged(raw)
    bad_schema, bad_bytes = id_card(), id_card(name="NAME-PLACEHOLDER")
    bad_schema["data"]["favourite_colour"] = "blue"
    if fmt == "json":
        body = json.dumps({"records": [bad_schema, bad_bytes]}).encode()
        r = await raw.request(
            "POST", RECORDS, body=body.replace(b"NAME-PLACEHOLDER", b"\xff\xfe\xc3")
        )
    else:
        body = msgspec.msgpack.encode({"records": [bad_schema, bad_bytes]})
        r = await raw.request(
            "POST",
            RECORDS,
            body=body.replace(b"NAME-PLACEHOLDER", b"\xff" * 16),
            content_type="application/msgpack",
        )
    assert_problem(r, 400, "client.bad_request")
    await check()


# -- limits -------------------------------------------------------------------------------


async def test_batch_over_max_batch_records_is_413(small: Raw) -> None:
    check = await unchanged(small)
    r = await small.push(ID_CARD, [id_card() for _ in range(6)])
    assert_problem(r, 413, "client.payload_too_large")
    r = await small.push(ID_CARD, [id_card() for _ in range(5)])
    assert r.status == 200  # exactly the limit is fine
    before = await small.snapshot(ID_CARD)
    r = await small.push(ID_CARD, [id_card() for _ in range(6)])
    assert_problem(r, 413, "client.payload_too_large")
    assert await small.snapshot(ID_CARD) == before
    del check


async def test_batch_over_1000_records_is_413_on_default_node(raw: Raw) -> None:
    check = await unchanged(raw)
    rec = id_card()
    r = await raw.push(ID_CARD, [rec] * 1001)
    assert_problem(r, 413, "client.payload_too_large")
    await check()


async def test_body_over_max_body_bytes_is_413(small: Raw) -> None:
    check = await unchanged(small)
    big = id_card(address="x" * 4000)
    r = await small.push(ID_CARD, [big])  # with Content-Length
    assert_problem(r, 413, "client.payload_too_large")

    body = json.dumps({"records": [big]}).encode()

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(body), 500):
            yield body[i : i + 500]

    hdrs = small.sign("POST", RECORDS, "", body,
                      headers={"Content-Type": "application/json", "Idempotency-Key": "big-1"})
    async with small.session.post(small.url + RECORDS, data=chunks(), headers=hdrs) as resp:
        reply_status = resp.status
        doc = await resp.json(content_type=None)
    assert reply_status == 413 and doc["code"] == "client.payload_too_large"
    await check()


async def test_body_over_max_body_bytes_is_413_before_reading(small_node: NodeProcess, small: Raw) -> None:
    """A Content-Length over the limit is refused without waiting for the body (an unsigned
    head is refused even earlier, 401)."""
    h = small.sign("POST", RECORDS, "", b"x",
                   headers={"Content-Type": "application/json", "Idempotency-Key": "big-2"})
    head = (
        f"POST {RECORDS} HTTP/1.1\r\nHost: x\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items())
        + "Content-Length: 100000000\r\n\r\n"
    ).encode()
    status, _, body = await raw_http(small_node.port, head, half_close=False)
    assert status == 413 and json.loads(body)["code"] == "client.payload_too_large"


async def test_slow_client_body_is_400_and_changes_nothing(
    small_node: NodeProcess, small: Raw
) -> None:
    """A client that stops sending its body is answered once body_timeout_s has passed."""
    check = await unchanged(small)
    body = json.dumps({"records": [id_card()]}).encode()
    h = small.sign("POST", RECORDS, "", body,
                   headers={"Content-Type": "application/json", "Idempotency-Key": "slow-1"})
    head = (
        f"POST {RECORDS} HTTP/1.1\r\nHost: x\r\n"
        f"Content-Length: {len(body)}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items()) + "\r\n"
    )
    status, headers, reply = await raw_http(small_node.port, head.encode() + body[:20], timeout=20)
    assert status == 400, reply
    doc = json.loads(reply)
    assert doc["code"] == "client.bad_request" and "within" in doc["detail"]
    assert headers["x-exchange-request-id"] == doc["request_id"]
    await check()


# -- query values ---------------------------------------------------------------------------

BAD_QUERIES = [
    "after=-1",
    "after=abc",
    "after=1.5",
    "after=",
    "after=1e3",
    "after=0x10",
    "after=%2B1",
    "after=99999999999999999999999",
    "after=%D9%A1",
    "after=+1",
    "after=%201",
    "after=1%00",
    "limit=0",
    "limit=1001",
    "limit=-5",
    "limit=abc",
    "limit=",
    "limit=1&limit=2",
    "wait=31",
    "wait=-1",
    "wait=x",
    "wait=1.5",
    "wait=99999999999999999999",
]


@pytest.mark.parametrize("query", BAD_QUERIES)
async def test_bad_query_values_are_400(raw: Raw, query: str) -> None:
    r = await raw.request("GET", RECORDS, query=query, client=GRANTED)
    doc = assert_problem(r, 400, "client.bad_request")
    name = query.split("=")[0]
    assert name in doc["detail"], doc


async def test_edge_query_values_are_accepted(raw: Raw) -> None:
    for query in ("after=0&limit=1", "limit=1000", "wait=0&limit=1", "after=4611686018427387904"):
        r = await raw.request("GET", RECORDS, query=query, client=GRANTED)
        assert r.status == 200, (query, r.body)


# -- cursor -----------------------------------------------------------------------------------


async def test_cursor_backwards_is_409_and_force_moves_it(raw: Raw) -> None:
    res = (await raw.push(ID_CARD, [id_card(), id_card()])).json()
    put = lambda body: raw.request("PUT", CURSOR, json_body=body, client=GRANTED)  # noqa: E731
    r = await put({"offset": res["last"]})
    assert r.status == 200 and r.json() == {"offset": res["last"]}
    r = await put({"offset": res["first"]})
    doc = assert_problem(r, 409, "client.conflict")
    assert str(res["last"]) in doc["detail"]
    r = await raw.request("GET", RECORDS, client=GRANTED)
    assert r.json()["next"] == res["last"]  # unchanged by the refused commit
    r = await put({"offset": res["first"], "force": True})
    assert r.status == 200 and r.json() == {"offset": res["first"]}
    r = await raw.request("GET", RECORDS, client=GRANTED, query="limit=10")
    assert [x["offset"] for x in r.json()["records"]][:1] == [res["last"]]
    assert (await put({"offset": res["last"]})).status == 200  # forward again
    r = await put({"offset": res["last"]})
    assert r.status == 200  # the same offset again is not backwards


@pytest.mark.parametrize(
    "body",
    [
        b'{"offset": -1}',
        b'{"offset": "5"}',
        b"{}",
        b'{"offset": 1, "extra": 1}',
        b'{"offset": 1.5}',
        b'{"offset": 1e3}',
        b'{"offset": 99999999999999999999999}',
        b'{"offset": 1, "force": "yes"}',
        b"[1]",
        b"{",
        b"",
        b'{"offset": null}',
    ],
)
async def test_bad_cursor_bodies_are_400(raw: Raw, body: bytes) -> None:
    r = await raw.request("PUT", CURSOR, body=body, client=GRANTED)
    assert_problem(r, 400, "client.bad_request")


# -- headers --------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["", " ", "a b", "x" * 256, "ключ", "tab\there"])
async def test_bad_idempotency_key_is_400(raw: Raw, key: str) -> None:
    check = await unchanged(raw)
    r = await raw.push(ID_CARD, [id_card()], headers={"Idempotency-Key": key})
    assert_problem(r, 400, "client.bad_request")
    await check()


# -- paths and methods ------------------------------------------------------------------------

ODD_PATHS = [
    "/v1/resources/../catalog",
    "/v1/resources/%2e%2e/records",
    "/v1/resources/psb.id-card/../../etc/passwd",
    "/v1/resources/psb.id-card/records/%ZZ",
    "/v1/resources/psb.id-card/records/%",
    "/v1//catalog",
    "//v1/catalog",
    "/v1/resources/psb.id-card%2Frecords",
    "/v1/resources/PSB.ID-CARD/records",
    "/v1/resources/psb.id-card/records/",
    "/v1/resources//records",
    "/v1/resources/./records",
    "/v1/catalog/%00",
    "/v1/resources/psb.id-card/records/a/b",
    "/" + "a" * 3000,
    "/v1/resources/" + "a" * 3000 + "/records",
    "/v1/resources/psb.id-card/records/%C0%AF",
    "/v2/catalog",
    "/v1/catalog/psb.id-card/x",
]


@pytest.mark.parametrize("path", ODD_PATHS)
async def test_odd_paths_are_400_or_404(node: NodeProcess, raw: Raw, path: str) -> None:
    h = raw.sign("GET", path)
    head = (
        f"GET {path} HTTP/1.1\r\nHost: x\r\n"
        + "".join(f"{k}: {v}\r\n" for k, v in h.items())
        + "\r\n"
    )
    status, headers, body = await raw_http(node.port, head.encode())
    assert status in (400, 404), (status, body[:300])
    doc = json.loads(body)
    assert doc["code"] == {400: "client.bad_request", 404: "client.not_found"}[status]
    assert headers.get("x-exchange-request-id") == doc["request_id"]


async def test_keys_with_escapes_are_read_back(raw: Raw, catalog: Catalog) -> None:
    """Percent-encoded keys are ordinary keys, not paths."""
    r = await raw.request("GET", f"/v1/resources/{ID_CARD}/records/..%2F..%2Fetc%2Fpasswd")
    assert_problem(r, 404, "client.not_found")


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PUT", RECORDS, {"POST", "GET"}),
        ("DELETE", RECORDS, {"POST", "GET"}),
        ("POST", f"{RECORDS}/abc", {"GET"}),
        ("GET", CURSOR, {"PUT"}),
        ("POST", CURSOR, {"PUT"}),
        ("DELETE", "/v1/catalog", {"GET"}),
        ("POST", "/v1/catalog/psb.id-card", {"GET"}),
        ("POST", "/healthz", {"GET"}),
        ("PUT", "/metrics", {"GET"}),
        ("PATCH", "/openapi.json", {"GET"}),
        ("OPTIONS", RECORDS, {"POST", "GET"}),
    ],
)
async def test_wrong_method_is_405_with_allow(
    raw: Raw, method: str, path: str, allow: set[str]
) -> None:
    check = await unchanged(raw)
    r = await raw.request(method, path, json_body={"records": [id_card()]})
    assert_problem(r, 405, "client.method_not_allowed")
    assert {m.strip() for m in r.headers["Allow"].split(",")} == allow
    await check()


# -- logs ------------------------------------------------------------------------------------


async def test_no_secret_or_record_data_in_logs(
    node: NodeProcess, raw: Raw, keyring: Keyring
) -> None:
    marker = "LOGMARKER-d41d8cd98f00"
    rec = id_card(name=marker)
    await raw.push(ID_CARD, [rec])
    # Keyed reads name a citizen in the path; the access log must not carry the id number.
    for client in (OWNER, "SH/GOV/sicenter/pension"):
        r = await raw.request("GET", f"{RECORDS}/{rec['key']}", client=client,
                              headers={"X-Exchange-Purpose": "pension eligibility (retirement age)"})
        assert r.status == 200
    r = await raw.request("GET", f"{RECORDS}/{rec['key']}x", client=OWNER)
    assert r.status == 404
    body = json.dumps({"records": [id_card(name=marker)]}).encode()
    good = raw.sign("POST", RECORDS, "", body)
    for headers in (
        {**good, "Authorization": good["Authorization"][:-1] + "0"},
        {**good, "X-Exchange-Client": GRANTED},
        {},
    ):
        await raw.request("POST", RECORDS, body=body, headers=headers, signed=False)
    await raw.request("POST", RECORDS, body=body.replace(b"Zhang", b"\xff"))
    last = await raw.request("GET", "/v1/catalog", client=GRANTED)
    rid = last.headers["X-Exchange-Request-Id"]
    await wait_until(lambda: rid in node.log_text())  # the access log is flushed every 100 ms
    text = node.log_text()
    assert '"access"' in text
    for k in keyring.by_id.values():
        assert k.secret not in text
    assert marker not in text
    assert rec["key"] not in text, "a citizen's id number is in the node's log"
    # The audit chain lives in the governance store: it names the exchanges, never the data.
    audit = node.data_dir / "governance.db"
    await wait_until(lambda: audit.exists() and audit.stat().st_size > 0)
    audit_bytes = b"".join(p.read_bytes() for p in node.data_dir.glob("governance.db*") if p.is_file())
    assert marker.encode() not in audit_bytes
    assert rec["key"].encode() not in audit_bytes, "a citizen's id number is in the audit store"
    assert not any(k.secret.encode() in audit_bytes for k in keyring.by_id.values())


MALFORMED_HTTP = {
    "unknown method": b"FOO /v1/catalog HTTP/1.1\r\nHost: x\r\n\r\n",
    "space in target": b"GET /v1/resources/psb.id-card/records?after= 1 HTTP/1.1\r\nHost: x\r\n\r\n",
    "bad version": b"GET /v1/catalog HTTP/9.9\r\nHost: x\r\n\r\n",
    "header too long": b"GET /v1/catalog HTTP/1.1\r\nHost: x\r\nX-Long: "
    + b"a" * 9000
    + b"\r\n\r\n",
    "bad header line": b"GET /v1/catalog HTTP/1.1\r\nHost x\r\n\r\n",
    "bad content-length": b"POST /v1/catalog HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
    "tls to plain port": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"
    + b"\x00" * 40
    + b"\r\n\r\n",
    "too many headers": b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
    + b"".join(b"X-H%d: v\r\n" % i for i in range(300))
    + b"\r\n",
    "http/2 preface": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
}


@pytest.mark.parametrize("case", sorted(MALFORMED_HTTP))
async def test_malformed_http_is_a_problem_with_request_id(node: NodeProcess, case: str) -> None:
    """Requests that aiohttp's parser refuses are answered like every other error."""
    status, headers, body = await raw_http(node.port, MALFORMED_HTTP[case])
    assert 400 <= status < 500, (status, body[:200])
    assert headers["content-type"].startswith("application/problem+json"), (headers, body[:200])
    doc = json.loads(body)
    assert doc["status"] == status and doc["code"].startswith("client.")
    assert headers.get("x-exchange-request-id") == doc["request_id"]
    await wait_until(lambda: doc["request_id"] in node.log_text())
    assert "Traceback" not in node.log_text()
