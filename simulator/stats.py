"""Statistics over replications: means with Student-t 95 % half-widths, percentiles."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

try:  # scipy is optional at run time: the 95 % quantiles are also tabulated below
    from scipy import stats as _st
except ImportError:  # pragma: no cover - exercised when scipy is absent
    _st = None

# Two-sided 95 % Student-t quantiles t(0.975, df) for df = 1..30.
_T975 = (
    12.706205,
    4.302653,
    3.182446,
    2.776445,
    2.570582,
    2.446912,
    2.364624,
    2.306004,
    2.262157,
    2.228139,
    2.200985,
    2.178813,
    2.160369,
    2.144787,
    2.131450,
    2.119905,
    2.109816,
    2.100922,
    2.093024,
    2.085963,
    2.079614,
    2.073873,
    2.068658,
    2.063899,
    2.059539,
    2.055529,
    2.051831,
    2.048407,
    2.045230,
    2.042272,
)


def t_quantile(df: int, level: float = 0.95) -> float:
    """Two-sided Student-t quantile for `df` degrees of freedom."""
    if _st is not None:
        return float(_st.t.ppf(0.5 + level / 2, df))
    if level != 0.95:
        raise ValueError("without scipy only the 95 % level is available")
    if df <= len(_T975):
        return _T975[df - 1]
    z = 1.959964  # Cornish-Fisher expansion, error < 1e-4 for df > 30
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


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
