"""RFC 9457 problem+json errors with the wire contract's codes."""

from __future__ import annotations

from typing import Any

import msgspec

from gateway.redact import redact

CODES: dict[str, tuple[int, str]] = {
    "client.bad_request": (400, "Bad request"),
    "client.unauthenticated": (401, "Unauthenticated"),
    "client.access_denied": (403, "Access denied"),
    "client.not_found": (404, "Not found"),
    "client.method_not_allowed": (405, "Method not allowed"),
    "client.conflict": (409, "Conflict"),
    "client.payload_too_large": (413, "Payload too large"),
    "client.unsupported_media_type": (415, "Unsupported media type"),
    "client.validation_failed": (422, "Validation failed"),
    "client.rate_limited": (429, "Too many requests"),
    "server.internal": (500, "Internal server error"),
    "server.upstream_failed": (502, "Upstream failed"),
    "server.unavailable": (503, "Service unavailable"),
    "server.upstream_timeout": (504, "Upstream timeout"),
}

PROBLEM_TYPE = "https://onestop.exchange/problems/"
_encode = msgspec.json.Encoder().encode


class FieldError(msgspec.Struct):
    """One validation failure: the record's index in the batch and the field."""

    index: int | None
    field: str
    message: str


class Problem(Exception):
    """An error answered as problem+json; raise it anywhere on the request path."""

    def __init__(
        self,
        code: str,
        detail: str,
        *,
        errors: list[FieldError] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        detail = redact(detail)  # a detail never carries a URL's credentials
        super().__init__(detail)
        self.code = code
        self.status, self.title = CODES[code]
        self.detail = detail
        self.errors = errors
        self.headers = headers or {}

    def body(self, request_id: str) -> bytes:
        """The problem document as JSON bytes."""
        doc: dict[str, Any] = {
            "type": PROBLEM_TYPE + self.code,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
            "request_id": request_id,
        }
        if self.errors is not None:
            doc["errors"] = self.errors
        return _encode(doc)
