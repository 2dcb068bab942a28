"""Service-level objectives (``configs/slo.toml``) and the gate that checks a run against them.

Format (every key optional)::

    [total]                 # over all requests of the run
    failure_ratio = 0.001   # failed / all requests, at most
    min_rps = 50.0          # requests per second, at least

    [kinds.read]            # one table per request kind (request name)
    p50_ms = 20.0           # latency percentiles (ms), at most
    p95_ms = 50.0
    p99_ms = 100.0
    failure_ratio = 0.001
    min_rps = 10.0

Kinds: read, push, pull, commit, catalog, catalog-list, ping.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import msgspec

from gateway.tomlfile import ConfigError, load_toml
from loadtest.errors import LoadTestError

KNOWN_KINDS = ("read", "push", "pull", "commit", "catalog", "catalog-list", "ping")
_LATENCIES = ("p50_ms", "p95_ms", "p99_ms")


class Objectives(msgspec.Struct, forbid_unknown_fields=True):
    """The objectives of one request kind, or of the whole run."""

    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    failure_ratio: float | None = None
    min_rps: float | None = None


class SloFile(msgspec.Struct, forbid_unknown_fields=True):
    """A whole SLO file."""

    total: Objectives = msgspec.field(default_factory=Objectives)
    kinds: dict[str, Objectives] = {}


def _check(slo: SloFile, src: str) -> None:
    groups = [("total", slo.total)] + [(f"kinds.{k}", o) for k, o in slo.kinds.items()]
    for k in slo.kinds:
        if k not in KNOWN_KINDS:
            raise ConfigError(src, f"kinds.{k}", f"unknown request kind (one of {', '.join(KNOWN_KINDS)})")
    for where, obj in groups:
        for name in Objectives.__struct_fields__:
            v = getattr(obj, name)
            if v is None:
                continue
            if not math.isfinite(v) or v < 0:
                raise ConfigError(src, f"{where}.{name}", f"must be a number >= 0, got {v}")
            if name == "failure_ratio" and v > 1:
                raise ConfigError(src, f"{where}.{name}", f"a ratio is at most 1, got {v}")


def load_slo(path: str | Path) -> SloFile:
    """Read and check an SLO file; any problem is a :class:`LoadTestError` naming the key."""
    try:
        slo = load_toml(path, SloFile)
        _check(slo, str(path))
    except ConfigError as exc:
        raise LoadTestError(str(exc)) from None
    return slo


def _breach(
    where: str, name: str, got: float, limit: float, unit: str, worse_is_higher: bool
) -> dict[str, Any]:
    over = (got - limit) if worse_is_higher else (limit - got)
    rel = (over / limit * 100.0) if limit else math.inf
    op = ">" if worse_is_higher else "<"
    return {
        "objective": f"{where}.{name}",
        "measured": round(got, 6),
        "limit": limit,
        "by": round(over, 6),
        "by_pct": round(rel, 2) if math.isfinite(rel) else None,
        "message": f"{where}.{name}: measured {got:g}{unit} {op} objective {limit:g}{unit} "
        f"({'over' if worse_is_higher else 'short'} by {over:g}{unit}"
        + (f", {rel:.1f} %)" if math.isfinite(rel) else ")"),
    }


def _evaluate_one(
    where: str, obj: Objectives, stats: dict[str, Any] | None
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if stats is None or not stats.get("count"):
        if obj.min_rps:  # latency and failure objectives of a kind not exercised are moot
            out.append(_breach(where, "min_rps", 0.0, obj.min_rps, "/s", False))
        return out
    for name in _LATENCIES:
        limit = getattr(obj, name)
        if limit is not None and stats[name] > limit:
            out.append(_breach(where, name, stats[name], limit, " ms", True))
    if obj.failure_ratio is not None and stats["failure_ratio"] > obj.failure_ratio:
        out.append(
            _breach(where, "failure_ratio", stats["failure_ratio"], obj.failure_ratio, "", True)
        )
    if obj.min_rps is not None and stats["rate"] < obj.min_rps:
        out.append(_breach(where, "min_rps", stats["rate"], obj.min_rps, "/s", False))
    return out


def evaluate(slo: SloFile, summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Every objective the run's summary breaches (empty when all are met)."""
    breaches = _evaluate_one("total", slo.total, summary.get("total"))
    for kind, obj in slo.kinds.items():
        breaches += _evaluate_one(f"kinds.{kind}", obj, summary.get("kinds", {}).get(kind))
    return breaches


def format_breaches(breaches: list[dict[str, Any]]) -> str:
    """A message listing the failed objectives."""
    lines = [f"SLO FAILED: {len(breaches)} objective(s) breached"]
    lines += [f"  - {b['message']}" for b in breaches]
    return "\n".join(lines)
