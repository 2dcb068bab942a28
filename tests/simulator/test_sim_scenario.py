"""Scenario files: decoding, derived values, what-ifs and every kind of bad value."""

from __future__ import annotations

from pathlib import Path

import pytest
from sim_helpers import SCENARIOS, small, write

from simulator.scenario import ScenarioError, load


def _err(tmp_path: Path, data: dict, **over) -> ScenarioError:
    p = write(tmp_path, data)
    with pytest.raises(ScenarioError) as ei:
        load(p, over or None)
    assert str(p) in str(ei.value)
    return ei.value


def test_design_minimum_keys_load(tmp_path: Path) -> None:
    data = {
        "simulation": {"days": 1, "warmup_hours": 0, "replications": 5, "seed": 1},
        "demand": {
            "center_visits_per_day": 200000,
            "gateway_requests_per_day": 1480000,
            "hourly_profile": "flat",
        },
        "centers": {
            "count": 200,
            "staff": 100,
            "open_hours": [9, 17],
            "service_time": {"dist": "exponential", "mean_minutes": 12},
        },
        "gateway": {
            "nodes": 1,
            "workers_per_node": 2,
            "service_time": {"dist": "exponential", "mean_ms": 0.05},
        },
    }
    s = load(write(tmp_path, data))
    assert s.demand.background_requests_per_day == 1480000  # no channel issues requests


def test_background_is_what_modelled_sources_do_not_issue(tmp_path: Path) -> None:
    s = load(write(tmp_path, small()))
    assert 0 < s.demand.background_requests_per_day < 30000


@pytest.mark.parametrize(
    "name",
    ["shanghai-2019", "growth-10x", "channel-shift", "deadline-surge", "node-loss", "mmc-rho080"],
)
def test_shipped_scenarios_load(name: str) -> None:
    s = load(SCENARIOS / f"{name}.toml")
    assert s.centers.count >= 1


def test_channel_shift_moves_30_percent_of_visits_online() -> None:
    base = load(SCENARIOS / "shanghai-2019.toml")
    shift = load(SCENARIOS / "channel-shift.toml")
    assert shift.demand.center_visits_per_day == pytest.approx(
        0.7 * base.demand.center_visits_per_day
    )
    moved = sum(c.applications_per_day for c in shift.channels) - sum(
        c.applications_per_day for c in base.channels
    )
    assert moved == pytest.approx(0.3 * base.demand.center_visits_per_day)
    # the background agency traffic is that of the base city, not re-derived
    assert shift.demand.background_requests_per_day == pytest.approx(
        base.demand.background_requests_per_day
    )


@pytest.mark.parametrize(
    "change,key",
    [
        ({"centers__counters": 3}, "centers.counters"),
        ({"simulation__speed": 3}, "simulation.speed"),
        ({"bogus": 1}, "bogus"),
    ],
)
def test_unknown_keys_are_named(tmp_path: Path, change: dict, key: str) -> None:
    assert _err(tmp_path, small(**change)).key == key


@pytest.mark.parametrize(
    "change,key",
    [
        ({"demand__center_visits_per_day": -5}, "demand.center_visits_per_day"),
        ({"demand__center_visits_per_day": 0}, "demand.center_visits_per_day"),
        ({"demand__gateway_requests_per_day": 0}, "demand.gateway_requests_per_day"),
        ({"centers__staff": 0}, "centers.staff"),
        ({"centers__count": -1}, "centers.count"),
        ({"centers__service_time": {"mean_minutes": 0}}, "centers.service_time.mean_minutes"),
        ({"centers__service_time": {"dist": "weibull"}}, "centers.service_time.dist"),
        ({"gateway__nodes": 0}, "gateway.nodes"),
        ({"gateway__service_time": {"mean_ms": -1}}, "gateway.service_time.mean_ms"),
        ({"centers__open_hours": [17, 9]}, "centers.open_hours"),
        ({"centers__open_hours": [9, 25]}, "centers.open_hours"),
        ({"centers__open_hours": [9]}, "centers.open_hours"),
        ({"demand__hourly_profile": [1.0] * 23}, "demand.hourly_profile"),
        ({"demand__hourly_profile": "lunchtime"}, "demand.hourly_profile"),
        ({"demand__hourly_profile": [0.0] * 24}, "demand.hourly_profile"),
        ({"demand__weekday_profile": [1, 1, 1]}, "demand.weekday_profile"),
        (
            {"channels": [{"name": "app", "applications_per_day": -1}]},
            "channels[0].applications_per_day",
        ),
        (
            {"channels": [{"name": "x", "applications_per_day": 1, "hourly_profile": [1] * 25}]},
            "channels[0].hourly_profile",
        ),
        ({"simulation__replications": 0}, "simulation.replications"),
        ({"simulation__days": "two"}, "simulation.days"),
        ({"simulation__warmup_hours": 30}, "simulation.warmup_hours"),
        (
            {"gateway__failures": [{"node": 5, "at_hour": 10, "duration_minutes": 5}]},
            "gateway.failures[0].node",
        ),
        (
            {"gateway__service_time_by_kind": {"delete": {"mean_ms": 1}}},
            "gateway.service_time_by_kind.delete",
        ),
        ({"centers__shifts": [{"start": 9, "end": 12, "share": 0.5}]}, "centers.shifts"),
        ({"demand__gateway_requests_per_day": 10}, "demand.gateway_requests_per_day"),
        ({"demand__center_visits_per_day": None}, "demand.center_visits_per_day"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, change: dict, key: str) -> None:
    e = _err(tmp_path, small(**change))
    assert e.key == key, str(e)
    assert e.reason


def test_utilisation_at_or_above_one_in_a_validation_scenario(tmp_path: Path) -> None:
    data = {
        "validation": {"kind": "mmc"},
        "simulation": {"days": 1, "replications": 2},
        "demand": {"center_visits_per_day": 8640, "gateway_requests_per_day": 1},
        "centers": {
            "count": 1,
            "staff": 1,
            "open_hours": [0, 24],
            "service_time": {"mean_minutes": 10 / 60},
        },
    }
    e = _err(tmp_path, data)  # 0.1/s * 10 s = 1.0
    assert e.key == "centers.staff" and "utilisation" in e.reason


def test_not_toml_and_missing_file(tmp_path: Path) -> None:
    p = tmp_path / "bad.toml"
    p.write_text("[simulation\n")
    with pytest.raises(ScenarioError, match="invalid TOML"):
        load(p)
    with pytest.raises(ScenarioError, match="file not found"):
        load(tmp_path / "nope.toml")


def test_overrides_are_checked_like_file_values(tmp_path: Path) -> None:
    p = write(tmp_path, small())
    assert load(p, {"centers.staff": 7}).centers.staff == 7
    with pytest.raises(ScenarioError) as ei:
        load(p, {"centers.staff": 0})
    assert ei.value.key == "centers.staff"


def test_extends_merges_and_refuses_cycles(tmp_path: Path) -> None:
    write(tmp_path, small(), "base.toml")
    (tmp_path / "child.toml").write_text('extends = "base.toml"\n[centers]\nstaff = 3\n')
    s = load(tmp_path / "child.toml")
    assert s.centers.staff == 3 and s.centers.count == 4
    (tmp_path / "a.toml").write_text('extends = "b.toml"\n')
    (tmp_path / "b.toml").write_text('extends = "a.toml"\n')
    with pytest.raises(ScenarioError, match="circular"):
        load(tmp_path / "a.toml")
    (tmp_path / "c.toml").write_text('extends = "missing.toml"\n')
    with pytest.raises(ScenarioError) as ei:
        load(tmp_path / "c.toml")
    assert ei.value.key == "extends" and "missing.toml" in ei.value.reason
