"""Gateway service times from the load-test kit's bench.json (`--calibrate`).

The benchmark pins one server process to one core, so its throughputs are per
worker. One model worker is one such core:

    keyed_read  mean_ms = 1000 / query_rps
    push        mean_ms = 1000 * gateway.push_batch_records / push_records_per_s
    pull        mean_ms = 1000 * gateway.pull_batch_records / pull_records_per_s

The distribution family (and cv) of each kind stays as the scenario says.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from simulator.scenario import KINDS, ScenarioError

REQUIRED = ("query_rps", "push_records_per_s", "pull_records_per_s")


def read_bench(path: str | Path) -> dict[str, float]:
    """The bench.json throughputs, checked (positive, finite numbers)."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ScenarioError(str(p), "-", "file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ScenarioError(str(p), "-", f"cannot read: {e}") from None
    except json.JSONDecodeError as e:
        raise ScenarioError(str(p), "-", f"not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise ScenarioError(str(p), "-", "must be a JSON object")
    out = {}
    for key in REQUIRED:
        v = data.get(key)
        if v is None:
            raise ScenarioError(str(p), key, "required key is missing")
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v <= 0:
            raise ScenarioError(str(p), key, f"must be a number > 0, got {v!r}")
        out[key] = float(v)
    return out


def overrides(bench: dict[str, float], raw: dict[str, Any], source: str) -> dict[str, Any]:
    """Scenario overrides (dotted keys) setting the per-kind gateway service times."""
    g = raw.get("gateway", {})
    default = g.get("service_time", {}) if isinstance(g, dict) else {}
    by_kind = g.get("service_time_by_kind", {}) if isinstance(g, dict) else {}
    push_batch = g.get("push_batch_records", 100) if isinstance(g, dict) else 100
    pull_batch = g.get("pull_batch_records", 100) if isinstance(g, dict) else 100
    means = {
        "keyed_read": 1000.0 / bench["query_rps"],
        "push": 1000.0 * push_batch / bench["push_records_per_s"],
        "pull": 1000.0 * pull_batch / bench["pull_records_per_s"],
    }
    out: dict[str, Any] = {}
    for kind in KINDS:
        base = dict(by_kind.get(kind, default)) if isinstance(by_kind, dict) else {}
        base["mean_ms"] = round(means[kind], 6)
        out[f"gateway.service_time_by_kind.{kind}"] = base
    out["gateway.service_time_source"] = f"calibrated from {source}"
    return out
