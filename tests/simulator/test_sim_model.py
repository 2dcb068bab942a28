"""Behaviour of the model's actors on small scenarios (failures, shifts, baulking, warm-up)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sim_helpers import small, write

from simulator.runner import simulate
from simulator.scenario import load


def _run(tmp_path: Path, reps: int = 2, **changes) -> dict:
    summary, _ = simulate(load(write(tmp_path, small(**changes))), replications=reps, jobs=1)
    return summary


def test_no_node_up_fails_the_requests_of_that_time(tmp_path: Path) -> None:
    fails = [
        {"node": 0, "at_hour": 10, "duration_minutes": 60},
        {"node": 1, "at_hour": 10.5, "duration_minutes": 60},
    ]
    s = _run(tmp_path, gateway__failures=fails)
    g = s["gateway"]
    # both nodes down 10:30-11:00: about half an hour of the day's traffic fails
    per_hour_at_10 = g["requests"] / 24 * 1.5
    assert 0.1 * per_hour_at_10 < g["failed"] < 1.5 * per_hour_at_10
    base = _run(tmp_path)
    assert base["gateway"]["failed"] == 0


def test_fewer_counters_on_shift_mean_longer_waits(tmp_path: Path) -> None:
    full = _run(tmp_path)
    half = _run(tmp_path, centers__shifts=[{"start": 9, "end": 17, "share": 0.6}])
    assert half["centers"]["utilization"] > full["centers"]["utilization"]
    assert half["centers"]["wait_minutes"]["mean"] > full["centers"]["wait_minutes"]["mean"]


def test_overload_baulks_and_reneges(tmp_path: Path) -> None:
    s = _run(tmp_path, centers__staff=2, centers__baulk_queue=10, centers__patience_minutes=20)
    c = s["centers"]
    assert c["baulked"] > 0 and c["reneged"] > 0
    assert c["served"] + c["baulked"] + c["reneged"] == pytest.approx(c["visits"], rel=0.02)


def test_warmup_hours_drop_early_observations(tmp_path: Path) -> None:
    all_day = _run(tmp_path)
    late = _run(tmp_path, simulation__warmup_hours=13)
    assert late["centers"]["visits"] < 0.6 * all_day["centers"]["visits"]
    # the calibration extrapolates from what was observed, so the totals still agree
    a = all_day["calibration"]["center_visits_first_half"]["mean"]
    b = late["calibration"]["center_visits_first_half"]["mean"]
    assert b == pytest.approx(a, rel=0.1)


def test_a_week_uses_the_weekday_profile(tmp_path: Path) -> None:
    s = _run(tmp_path, reps=1, simulation__days=7, simulation__start_weekday="mon")
    # 5 working days of 2400 + Saturday 0.3 + Sunday 0
    assert s["centers"]["visits"] == pytest.approx(2400 * 5.3, rel=0.05)
    assert s["centers"]["visits_ci95"] is None  # one replication: no CI, never a fake zero
