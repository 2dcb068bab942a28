"""Request authentication (EXG-HMAC-SHA256, DESIGN.md "Signing, v2"), in two steps.

:func:`check_head` runs before the body is read: client, date window, key bound to its
client, and which headers the signature covers. Only then may the request cost a body
read. :func:`verify` checks the signature once the body's digest is known.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Mapping

from gateway.errors import Problem
from gateway.keyring import Key, Keyring
from gateway.signing import (
    AUTH_RE,
    HEADER_NAME_RE,
    canonical_headers,
    must_sign,
    parse_date,
    string_to_sign,
)

CLOCK_SKEW_S = 300
_macs: dict[tuple[str, str], hmac.HMAC] = {}  # keyed HMAC states, copied per request
_signed_lists: dict[str, tuple[list[str], frozenset[str]]] = {}
_TITLE = {"x-exchange-client": "X-Exchange-Client", "x-exchange-date": "X-Exchange-Date",
          "authorization": "Authorization"}
_AUTH_FORM = ("Authorization must be 'EXG-HMAC-SHA256 Credential=<key id>, "
              "SignedHeaders=<h1;h2;...>, Signature=<64 hex>'")


def _unauth(detail: str) -> Problem:
    return Problem("client.unauthenticated", detail)


class Head:
    """A request whose signature headers passed :func:`check_head`; the signature is not
    checked yet."""

    __slots__ = ("client", "key", "date", "canonical", "signature")

    def __init__(self, client: str, key: Key, date: str, canonical: str | None, sig: str) -> None:
        self.client = client
        self.key = key
        self.date = date
        self.canonical = canonical  # None: a v1 signature (no signed headers)
        self.signature = sig


def check_head(keyring: Keyring, subsystems: Mapping[str, object], headers: Mapping[str, str],
               now: float | None = None) -> Head:
    """Check everything about a signed request that does not need its body.

    Raises :class:`Problem` ``client.unauthenticated`` naming what is wrong; never
    reveals a secret or the expected signature.
    """
    client = headers.get("X-Exchange-Client")
    date = headers.get("X-Exchange-Date")
    auth = headers.get("Authorization")
    items = headers.items()  # every occurrence (iterating a multidict's keys would skip repeats)
    carried = [name.lower() for name, _ in items]
    if len(carried) != len(set(carried)):  # a header given twice: fine, unless it names who signs
        for name in ("x-exchange-client", "x-exchange-date", "authorization"):
            if carried.count(name) > 1:
                raise _unauth(f"{_TITLE[name]} is given more than once")
    if not client:
        raise _unauth("missing X-Exchange-Client header")
    if not date:
        raise _unauth("missing X-Exchange-Date header")
    if not auth:
        raise _unauth("missing Authorization header")
    m = AUTH_RE.match(auth)
    if m is None:
        raise _unauth(_AUTH_FORM)
    at = parse_date(date)
    if at is None:
        raise _unauth("X-Exchange-Date must be YYYY-MM-DDTHH:MM:SSZ (UTC)")
    skew = at - (time.time() if now is None else now)
    if abs(skew) > CLOCK_SKEW_S:
        when = "ahead of" if skew > 0 else "behind"
        raise _unauth(
            f"X-Exchange-Date is {abs(int(skew))} s {when} the node's clock (allowed ±{CLOCK_SKEW_S} s)"
        )
    if client not in subsystems:
        raise _unauth(f"unknown client subsystem {client[:200]!r}")
    key = keyring.by_id.get(m.group("key"))
    if key is None:
        raise _unauth("unknown key id")
    if key.client != client:
        raise _unauth("the key does not belong to the subsystem named in X-Exchange-Client")
    if (key.not_before is not None or key.not_after is not None) and not key.valid_at(
            time.time() if now is None else now):
        raise _unauth("the key is outside its validity window (not_before / not_after); "
                      "sign with the subsystem's current key")
    signed = m.group("signed")
    if signed is None:
        for name in carried:
            if must_sign(name):
                raise _unauth(f"header {name} must be signed: use the v2 form with SignedHeaders")
        return Head(client, key, date, None, m.group("sig"))
    return Head(client, key, date, _canonical(signed, carried, headers), m.group("sig"))


def _signed_names(signed: str) -> tuple[list[str], frozenset[str]]:
    """``SignedHeaders`` checked and split (cached: a client sends the same few lists)."""
    known = _signed_lists.get(signed)
    if known is not None:
        return known
    names = signed.split(";") if signed else []
    for i, name in enumerate(names):
        if not HEADER_NAME_RE.match(name):
            raise _unauth(f"SignedHeaders names an invalid header {name[:64]!r}")
        if i and name <= names[i - 1]:
            raise _unauth("SignedHeaders must be lower-case names in ascending order without repeats")
        if name == "authorization":
            raise _unauth("SignedHeaders cannot name authorization")
    if len(_signed_lists) >= 1024:
        _signed_lists.clear()
    known = _signed_lists[signed] = (names, frozenset(names))
    return known


def _canonical(signed: str, carried: list[str], headers: Mapping[str, str]) -> str:
    """The canonical headers of a v2 request, after checking ``SignedHeaders`` against the
    headers it carries (``carried``: their lower-case names, once per occurrence)."""
    names, named = _signed_names(signed)
    seen: set[str] = set()
    for low in carried:
        if low in named:
            if low in seen:
                raise _unauth(f"signed header {low} is given more than once")
            seen.add(low)
        elif must_sign(low):
            raise _unauth(f"header {low} must be signed: name it in SignedHeaders")
    if len(seen) != len(names):
        missing = next(n for n in names if n not in seen)
        raise _unauth(f"SignedHeaders names {missing}, which the request does not carry")
    return canonical_headers(names, [headers[name] for name in names])


def verify(head: Head, method: str, path: str, query: str, body_sha256: str) -> str:
    """Check the signature over the request; return the authenticated subsystem id."""
    key = head.key
    mac = _macs.get((key.id, key.secret))
    if mac is None:
        if len(_macs) >= 65536:
            _macs.clear()
        mac = _macs[(key.id, key.secret)] = hmac.new(key.secret.encode(), digestmod="sha256")
    mac = mac.copy()
    mac.update(string_to_sign(head.date, head.client, method, path, query, body_sha256,
                              head.canonical).encode())
    if not hmac.compare_digest(mac.hexdigest(), head.signature):
        raise _unauth("signature does not match the request")
    return head.client


def authenticate(keyring: Keyring, subsystems: Mapping[str, object], headers: Mapping[str, str],
                 method: str, path: str, query: str, body_sha256: str, now: float | None = None) -> str:
    """Both steps at once (for callers that already hold the body)."""
    return verify(check_head(keyring, subsystems, headers, now), method, path, query, body_sha256)
