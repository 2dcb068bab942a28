"""Load TOML files into msgspec Structs; every error names the file, the key and the reason."""

from __future__ import annotations

import datetime as dt
import re
import tomllib
from pathlib import Path
from typing import TypeVar

import msgspec

from gateway.redact import redact

T = TypeVar("T")

_AT = re.compile(r" - at `\$(?P<path>[^`]*)`$")
_FIELD = re.compile(r"^Object (?:missing required|contains unknown) field `(?P<field>[^`]*)`$")


class ConfigError(Exception):
    """A configuration file was refused: ``file: key: reason``."""

    def __init__(self, file: str | Path, key: str, reason: str) -> None:
        self.file = str(file)
        self.key = key
        self.reason = reason = redact(reason)  # a value quoted back never shows credentials
        where = f"{self.file}: {key}: " if key else f"{self.file}: "
        super().__init__(where + reason)


def dotted(path: str) -> str:
    """Turn msgspec's ``.a.b[2].c`` into ``a.b[2].c``."""
    return path[1:] if path.startswith(".") else path


def split_validation_error(exc: msgspec.ValidationError) -> tuple[str, str]:
    """Split msgspec's "reason - at `$.path`" into (key, reason).

    A missing or unknown field is named in the key itself (``node.catalog``, not ``node``).
    """
    msg = str(exc)
    m = _AT.search(msg)
    key, reason = ("", msg) if not m else (dotted(m.group("path")), msg[: m.start()])
    f = _FIELD.match(reason)
    if f:
        key = f"{key}.{f.group('field')}" if key else f.group("field")
    return key, reason


def load_toml(path: str | Path, typ: type[T]) -> T:
    """Read ``path`` and decode it as ``typ``, raising :class:`ConfigError` on any problem."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(path, "", "file not found") from None
    except OSError as exc:
        raise ConfigError(path, "", f"cannot read file ({exc.strerror})") from None
    try:
        text = raw.decode()
    except UnicodeDecodeError as exc:
        raise ConfigError(path, "", f"not UTF-8 text (byte {exc.start})") from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, "", f"invalid TOML: {exc}") from None
    return convert(doc, typ, path)


def convert(doc: object, typ: type[T], path: str | Path) -> T:
    """Convert a decoded document to ``typ``, raising :class:`ConfigError` naming the key."""
    try:
        return msgspec.convert(doc, typ, strict=True)
    except msgspec.ValidationError as exc:
        key, reason = split_validation_error(exc)
        if "[...]" in key:
            key = name_table_keys(doc, key, reason)
        raise ConfigError(path, key, reason) from None


_STEP = re.compile(r"\.?(?P<name>[A-Za-z_][A-Za-z0-9_]*)|\[(?P<index>\d+)\]|(?P<any>\[\.\.\.\])")
_GOT = re.compile(r"got `(?P<got>[a-z]+)`$")
_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _type_name(value: object) -> str:
    """msgspec's name for the type of a decoded TOML value ("got `...`")."""
    for cls, name in ((bool, "bool"), (int, "int"), (float, "float"), (str, "str"),
                      (list, "array"), (dict, "object"), (dt.datetime, "datetime"),
                      (dt.date, "date"), (dt.time, "time")):  # fmt: skip
        if isinstance(value, cls):
            return name
    return "null" if value is None else type(value).__name__


def name_table_keys(doc: object, key: str, reason: str) -> str:
    """Replace msgspec's ``[...]`` (a table entry it does not name) with the entry's key.

    msgspec reports the first entry that fails; for "Expected X, got Y" that is the first
    entry whose value at the rest of the path has type Y. Unresolvable paths stay as given.
    """
    got = _GOT.search(reason)
    steps = [m for m in _STEP.finditer(key)]
    if not got or "".join(m.group(0) for m in steps) != key:
        return key

    def walk(node: object, i: int) -> str | None:
        if i == len(steps):
            return "" if _type_name(node) == got.group("got") else None
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
        else:
            if not isinstance(node, dict) or m.group("name") not in node:
                return None
            rest = walk(node[m.group("name")], i + 1)
        return None if rest is None else m.group(0) + rest

    found = walk(doc, 0)
    return dotted(found) if found else key
