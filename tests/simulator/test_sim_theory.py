"""Erlang C / M/M/c formulas against closed forms."""

from __future__ import annotations

import math

import pytest

from simulator import theory
from simulator.stats import mean_ci


def test_mm1_is_closed_form() -> None:
    lam, mu = 0.8, 1.0
    assert theory.erlang_c(lam, mu, 1) == pytest.approx(0.8)
    assert theory.mean_wait(lam, mu, 1) == pytest.approx(lam / (mu * (mu - lam)))


def test_mm2_known_value() -> None:
    # a = 1, c = 2: P(wait) = 1/3, Wq = (1/3) / (2 - 1) = 1/3.
    assert theory.erlang_c(1.0, 1.0, 2) == pytest.approx(1 / 3)
    assert theory.mean_wait(1.0, 1.0, 2) == pytest.approx(1 / 3)
    assert theory.utilisation(1.0, 1.0, 2) == pytest.approx(0.5)
    assert theory.mean_queue(1.0, 1.0, 2) == pytest.approx(1 / 3)


def test_wait_percentiles() -> None:
    lam, mu, c = 1.8, 1.0, 2
    pc = theory.erlang_c(lam, mu, c)
    t95 = theory.wait_percentile(lam, mu, c, 95)
    assert pc * math.exp(-(c * mu - lam) * t95) == pytest.approx(0.05)
    assert theory.wait_percentile(lam, mu, c, 10) == 0.0  # most customers do not wait


def test_large_c_is_stable() -> None:
    assert 0 < theory.erlang_c(950.0, 1.0, 1000) < 1


@pytest.mark.parametrize("lam,mu,c", [(1.0, 1.0, 1), (2.0, 1.0, 2), (0.0, 1.0, 1), (1, 1, 0)])
def test_no_steady_state_is_refused(lam: float, mu: float, c: int) -> None:
    with pytest.raises(ValueError):
        theory.mean_wait(lam, mu, c)


def test_student_t_half_width() -> None:
    m, h = mean_ci([1.0, 2.0, 3.0])
    assert m == 2.0
    assert h == pytest.approx(4.302653 * 1.0 / math.sqrt(3), rel=1e-5)
    m, h = mean_ci([5.0])
    assert m == 5.0 and math.isnan(h)


def test_progress_bar_only_on_a_terminal() -> None:
    import io

    from simulator.progress import Progress

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    quiet = io.StringIO()
    p = Progress("x", quiet)
    p.update(0.5)
    p.done()
    assert quiet.getvalue() == ""
    tty = Tty()
    p = Progress("sim", tty)
    p.update(0.5)
    p.done()
    assert "50%" in tty.getvalue() and "100%" in tty.getvalue()


def test_tabulated_t_quantiles_match_scipy(monkeypatch: pytest.MonkeyPatch) -> None:
    from scipy import stats as st

    import simulator.stats as ss

    monkeypatch.setattr(ss, "_st", None)
    for df in (1, 4, 10, 30, 31, 60, 200):
        assert ss.t_quantile(df) == pytest.approx(st.t.ppf(0.975, df), abs=2e-4)
