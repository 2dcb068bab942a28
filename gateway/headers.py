"""Header values the node accepts: Latin-1 text without control characters (HTAB allowed).

aiohttp decodes header bytes as UTF-8 (undecodable bytes become lone surrogates), so a
value holding CJK text, an emoji or invalid UTF-8 arrives as characters past U+00FF.
Such values cannot be signed, audited or forwarded faithfully; they are refused (400)
before the request costs anything.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_BAD = re.compile(r"[^\t\x20-\x7e\x80-\xff]")


def bad_header(items: Iterable[tuple[str, str]]) -> str | None:
    """The name of the first header whose name or value is not acceptable, or None."""
    for name, value in items:
        if value.isascii() and value.isprintable() and name.isascii():
            continue  # the usual case, two C calls
        if _BAD.search(value) or _BAD.search(name):
            return name
    return None


def describe(name: str) -> str:
    """The problem detail naming the header."""
    return (f"header {name[:64]!a} must be Latin-1 text without control characters; "
            "send other text percent-encoded")
