"""The command line: help, run outputs, calibration from bench.json, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sim_helpers import cli, small, write

from simulator.__main__ import main

SUBCOMMANDS = ("run", "validate", "capacity", "sweep", "bench")


def test_help_lists_subcommands() -> None:
    r = cli("--help")
    assert r.returncode == 0
    for sub in SUBCOMMANDS:
        assert sub in r.stdout


@pytest.mark.parametrize("sub", [s for s in SUBCOMMANDS if s != "bench"])  # bench: tests/bench
def test_each_subcommand_has_help(sub: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as ei:
        main([sub, "--help"])
    assert ei.value.code == 0
    assert "usage:" in capsys.readouterr().out


def test_run_writes_summary_and_report(tmp_path: Path, small_file: Path) -> None:
    out = tmp_path / "out"
    assert main(["run", str(small_file), "--out", str(out)]) == 0
    s = json.loads((out / "summary.json").read_text())
    w = s["centers"]["wait_minutes"]
    for k in ("mean", "p50", "p95", "ci95"):
        assert isinstance(w[k], float | int), k
    assert s["centers"]["visits"] > 0 and s["centers"]["visits_ci95"] is not None
    assert 0 < s["centers"]["utilization"] < 1 and s["centers"]["utilization_ci95"] is not None
    lat = s["gateway"]["latency_ms"]
    assert lat["p99"] >= lat["p50"] > 0 and lat["ci95"] is not None
    assert s["gateway"]["requests"] > 0 and s["gateway"]["utilization"] > 0
    assert s["calibration"]["center_visits_first_half"]["target"] == 300_000
    assert s["scenario"]["replications"] == 2
    html = (out / "report.html").read_text()
    for png in (
        "arrivals_by_hour.png",
        "queue_wait_by_hour.png",
        "utilization_by_centre.png",
        "gateway_latency.png",
    ):
        assert (out / png).stat().st_size > 1000
        assert png in html
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_every_mean_carries_its_half_width(tmp_path: Path, small_file: Path) -> None:
    out = tmp_path / "o"
    assert main(["run", str(small_file), "--out", str(out)]) == 0
    s = json.loads((out / "summary.json").read_text())

    def walk(node: dict, path: str) -> None:
        for k, v in node.items():
            if isinstance(v, dict):
                walk(v, f"{path}.{k}")
            elif k == "mean":
                assert "ci95" in node, path

    for sect in ("centers", "gateway", "agencies", "calibration"):
        walk(s[sect], sect)
    for k in ("visits", "utilization", "served", "reneged"):
        assert f"{k}_ci95" in s["centers"]


def test_calibrate_from_bench_json(tmp_path: Path, small_file: Path) -> None:
    bench = tmp_path / "bench.json"
    bench.write_text(
        json.dumps(
            {
                "hello_rps": 20000,
                "query_rps": 2000,
                "push_records_per_s": 50000,
                "pull_records_per_s": 100000,
            }
        )
    )
    out = tmp_path / "cal"
    assert main(["run", str(small_file), "--out", str(out), "--calibrate", str(bench)]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert "calibrated from" in s["gateway"]["service_time_source"]
    # keyed reads 0.5 ms, pulls 1 ms, pushes 2 ms: the mean latency is about a millisecond
    assert 0.3 < s["gateway"]["latency_ms"]["mean"] < 3


@pytest.mark.parametrize(
    "content,key",
    [
        ({"query_rps": 1000, "push_records_per_s": 1}, "pull_records_per_s"),
        ({"query_rps": -5, "push_records_per_s": 1, "pull_records_per_s": 1}, "query_rps"),
        ({"query_rps": "fast", "push_records_per_s": 1, "pull_records_per_s": 1}, "query_rps"),
    ],
)
def test_bad_bench_json(
    tmp_path: Path, small_file: Path, content: dict, key: str, capsys: pytest.CaptureFixture
) -> None:
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps(content))
    out = tmp_path / "x"
    assert main(["run", str(small_file), "--out", str(out), "--calibrate", str(bench)]) == 2
    assert key in capsys.readouterr().err
    assert not out.exists()


def test_bad_scenario_exits_2_without_traceback_or_output(tmp_path: Path) -> None:
    scn = write(tmp_path, small(centers__staff=0))
    out = tmp_path / "out"
    r = cli("run", str(scn), "--out", str(out))
    assert r.returncode == 2
    assert "centers.staff" in r.stderr and str(scn) in r.stderr
    assert "Traceback" not in r.stderr
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["scn.toml"]


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["run", "SCN", "--out", "OUT", "--sample", "0:3"], "1:k"),
        (["run", "SCN", "--out", "OUT", "--sample", "1:0"], "1:k"),
        (["run", "SCN", "--out", "OUT", "--replications", "0"], "must be >= 1"),
        (["run", "SCN", "--out", "OUT", "--set", "centers.staff"], "key=value"),
        (["run", "SCN"], "--out"),
        (["run", "SCN", "--out", "OUT", "--bogus"], "unrecognized"),
        (["explode"], "invalid choice"),
    ],
)
def test_bad_flags_exit_2(
    tmp_path: Path, small_file: Path, argv: list[str], needle: str, capsys: pytest.CaptureFixture
) -> None:
    argv = [
        str(small_file) if a == "SCN" else str(tmp_path / "o") if a == "OUT" else a for a in argv
    ]
    with pytest.raises(SystemExit) as ei:
        main(argv)
    assert ei.value.code == 2
    assert needle in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_bad_override_and_existing_output(
    tmp_path: Path, small_file: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "o"
    assert main(["run", str(small_file), "--out", str(out), "--set", "gateway.nodes=-1"]) == 2
    assert "gateway.nodes" in capsys.readouterr().err
    out.mkdir()
    (out / "keep.txt").write_text("x")
    assert main(["run", str(small_file), "--out", str(out)]) == 2
    assert "--force" in capsys.readouterr().err
    assert (out / "keep.txt").exists()


def test_unknown_key_from_cli(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    scn = write(tmp_path, small(centers__counters=5))
    assert main(["run", str(scn), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "centers.counters" in err and "unknown key" in err
