"""The CLI: bad input gives a clear message and a non-zero exit, never a traceback;
the SLO gate fails a run that breaches an objective; the bench harness writes bench.json."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from loadtest_helpers import run_cli

from harness import free_port


def _run_args(host: str, city: tuple[Path, Path], out: Path, *extra: str) -> list[str]:
    catalog, keyring = city
    return [
        "run",
        "--host",
        host,
        "--keyring",
        str(keyring),
        "--catalog",
        str(catalog),
        "--out",
        str(out),
        *extra,
    ]


def _clean_error(res, *needles: str) -> None:
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    assert "Traceback" not in res.stderr + res.stdout
    for n in needles:
        assert n in res.stderr, res.stderr


def test_help_lists_the_commands() -> None:
    res = run_cli("--help")
    assert res.returncode == 0
    for cmd in ("run", "seed", "bench", "compare", "worker"):
        assert cmd in res.stdout


def test_unreachable_host(tmp_path: Path, city_files) -> None:
    host = f"http://127.0.0.1:{free_port()}"
    res = run_cli(*_run_args(host, city_files, tmp_path / "o", "--duration", "2s"))
    _clean_error(res, "cannot reach", host)


def test_unknown_user_class(tmp_path: Path, city_files, hello_url: str) -> None:
    res = run_cli(
        *_run_args(hello_url, city_files, tmp_path / "o", "--user-classes", "MartianUser")
    )
    _clean_error(res, "unknown user class 'MartianUser'", "CitizenPortalUser")


@pytest.mark.parametrize("duration", ["soon", "-3s", "0"])
def test_bad_duration(tmp_path: Path, city_files, hello_url: str, duration: str) -> None:
    res = run_cli(*_run_args(hello_url, city_files, tmp_path / "o", "--duration", duration))
    _clean_error(res, "--duration")


def test_bad_slo_file(tmp_path: Path, city_files, hello_url: str) -> None:
    slo = tmp_path / "slo.toml"
    slo.write_text("[kinds.read]\np99_ms = 10\nmedian = 3\n")
    res = run_cli(*_run_args(hello_url, city_files, tmp_path / "o", "--slo", str(slo)))
    _clean_error(res, "kinds.read.median: unknown key")


def test_bad_catalog_file(tmp_path: Path, city_files, hello_url: str) -> None:
    bad = tmp_path / "catalog.toml"
    bad.write_text('instance = "SH"\n[[resources]]\nid = "x"\n')
    res = run_cli(*_run_args(hello_url, (bad, city_files[1]), tmp_path / "o"))
    _clean_error(res, str(bad))


@pytest.mark.parametrize(
    ("flag", "value", "needle"),
    [
        ("--shape", "zigzag", "unknown shape"),
        ("--workers", "-1", "--workers"),
        ("--open-rate", "0", "--open-rate"),
        ("--users", "0", "--users"),
        ("--user-classes", "OpenModelUser", "needs --open-rate"),
        ("--pull-wait", "31", "--pull-wait"),
        ("--catalog-share", "1.5", "--catalog-share"),
    ],
)
def test_bad_flags(
    tmp_path: Path, city_files, hello_url: str, flag: str, value: str, needle: str
) -> None:
    res = run_cli(*_run_args(hello_url, city_files, tmp_path / "o", flag, value))
    _clean_error(res, needle)


def test_open_rate_with_user_classes(tmp_path: Path, city_files, hello_url: str) -> None:
    res = run_cli(
        *_run_args(
            hello_url,
            city_files,
            tmp_path / "o",
            "--open-rate",
            "10",
            "--user-classes",
            "CitizenPortalUser",
        )
    )
    _clean_error(res, "leave out --user-classes")


def test_compare_with_missing_dirs(tmp_path: Path) -> None:
    res = run_cli("compare", str(tmp_path / "run"), str(tmp_path / "sim"))
    _clean_error(res, "RUN_DIR", "not found")


def test_impossible_slo_fails_the_run_and_names_the_objective(
    tmp_path: Path, city_files, hello_url: str
) -> None:
    slo = tmp_path / "slo.toml"
    slo.write_text("[kinds.ping]\np99_ms = 0.001\nmin_rps = 1\n")
    out = tmp_path / "run"
    res = run_cli(
        *_run_args(
            hello_url,
            city_files,
            out,
            "--user-classes",
            "SignedPingUser",
            "--users",
            "2",
            "--duration",
            "3s",
            "--slo",
            str(slo),
        )
    )
    assert res.returncode == 1, (res.stdout, res.stderr)
    assert "kinds.ping.p99_ms" in res.stderr and "objective 0.001 ms" in res.stderr
    assert "Traceback" not in res.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["slo"]["passed"] is False
    assert [b["objective"] for b in summary["slo"]["breaches"]] == ["kinds.ping.p99_ms"]
    assert summary["kinds"]["ping"]["count"] > 0 and summary["kinds"]["ping"]["failures"] == 0
    for f in ("report.html", "stats.csv", "summary.json"):
        assert (out / f).exists()


def test_met_slo_passes(tmp_path: Path, city_files, hello_url: str) -> None:
    slo = tmp_path / "slo.toml"
    slo.write_text("[total]\nfailure_ratio = 0\n[kinds.ping]\np99_ms = 60000\n")
    res = run_cli(
        *_run_args(
            hello_url,
            city_files,
            tmp_path / "run",
            "--user-classes",
            "SignedPingUser",
            "--users",
            "2",
            "--duration",
            "2s",
            "--slo",
            str(slo),
        )
    )
    assert res.returncode == 0, (res.stdout, res.stderr)
    assert "SLO passed" in res.stdout


def test_bench_says_how_to_install_wrk(tmp_path: Path) -> None:
    env = {"PATH": str(tmp_path)}  # no wrk there
    res = run_cli("bench", "--out", str(tmp_path / "b"), env=env)
    _clean_error(res, "wrk is not installed", "apt-get install")


@pytest.mark.skipif(
    not any(
        os.access(os.path.join(p, "wrk"), os.X_OK)
        for p in os.environ.get("PATH", "").split(os.pathsep)
    ),
    reason="wrk not installed",
)
@pytest.mark.slow
@pytest.mark.xdist_group("bench")  # wrk and the servers pinned to the cores: one bench at a time
def test_bench_harness_on_the_bare_servers(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    res = run_cli(
        "bench", "--out", str(out), "--duration", "1s", "--connections", "8", "--no-gateway"
    )
    assert res.returncode == 0, res.stderr
    doc = json.loads((out / "bench.json").read_text())
    assert set(doc) >= {
        "hello_rps",
        "query_rps",
        "query_ratio",
        "push_records_per_s",
        "push_baseline_records_per_s",
        "push_ratio",
        "pull_records_per_s",
        "p99_ms_at_half_load",
        "hello_p99_ms_at_half_load",
    }
    assert doc["hello_rps"] > 0 and doc["push_baseline_records_per_s"] > 0
    assert doc["hello_p99_ms_at_half_load"] > 0
    assert doc["query_rps"] is None  # the gateway was not measured
    assert "hello_rps" in res.stdout


def test_compare_command_writes_compare_json(tmp_path: Path) -> None:
    run_dir, sim_dir = tmp_path / "run", tmp_path / "sim"
    run_dir.mkdir()
    sim_dir.mkdir()
    kind = {"count": 10, "rate": 5.0, "p50_ms": 1.0, "p95_ms": 2.0, "p99_ms": 3.0, "failures": 0}
    (run_dir / "summary.json").write_text(
        json.dumps({"kinds": {"read": kind, "commit": kind}, "total": kind})
    )
    (sim_dir / "summary.json").write_text(
        json.dumps(
            {
                "scenario": {"days": 1},
                "gateway": {
                    "requests": {"mean": 86400},
                    "latency_ms": {"p50": 0.5, "p99": 2.0},
                    "by_kind": {"keyed_read": {"mean": 43200}, "pull": {"mean": 43200}},
                },
            }
        )
    )
    res = run_cli("compare", str(run_dir), str(sim_dir))
    assert res.returncode == 0, res.stderr
    assert "not in the simulation" in res.stdout and "not measured in this run" in res.stdout
    doc = json.loads((run_dir / "compare.json").read_text())
    assert doc["kinds"]["read"]["simulated"]["mean_rps"] == 0.5
    (sim_dir / "summary.json").write_text("{not json")
    _clean_error(run_cli("compare", str(run_dir), str(sim_dir)), "SIM_DIR", "not JSON")


def test_seed_and_worker_refuse_bad_input(tmp_path: Path, city_files) -> None:
    catalog, keyring = city_files
    host = f"http://127.0.0.1:{free_port()}"
    res = run_cli("seed", "--host", host, "--keyring", str(keyring), "--catalog", str(catalog))
    _clean_error(res, "cannot reach")
    res = run_cli("worker", "--master", "nowhere", "--config", str(tmp_path / "run-config.json"))
    _clean_error(res, "run-config.json")
    conf = tmp_path / "run-config.json"
    conf.write_text("{}")
    _clean_error(
        run_cli("worker", "--master", "host:1", "--config", str(conf)), "not a run configuration"
    )


@pytest.mark.skipif(
    not any(
        os.access(os.path.join(p, "wrk"), os.X_OK)
        for p in os.environ.get("PATH", "").split(os.pathsep)
    ),
    reason="wrk not installed",
)
@pytest.mark.slow
@pytest.mark.xdist_group("bench")  # wrk and the servers pinned to the cores: one bench at a time
def test_bench_measures_the_gateway(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    res = run_cli(
        "bench",
        "--out",
        str(out),
        "--duration",
        "1s",
        "--connections",
        "8",
        "--resources",
        "300",
        "--no-pure",
        "--no-cluster",
        "--no-services",
        timeout=240,
    )
    assert res.returncode == 0, res.stderr
    doc = json.loads((out / "bench.json").read_text())
    for key in (
        "query_rps",
        "query_ratio",
        "push_records_per_s",
        "push_ratio",
        "pull_records_per_s",
        "p99_ms_at_half_load",
    ):
        assert doc[key] and doc[key] > 0, key
    details = json.loads((out / "bench-details.json").read_text())
    assert details["pull_records_per_response"] == 1000
    assert details["gateway_query"]["non_2xx"] == 0
