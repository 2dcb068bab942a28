"""EXG-HMAC-SHA256 request signing, shared by the server, the SDK and the Locust users."""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from datetime import UTC, datetime

ALGORITHM = "EXG-HMAC-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
AUTH_RE = re.compile(
    r"^EXG-HMAC-SHA256 Credential=(?P<key>[A-Za-z0-9._:-]{1,128}), ?Signature=(?P<sig>[0-9a-f]{64})$"
)


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
    date: str, client: str, method: str, path: str, query: str, body_sha256: str
) -> str:
    """The canonical string covered by the signature (DESIGN.md, wire contract v1)."""
    return "\n".join((ALGORITHM, date, client, method.upper(), path, query, body_sha256))


def signature(secret: str, to_sign: str) -> str:
    """Lower-case hex HMAC-SHA256 of ``to_sign`` keyed with the secret string's UTF-8 bytes."""
    return hmac.new(secret.encode(), to_sign.encode(), hashlib.sha256).hexdigest()


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
) -> dict[str, str]:
    """The three headers that sign one request."""
    date = date or format_date()
    to_sign = string_to_sign(date, client, method, path, query, body_digest(body))
    return {
        "X-Exchange-Client": client,
        "X-Exchange-Date": date,
        "Authorization": f"{ALGORITHM} Credential={key_id}, Signature={signature(secret, to_sign)}",
    }


class Signer:
    """Signs requests for one subsystem with one key; reusable and cheap per call."""

    __slots__ = ("key_id", "client", "_mac", "_prefix")

    def __init__(self, key_id: str, secret: str, client: str) -> None:
        self.key_id = key_id
        self.client = client
        self._mac = hmac.new(secret.encode(), digestmod=hashlib.sha256)
        self._prefix = f"{ALGORITHM} Credential={key_id}, Signature="

    def headers(
        self, method: str, path: str, query: str = "", body: bytes = b"", date: str | None = None
    ) -> dict[str, str]:
        """Headers signing this request (date defaults to now)."""
        date = date or format_date()
        mac = self._mac.copy()
        mac.update(string_to_sign(date, self.client, method, path, query, body_digest(body)).encode())
        return {
            "X-Exchange-Client": self.client,
            "X-Exchange-Date": date,
            "Authorization": self._prefix + mac.hexdigest(),
        }
