"""Pure-Python route table: the specification of ``fastpath.router``.

A table is compiled from path templates (the gateway's route declarations). A template is
``/`` followed by segments, each a literal or a parameter ``{name:type}`` (or ``{type}``):

* ``rid``: a resource id ``[a-z0-9][a-z0-9.-]*`` (at most 128 characters), looked up in the
  table's resource ids;
* ``key``: one segment, percent-decoded strictly (below);
* ``id``: one segment that, percent-decoded strictly, is 1 to 128 of ``[A-Za-z0-9._:@-]`` (not
  ``.`` or ``..``);
* ``service``: five segments of ``[A-Za-z0-9._-]`` (each 1 to 128 characters, not ``.`` or
  ``..``) joined by ``/``, looked up in the table's service ids;
* ``tail``: the rest of the path (possibly nothing), last in its template; each of its
  segments must decode strictly and may not contain an encoded ``/`` or ``\\``; it is
  answered as written (``""`` or ``/a/b``).

A template has at most two parameters and at most one looked-up parameter (``rid`` or
``service``). ``match`` answers ``(route, index, first, second)``: the template's position,
the looked-up id's index (-1 when unknown or none), and the parameters' values (None when
the template has fewer). A path is matched only when all of these hold:

* it is a ``str`` starting with ``/``, at most ``max_path`` characters long;
* every character is an RFC 3986 path character: ``A-Z a-z 0-9 - . _ ~ ! $ & ' ( ) * + , ; = : @ % /``
  (so no query ``?``, fragment ``#``, backslash, space, control or non-ASCII character);
* no segment is empty (``//`` or a trailing slash);
* it fits a template, literal segments preferred over parameters (parameters tried in the
  order of ``PARAM_TYPES``); a segment decodes
  strictly when ``%`` is followed by two hex digits, the bytes are UTF-8 without control
  characters (U+0000-U+001F, U+007F), and it is not ``.`` or ``..``.

Templates without parameters are compared exactly, before any other rule.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from urllib.parse import unquote_to_bytes

__all__ = ["RouteTable", "PARAM_TYPES", "parse_template"]

PARAM_TYPES = ("rid", "key", "id", "service", "tail")
_LOOKED_UP = ("rid", "service")
_PATH_CHARS = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@%/"
)
_RID = re.compile(r"[a-z0-9][a-z0-9.-]{0,127}")
_ID = re.compile(r"[A-Za-z0-9._:@-]{1,128}")
_SERVICE_PART = re.compile(r"[A-Za-z0-9._-]{1,128}")
_PERCENT_OK = re.compile(r"(?:[^%]|%[0-9A-Fa-f]{2})*")
_PARAM = re.compile(r"^\{(?:(?P<name>[a-z_][a-z0-9_]*):)?(?P<type>[a-z]+)\}$")
_LITERAL = re.compile(r"^[A-Za-z0-9._~-]+$")


def _valid_rid(rid: str) -> bool:
    return _RID.fullmatch(rid) is not None


def _valid_id(ident: str) -> bool:
    return _ID.fullmatch(ident) is not None and ident not in (".", "..")


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


def parse_template(template: str) -> list[tuple[str, str]]:
    """``[(kind, text)]`` per segment: ``("lit", literal)`` or ``("param", type)``; ValueError
    naming what is wrong otherwise."""
    if not isinstance(template, str) or not template.startswith("/") or template == "/":
        raise ValueError(f"route template {template!r} must be a str starting with '/'")
    out: list[tuple[str, str]] = []
    segments = template[1:].split("/")
    for i, seg in enumerate(segments):
        m = _PARAM.match(seg)
        if m is not None:
            ptype = m.group("type")
            if ptype not in PARAM_TYPES:
                raise ValueError(f"route template {template!r}: unknown parameter type {ptype!r}")
            if ptype == "tail" and i != len(segments) - 1:
                raise ValueError(f"route template {template!r}: a tail parameter must be last")
            out.append(("param", ptype))
        elif _LITERAL.match(seg):
            out.append(("lit", seg))
        else:
            raise ValueError(f"route template {template!r}: bad segment {seg!r}")
    params = [t for k, t in out if k == "param"]
    if len(params) > 2:
        raise ValueError(f"route template {template!r}: at most two parameters")
    if sum(1 for t in params if t in _LOOKED_UP) > 1:
        raise ValueError(f"route template {template!r}: at most one rid or service parameter")
    return out


class _Node:
    __slots__ = ("literals", "params", "route")

    def __init__(self) -> None:
        self.literals: dict[str, _Node] = {}
        self.params: dict[str, _Node] = {}  # parameter type -> next node
        self.route = -1


def _index(ids: Sequence[str], what: str, valid) -> dict[str, int]:
    index: dict[str, int] = {}
    for i, ident in enumerate(ids):
        if not isinstance(ident, str) or not valid(ident):
            raise ValueError(f"{what} #{i} {ident!r} is not a valid {what}")
        if ident in index:
            raise ValueError(f"{what} {ident!r} appears twice (#{index[ident]} and #{i})")
        index[ident] = i
    return index


def _compile(templates: Sequence[str]) -> tuple[dict[str, int], _Node]:
    static: dict[str, int] = {}
    root = _Node()
    for r, template in enumerate(templates):
        segments = parse_template(template)
        if all(k == "lit" for k, _ in segments):
            if template in static:
                raise ValueError(f"route template {template!r} appears twice")
            static[template] = r
            continue
        node = root
        for kind, text in segments:
            table = node.literals if kind == "lit" else node.params
            node = table.setdefault(text, _Node())
        if node.route >= 0:
            raise ValueError(f"route template {template!r} matches the same paths as route #{node.route}")
        node.route = r
    return static, root


class RouteTable:
    """An immutable route table compiled from path templates over resource and service ids."""

    __slots__ = ("_rids", "_services", "_static", "_root", "_max_path")

    def __init__(
        self,
        templates: Sequence[str],
        resource_ids: Sequence[str] = (),
        service_ids: Sequence[str] = (),
        max_path: int = 2048,
    ) -> None:
        if type(max_path) is not int or max_path < 1:
            raise ValueError(f"max_path must be a positive int, not {max_path!r}")
        if isinstance(templates, str):
            raise TypeError("templates must be a sequence of path templates, not a str")
        self._static, self._root = _compile(templates)
        self._rids = _index(resource_ids, "resource id", _valid_rid)
        self._services = _index(service_ids, "service id", _valid_service_id)
        self._max_path = max_path

    @property
    def max_path(self) -> int:
        """The longest path (in characters) that can match."""
        return self._max_path

    def __len__(self) -> int:
        return len(self._rids)

    def match(self, raw_path: str) -> tuple[int, int, str | None, str | None] | None:
        """``(route, index, first, second)`` for ``raw_path`` (no query), or None."""
        if type(raw_path) is not str:
            if not isinstance(raw_path, str):
                return None
            raw_path = str.__getitem__(raw_path, slice(None))  # a plain str copy of a subclass
        route = self._static.get(raw_path)
        if route is not None:
            return (route, -1, None, None)
        if not raw_path or len(raw_path) > self._max_path or raw_path[0] != "/":
            return None
        if not _PATH_CHARS.issuperset(raw_path):
            return None
        parts = raw_path[1:].split("/")
        if "" in parts:
            return None
        return self._walk(self._root, parts, 0, -1, [])

    def _walk(self, node: _Node, parts: list[str], i: int, index: int,
              values: list[str]) -> tuple[int, int, str | None, str | None] | None:
        if i == len(parts):
            if node.route >= 0:
                return self._answer(node.route, index, values)
            tail = node.params.get("tail")
            return None if tail is None or tail.route < 0 else self._answer(tail.route, index, [*values, ""])
        child = node.literals.get(parts[i])
        if child is not None:
            found = self._walk(child, parts, i + 1, index, values)
            if found is not None:
                return found
        for ptype in PARAM_TYPES:  # a fixed order: both implementations answer alike
            child = node.params.get(ptype)
            if child is not None:
                found = self._param(ptype, child, parts, i, index, values)
                if found is not None:
                    return found
        return None

    def _param(self, ptype: str, child: _Node, parts: list[str], i: int, index: int,
               values: list[str]) -> tuple[int, int, str | None, str | None] | None:
        seg = parts[i]
        if ptype == "rid":
            if not _valid_rid(seg):
                return None
            return self._walk(child, parts, i + 1, self._rids.get(seg, -1), [*values, seg])
        if ptype == "id":
            ident = _decode_segment(seg, tail=False)
            if ident is None or not _valid_id(ident):
                return None
            return self._walk(child, parts, i + 1, index, [*values, ident])
        if ptype == "key":
            key = _decode_segment(seg, tail=False)
            return None if key is None else self._walk(child, parts, i + 1, index, [*values, key])
        if ptype == "service":
            if len(parts) - i < 5 or not all(_valid_service_part(p) for p in parts[i:i + 5]):
                return None
            sid = "/".join(parts[i:i + 5])
            return self._walk(child, parts, i + 5, self._services.get(sid, -1), [*values, sid])
        # tail: every remaining segment
        if child.route < 0 or any(_decode_segment(p, tail=True) is None for p in parts[i:]):
            return None
        return self._answer(child.route, index, [*values, "/" + "/".join(parts[i:])])

    @staticmethod
    def _answer(route: int, index: int, values: list[str]) -> tuple[int, int, str | None, str | None]:
        first = values[0] if values else None
        second = values[1] if len(values) > 1 else None
        return (route, index, first, second)
