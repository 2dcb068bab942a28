"""Wire contract v2 ("Signing, v2" in DESIGN.md) against a running node: every header that
changes a request's meaning is signed, state-creating POSTs carry a signed
Idempotency-Key, and a captured request replayed changes nothing."""

from __future__ import annotations

import json
import uuid

import pytest
from gwkit import GRANTED, ID_CARD, Raw, assert_problem, id_card, unchanged

RECORDS = f"/v1/resources/{ID_CARD}/records"
PUSH_HEADERS = {"Content-Type": "application/json"}


def _push_body(rec: dict | None = None) -> bytes:
    return json.dumps({"records": [rec or id_card()]}).encode()


async def _send(raw: Raw, method: str, path: str, body: bytes, headers: dict[str, str]) -> object:
    return await raw.request(method, path, body=body, headers=headers, signed=False, content_type=None,
                             idempotency=False)


# -- which headers must be signed ---------------------------------------------------------

UNSIGNED = {
    "content-type": ("Content-Type", "application/json"),
    "idempotency-key": ("Idempotency-Key", "k-unsigned"),
    "x-exchange-purpose": ("X-Exchange-Purpose", "marketing"),
    "x-exchange-userid": ("X-Exchange-UserId", "310101199001011234"),
    "x-exchange-consent": ("X-Exchange-Consent", "c-" + "0" * 32),
    "x-exchange-id": ("X-Exchange-Id", "corr-1"),
    "x-exchange-anything": ("X-Exchange-Anything", "1"),
}


@pytest.mark.parametrize("name", sorted(UNSIGNED))
async def test_an_unsigned_meaningful_header_is_401_naming_it(raw: Raw, name: str) -> None:
    check = await unchanged(raw)
    body = _push_body()
    signed = raw.sign("POST", RECORDS, "", body, headers={**PUSH_HEADERS, "Idempotency-Key": uuid.uuid4().hex})
    header, value = UNSIGNED[name]
    if header in signed:  # sign without it, then add it: carried but not signed
        rest = {k: v for k, v in signed.items() if k not in ("Authorization", "X-Exchange-Client",
                                                           "X-Exchange-Date", header)}
        signed = {**raw.sign("POST", RECORDS, "", body, headers=rest), header: value}
    else:
        signed[header] = value
    r = await _send(raw, "POST", RECORDS, body, signed)
    doc = assert_problem(r, 401, "client.unauthenticated")
    assert name in doc["detail"]
    await check()


async def test_the_same_request_signed_with_its_headers_is_accepted(raw: Raw) -> None:
    """The control for the cases above: every one of those headers, signed, is fine."""
    body = _push_body()
    extra = {**PUSH_HEADERS, "Idempotency-Key": uuid.uuid4().hex, "X-Exchange-Id": "corr-1",
             "X-Exchange-Purpose": "registration"}
    r = await _send(raw, "POST", RECORDS, body, raw.sign("POST", RECORDS, "", body, headers=extra))
    assert r.status == 200, r.body


@pytest.mark.parametrize("header, value", [
    ("Content-Type", "application/msgpack"),
    ("X-Exchange-Purpose", "marketing"),
    ("Idempotency-Key", "another-key"),
])
async def test_a_signed_header_changed_in_transit_is_401(raw: Raw, header: str, value: str) -> None:
    check = await unchanged(raw)
    body = _push_body()
    h = raw.sign("POST", RECORDS, "", body, headers={**PUSH_HEADERS, "Idempotency-Key": "orig",
                                                      "X-Exchange-Purpose": "registration"})
    h[header] = value
    r = await _send(raw, "POST", RECORDS, body, h)
    assert_problem(r, 401, "client.unauthenticated")
    await check()


def _with_signed_headers(h: dict[str, str], names: str) -> dict[str, str]:
    auth = h["Authorization"]
    head, _, rest = auth.partition("SignedHeaders=")
    _, _, sig = rest.partition(",")
    return {**h, "Authorization": f"{head}SignedHeaders={names},{sig}"}


@pytest.mark.parametrize("names, word", [
    ("idempotency-key;content-type", "ascending"),
    ("content-type;content-type;idempotency-key", "ascending"),
    ("content-type;idempotency-key;x-exchange-purpose", "does not carry"),
    ("authorization;content-type;idempotency-key", "authorization"),
    ("Content-Type;idempotency-key", "SignedHeaders=<h1;h2;...>"),
])
async def test_a_malformed_signed_headers_list_is_401(raw: Raw, names: str, word: str) -> None:
    body = _push_body()
    h = raw.sign("POST", RECORDS, "", body, headers={**PUSH_HEADERS, "Idempotency-Key": uuid.uuid4().hex})
    r = await _send(raw, "POST", RECORDS, body, _with_signed_headers(h, names))
    doc = assert_problem(r, 401, "client.unauthenticated")
    assert word in doc["detail"]


async def test_identity_headers_given_twice_are_401(raw: Raw) -> None:
    h = raw.sign("GET", "/v1/catalog")
    for name, other in (("X-Exchange-Client", GRANTED), ("X-Exchange-Date", h["X-Exchange-Date"])):
        async with raw.session.get(raw.url + "/v1/catalog",
                                   headers=[*h.items(), (name, other)]) as resp:
            assert resp.status == 401, await resp.text()
            assert name in (await resp.json())["detail"]


async def test_a_signed_header_given_twice_is_401(raw: Raw) -> None:
    """The signature covers one value: a second copy (which a backend might read) is refused."""
    path = f"{RECORDS}/310101199001011234"
    h = raw.sign("GET", path, headers={"X-Exchange-Purpose": "registration"})
    async with raw.session.get(raw.url + path, headers=[*h.items(), ("X-Exchange-Purpose", "marketing")]) as resp:
        assert resp.status == 401, await resp.text()
        assert "x-exchange-purpose" in (await resp.json())["detail"]


# -- v1 stays accepted only where nothing else needs signing ---------------------------------


async def test_v1_signature_is_accepted_for_a_plain_read(raw: Raw) -> None:
    h = raw.sign("GET", "/v1/catalog", v1=True)
    assert "SignedHeaders" not in h["Authorization"]
    r = await raw.request("GET", "/v1/catalog", headers=h, signed=False)
    assert r.status == 200, r.body


async def test_v1_signature_with_a_header_to_sign_is_401(raw: Raw) -> None:
    check = await unchanged(raw)
    body = _push_body()
    h = raw.sign("POST", RECORDS, "", body, v1=True)
    r = await _send(raw, "POST", RECORDS, body, {**h, **PUSH_HEADERS, "Idempotency-Key": "v1-push"})
    doc = assert_problem(r, 401, "client.unauthenticated")
    assert "SignedHeaders" in doc["detail"]
    r = await raw.request("GET", f"{RECORDS}/310101199001011234",
                          headers={**raw.sign("GET", f"{RECORDS}/310101199001011234", v1=True),
                                   "X-Exchange-Purpose": "marketing"}, signed=False)
    assert_problem(r, 401, "client.unauthenticated")
    await check()


# -- Idempotency-Key on a push ---------------------------------------------------------------


async def test_a_push_without_idempotency_key_is_400_and_stores_nothing(raw: Raw) -> None:
    check = await unchanged(raw)
    r = await raw.request("POST", RECORDS, body=_push_body(), idempotency=False)
    doc = assert_problem(r, 400, "client.bad_request")
    assert "Idempotency-Key" in doc["detail"]
    await check()


@pytest.mark.parametrize("key", ["", "a b", "x" * 129, "k/1", "ключ", "k\u00e9"])
async def test_a_malformed_idempotency_key_is_400(raw: Raw, key: str) -> None:
    check = await unchanged(raw)
    body = _push_body()
    try:
        h = raw.sign("POST", RECORDS, "", body, headers={**PUSH_HEADERS, "Idempotency-Key": key})
        r = await _send(raw, "POST", RECORDS, body, h)
    except (ValueError, UnicodeEncodeError):
        return  # the client library refuses to send it at all
    assert r.status == 400, r.body
    await check()


async def test_a_captured_push_replayed_stores_nothing_and_answers_the_original(raw: Raw) -> None:
    rec = id_card()
    body = _push_body(rec)
    captured = raw.sign("POST", RECORDS, "", body, headers={**PUSH_HEADERS, "Idempotency-Key": uuid.uuid4().hex})
    first = await _send(raw, "POST", RECORDS, body, captured)
    assert first.status == 200 and first.json()["replayed"] is False
    check = await unchanged(raw)
    for _ in range(3):
        again = await _send(raw, "POST", RECORDS, body, captured)
        assert again.status == 200
        doc = again.json()
        assert doc["replayed"] is True and doc["first"] == first.json()["first"]
    await check()
    snapshot = await raw.snapshot(ID_CARD)
    assert sum(1 for r in snapshot if r["key"] == rec["key"]) == 1


async def test_another_body_under_a_used_key_is_409(raw: Raw) -> None:
    key = uuid.uuid4().hex
    r = await raw.request("POST", RECORDS, body=_push_body(), headers={"Idempotency-Key": key})
    assert r.status == 200
    check = await unchanged(raw)
    r = await raw.request("POST", RECORDS, body=_push_body(), headers={"Idempotency-Key": key})
    assert_problem(r, 409, "client.conflict")
    await check()

