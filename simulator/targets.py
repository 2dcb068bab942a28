"""Targets such as "centers.wait_minutes.p95<=15" and metric look-ups in summary.json."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from simulator.cli_common import UsageError

_TARGET = re.compile(
    r"^\s*([a-z_][a-z0-9_.]*)\s*(<=|>=|<|>)\s*([-+]?[0-9]*\.?[0-9]+(?:e[-+]?\d+)?)"
    r"\s*$",
    re.I,
)


@dataclass(frozen=True)
class Target:
    metric: str
    op: str
    value: float

    def met(self, summary: dict[str, Any], conservative: bool = False) -> bool:
        """Whether the replicated mean (or, conservatively, its whole CI) meets the target."""
        m = metric(summary, self.metric)
        h = ci_of(summary, self.metric) if conservative else 0.0
        if m is None or not math.isfinite(m):
            return False
        h = h or 0.0
        if self.op in ("<=", "<"):
            x = m + h
            return x <= self.value if self.op == "<=" else x < self.value
        x = m - h
        return x >= self.value if self.op == ">=" else x > self.value

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.value:g}"


def parse_target(text: str) -> Target:
    """`METRIC<=VALUE` (also <, >=, >); a bad one is a UsageError saying what is expected."""
    m = _TARGET.match(text)
    if not m:
        raise UsageError(
            f"bad --target {text!r}: expected METRIC OP NUMBER with OP one of "
            '<= < >= >, e.g. "centers.wait_minutes.p95<=15"'
        )
    return Target(m.group(1), m.group(2), float(m.group(3)))


def metric(summary: dict[str, Any], path: str) -> float | None:
    """The number at a dotted path of summary.json (a {mean, ci95} block gives its mean)."""
    node: Any = summary
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            raise UsageError(
                f"unknown metric {path!r}: no `{part}` in summary.json "
                f"(there: {', '.join(sorted(node)) if isinstance(node, dict) else '-'})"
            )
        node = node[part]
    if isinstance(node, dict) and "mean" in node:
        node = node["mean"]
    if node is None:
        return None
    if isinstance(node, bool) or not isinstance(node, int | float):
        raise UsageError(f"metric {path!r} is not a number in summary.json")
    return float(node)


def ci_of(summary: dict[str, Any], path: str) -> float | None:
    """The 95 % half-width that goes with a metric, if summary.json has one."""
    parent_path, _, leaf = path.rpartition(".")
    node: Any = summary
    for part in parent_path.split(".") if parent_path else []:
        node = node.get(part, {}) if isinstance(node, dict) else {}
    if not isinstance(node, dict):
        return None
    if isinstance(node.get(leaf), dict):
        return node[leaf].get("ci95")
    key = "ci95" if leaf == "mean" else f"{leaf}_ci95"
    return node.get(key)
