"""SLO file loading (every bad value named) and the gate's verdict."""

from __future__ import annotations

from pathlib import Path

import pytest

from loadtest.errors import LoadTestError
from loadtest.slo import evaluate, format_breaches, load_slo

ROOT = Path(__file__).resolve().parents[2]


def _summary(**kinds: dict) -> dict:
    base = {
        "count": 100,
        "rate": 10.0,
        "p50_ms": 5.0,
        "p95_ms": 20.0,
        "p99_ms": 40.0,
        "failures": 0,
        "failure_ratio": 0.0,
    }
    ks = {k: {**base, **v} for k, v in kinds.items()}
    return {"kinds": ks, "total": base}


def test_the_shipped_slo_file_loads() -> None:
    slo = load_slo(ROOT / "configs" / "slo.toml")
    assert slo.kinds["read"].p99_ms is not None
    assert slo.total.failure_ratio is not None


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("[kinds.read]\np99 = 3\n", "kinds.read.p99: unknown key"),
        ("[kinds.bogus]\np99_ms = 3\n", "kinds.bogus: unknown request kind"),
        ('[total]\nfailure_ratio = "low"\n', "total.failure_ratio"),
        ("[total]\nfailure_ratio = 1.5\n", "total.failure_ratio: a ratio is at most 1"),
        ("[kinds.push]\np95_ms = -1\n", "kinds.push.p95_ms: must be a number >= 0"),
        ("[kinds.push]\np95_ms = nan\n", "kinds.push.p95_ms"),
        ("latency = 3\n", "latency: unknown key"),
        ("kinds = 3\n", "kinds: Expected `table`, got `int`"),
        ("[kinds]\nread = 3\n", "kinds.read: Expected `table`, got `int`"),
        ("[kinds.read\n", "invalid TOML"),
    ],
)
def test_bad_slo_files_name_the_key(tmp_path: Path, text: str, named: str) -> None:
    p = tmp_path / "slo.toml"
    p.write_text(text)
    with pytest.raises(LoadTestError) as exc:
        load_slo(p)
    assert named in str(exc.value)
    assert str(p) in str(exc.value)


def test_missing_slo_file(tmp_path: Path) -> None:
    with pytest.raises(LoadTestError, match="not found"):
        load_slo(tmp_path / "nope.toml")


def test_met_objectives_give_no_breach(tmp_path: Path) -> None:
    p = tmp_path / "slo.toml"
    p.write_text("[total]\nfailure_ratio = 0.01\nmin_rps = 5\n[kinds.read]\np99_ms = 50\n")
    assert evaluate(load_slo(p), _summary(read={})) == []


def test_breaches_say_which_objective_and_by_how_much(tmp_path: Path) -> None:
    p = tmp_path / "slo.toml"
    p.write_text(
        "[total]\nmin_rps = 20\n[kinds.read]\np99_ms = 30\nfailure_ratio = 0.001\n[kinds.push]\np95_ms = 10\n"
    )
    breaches = evaluate(load_slo(p), _summary(read={"failures": 2, "failure_ratio": 0.02}, push={}))
    names = {b["objective"] for b in breaches}
    assert names == {
        "total.min_rps",
        "kinds.read.p99_ms",
        "kinds.read.failure_ratio",
        "kinds.push.p95_ms",
    }
    p99 = next(b for b in breaches if b["objective"] == "kinds.read.p99_ms")
    assert p99["by"] == pytest.approx(10.0) and p99["by_pct"] == pytest.approx(33.33, abs=0.01)
    text = format_breaches(breaches)
    assert "kinds.read.p99_ms: measured 40 ms > objective 30 ms (over by 10 ms, 33.3 %)" in text


def test_a_kind_not_exercised_only_fails_a_throughput_objective(tmp_path: Path) -> None:
    p = tmp_path / "slo.toml"
    p.write_text("[kinds.pull]\np99_ms = 5\n[kinds.push]\nmin_rps = 1\n")
    breaches = evaluate(load_slo(p), _summary(read={}))
    assert [b["objective"] for b in breaches] == ["kinds.push.min_rps"]
