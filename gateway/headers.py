"""Header values the node accepts: Latin-1 text without control characters (HTAB allowed).

aiohttp decodes header bytes as UTF-8 (undecodable bytes become lone surrogates), so a
value holding CJK text, an emoji or invalid UTF-8 arrives as characters past U+00FF.
Such values cannot be signed, audited or forwarded faithfully; they are refused (400)
before the request costs anything.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

_BAD = re.compile(r"[^\t\x20-\x7e\x80-\xff]")


def bad_header(headers: Mapping[str, str]) -> str | None:
    """The name of the first header whose value is not acceptable, or None. (llhttp
    already refuses header names that are not tokens.)"""
    joined = "".join(headers.values())
    if joined.isascii() and joined.isprintable():
        return None  # the usual case: one join, two C scans
    for name, value in headers.items():
        if _BAD.search(value):
            return name
    return None


def describe(name: str) -> str:
    """The problem detail naming the header."""
    return (f"header {name[:64]!a} must be Latin-1 text without control characters; "
            "send other text percent-encoded")
