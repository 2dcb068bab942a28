"""How deeply nested a decoded JSON or msgpack document may be.

msgspec refuses documents nested deeper than the interpreter's recursion limit allows
with a ``RecursionError``; below that, a deep document would still make every later
recursive step (templates, encoding the answer) a risk. Callers bound the depth of what
they accept at ``MAX_DEPTH`` and answer 400 naming the limit.
"""

from __future__ import annotations

from typing import Any

from gateway.errors import Problem

MAX_DEPTH = 400


def deeper_than(doc: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether ``doc`` nests lists and dicts more than ``limit`` levels (iterative)."""
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        value, level = stack.pop()
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else None
        if children is None:
            continue
        if level > limit:
            return True
        stack.extend((c, level + 1) for c in children if isinstance(c, dict | list))
    return False


def too_deep(what: str, limit: int = MAX_DEPTH) -> Problem:
    """The 400 for a document nested deeper than ``limit``."""
    return Problem("client.bad_request", f"{what} is nested deeper than {limit} levels (the limit)")
