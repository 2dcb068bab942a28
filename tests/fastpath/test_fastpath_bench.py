"""The benchmark command: a tiny real run and its refusals of bad options."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import fastpath
from bench import fastpath as bench
from fastpath.__main__ import main as fastpath_main

ROOT = Path(__file__).resolve().parents[2]


def test_small_run_reports_every_benchmark(tmp_path: Path, capsys) -> None:
    out = tmp_path / "bench.json"
    assert (
        bench.main(["--resources", "60", "--requests", "100", "--repeat", "1", "--json", str(out)])
        == 0
    )
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    names = [r["name"] for r in result["results"]]
    assert names == [
        "router",
        "router services",
        "codec encode",
        "codec decode",
        "projection project_many",
        "projection project",
    ]
    assert result["resources"] == 60
    for row in result["results"]:
        assert row["python"] > 0
        assert (row["cython"] is not None) == result["compiled_available"]
        assert row["name"] in printed
    assert result["results"][0]["aiohttp"] > 0
    assert "cy/aiohttp" in printed


def test_resource_catalog_is_deterministic() -> None:
    a = bench.resource_catalog(40, seed=3)
    assert a == bench.resource_catalog(40, seed=3)
    assert len({r["id"] for r in a}) == 40


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--resources", "0"], "--resources must be between 1 and 1000000, not 0"),
        (["--resources", "many"], "--resources must be an integer, not 'many'"),
        (["--repeat", "1000"], "--repeat must be between 1 and 100, not 1000"),
        (["--requests", "5"], "--requests must be between 100 and 1000000, not 5"),
        (["--json", "/nonexistent-dir/x.json"], "directory '/nonexistent-dir' does not exist"),
        (["--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_bad_options_are_refused(args: list[str], message: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "fastpath", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_info_command(capsys) -> None:
    assert fastpath_main(["info"]) == 0
    out = capsys.readouterr().out
    assert f"implementation: {fastpath.IMPLEMENTATION}" in out
    assert "python: available" in out


def test_unknown_command_is_refused() -> None:
    with pytest.raises(SystemExit) as exc:
        fastpath_main(["frobnicate"])
    assert exc.value.code == 2
