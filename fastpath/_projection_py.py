"""Pure-Python field projection: the specification of ``fastpath.projection``.

A plan keeps the allowed fields of a record, in the record's own order, and masks some of
them. Masking ``(head, tail)`` keeps the first ``head`` and the last ``tail`` characters and
replaces each character in between with ``*``; a value of ``head + tail`` characters or
fewer is masked completely (so a short id never leaks whole). A non-``str`` value of a
masked field is masked as ``str(value)``, except ``None``, which stays ``None``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["Plan", "compile_plan", "project", "project_many", "mask_value"]


class Plan:
    """A compiled projection: allowed fields (None = all) and masks."""

    __slots__ = ("fields", "masks", "is_identity", "_allowed")

    fields: tuple[str, ...] | None
    masks: dict[str, tuple[int, int]]
    is_identity: bool

    def __init__(self, fields: tuple[str, ...] | None, masks: dict[str, tuple[int, int]]) -> None:
        self.fields = fields
        self.masks = masks
        self.is_identity = fields is None and not masks
        self._allowed = None if fields is None else frozenset(fields)

    def __repr__(self) -> str:
        return f"Plan(fields={self.fields!r}, masks={self.masks!r})"


def _check(fields: Sequence[str] | None, masks: Mapping[str, tuple[int, int]] | None):
    if isinstance(fields, str):
        raise TypeError("fields must be a sequence of field names, not a str")
    if fields is not None:
        fields = tuple(fields)
        for name in fields:
            if not isinstance(name, str):
                raise TypeError(f"field name {name!r} is not a str")
        fields = None if "*" in fields else tuple(dict.fromkeys(fields))
    checked: dict[str, tuple[int, int]] = {}
    for name, spec in (masks or {}).items():
        if not isinstance(name, str):
            raise TypeError(f"masked field name {name!r} is not a str")
        if (
            not isinstance(spec, tuple | list)
            or len(spec) != 2
            or any(type(n) is not int or n < 0 for n in spec)
        ):
            raise ValueError(f"mask for {name!r} must be (keep_head, keep_tail) >= 0, not {spec!r}")
        checked[name] = (spec[0], spec[1])
    return fields, checked


def compile_plan(
    fields: Sequence[str] | None, masks: Mapping[str, tuple[int, int]] | None = None
) -> Plan:
    """Compile a grant's field list (None or ["*"] = all) and masks into a plan."""
    fields, checked = _check(fields, masks)
    return Plan(fields, checked)


def mask_value(value: Any, head: int, tail: int) -> Any:
    """Mask one value (see the module docstring)."""
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    n = len(text)
    if n <= head + tail:
        return "*" * n
    return text[:head] + "*" * (n - head - tail) + text[n - tail :]


def project(plan: Plan, data: dict) -> dict:
    """A new dict with only the plan's fields of ``data`` (masked), in ``data``'s order."""
    if not isinstance(data, dict):
        raise TypeError(f"a record must be a dict, not {type(data).__name__}")
    allowed = plan._allowed
    masks = plan.masks
    out = dict(data) if allowed is None else {k: v for k, v in dict.items(data) if k in allowed}
    for name, (head, tail) in masks.items():
        if name in out:
            out[name] = mask_value(out[name], head, tail)
    return out


def project_many(plan: Plan, records: list[dict]) -> list[dict]:
    """``project`` over a list of records."""
    return [project(plan, r) for r in records]
