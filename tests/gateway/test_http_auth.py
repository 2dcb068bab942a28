"""Authentication over HTTP: every way a request can be badly signed is a 401
``client.unauthenticated`` that changes nothing and echoes no secret."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest
from gwkit import GRANTED, ID_CARD, OWNER, Raw, assert_problem, id_card

from gateway.signing import format_date

PUSH_PATH = f"/v1/resources/{ID_CARD}/records"

Mutator = Callable[[Raw, bytes], dict[str, str]]


_PUSH_HEADERS = {"Content-Type": "application/json", "Idempotency-Key": "auth-case"}


def _signed(raw: Raw, body: bytes, **kw: object) -> dict[str, str]:
    """Push headers signed (v2) with Content-Type and Idempotency-Key, as a good push is."""
    return raw.sign("POST", PUSH_PATH, "", body, headers=_PUSH_HEADERS, **kw)  # type: ignore[arg-type]


def _flip(sig_header: str) -> str:
    head, _, sig = sig_header.rpartition("=")
    return f"{head}={'0' if sig[0] != '0' else '1'}{sig[1:]}"


CASES: dict[str, Mutator] = {
    "unsigned": lambda raw, body: {},
    "no client header": lambda raw, body: {
        k: v for k, v in _signed(raw, body).items() if k != "X-Exchange-Client"
    },
    "no date header": lambda raw, body: {
        k: v for k, v in _signed(raw, body).items() if k != "X-Exchange-Date"
    },
    "no authorization": lambda raw, body: {
        k: v for k, v in _signed(raw, body).items() if k != "Authorization"
    },
    "bad signature": lambda raw, body: {
        **(h := _signed(raw, body)),
        "Authorization": _flip(h["Authorization"]),
    },
    "signature of another body": lambda raw, body: _signed(raw, body + b" "),
    "signature of another path": lambda raw, body: raw.sign(
        "POST", "/v1/resources/psb.hukou/records", "", body, headers=_PUSH_HEADERS
    ),
    "signature of another method": lambda raw, body: raw.sign(
        "PUT", PUSH_PATH, "", body, headers=_PUSH_HEADERS
    ),
    "signature with a query": lambda raw, body: raw.sign(
        "POST", PUSH_PATH, "x=1", body, headers=_PUSH_HEADERS
    ),
    "upper-case hex signature": lambda raw, body: {
        **(h := _signed(raw, body)),
        "Authorization": h["Authorization"].rpartition("=")[0]
        + "="
        + h["Authorization"].rpartition("=")[2].upper(),
    },
    "other scheme": lambda raw, body: {**_signed(raw, body), "Authorization": "Bearer abc"},
    "garbage authorization": lambda raw, body: {
        **_signed(raw, body),
        "Authorization": "EXG-HMAC-SHA256 x",
    },
    "stale date": lambda raw, body: _signed(raw, body, date=format_date(time.time() - 301 - 5)),
    "future date": lambda raw, body: _signed(raw, body, date=format_date(time.time() + 301 + 5)),
    "far past date": lambda raw, body: _signed(raw, body, date="1970-01-01T00:00:00Z"),
    "date with offset": lambda raw, body: _signed(
        raw, body, date=time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
    ),
    "date with fraction": lambda raw, body: _signed(
        raw, body, date=time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    ),
    "date with space": lambda raw, body: _signed(
        raw, body, date=time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime())
    ),
    "impossible date": lambda raw, body: _signed(raw, body, date="2026-13-45T25:61:61Z"),
    "http date": lambda raw, body: _signed(
        raw, body, date=time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime())
    ),
    "key of another client": lambda raw, body: _signed(raw, body, key_client=GRANTED),
    "unknown client": lambda raw, body: {
        **_signed(raw, body, client="SH/GOV/nobody/none", key_client=OWNER)
    },
    "unknown key id": lambda raw, body: {
        **(h := _signed(raw, body)),
        "Authorization": h["Authorization"].replace(
            raw.keyring.for_client(OWNER).id, "k-no-such-key"
        ),
    },
}


@pytest.mark.parametrize("case", sorted(CASES))
async def test_badly_signed_push_is_refused(raw: Raw, case: str) -> None:
    before = await raw.snapshot(ID_CARD)
    body = b'{"records":[' + json.dumps(id_card()).encode() + b"]}"
    headers = {**_PUSH_HEADERS, **CASES[case](raw, body)}
    r = await raw.request("POST", PUSH_PATH, body=body, headers=headers, signed=False)
    doc = assert_problem(r, 401, "client.unauthenticated")
    assert doc["detail"]
    assert await raw.snapshot(ID_CARD) == before


@pytest.mark.parametrize(
    "case", ["bad signature", "stale date", "key of another client", "unsigned"]
)
async def test_badly_signed_reads_are_refused(raw: Raw, case: str) -> None:
    for method, path in (
        ("GET", f"/v1/resources/{ID_CARD}/records"),
        ("GET", "/v1/catalog"),
        ("GET", f"/v1/resources/{ID_CARD}/records/310101199001011234"),
    ):
        h = CASES[case](raw, b"")
        if case != "unsigned":  # re-sign for this method and path, then apply the same fault
            good = raw.sign(method, path)
            h = {**good, **{k: v for k, v in h.items() if k == "X-Exchange-Date"}}
            if case == "bad signature":
                h["Authorization"] = _flip(good["Authorization"])
            elif case == "key of another client":
                h = raw.sign(method, path, key_client=GRANTED)
            elif case == "stale date":
                h = raw.sign(method, path, date=format_date(time.time() - 400))
        r = await raw.request(method, path, headers=h, signed=False)
        assert_problem(r, 401, "client.unauthenticated")


async def test_date_within_window_is_accepted(raw: Raw) -> None:
    for delta in (-240, 240):
        h = raw.sign("GET", "/v1/catalog", date=format_date(time.time() + delta))
        r = await raw.request("GET", "/v1/catalog", headers=h, signed=False)
        assert r.status == 200, r.body


async def test_the_problem_does_not_reveal_the_expected_signature(raw: Raw) -> None:
    body = b'{"records":[]}'
    good = _signed(raw, body)
    bad = {**good, "Authorization": _flip(good["Authorization"])}
    r = await raw.request("POST", PUSH_PATH, body=body, headers=bad, signed=False)
    assert_problem(r, 401, "client.unauthenticated")
    expected = good["Authorization"].rpartition("=")[2]
    assert expected.encode() not in r.body
