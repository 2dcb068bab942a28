"""EXG-HMAC-SHA256 request signing (v2, DESIGN.md "Signing, v2"), shared by the server, the SDK
and the Locust users."""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime

ALGORITHM = "EXG-HMAC-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
#: v1 ``Credential=..., Signature=...`` and v2 ``Credential=..., SignedHeaders=..., Signature=...``.
AUTH_RE = re.compile(
    r"^EXG-HMAC-SHA256 Credential=(?P<key>[A-Za-z0-9._:-]{1,128}),"
    r"(?: ?SignedHeaders=(?P<signed>[a-z0-9;-]{0,1024}),)? ?Signature=(?P<sig>[0-9a-f]{64})$"
)
IDEMPOTENCY_KEY_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
#: Headers that a v2 request must sign whenever it carries them (besides any other
#: ``x-exchange-*`` header); client and date are in the string to sign already.
MUST_SIGN = frozenset({"content-type", "idempotency-key", "x-exchange-consent",
                       "x-exchange-purpose", "x-exchange-userid"})
IN_STRING = frozenset({"x-exchange-client", "x-exchange-date"})
HEADER_NAME_RE = re.compile(r"^[a-z0-9-]{1,64}$")


def must_sign(name: str) -> bool:
    """Whether a (lower-case) header name must be named in ``SignedHeaders`` when present."""
    return name in MUST_SIGN or (name.startswith("x-exchange-") and name not in IN_STRING)


def canonical_headers(names: list[str], values: list[str]) -> str:
    """``name:value\n`` per signed header, in ``SignedHeaders`` order (values stripped)."""
    return "".join(f"{n}:{v.strip()}\n" for n, v in zip(names, values, strict=True))


def body_digest(body: bytes) -> str:
    """Lower-case hex SHA-256 of the body bytes."""
    return hashlib.sha256(body).hexdigest() if body else EMPTY_SHA256


def format_date(at: float | None = None) -> str:
    """Format a UNIX time as ``YYYY-MM-DDTHH:MM:SSZ`` (UTC, whole seconds)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if at is None else at))


_date_cache: dict[str, float] = {}


def parse_date(value: str) -> float | None:
    """Parse an ``X-Exchange-Date`` value to a UNIX time, or None when malformed."""
    at = _date_cache.get(value)
    if at is not None:
        return at
    if not DATE_RE.match(value):
        return None
    try:
        at = datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None
    if len(_date_cache) >= 1024:
        _date_cache.clear()
    _date_cache[value] = at
    return at


def string_to_sign(
    date: str, client: str, method: str, path: str, query: str, body_sha256: str,
    canonical: str | None = None,
) -> str:
    """The string covered by the signature: v2 with ``canonical`` headers (possibly ""),
    v1 when ``canonical`` is None (DESIGN.md, "Signing, v2")."""
    if canonical is None:
        return "\n".join((ALGORITHM, date, client, method.upper(), path, query, body_sha256))
    return "\n".join((ALGORITHM, date, client, method.upper(), path, query, canonical, body_sha256))


def signature(secret: str, to_sign: str) -> str:
    """Lower-case hex HMAC-SHA256 of ``to_sign`` keyed with the secret string's UTF-8 bytes."""
    return hmac.new(secret.encode(), to_sign.encode(), hashlib.sha256).hexdigest()


def _signed(headers: Mapping[str, str] | None) -> tuple[str, str]:
    """``SignedHeaders`` and the canonical headers for the headers a request will carry."""
    if not headers:
        return "", ""
    chosen = sorted((k.lower(), v) for k, v in headers.items() if must_sign(k.lower()))
    names = [n for n, _ in chosen]
    return ";".join(names), canonical_headers(names, [v for _, v in chosen])


def sign_headers(
    *,
    key_id: str,
    secret: str,
    client: str,
    method: str,
    path: str,
    query: str = "",
    body: bytes = b"",
    date: str | None = None,
    headers: Mapping[str, str] | None = None,
    v1: bool = False,
) -> dict[str, str]:
    """``headers`` plus the headers that sign the request with them (v2: every header that
    must be signed is named in ``SignedHeaders``); ``v1=True`` signs the old way."""
    date = date or format_date()
    out = dict(headers or {})
    out["X-Exchange-Client"] = client
    out["X-Exchange-Date"] = date
    if v1:
        to_sign = string_to_sign(date, client, method, path, query, body_digest(body))
        out["Authorization"] = f"{ALGORITHM} Credential={key_id}, Signature={signature(secret, to_sign)}"
        return out
    names, canonical = _signed(headers)
    to_sign = string_to_sign(date, client, method, path, query, body_digest(body), canonical)
    out["Authorization"] = (f"{ALGORITHM} Credential={key_id}, SignedHeaders={names}, "
                            f"Signature={signature(secret, to_sign)}")
    return out


class Signer:
    """Signs requests (v2) for one subsystem with one key; reusable and cheap per call."""

    __slots__ = ("key_id", "client", "_mac", "_prefix")

    def __init__(self, key_id: str, secret: str, client: str) -> None:
        self.key_id = key_id
        self.client = client
        self._mac = hmac.new(secret.encode(), digestmod=hashlib.sha256)
        self._prefix = f"{ALGORITHM} Credential={key_id}, SignedHeaders="

    def headers(
        self, method: str, path: str, query: str = "", body: bytes = b"", date: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, str]:
        """``headers`` plus the headers signing this request with them (date defaults to now)."""
        date = date or format_date()
        names, canonical = _signed(headers)
        mac = self._mac.copy()
        mac.update(string_to_sign(date, self.client, method, path, query, body_digest(body),
                                  canonical).encode())
        out = dict(headers) if headers else {}
        out["X-Exchange-Client"] = self.client
        out["X-Exchange-Date"] = date
        out["Authorization"] = f"{self._prefix}{names}, Signature={mac.hexdigest()}"
        return out
