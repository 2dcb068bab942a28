"""The model against queueing theory: M/M/c mean waits vs Erlang C, and Little's law.

Same cases as `python -m simulator validate` (fixed seeds; run lengths chosen so the
standard error is ~1-2 % of the mean wait, see simulator/validate.py).
"""

from __future__ import annotations

import pytest

from simulator.scenario import from_dict
from simulator.validate import BUILTIN, Row, check, mmc_dict

pytestmark = pytest.mark.slow  # long simulations


@pytest.fixture(scope="module", params=BUILTIN, ids=lambda c: f"rho={c[0]}")
def row(request: pytest.FixtureRequest) -> Row:
    rho, c, n, reps = request.param
    return check(from_dict(mmc_dict(rho, c, n, reps), f"test:rho={rho}"), jobs=2)


def test_mean_wait_within_5_percent_of_erlang_c(row: Row) -> None:
    assert abs(row.error_pct) <= 5.0, row


def test_erlang_c_inside_the_confidence_interval(row: Row) -> None:
    assert row.theory_in_ci, row


def test_littles_law_within_2_percent(row: Row) -> None:
    assert abs(row.little_error_pct) <= 2.0, row
    assert row.little_L > 0
