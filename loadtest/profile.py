"""How load varies over a run: each shape is a factor in [0, 1] of the peak over run time.

Shared by the Locust shape classes (:mod:`loadtest.shapes`, user counts) and the
open-model user (arrival rate). Free of Locust imports so that any process may use it.

- ``diurnal``: the scenario's 24 hourly weights compressed into the run's duration,
  scaled so that the busiest hour is the peak (linear between hour midpoints).
- ``step``: five equal steps up to the peak, each a fifth of the run.
- ``spike``: a fifth of the peak, with a spike to the peak in the fourth fifth of the run.
"""

from __future__ import annotations

from typing import Any

from loadtest.errors import LoadTestError

SHAPES = ("diurnal", "step", "spike")
STEPS = 5


def diurnal_factor(hourly: list[float], t: float, duration: float) -> float:
    """The hourly profile at run time ``t`` (the day compressed into ``duration``), peak = 1."""
    top = max(hourly) or 1.0
    x = min(max(t / duration, 0.0), 1.0) * 24.0 - 0.5  # hour midpoints at h + 0.5
    h0 = int(x // 1) % 24
    frac = x - (x // 1)
    a, b = hourly[h0], hourly[(h0 + 1) % 24]
    return (a + (b - a) * frac) / top


def factor(shape: str, t: float, duration: float, hourly: list[float] | None = None) -> float:
    """The share of the peak load at run time ``t`` for a named shape."""
    if shape == "diurnal":
        return diurnal_factor(hourly or [1.0] * 24, t, duration)
    if shape == "step":
        return min(STEPS, int(t / duration * STEPS) + 1) / STEPS
    if shape == "spike":
        return 1.0 if 0.6 <= t / duration < 0.8 else 0.2
    raise LoadTestError(f"--shape: unknown shape {shape!r} (one of {', '.join(SHAPES)})")


def rate_factor(cfg: Any, t: float) -> float:
    """The shape's factor for a run configuration (1 without a shape)."""
    if not cfg.shape:
        return 1.0
    return factor(cfg.shape, t, cfg.duration_s, cfg.hourly)
