"""Pure-Python route table: the specification of ``fastpath.router``.

A path is matched only when all of these hold (otherwise ``match`` answers ``None``):

* it is a ``str`` starting with ``/``, at most ``max_path`` characters long;
* every character is an RFC 3986 path character: ``A-Z a-z 0-9 - . _ ~ ! $ & ' ( ) * + , ; = : @ % /``
  (so no query ``?``, fragment ``#``, backslash, space, control or non-ASCII character);
* no segment is empty (``//`` or a trailing slash);
* the segments used by the route are well formed: a resource id matches
  ``[a-z0-9][a-z0-9.-]*`` (at most 128 characters), a service id part matches
  ``[A-Za-z0-9._-]+`` (at most 128 characters, not ``.`` or ``..``), a record key and every
  service tail segment are percent-decoded strictly (``%`` + two hex digits), decode as
  UTF-8, contain no control character (U+0000-U+001F, U+007F) and are not ``.`` or ``..``;
  a service tail segment may not contain an encoded ``/`` or ``\\`` (``%2F``, ``%5C``).

Static paths given to the table are compared exactly, before any other rule.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from urllib.parse import unquote_to_bytes

from fastpath._kinds import CATALOG_ITEM, CURSOR, RECORD, RECORDS, SERVICE, STATIC_MIN

__all__ = ["RouteTable"]

_PATH_CHARS = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@%/"
)
_RID = re.compile(r"[a-z0-9][a-z0-9.-]{0,127}")
_SERVICE_PART = re.compile(r"[A-Za-z0-9._-]{1,128}")
_PERCENT_OK = re.compile(r"(?:[^%]|%[0-9A-Fa-f]{2})*")
_MAX_ID = 128


def _valid_rid(rid: str) -> bool:
    return _RID.fullmatch(rid) is not None


def _valid_service_part(part: str) -> bool:
    return _SERVICE_PART.fullmatch(part) is not None and part not in (".", "..")


def _valid_service_id(service_id: str) -> bool:
    parts = service_id.split("/")
    return len(parts) == 5 and all(_valid_service_part(p) for p in parts)


def _decode_segment(segment: str, tail: bool) -> str | None:
    """Percent-decode one segment, or None when it breaks a rule (see the module docstring)."""
    if not segment:
        return None
    if "%" not in segment:
        # The path character set already excludes control characters and backslashes.
        return None if segment in (".", "..") else segment
    if _PERCENT_OK.fullmatch(segment) is None:
        return None
    raw = unquote_to_bytes(segment)
    if any(b < 0x20 or b == 0x7F for b in raw):
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if text in (".", ".."):
        return None
    if tail and ("/" in text or "\\" in text):
        return None
    return text


def _check_static(static: Mapping[str, int] | None) -> dict[str, int]:
    table: dict[str, int] = {}
    for path, kind in (static or {}).items():
        if not isinstance(path, str) or not path.startswith("/"):
            raise ValueError(f"static route {path!r} must be a str starting with '/'")
        if type(kind) is not int or kind < STATIC_MIN:
            raise ValueError(f"static route {path!r}: kind {kind!r} must be an int >= {STATIC_MIN}")
        table[path] = kind
    return table


def _index(ids: Sequence[str], what: str, valid) -> dict[str, int]:
    index: dict[str, int] = {}
    for i, ident in enumerate(ids):
        if not isinstance(ident, str) or not valid(ident):
            raise ValueError(f"{what} #{i} {ident!r} is not a valid {what}")
        if ident in index:
            raise ValueError(f"{what} {ident!r} appears twice (#{index[ident]} and #{i})")
        index[ident] = i
    return index


class RouteTable:
    """An immutable route table over resource ids, service ids and static paths."""

    __slots__ = ("_rids", "_services", "_static", "_max_path")

    def __init__(
        self,
        resource_ids: Sequence[str],
        service_ids: Sequence[str] = (),
        static: Mapping[str, int] | None = None,
        max_path: int = 2048,
    ) -> None:
        if type(max_path) is not int or max_path < 1:
            raise ValueError(f"max_path must be a positive int, not {max_path!r}")
        self._rids = _index(resource_ids, "resource id", _valid_rid)
        self._services = _index(service_ids, "service id", _valid_service_id)
        self._static = _check_static(static)
        self._max_path = max_path

    @property
    def max_path(self) -> int:
        """The longest path (in characters) that can match."""
        return self._max_path

    def __len__(self) -> int:
        return len(self._rids)

    def match(self, method: str, raw_path: str) -> tuple[int, int, str | None, str | None] | None:
        """Return ``(kind, index, ident, extra)`` for ``raw_path`` (no query), or None."""
        if type(raw_path) is not str:
            if not isinstance(raw_path, str):
                return None
            raw_path = str.__getitem__(raw_path, slice(None))  # a plain str copy of a subclass
        kind = self._static.get(raw_path)
        if kind is not None:
            return (kind, -1, None, None)
        if not raw_path or len(raw_path) > self._max_path or raw_path[0] != "/":
            return None
        if not _PATH_CHARS.issuperset(raw_path):
            return None
        parts = raw_path.split("/")
        n = len(parts)
        if n < 4 or parts[1] != "v1":
            return None
        section = parts[2]
        if section == "resources":
            if n < 5 or not _valid_rid(parts[3]):
                return None
            rid = parts[3]
            idx = self._rids.get(rid, -1)
            if n == 5:
                if parts[4] == "records":
                    return (RECORDS, idx, rid, None)
                if parts[4] == "cursor":
                    return (CURSOR, idx, rid, None)
                return None
            if n == 6 and parts[4] == "records":
                key = _decode_segment(parts[5], tail=False)
                if key is None:
                    return None
                return (RECORD, idx, rid, key)
            return None
        if section == "catalog":
            if n != 4 or not _valid_rid(parts[3]):
                return None
            rid = parts[3]
            return (CATALOG_ITEM, self._rids.get(rid, -1), rid, None)
        if section == "services":
            if n < 8:
                return None
            for part in parts[3:8]:
                if not _valid_service_part(part):
                    return None
            for segment in parts[8:]:
                if _decode_segment(segment, tail=True) is None:
                    return None
            service_id = "/".join(parts[3:8])
            tail = "/" + "/".join(parts[8:]) if n > 8 else ""
            return (SERVICE, self._services.get(service_id, -1), service_id, tail)
        return None
