"""Helpers of the simulator's tests: small scenarios written to tmp files, the CLI."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import tomli_w

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "configs" / "scenarios"

SMALL: dict[str, Any] = {
    "name": "small",
    "simulation": {"days": 1, "warmup_hours": 0, "replications": 2, "seed": 5},
    "demand": {
        "center_visits_per_day": 2400,
        "gateway_requests_per_day": 30000,
        "hourly_profile": "office",
        "weekday_profile": [1, 1, 1, 1, 1, 0.3, 0],
    },
    "channels": [{"name": "app", "applications_per_day": 3000, "hourly_profile": "online"}],
    "centers": {
        "count": 4,
        "staff": 12,
        "open_hours": [9, 17],
        "service_time": {"dist": "exponential", "mean_minutes": 10},
        "patience_minutes": 60,
        "baulk_queue": 40,
    },
    "eservices": {"count": 20, "requests": {"keyed_read": 1.0, "pull": 0.5, "push": 0.5}},
    "agencies": {
        "count": 3,
        "officers": 4,
        "review_share": 0.3,
        "sync_interval_minutes": 30,
        "sync_pushes": 2,
    },
    "gateway": {
        "nodes": 2,
        "workers_per_node": 1,
        "service_time": {"dist": "exponential", "mean_ms": 2.0},
    },
    "calibration": {"center_visits_first_half": 300_000, "gateway_requests_year": 9_000_000},
}


def small(**changes: Any) -> dict[str, Any]:
    """A copy of the small scenario with dotted-key changes (None deletes a key)."""
    d = copy.deepcopy(SMALL)
    for dotted, value in changes.items():
        parts = dotted.split("__")
        node = d
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        if value is None:
            node.pop(parts[-1], None)
        else:
            node[parts[-1]] = value
    return d


def write(tmp: Path, data: dict[str, Any], name: str = "scn.toml") -> Path:
    p = tmp / name
    p.write_bytes(tomli_w.dumps(data).encode())
    return p


def cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """Run `python -m simulator ...` as a real process."""
    return subprocess.run(
        [sys.executable, "-m", "simulator", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )
