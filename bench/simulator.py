"""``python -m bench simulator``: the full model against bare SimPy, in the same run.

Times one replication of a scenario (every centre visit and every gateway request
an entity) and a bare SimPy M/M/c (a source process, one process per customer, a
`Resource`) serving the same number of customers. The ratio full / bare on CPU
time is the figure of merit (target <= 1.5); wall times are shown too.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import simpy

from simulator.cli_common import ScenarioError, UsageError, load_scenario, positive_int, sample_arg
from simulator.model import run_replication


def bare_mmc(customers: int, c: int = 2, rho: float = 0.5, seed: int = 1) -> dict[str, Any]:
    """Bare SimPy M/M/c with `customers` customers; returns timings and event count."""
    env = simpy.Environment()
    res = simpy.Resource(env, c)
    rnd = random.Random(seed)
    mu = 1.0
    lam = rho * c * mu
    waits = [0.0]

    def customer(env: simpy.Environment):
        t = env.now
        with res.request() as req:
            yield req
            waits[0] += env.now - t
            yield env.timeout(rnd.expovariate(mu))

    def source(env: simpy.Environment):
        for _ in range(customers):
            yield env.timeout(rnd.expovariate(lam))
            env.process(customer(env))

    env.process(source(env))
    w0, c0 = time.perf_counter(), time.process_time()
    env.run()
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    return {"customers": customers, "events": next(env._eid), "wall_s": wall, "cpu_s": cpu}


def full_model(path: str, sample: int) -> dict[str, Any]:
    """One replication of the scenario; entities = centre visits + gateway requests."""
    scn, _ = load_scenario(path)
    w0, c0 = time.perf_counter(), time.process_time()
    obs = run_replication(scn, np.random.SeedSequence(scn.simulation.seed), sample)
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    ent = obs["entities"]
    return {
        "scenario": scn.name,
        "sample": f"1:{obs['sample']}",
        "entities": ent["centre_visits"] + ent["gateway_requests"],
        "centre_visits": ent["centre_visits"],
        "gateway_requests": ent["gateway_requests"],
        "applications": ent["applications"],
        "events": obs["events"],
        "wall_s": wall,
        "cpu_s": cpu,
    }


def build_parser(prog: str = "python -m bench simulator") -> argparse.ArgumentParser:
    """The command's options (``python -m simulator bench`` forwards to it)."""
    b = argparse.ArgumentParser(
        prog=prog,
        description="Times one full scenario replication and a bare SimPy M/M/c "
        "serving the same number of customers, in the same run.",
    )
    b.add_argument("scenario", nargs="?", default="configs/scenarios/shanghai-2019.toml")
    b.add_argument("--sample", type=sample_arg, metavar="1:k", default=1)
    b.add_argument("--json", metavar="FILE", help="write the results as JSON")
    b.add_argument("--repeat", type=positive_int, default=1, help="runs of each (best is kept)")
    return b


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point: exit 2 with a clear message on a bad scenario or flag."""
    args = build_parser().parse_args(argv)
    try:
        return _bench(args)
    except (ScenarioError, UsageError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _bench(args: argparse.Namespace) -> int:
    best_full: dict[str, Any] | None = None
    best_bare: dict[str, Any] | None = None
    for _ in range(args.repeat):
        f = full_model(args.scenario, args.sample)
        if best_full is None or f["cpu_s"] < best_full["cpu_s"]:
            best_full = f
        b = bare_mmc(f["entities"])
        if best_bare is None or b["cpu_s"] < best_bare["cpu_s"]:
            best_bare = b
    assert best_full is not None and best_bare is not None
    ratio = best_full["cpu_s"] / best_bare["cpu_s"]
    rows = [
        (
            "full model: " + best_full["scenario"] + f" ({best_full['sample']})",
            best_full["entities"],
            best_full["events"],
            best_full["cpu_s"],
            best_full["wall_s"],
        ),
        (
            "bare SimPy M/M/2, rho 0.5",
            best_bare["customers"],
            best_bare["events"],
            best_bare["cpu_s"],
            best_bare["wall_s"],
        ),
    ]
    print(
        f"{'run':<44}{'entities':>11}{'events':>11}{'cpu s':>8}{'wall s':>8}"
        f"{'events/s':>11}{'entities/s':>11}"
    )
    for name, n, ev, cpu, wall in rows:
        print(
            f"{name:<44}{n:>11,}{ev:>11,}{cpu:>8.2f}{wall:>8.2f}{ev / cpu:>11,.0f}{n / cpu:>11,.0f}"
        )
    print(
        f"full / bare (CPU time, same customers): {ratio:.2f}  (target <= 1.5: "
        f"{'met' if ratio <= 1.5 else 'NOT met'})"
    )
    print(
        f"full model: {best_full['centre_visits']:,} centre visits + "
        f"{best_full['gateway_requests']:,} gateway requests simulated as entities"
    )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(
                {
                    "full": best_full,
                    "bare_simpy_mmc": best_bare,
                    "ratio_cpu": ratio,
                    "target_ratio": 1.5,
                    "met": ratio <= 1.5,
                    "events_per_s_full": best_full["events"] / best_full["cpu_s"],
                    "events_per_s_bare": best_bare["events"] / best_bare["cpu_s"],
                    "python": platform.python_version(),
                    "simpy": simpy.__version__,
                },
                fh,
                indent=2,
            )
    return 0
