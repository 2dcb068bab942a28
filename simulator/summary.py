"""Turn the raw observations of replications into summary.json (and plot series)."""

from __future__ import annotations

from typing import Any

import numpy as np

from simulator import calendar
from simulator.scenario import KINDS, Scenario
from simulator.stats import block, mean_ci, percentile, rnd

EXTRAPOLATION = (
    "Half-year and year totals are extrapolated from the simulated days, not simulated "
    "day by day: total = sum over demand sources of (simulated / expected count on the "
    "simulated days) x daily level x sum of the calendar day weights (day-of-week profile, "
    "public holidays, make-up working days) of the period. Demand is a Poisson stream with "
    "a known intensity, so this is the expected total; simulating 365 days would cost 365 "
    "times one day and add no information. Waits, utilisations and latencies come from the "
    "simulated days."
)


def _pct_block(per_rep: list[np.ndarray], qs: dict[str, float]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    means = [float(x.mean()) if len(x) else float("nan") for x in per_rep]
    m, h = mean_ci(means)
    out["mean"], out["ci95"] = rnd(m), rnd(h)
    for name, q in qs.items():
        m, h = mean_ci([percentile(x, q) for x in per_rep])
        out[name], out[f"{name}_ci95"] = rnd(m), rnd(h)
    out["max"] = rnd(max((float(x.max()) for x in per_rep if len(x)), default=float("nan")))
    return out


def _with_ci(out: dict[str, Any], key: str, values: list[float]) -> None:
    m, h = mean_ci(values)
    out[key], out[f"{key}_ci95"] = rnd(m), rnd(h)


def build(scn: Scenario, reps: list[dict[str, Any]], wall_s: float) -> dict[str, Any]:
    """summary.json contents: every mean is over replications and carries its ci95."""
    cs = [r["centres"] for r in reps]
    gs = [r["gateway"] for r in reps]
    ag = [r["agencies"] for r in reps]
    k = reps[0]["sample"]
    centers: dict[str, Any] = {
        "wait_minutes": _pct_block([c["wait_min"] for c in cs], {"p50": 50, "p95": 95, "p99": 99}),
    }
    _with_ci(
        centers,
        "utilization",
        [c["busy_s"] / c["staffed_s"] if c["staffed_s"] else 0.0 for c in cs],
    )
    _with_ci(centers, "visits", [c["visits"] for c in cs])
    _with_ci(centers, "served", [c["served"] for c in cs])
    _with_ci(centers, "baulked", [c["baulked"] for c in cs])
    _with_ci(centers, "reneged", [c["reneged"] for c in cs])
    span = reps[0]["span_s"]
    # Little's law on the queues (all simulated centres): L = lambda * W, where the
    # queue's customers are those served and those who reneged.
    lq = [c["queue_area"] / span for c in cs]
    lw = [(float(c["wait_min"].sum()) * 60.0 + c["reneged_wait_s"]) / span for c in cs]
    _with_ci(centers, "queue_length", [x / c["n_centres"] for x, c in zip(lq, cs, strict=True)])
    little: dict[str, Any] = {}
    _with_ci(little, "L", lq)
    _with_ci(little, "lambda_W", lw)
    little["error_pct"] = (
        rnd(100.0 * (np.mean(lq) - np.mean(lw)) / np.mean(lw)) if np.mean(lw) > 0 else None
    )
    centers["little"] = little
    centers["count"] = scn.centers.count
    centers["staff_per_centre"] = scn.centers.staff

    gateway: dict[str, Any] = {
        "latency_ms": _pct_block(
            [g["latency_ms"] for g in gs], {"p50": 50, "p95": 95, "p99": 99, "p999": 99.9}
        ),
    }
    _with_ci(
        gateway,
        "utilization",
        [g["busy_s"] / g["capacity_s"] if g["capacity_s"] else 0.0 for g in gs],
    )
    _with_ci(gateway, "requests", [g["requests"] for g in gs])
    _with_ci(gateway, "failed", [g["failed"] for g in gs])
    _with_ci(
        gateway,
        "peak_requests_per_s",
        [max(g["by_hour"]) / 3600.0 if g["by_hour"] else 0.0 for g in gs],
    )
    gateway["by_kind"] = {}
    for i, kk in enumerate(KINDS):
        b: dict[str, Any] = block([g["by_kind"][kk] for g in gs])
        per_rep = [g["latency_ms"][g["kind"] == i] for g in gs]
        if all(len(x) for x in per_rep):
            b["latency_ms"] = _pct_block(per_rep, {"p50": 50, "p99": 99})
        gateway["by_kind"][kk] = b
    gateway["by_source"] = {
        src: block([g["requests_by_source"][src] for g in gs])
        for src in gs[0]["requests_by_source"]
    }
    gateway["nodes"] = scn.gateway.nodes
    gateway["workers_per_node"] = scn.gateway.workers_per_node
    gateway["service_time_source"] = scn.gateway.service_time_source
    per_node = [mean_ci([g["util_by_node"][n] for g in gs]) for n in range(scn.gateway.nodes)]
    gateway["utilization_by_node"] = [rnd(m) for m, _ in per_node]
    gateway["utilization_by_node_ci95"] = [rnd(h) for _, h in per_node]

    agencies: dict[str, Any] = {
        "back_offices_modelled": bool(ag[0]["utilization"]),
        "applications": {
            src: block([a["applications"][src] for a in ag]) for src in ag[0]["applications"]
        },
    }
    if ag[0]["utilization"]:
        agencies["turnaround_hours"] = _pct_block(
            [a["turnaround_h"] for a in ag], {"p50": 50, "p95": 95}
        )
        agencies["utilization_max"] = block([max(a["utilization"]) for a in ag])
        agencies["utilization_mean"] = block([float(np.mean(a["utilization"])) for a in ag])
    return {
        "scenario": {
            "name": scn.name,
            "file": scn.source,
            "days": scn.simulation.days,
            "start_weekday": scn.simulation.start_weekday,
            "warmup_hours": scn.simulation.warmup_hours,
            "replications": len(reps),
            "seed": scn.simulation.seed,
            "sample": f"1:{k}",
            "whatif": scn.whatif.description or None,
        },
        "centers": centers,
        "gateway": gateway,
        "agencies": agencies,
        "calibration": calibration(scn, reps),
        "run": {
            "wall_s": rnd(wall_s, 4),
            "events": block([r["events"] for r in reps]),
            "ci": "95 % Student-t half-widths over replications ('*_ci95', 'ci95')",
        },
    }


def calibration(scn: Scenario, reps: list[dict[str, Any]]) -> dict[str, Any]:
    """Extrapolated half-year and year totals, compared with the scenario's targets."""
    year = scn.calendar.year
    h1, yr = calendar.days_of(year, "h1"), calendar.days_of(year, "year")
    visits_h1, visits_year, req_year = [], [], []
    for r in reps:
        c, g = r["centres"], r["gateway"]
        visits_h1.append(calendar.extrapolate_visits(scn, c["visits"], c["expected_visits"], h1))
        visits_year.append(calendar.extrapolate_visits(scn, c["visits"], c["expected_visits"], yr))
        req_year.append(
            calendar.extrapolate_requests(scn, g["requests_by_source"], g["offered_by_source"], yr)
        )
    out: dict[str, Any] = {
        "method": EXTRAPOLATION,
        "year": year,
        "tolerance_pct": scn.calibration.tolerance_pct,
        "center_visits_first_half": block(visits_h1),
        "center_visits_year": block(visits_year),
        "gateway_requests_year": block(req_year),
    }
    targets = {
        "center_visits_first_half": scn.calibration.center_visits_first_half,
        "gateway_requests_year": scn.calibration.gateway_requests_year,
    }
    if not scn.calibration.enabled:
        targets = {}
    ok = True
    for key, target in targets.items():
        if target is None:
            continue
        m = out[key]["mean"]
        err = 100.0 * (m - target) / target
        out[key].update(
            target=target,
            error_pct=rnd(err, 4),
            within_tolerance=abs(err) <= scn.calibration.tolerance_pct,
        )
        ok = ok and abs(err) <= scn.calibration.tolerance_pct
    out["within_tolerance"] = ok if any(v is not None for v in targets.values()) else None
    out["calibrated_counts"] = (
        "centre visits and gateway requests are inputs (daily levels); "
        "the check shows the simulated entities reproduce them"
    )
    return out


def series(reps: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean by-hour curves and distributions for the report's plots."""
    cs = [r["centres"] for r in reps]
    gs = [r["gateway"] for r in reps]
    days = len(gs[0]["by_hour"]) // 24
    gw_hour = np.mean([np.asarray(g["by_hour"], float).reshape(days, 24).mean(0) for g in gs], 0)
    waits = np.concatenate([c["wait_min"] for c in cs])
    hours = np.concatenate([c["wait_hour"].astype(int) for c in cs])
    cnt = np.bincount(hours, minlength=24)
    wait_hour = np.where(
        cnt > 0, np.bincount(hours, weights=waits, minlength=24) / np.maximum(cnt, 1), np.nan
    )
    return {
        "visits_by_hour": (np.mean([c["visits_by_hour"] for c in cs], 0) / days).tolist(),
        "gateway_by_hour": gw_hour.tolist(),
        "queue_by_hour": np.mean([c["queue_by_hour"] for c in cs], 0).tolist(),
        "wait_by_hour": wait_hour.tolist(),
        "util_by_centre": np.mean([c["util_by_centre"] for c in cs], 0).tolist(),
        "centre_ids": cs[0]["centre_ids"],
        "latency_ms": np.concatenate([g["latency_ms"] for g in gs]),
    }
