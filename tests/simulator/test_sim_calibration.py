"""The Shanghai 2019 scenario reproduces the city's figures (reduced run: sample 1:10)."""

from __future__ import annotations

import numpy as np
import pytest
from sim_helpers import SCENARIOS, small, write

from simulator.runner import simulate
from simulator.scenario import load

pytestmark = pytest.mark.slow  # long simulations


@pytest.fixture(scope="module")
def shanghai() -> dict:
    scn = load(SCENARIOS / "shanghai-2019.toml")
    summary, _ = simulate(scn, replications=2, sample=10, jobs=2)
    return summary


def test_half_year_visits_and_yearly_requests_within_3_percent(shanghai: dict) -> None:
    cal = shanghai["calibration"]
    v, r = cal["center_visits_first_half"], cal["gateway_requests_year"]
    assert v["target"] == 36_450_000 and r["target"] == 540_000_000
    assert abs(v["error_pct"]) <= 3.0, v
    assert abs(r["error_pct"]) <= 3.0, r
    assert cal["within_tolerance"] is True
    assert "extrapolated" in cal["method"]


def test_shanghai_day_is_plausible(shanghai: dict) -> None:
    c, g = shanghai["centers"], shanghai["gateway"]
    assert c["count"] == 200 and c["staff_per_centre"] == 100
    assert 0.5 < c["utilization"] < 1.0
    assert c["wait_minutes"]["p95"] >= c["wait_minutes"]["p50"] >= 0
    assert 0 < g["utilization"] < 0.2  # ~17 requests/s average: the gateway is nearly idle
    assert g["latency_ms"]["p99"] > g["latency_ms"]["p50"] > 0
    assert g["requests"] == pytest.approx(1_843_222, rel=0.03)


def test_sampling_reproduces_the_full_run_within_cis(tmp_path) -> None:
    data = small(
        centers__count=16,
        centers__staff=8,
        demand__center_visits_per_day=7000,
        demand__gateway_requests_per_day=160000,
        channels=[],
        eservices={},
        agencies={"count": 4},
        gateway={
            "nodes": 1,
            "workers_per_node": 1,
            "service_time": {"dist": "exponential", "mean_ms": 25.0},
        },
    )
    scn = load(write(tmp_path, data))
    full, _ = simulate(scn, replications=4, sample=1, jobs=2)
    part, _ = simulate(scn, replications=4, sample=4, jobs=2)

    def close(a: float, ha: float, b: float, hb: float) -> bool:
        return abs(a - b) <= ha + hb

    for sect, key in (
        ("centers", "utilization"),
        ("gateway", "utilization"),
        ("gateway", "requests"),
        ("centers", "visits"),
    ):
        a, b = full[sect], part[sect]
        assert close(a[key], a[f"{key}_ci95"], b[key], b[f"{key}_ci95"]), (
            sect,
            key,
            a[key],
            b[key],
        )
    for sect, block, key in (
        ("centers", "wait_minutes", "mean"),
        ("centers", "wait_minutes", "p95"),
        ("gateway", "latency_ms", "mean"),
        ("gateway", "latency_ms", "p99"),
    ):
        a, b = full[sect][block], part[sect][block]
        ci = "ci95" if key == "mean" else f"{key}_ci95"
        assert close(a[key], a[ci], b[key], b[ci]), (sect, block, key, a[key], b[key])
    assert part["scenario"]["sample"] == "1:4"
    assert np.isfinite(part["gateway"]["latency_ms"]["p99"])
