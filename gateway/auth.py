"""Request authentication: EXG-HMAC-SHA256 signature, clock window, key bound to its client."""

from __future__ import annotations

import hmac
import time

from gateway.errors import Problem
from gateway.keyring import Keyring
from gateway.signing import AUTH_RE, parse_date, string_to_sign

CLOCK_SKEW_S = 300
_macs: dict[tuple[str, str], hmac.HMAC] = {}  # keyed HMAC states, copied per request


def _unauth(detail: str) -> Problem:
    return Problem("client.unauthenticated", detail)


def authenticate(
    keyring: Keyring,
    subsystems: dict,
    headers: dict | object,
    method: str,
    path: str,
    query: str,
    body_sha256: str,
    now: float | None = None,
) -> str:
    """Verify a signed request and return the authenticated subsystem id.

    Raises :class:`Problem` ``client.unauthenticated`` naming what is wrong; never
    reveals a secret or the expected signature.
    """
    client = headers.get("X-Exchange-Client")  # type: ignore[union-attr]
    date = headers.get("X-Exchange-Date")  # type: ignore[union-attr]
    auth = headers.get("Authorization")  # type: ignore[union-attr]
    if not client:
        raise _unauth("missing X-Exchange-Client header")
    if not date:
        raise _unauth("missing X-Exchange-Date header")
    if not auth:
        raise _unauth("missing Authorization header")
    m = AUTH_RE.match(auth)
    if m is None:
        raise _unauth(
            "Authorization must be 'EXG-HMAC-SHA256 Credential=<key id>, Signature=<64 hex>'"
        )
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
    mac = _macs.get((key.id, key.secret))
    if mac is None:
        if len(_macs) >= 65536:
            _macs.clear()
        mac = _macs[(key.id, key.secret)] = hmac.new(key.secret.encode(), digestmod="sha256")
    mac = mac.copy()
    mac.update(string_to_sign(date, client, method, path, query, body_sha256).encode())
    expected = mac.hexdigest()
    if not hmac.compare_digest(expected, m.group("sig")):
        raise _unauth("signature does not match the request")
    return client
