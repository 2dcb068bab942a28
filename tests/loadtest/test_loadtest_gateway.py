"""Locust runs against a real gateway node (started by the fixture, seeded by `loadtest seed`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from loadtest_helpers import run_cli

pytestmark = pytest.mark.slow  # Locust runs against a node

CLASSES = ["CitizenPortalUser", "AgencyProducer", "AgencyConsumer", "CatalogBrowser"]


def _run(gateway_url: str, city: tuple[Path, Path], out: Path, *extra: str):
    catalog, keyring = city
    return run_cli(
        "run",
        "--host",
        gateway_url,
        "--keyring",
        str(keyring),
        "--catalog",
        str(catalog),
        "--out",
        str(out),
        "--citizens",
        "200",
        *extra,
        timeout=180,
    )


def _summary(out: Path) -> dict:
    for f in ("report.html", "stats.csv", "summary.json"):
        assert (out / f).exists(), f
    return json.loads((out / "summary.json").read_text())


def test_each_user_class_runs_without_failures(
    tmp_path: Path, gateway_url: str, city_files
) -> None:
    out = tmp_path / "run"
    res = _run(
        gateway_url,
        city_files,
        out,
        "--users",
        "8",
        "--spawn-rate",
        "8",
        "--duration",
        "4s",
        "--user-classes",
        *CLASSES,
    )
    assert res.returncode == 0, (res.stdout, res.stderr)
    s = _summary(out)
    kinds = s["kinds"]
    for kind in ("read", "push", "pull", "catalog"):  # one kind per user class
        assert kinds[kind]["count"] > 0, kind
    assert s["total"]["failures"] == 0
    assert all(k["failures"] == 0 for k in kinds.values())
    assert kinds["read"]["p99_ms"] >= kinds["read"]["p50_ms"] > 0
    assert "Aggregated" in (out / "stats.csv").read_text()


def test_open_model_run_holds_its_rate(tmp_path: Path, gateway_url: str, city_files) -> None:
    out = tmp_path / "open"
    res = _run(gateway_url, city_files, out, "--open-rate", "100", "--duration", "4s")
    assert res.returncode == 0, (res.stdout, res.stderr)
    s = _summary(out)
    om = s["open_model"]
    assert om["dropped"] == 0 and om["started"] == om["scheduled"]
    assert abs(om["rate_error"]) <= 0.05, om
    assert s["total"]["failures"] == 0
    assert "open model: target 100.0/s" in res.stdout


def test_distributed_run_with_two_workers_and_a_shape(
    tmp_path: Path, gateway_url: str, city_files
) -> None:
    out = tmp_path / "dist"
    res = _run(
        gateway_url,
        city_files,
        out,
        "--workers",
        "2",
        "--users",
        "4",
        "--duration",
        "5s",
        "--shape",
        "step",
        "--user-classes",
        "CitizenPortalUser",
        "AgencyProducer",
        "--slo",
        str(Path(__file__).resolve().parents[2] / "configs" / "slo.toml"),
    )
    assert res.returncode in (0, 1), (res.stdout, res.stderr)  # 1 only on an SLO breach
    s = _summary(out)
    assert s["config"]["workers"] == 2 and s["config"]["shape"] == "step"
    assert s["kinds"]["read"]["count"] > 0 and s["kinds"]["push"]["count"] > 0
    # the master's HDR totals and Locust's own stats count the same requests
    stats = (out / "stats.csv").read_text().splitlines()
    agg = next(line for line in stats if ",Aggregated," in line).split(",")
    assert int(agg[2]) == s["total"]["count"]
    assert (out / "locust-worker-0.log").exists() and (out / "locust-worker-1.log").exists()
    if res.returncode == 1:
        assert "SLO FAILED" in res.stderr


def test_remote_worker_joins_a_master(tmp_path: Path, gateway_url: str, city_files) -> None:
    """The several-machines path: `run --remote-workers 1` waits for `loadtest worker`."""
    import os
    import subprocess
    import sys

    from harness import child_env, free_port, wait_for

    catalog, keyring = city_files
    out, port = tmp_path / "remote", free_port()
    env = dict(os.environ)
    env.update(child_env())
    cmd = [
        sys.executable,
        "-m",
        "loadtest",
        "run",
        "--host",
        gateway_url,
        "--keyring",
        str(keyring),
        "--catalog",
        str(catalog),
        "--out",
        str(out),
        "--citizens",
        "200",
        "--users",
        "2",
        "--duration",
        "3s",
        "--remote-workers",
        "1",
        "--master-port",
        str(port),
        "--user-classes",
        "CitizenPortalUser",
    ]
    master = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        conf = out / "run-config.json"
        wait_for(conf.exists, 30, what="the master's run-config.json", proc=master)
        worker = run_cli(
            "worker",
            "--master",
            f"127.0.0.1:{port}",
            "--config",
            str(conf),
            "--user-classes",
            "CitizenPortalUser",
            timeout=90,
        )
        stdout, stderr = master.communicate(timeout=90)
    finally:
        if master.poll() is None:
            master.kill()
            master.wait()
    assert master.returncode == 0, (stdout, stderr)
    assert worker.returncode == 0, worker.stderr
    assert "python -m loadtest worker --master" in stdout
    assert _summary(out)["kinds"]["read"]["count"] > 0
