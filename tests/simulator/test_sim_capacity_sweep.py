"""Capacity search, sweeps (process pool; Dask optional) and the bench of the model."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from sim_helpers import small, write

from bench.simulator import main as bench_simulator
from simulator.__main__ import main
from simulator.capacity import search
from simulator.targets import parse_target


@pytest.fixture
def busy(tmp_path: Path) -> Path:
    return write(
        tmp_path,
        small(
            centers__staff=12,
            channels=[],
            eservices={},
            agencies={},
            demand__gateway_requests_per_day=20000,
        ),
    )


def test_capacity_finds_the_minimum_staff(busy: Path, capsys: pytest.CaptureFixture) -> None:
    target = parse_target("centers.wait_minutes.p95<=10")
    best, rows = search(str(busy), [target], "centers.staff", 1, 40, [], 2, None, 1, False)
    assert best is not None
    by = {r["centers.staff"]: r for r in rows}
    assert by[best]["meets"] and by[best]["centers.wait_minutes.p95"] <= 10
    assert best - 1 in by and not by[best - 1]["meets"]  # the value below was tried and missed
    code = main(
        [
            "capacity",
            str(busy),
            "--target",
            "centers.wait_minutes.p95<=10",
            "--vary",
            "centers.staff",
            "--replications",
            "2",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0 and f"minimum centers.staff = {best}" in out
    assert "centers.wait_minutes.p95" in out  # the table of values tried


def test_capacity_on_gateway_nodes(busy: Path, capsys: pytest.CaptureFixture) -> None:
    code = main(
        [
            "capacity",
            str(busy),
            "--target",
            "gateway.latency_ms.p99<=120",
            "--vary",
            "gateway.nodes",
            "--replications",
            "2",
            "--set",
            "gateway.workers_per_node=1",
            "--set",
            "gateway.service_time.mean_ms=20",
            "--set",
            "demand.gateway_requests_per_day=400000",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "minimum gateway.nodes =" in out
    assert int(out.rsplit("=", 1)[1]) >= 2


@pytest.mark.parametrize(
    "target", ["centers.wait_minutes.p95=<15", "p95 <= fifteen", "<=15", "centers.wait_minutes.p95"]
)
def test_bad_target_syntax(busy: Path, target: str, capsys: pytest.CaptureFixture) -> None:
    assert main(["capacity", str(busy), "--target", target, "--vary", "centers.staff"]) == 2
    assert "expected METRIC OP NUMBER" in capsys.readouterr().err


def test_bad_vary_and_unknown_metric(busy: Path, capsys: pytest.CaptureFixture) -> None:
    assert (
        main(
            [
                "capacity",
                str(busy),
                "--target",
                "centers.wait_minutes.p95<=15",
                "--vary",
                "centers.open_hours",
            ]
        )
        == 2
    )
    assert "can vary one of" in capsys.readouterr().err
    assert (
        main(
            [
                "capacity",
                str(busy),
                "--target",
                "centers.wait.p95<=15",
                "--vary",
                "centers.staff",
                "--replications",
                "2",
            ]
        )
        == 2
    )
    assert "unknown metric" in capsys.readouterr().err


def test_sweep_grid_pool_equals_sequential(
    busy: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    args = [
        "sweep",
        str(busy),
        "--set",
        "gateway.nodes=1,2",
        "--set",
        "centers.staff=8,12",
        "--replications",
        "2",
    ]
    assert main([*args, "--jobs", "2", "--out", str(tmp_path / "pool.csv")]) == 0
    assert main([*args, "--jobs", "1", "--out", str(tmp_path / "seq.json")]) == 0
    capsys.readouterr()
    with (tmp_path / "pool.csv").open() as fh:
        pool = list(csv.DictReader(fh))
    seq = json.loads((tmp_path / "seq.json").read_text())
    assert [(r["gateway.nodes"], r["centers.staff"]) for r in seq] == [
        (1, 8),
        (1, 12),
        (2, 8),
        (2, 12),
    ]
    assert len(pool) == 4
    for p, s in zip(pool, seq, strict=True):
        assert float(p["centers.wait_minutes.p95"]) == pytest.approx(s["centers.wait_minutes.p95"])
    # more counters, shorter waits
    assert seq[1]["centers.wait_minutes.p95"] < seq[0]["centers.wait_minutes.p95"]


def test_sweep_bad_input(busy: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["sweep", str(busy)]) == 2
    assert "--set" in capsys.readouterr().err
    assert main(["sweep", str(busy), "--set", "centers.staff=8,0"]) == 2
    assert "centers.staff" in capsys.readouterr().err
    assert (
        main(["sweep", str(busy), "--set", "centers.staff=8", "--out", str(tmp_path / "t.xlsx")])
        == 2
    )
    assert ".csv or .json" in capsys.readouterr().err


def test_sweep_on_dask(busy: Path, capsys: pytest.CaptureFixture) -> None:
    try:
        import dask.distributed  # noqa: F401
    except ImportError:
        assert main(["sweep", str(busy), "--set", "centers.staff=8", "--dask", "local"]) == 2
        assert "pip install onestop-exchange[cluster]" in capsys.readouterr().err
        return
    assert (
        main(
            [
                "sweep",
                str(busy),
                "--set",
                "centers.staff=8,12",
                "--dask",
                "local",
                "--replications",
                "2",
            ]
        )
        == 0
    )


def test_bench_compares_with_bare_simpy(
    busy: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "bench.json"
    assert bench_simulator([str(busy), "--json", str(out)]) == 0  # python -m bench simulator
    b = json.loads(out.read_text())
    assert b["bare_simpy_mmc"]["customers"] == b["full"]["entities"] > 0
    assert b["full"]["events"] > 0 and b["ratio_cpu"] > 0
    assert "full / bare" in capsys.readouterr().out


def test_validate_refuses_a_non_validation_scenario(
    busy: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(["validate", str(busy)]) == 2
    assert "validation" in capsys.readouterr().err
