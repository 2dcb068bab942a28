"""`python -m simulator validate`: the model against Erlang C (M/M/c) and Little's law.

Each case is a single always-open centre with Poisson arrivals, `c` counters and
exponential service: an M/M/c queue. The simulated mean wait (mean of the
replications' means, warm-up removed) is compared with Erlang C, and the
time-average queue length L with lambda * W (Little's law).
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, dataclass
from typing import Any

from simulator import theory
from simulator.runner import simulate
from simulator.scenario import Scenario, ScenarioError, from_dict, load

# (rho, counters, customers per replication, replications): chosen so that each case's
# standard error is ~1-2 % of the mean wait while the run stays short; high utilisation
# needs many more customers (the queue's relaxation time grows like 1/(1-rho)^2).
BUILTIN: tuple[tuple[float, int, int, int], ...] = (
    (0.5, 2, 60_000, 8),
    (0.8, 2, 120_000, 8),
    (0.95, 2, 500_000, 8),
)
SERVICE_S = 6.0


DEFAULT_SEED = 3


def mmc_dict(
    rho: float, c: int, customers: int, replications: int, seed: int = DEFAULT_SEED
) -> dict[str, Any]:
    """A validation scenario as a plain dict (same decoder as the files)."""
    lam = rho * c / SERVICE_S  # customers per second
    per_day = lam * 86400.0
    days = max(1, math.ceil(customers / per_day))
    return {
        "name": f"mmc-rho{rho:g}-c{c}",
        "validation": {"kind": "mmc"},
        "simulation": {
            "days": days,
            "warmup_hours": round(days * 24 * 0.02, 3),
            "replications": replications,
            "seed": seed,
            "monitor_minutes": 60,
        },
        "demand": {
            "center_visits_per_day": per_day,
            "gateway_requests_per_day": 1,
            "hourly_profile": "flat",
        },
        "centers": {
            "count": 1,
            "staff": c,
            "open_hours": [0, 24],
            "service_time": {"dist": "exponential", "mean_minutes": SERVICE_S / 60},
        },
    }


@dataclass
class Row:
    case: str
    rho: float
    c: int
    customers: int
    replications: int
    sim_wait_s: float
    ci95_s: float
    erlang_c_s: float
    error_pct: float
    theory_in_ci: bool
    little_L: float
    little_lambda_W: float
    little_error_pct: float
    ok: bool


def check(
    scn: Scenario, wait_tol_pct: float = 5.0, little_tol_pct: float = 2.0, jobs: int = 1
) -> Row:
    """Simulate one M/M/c validation scenario and compare it with theory."""
    c = scn.centers.staff
    lam = scn.demand.center_visits_per_day / 86400.0
    mu = 1.0 / (scn.centers.service_time.mean_minutes * 60.0)
    summary, reps = simulate(scn, jobs=jobs)
    w = summary["centers"]["wait_minutes"]
    sim, ci = w["mean"] * 60.0, (w["ci95"] or 0.0) * 60.0
    th = theory.mean_wait(lam, mu, c)
    err = 100.0 * (sim - th) / th
    lit = summary["centers"]["little"]
    lerr = abs(lit["error_pct"] or 0.0)
    in_ci = abs(sim - th) <= ci
    n = int(sum(len(r["centres"]["wait_min"]) for r in reps) / len(reps))
    return Row(
        scn.name,
        round(lam / (c * mu), 4),
        c,
        n,
        len(reps),
        sim,
        ci,
        th,
        err,
        in_ci,
        lit["L"],
        lit["lambda_W"],
        lit["error_pct"] or 0.0,
        abs(err) <= wait_tol_pct and in_ci and lerr <= little_tol_pct,
    )


def table(rows: list[Row]) -> str:
    head = (
        f"{'case':<18}{'rho':>6}{'c':>4}{'cust/rep':>10}{'reps':>5}{'sim Wq s':>10}"
        f"{'± ci95':>9}{'ErlangC':>9}{'err %':>8}{'in CI':>7}{'L':>9}{'λW':>9}"
        f"{'Little %':>9}{'ok':>5}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r.case:<18}{r.rho:>6.3f}{r.c:>4}{r.customers:>10}{r.replications:>5}"
            f"{r.sim_wait_s:>10.3f}{r.ci95_s:>9.3f}{r.erlang_c_s:>9.3f}"
            f"{r.error_pct:>8.2f}{'yes' if r.theory_in_ci else 'NO':>7}"
            f"{r.little_L:>9.4f}{r.little_lambda_W:>9.4f}{r.little_error_pct:>9.2f}"
            f"{'ok' if r.ok else 'FAIL':>5}"
        )
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    scns: list[Scenario] = []
    if args.scenarios:
        for path in args.scenarios:
            over = {"simulation.replications": args.replications} if args.replications else None
            s = load(path, over)
            if s.validation is None:
                raise ScenarioError(
                    path, "validation", 'not a validation scenario (add [validation] kind = "mmc")'
                )
            scns.append(s)
    else:
        for rho, c, n, reps in BUILTIN:
            scns.append(
                from_dict(
                    mmc_dict(rho, c, args.customers or n, args.replications or reps, args.seed),
                    f"builtin:rho={rho}",
                )
            )
    rows = [check(s, jobs=args.jobs) for s in scns]
    print(table(rows))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump([asdict(r) for r in rows], fh, indent=2)
    return 0 if all(r.ok for r in rows) else 1
