"""The one loader of configuration files: TOML decoded into msgspec Structs.

Node, catalog, keyring, scenario and SLO files all come through here, so that every bad
file is refused the same way, as ``file: key: reason`` (:class:`ConfigError`):

- ``file not found``, ``cannot read file (...)``, ``not UTF-8 text (byte n)``, ``invalid TOML: ...``
  (no key: the file as a whole);
- ``unknown key`` (with a suggestion when a known key is close) and ``required key is missing``,
  the key naming the offending entry itself (``node.colour``, ``node.catalog``);
- msgspec's own reason for a wrong type or value (``Expected `int`, got `str```), where TOML's
  name ``table`` replaces JSON's ``object``; a ``[...]`` that msgspec leaves for a table entry
  is replaced by the entry's key.

The simulator and the load kit import this module from the product (never the reverse).
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import msgspec.inspect as mi

from gateway.redact import redact

T = TypeVar("T")

_AT = re.compile(r" - at `\$(?P<path>[^`]*)`$")
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<field>[^`]*)`$")
_MISSING = re.compile(r"^Object missing required field `(?P<field>[^`]*)`$")


class ConfigError(Exception):
    """A configuration file was refused: ``file: key: reason``."""

    def __init__(self, file: str | Path, key: str, reason: str) -> None:
        self.file = str(file)
        self.key = key
        self.reason = reason = redact(reason)  # a value quoted back never shows credentials
        where = f"{self.file}: {key}: " if key else f"{self.file}: "
        super().__init__(where + reason)


# -- reading --------------------------------------------------------------------------


def read_text(path: str | Path) -> str:
    """The file's text (UTF-8); :class:`ConfigError` when it is missing or unreadable."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(path, "", "file not found") from None
    except OSError as exc:
        raise ConfigError(path, "", f"cannot read file ({exc.strerror or exc})") from None
    try:
        return raw.decode()
    except UnicodeDecodeError as exc:
        raise ConfigError(path, "", f"not UTF-8 text (byte {exc.start})") from None


def parse_toml(text: str, source: str | Path) -> dict[str, Any]:
    """TOML text as a dict; :class:`ConfigError` naming ``source`` when it is not TOML."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, "", f"invalid TOML: {exc}") from None


def read_toml(path: str | Path) -> dict[str, Any]:
    """A TOML file as a dict (for loaders that merge or check it before decoding)."""
    return parse_toml(read_text(path), path)


def load_toml(path: str | Path, typ: type[T]) -> T:
    """Read ``path`` and decode it as ``typ``, raising :class:`ConfigError` on any problem."""
    return convert(read_toml(path), typ, path)


def convert(doc: object, typ: type[T], path: str | Path) -> T:
    """Convert a decoded document to ``typ``, raising :class:`ConfigError` naming the key."""
    try:
        return msgspec.convert(doc, typ, strict=True)
    except msgspec.ValidationError as exc:
        key, reason = explain(exc, doc, typ)
        raise ConfigError(path, key, reason) from None


# -- msgspec's errors as (key, reason) ------------------------------------------------


def dotted(path: str) -> str:
    """Turn msgspec's ``.a.b[2].c`` into ``a.b[2].c``."""
    return path[1:] if path.startswith(".") else path


def explain(exc: msgspec.ValidationError, doc: object, typ: Any) -> tuple[str, str]:
    """The key and the reason of msgspec's "reason - at `$.path`" for ``doc`` decoded as ``typ``."""
    msg = str(exc)
    m = _AT.search(msg)
    key, reason = ("", msg) if not m else (dotted(m.group("path")), msg[: m.start()])
    unknown, missing, got = _UNKNOWN.match(reason), _MISSING.match(reason), _GOT.search(reason)
    if "[...]" in key:
        if unknown or missing:
            field, absent = (unknown or missing).group("field"), missing is not None  # type: ignore[union-attr]
            key = name_table_keys(doc, key, lambda v: isinstance(v, dict) and (field not in v) == absent)
        elif got:
            key = name_table_keys(doc, key, lambda v: _type_name(v) == got.group("got"))
    if unknown or missing:
        field = (unknown or missing).group("field")  # type: ignore[union-attr]
        parent, key = key, f"{key}.{field}" if key else field
        if missing:
            return key, "required key is missing"
        close = difflib.get_close_matches(field, _keys_at(typ, parent), n=1)
        return key, f"unknown key (did you mean {close[0]!r}?)" if close else "unknown key"
    return key, reason.replace("`object`", "`table`")


_STEP = re.compile(r"\.?(?P<name>[A-Za-z_][A-Za-z0-9_-]*)|\[(?P<index>\d+)\]|(?P<any>\[\.\.\.\])"
                   r"|\[(?P<quoted>'[^']*')\]")
_GOT = re.compile(r"got `(?P<got>[a-z]+)`$")
_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _keys_at(typ: Any, key: str) -> list[str]:
    """The field names of the Struct at ``key`` in ``typ`` (empty when it is not one)."""
    try:
        info: Any = mi.type_info(typ)
    except (TypeError, ValueError):
        return []
    for m in _STEP.finditer(key):
        info = _container(info)
        if m.group("name") is not None and isinstance(info, mi.StructType):
            info = next((f.type for f in info.fields if f.encode_name == m.group("name")), None)
        elif isinstance(info, mi.DictType):
            info = info.value_type
        elif isinstance(info, mi.ListType | mi.SetType | mi.FrozenSetType | mi.VarTupleType):
            info = info.item_type
        else:
            return []
    info = _container(info)
    return [f.encode_name for f in info.fields] if isinstance(info, mi.StructType) else []


def _container(info: Any) -> Any:
    """The Struct, dict or list member of an optional or union type."""
    if isinstance(info, mi.UnionType):
        for t in info.types:
            if isinstance(t, mi.StructType | mi.DictType | mi.ListType):
                return t
    return info


def _type_name(value: object) -> str:
    """msgspec's name for the type of a decoded TOML value ("got `...`")."""
    for cls, name in ((bool, "bool"), (int, "int"), (float, "float"), (str, "str"),
                      (list, "array"), (dict, "object"), (dt.datetime, "datetime"),
                      (dt.date, "date"), (dt.time, "time")):  # fmt: skip
        if isinstance(value, cls):
            return name
    return "null" if value is None else type(value).__name__


def name_table_keys(doc: object, key: str, fits: Callable[[object], bool]) -> str:
    """Replace msgspec's ``[...]`` (a table entry it does not name) with the entry's key.

    msgspec reports the first entry that fails: the first entry whose value at the rest of
    the path ``fits`` the error (has the wrong type, holds the unknown key, lacks the
    required one). Unresolvable paths stay as given.
    """
    steps = [m for m in _STEP.finditer(key)]
    if "".join(m.group(0) for m in steps) != key:
        return key

    def walk(node: object, i: int) -> str | None:
        if i == len(steps):
            return "" if fits(node) else None
        m = steps[i]
        if m.group("any") is not None:
            if not isinstance(node, dict):
                return None
            for k, v in node.items():
                rest = walk(v, i + 1)
                if rest is not None:
                    name = f".{k}" if _PLAIN_KEY.match(str(k)) else f"[{str(k)!r}]"
                    return name + rest
            return None
        if m.group("index") is not None:
            j = int(m.group("index"))
            if not isinstance(node, list) or j >= len(node):
                return None
            rest = walk(node[j], i + 1)
        elif m.group("name") is not None:
            if not isinstance(node, dict) or m.group("name") not in node:
                return None
            rest = walk(node[m.group("name")], i + 1)
        else:
            return None
        return None if rest is None else m.group(0) + rest

    found = walk(doc, 0)
    return dotted(found) if found else key
