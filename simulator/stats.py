"""Statistics over replications: means with Student-t 95 % half-widths, percentiles."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats as _st


def t_quantile(df: int, level: float = 0.95) -> float:
    """Two-sided Student-t quantile for `df` degrees of freedom."""
    return float(_st.t.ppf(0.5 + level / 2, df))


def mean_ci(values: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """Mean of replication values and the half-width of its confidence interval.

    With one replication the half-width is NaN (unknown), never zero.
    """
    x = np.asarray([v for v in values], dtype=float)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return math.nan, math.nan
    m = float(x.mean())
    if len(x) < 2:
        return m, math.nan
    s = float(x.std(ddof=1))
    return m, t_quantile(len(x) - 1, level) * s / math.sqrt(len(x))


def percentile(values: np.ndarray, q: float) -> float:
    """The q-th percentile (0-100), NaN for no observations."""
    if len(values) == 0:
        return math.nan
    return float(np.percentile(values, q))


def after_warmup(times: np.ndarray, values: np.ndarray, warmup: float) -> np.ndarray:
    """Observations whose entity arrived at or after the warm-up."""
    return values[times >= warmup]


def block(values: Sequence[float], digits: int = 6) -> dict[str, float | None]:
    """{"mean", "ci95"} for a metric observed once per replication."""
    m, h = mean_ci(values)
    return {"mean": rnd(m, digits), "ci95": rnd(h, digits)}


def rnd(x: float, digits: int = 6) -> float | None:
    """Round for JSON; NaN/inf become null."""
    if x is None or not math.isfinite(x):
        return None
    return float(f"{x:.{digits}g}")
