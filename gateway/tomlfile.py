"""Load TOML files into msgspec Structs; every error names the file, the key and the reason."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import TypeVar

import msgspec

T = TypeVar("T")

_AT = re.compile(r" - at `\$(?P<path>[^`]*)`$")
_FIELD = re.compile(r"^Object (?:missing required|contains unknown) field `(?P<field>[^`]*)`$")


class ConfigError(Exception):
    """A configuration file was refused: ``file: key: reason``."""

    def __init__(self, file: str | Path, key: str, reason: str) -> None:
        self.file = str(file)
        self.key = key
        self.reason = reason
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
        raise ConfigError(path, key, reason) from None
