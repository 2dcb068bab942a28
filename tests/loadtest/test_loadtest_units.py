"""Durations, the request mix from scenario files, shapes, compare."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from loadtest import hdr
from loadtest.compare import compare, format_table
from loadtest.errors import LoadTestError
from loadtest.mix import load_mix
from loadtest.profile import diurnal_factor, factor
from loadtest.units import parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("2m", 120), ("1h30m", 5400), ("500ms", 0.5), ("12", 12), ("1.5s", 1.5)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "abc", "10x", "-5s", "0", "s30", "5s junk", "nan", "inf"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(LoadTestError, match="--duration"):
        parse_duration(text, "--duration")


SCENARIO = """
[simulation]
days = 1
replications = 2
[demand]
center_visits_per_day = 200000
gateway_requests_per_day = 1480000
hourly_profile = "online"
background_mix = { keyed_read = 0.5, pull = 0.25, push = 0.25 }
[centers]
count = 200
staff = 100
"""


def test_mix_comes_from_the_scenario(tmp_path: Path) -> None:
    p = tmp_path / "s.toml"
    p.write_text(SCENARIO)
    mix = load_mix(p, catalog_share=0.0)
    assert mix.shares["read"] == pytest.approx(0.5)
    assert mix.shares["push"] == pytest.approx(0.25)
    assert sum(mix.shares.values()) == pytest.approx(1.0)
    assert len(mix.hourly) == 24 and max(mix.hourly) > min(mix.hourly)


def test_default_mix_without_scenario() -> None:
    mix = load_mix(None)
    assert sum(mix.shares.values()) == pytest.approx(1.0)
    assert mix.shares["read"] > mix.shares["pull"] > mix.shares["push"] > 0


def test_bad_scenario_is_a_clear_error(tmp_path: Path) -> None:
    p = tmp_path / "s.toml"
    p.write_text(SCENARIO.replace('"online"', '"sometimes"'))
    with pytest.raises(LoadTestError, match="demand.hourly_profile"):
        load_mix(p)
    with pytest.raises(LoadTestError, match="not found|cannot read"):
        load_mix(tmp_path / "missing.toml")


def test_shapes() -> None:
    hourly = [0.0] * 24
    hourly[12] = 2.0
    assert diurnal_factor(hourly, 12.5 / 24 * 60, 60) == pytest.approx(1.0)
    assert diurnal_factor(hourly, 3 / 24 * 60, 60) == pytest.approx(0.0)
    assert [factor("step", t, 50) for t in (0, 15, 49)] == [0.2, 0.4, 1.0]
    assert factor("spike", 35, 50) == 1.0 and factor("spike", 5, 50) == 0.2
    with pytest.raises(LoadTestError, match="unknown shape"):
        factor("zigzag", 1, 10)


SHAPE_CHECK = """
from loadtest.shapes import DiurnalShape, SpikeShape, StepShape
shape = StepShape(peak_users=10, duration_s=100, spawn_rate=5)
assert shape.tick() == (2, 5.0), shape.tick()
shape.start_time -= 100
assert shape.tick() is None
assert SpikeShape(peak_users=10, duration_s=100).tick()[0] == 2
d = DiurnalShape(peak_users=100, duration_s=24, hourly=list(range(1, 25)))
d.start_time -= 23.5
assert d.tick()[0] == 100, d.tick()
print("ok")
"""


def test_locust_shape_classes() -> None:
    # in a child process: importing locust monkey-patches the interpreter with gevent
    res = subprocess.run(
        [sys.executable, "-c", SHAPE_CHECK], capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 0 and "ok" in res.stdout, res.stderr


def test_the_test_process_never_imports_locust() -> None:
    assert "locust" not in sys.modules


def _run_summary() -> dict:
    h = hdr.new_histogram()
    for v in range(1, 101):
        hdr.record_ms(h, v)
    read = hdr.summary(h, 10.0)
    return {"kinds": {"read": read, "catalog": read}, "total": read}


def test_compare_measured_with_simulated(tmp_path: Path) -> None:
    sim = {
        "scenario": {"days": 1},
        "gateway": {
            "requests": {"mean": 864000.0, "ci95": 10.0},
            "peak_requests_per_s": {"mean": 20.0},
            "latency_ms": {"p50": 1.0, "p99": 5.0},
            "by_kind": {"keyed_read": {"mean": 432000.0}, "push": {"mean": 86400.0}},
        },
    }
    result = compare(_run_summary(), sim)
    read = result["kinds"]["read"]
    assert read["simulated"]["mean_rps"] == pytest.approx(5.0)
    assert read["simulated"]["peak_rps"] == pytest.approx(10.0)
    assert read["rps_vs_sim_peak"] == pytest.approx(1.0)
    assert read["p99_measured_over_sim"] == pytest.approx(99.0 / 5.0, rel=0.01)
    assert result["kinds"]["catalog"]["note"] == "not in the simulation"
    assert result["kinds"]["push"]["note"] == "not measured in this run"
    table = format_table(result)
    assert "read" in table and "not in the simulation" in table
    json.dumps(result)  # serialisable


def test_compare_refuses_foreign_files() -> None:
    with pytest.raises(LoadTestError, match="kinds"):
        compare({"x": 1}, {"gateway": {}})
    with pytest.raises(LoadTestError, match="gateway"):
        compare(_run_summary(), {"centers": {}})
