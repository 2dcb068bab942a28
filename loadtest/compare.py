"""``python -m loadtest compare RUN_DIR SIM_DIR``: what was measured vs what was simulated.

Per request kind: measured throughput (requests/s over the run) against the simulated
mean and peak rates, and measured p50 / p99 against the simulated latency (per kind
when the simulator reports it, else the simulator's overall gateway latency). Kinds
only one side knows are listed with the other side empty. Writes ``compare.json``.

Simulator keys read (DESIGN.md, "Simulator"): ``gateway.requests``,
``gateway.latency_ms.{p50,p99}``, ``gateway.peak_requests_per_s``,
``gateway.by_kind.<kind>`` (a count or ``{"mean": ...}``), ``scenario.days``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from loadtest.errors import LoadTestError

#: simulator kind -> load-test kind
KIND_MAP = {"keyed_read": "read", "pull": "pull", "push": "push"}


def _load(path: Path, what: str) -> dict[str, Any]:
    if path.is_dir():
        path = path / "summary.json"
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise LoadTestError(f"{what}: {path} not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise LoadTestError(f"{what}: cannot read {path} ({exc})") from None
    except json.JSONDecodeError as exc:
        raise LoadTestError(f"{what}: {path} is not JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise LoadTestError(f"{what}: {path} is not a summary object")
    return doc


def _num(v: Any) -> float | None:
    """A number, or the ``mean`` of a ``{"mean", "ci95"}`` block."""
    if isinstance(v, dict):
        v = v.get("mean")
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 4) if a is not None and b else None


def compare(run: dict[str, Any], sim: dict[str, Any]) -> dict[str, Any]:
    """The comparison table as data."""
    if "kinds" not in run:
        raise LoadTestError(
            "RUN_DIR/summary.json has no 'kinds' (is it from `python -m loadtest run`?)"
        )
    gw = sim.get("gateway")
    if not isinstance(gw, dict):
        raise LoadTestError(
            "SIM_DIR/summary.json has no 'gateway' section (is it from `python -m simulator run`?)"
        )
    days = _num((sim.get("scenario") or {}).get("days")) or 1.0
    seconds = days * 86400.0
    total_sim = _num(gw.get("requests"))
    peak_total = _num(gw.get("peak_requests_per_s"))
    lat = gw.get("latency_ms") or {}
    sim_p50, sim_p99 = _num(lat.get("p50")), _num(lat.get("p99"))
    by_kind = gw.get("by_kind") or {}
    rows: dict[str, dict[str, Any]] = {}
    sim_kinds = {KIND_MAP.get(k, k): v for k, v in by_kind.items()}
    for kind in sorted(set(run["kinds"]) | set(sim_kinds)):
        m = run["kinds"].get(kind)
        s = sim_kinds.get(kind)
        row: dict[str, Any] = {"measured": None, "simulated": None}
        if m:
            row["measured"] = {
                "rps": m.get("rate"),
                "p50_ms": m.get("p50_ms"),
                "p99_ms": m.get("p99_ms"),
                "count": m.get("count"),
                "failures": m.get("failures"),
            }
        if s is not None:
            count = _num(s)
            share = count / total_sim if count is not None and total_sim else None
            klat = s.get("latency_ms") if isinstance(s, dict) else None
            p50 = _num(klat.get("p50")) if isinstance(klat, dict) else sim_p50
            p99 = _num(klat.get("p99")) if isinstance(klat, dict) else sim_p99
            row["simulated"] = {
                "mean_rps": round(count / seconds, 4) if count is not None else None,
                "peak_rps": round(peak_total * share, 4)
                if peak_total and share is not None
                else None,
                "p50_ms": p50,
                "p99_ms": p99,
                "latency_source": "kind" if isinstance(klat, dict) else "gateway overall",
            }
        if row["measured"] and row["simulated"]:
            row["rps_vs_sim_peak"] = _ratio(row["measured"]["rps"], row["simulated"]["peak_rps"])
            row["p50_measured_over_sim"] = _ratio(
                row["measured"]["p50_ms"], row["simulated"]["p50_ms"]
            )
            row["p99_measured_over_sim"] = _ratio(
                row["measured"]["p99_ms"], row["simulated"]["p99_ms"]
            )
        elif row["measured"]:
            row["note"] = "not in the simulation"
        else:
            row["note"] = "not measured in this run"
        rows[kind] = row
    t = run.get("total") or {}
    total = {
        "measured": {"rps": t.get("rate"), "p50_ms": t.get("p50_ms"), "p99_ms": t.get("p99_ms")},
        "simulated": {
            "mean_rps": round(total_sim / seconds, 4) if total_sim is not None else None,
            "peak_rps": peak_total,
            "p50_ms": sim_p50,
            "p99_ms": sim_p99,
        },
    }
    return {"kinds": rows, "total": total}


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    return f"{v:,.2f}" if isinstance(v, float) else str(v)


def format_table(result: dict[str, Any]) -> str:
    """Measured vs simulated, one line per kind."""
    head = (
        "kind",
        "meas rps",
        "sim mean",
        "sim peak",
        "meas p50",
        "sim p50",
        "meas p99",
        "sim p99",
        "note",
    )
    rows = [head]
    items = list(result["kinds"].items()) + [("total", result["total"])]
    for kind, r in items:
        m, s = r.get("measured") or {}, r.get("simulated") or {}
        rows.append(
            (
                kind,
                _fmt(m.get("rps")),
                _fmt(s.get("mean_rps")),
                _fmt(s.get("peak_rps")),
                _fmt(m.get("p50_ms")),
                _fmt(s.get("p50_ms")),
                _fmt(m.get("p99_ms")),
                _fmt(s.get("p99_ms")),
                r.get("note", ""),
            )
        )
    w = [max(len(str(r[i])) for r in rows) for i in range(len(head))]
    return "\n".join(
        "  ".join(
            str(c).ljust(w[i]) if i in (0, 8) else str(c).rjust(w[i]) for i, c in enumerate(r)
        ).rstrip()
        for r in rows
    )


def compare_main(args: argparse.Namespace) -> int:
    """The ``compare`` command."""
    run_dir, sim_dir = Path(args.run_dir), Path(args.sim_dir)
    result = compare(_load(run_dir, "RUN_DIR"), _load(sim_dir, "SIM_DIR"))
    result["run_dir"], result["sim_dir"] = str(run_dir), str(sim_dir)
    print(format_table(result))
    out = (
        Path(args.out)
        if args.out
        else (run_dir if run_dir.is_dir() else run_dir.parent) / "compare.json"
    )
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0
