"""`python -m simulator capacity`: the smallest value of one integer key meeting targets.

Capacity is assumed to help monotonically (more counters or nodes never make the
target harder to meet). Starting from the scenario's value, the search doubles
upwards until a value meets the targets (or `--max` is reached), or, when the
scenario's value already meets them, bisects downwards; then it bisects between
the largest failing and the smallest passing value. Every value is simulated with
the same replications and seeds (common random numbers), so the comparison between
values is not blurred by sampling noise.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from simulator.cli_common import UsageError, load_scenario
from simulator.runner import simulate
from simulator.targets import Target, ci_of, metric, parse_target

VARY = (
    "centers.staff",
    "centers.count",
    "gateway.nodes",
    "gateway.workers_per_node",
    "agencies.officers",
)


def search(
    path: str,
    targets: list[Target],
    vary: str,
    lo: int,
    hi: int | None,
    sets: list[tuple[str, Any]],
    replications: int | None,
    sample: int | None,
    jobs: int,
    conservative: bool,
    bench: str | None = None,
    report: Any = None,
) -> tuple[int | None, list[dict[str, Any]]]:
    """(smallest passing value or None, rows of the values tried in order)."""
    if vary not in VARY:
        raise UsageError(f"--vary {vary!r}: can vary one of {', '.join(VARY)}")
    base, _ = load_scenario(path, sets, bench)  # checks the file before any run
    section, key = vary.split(".")
    start = int(getattr(getattr(base, section), key))
    hi = hi or max(4 * start, lo + 1)
    if not lo <= hi:
        raise UsageError(f"--min {lo} is above --max {hi}")
    start = min(max(start, lo), hi)
    tried: dict[int, bool] = {}
    rows: list[dict[str, Any]] = []

    def evaluate(v: int) -> bool:
        if v in tried:
            return tried[v]
        scn, _ = load_scenario(path, [*sets, (vary, v)], bench)
        summary, _ = simulate(scn, replications, sample, jobs)
        ok = all(t.met(summary, conservative) for t in targets)
        row: dict[str, Any] = {vary: v, "meets": ok}
        for t in targets:
            row[t.metric] = metric(summary, t.metric)
            row[f"{t.metric} ci95"] = ci_of(summary, t.metric)
        rows.append(row)
        tried[v] = ok
        if report:
            report(row)
        return ok

    if evaluate(start):
        good, bad = start, lo - 1
        if start > lo and not evaluate(lo):
            bad = lo
        elif start > lo:
            good = lo
    else:
        bad, good = start, None
        v = start
        while good is None:
            if v >= hi:
                return None, rows
            v = min(hi, max(v + 1, v * 2))
            if evaluate(v):
                good = v
            else:
                bad = v
    while good - bad > 1:
        mid = (good + bad) // 2
        if evaluate(mid):
            good = mid
        else:
            bad = mid
    return good, rows


def format_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "(nothing tried)"
    cols = list(rows[0])
    width = {c: max(len(c), *(len(_fmt(r.get(c))) for r in rows)) for c in cols}
    lines = ["  ".join(c.rjust(width[c]) for c in cols), "  ".join("-" * width[c] for c in cols)]
    for r in rows:
        lines.append("  ".join(_fmt(r.get(c)).rjust(width[c]) for c in cols))
    return "\n".join(lines)


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.4g}"
    return "-" if v is None else str(v)


def main(args: argparse.Namespace) -> int:
    targets = [parse_target(t) for t in args.target]

    def report(row: dict[str, Any]) -> None:
        print(
            f"tried {args.vary}={row[args.vary]}: {'meets' if row['meets'] else 'misses'}",
            file=sys.stderr,
            flush=True,
        )

    best, rows = search(
        args.scenario,
        targets,
        args.vary,
        args.lo,
        args.hi,
        args.sets,
        args.replications,
        args.sample,
        args.jobs,
        args.conservative,
        args.calibrate,
        report,
    )
    rows_sorted = sorted(rows, key=lambda r: r[args.vary])
    print(
        f"targets: {', '.join(map(str, targets))}"
        f"{' (whole 95 % CI)' if args.conservative else ' (replicated mean)'}"
    )
    print(format_table(rows_sorted))
    if best is None:
        print(
            f"no value of {args.vary} up to {max(r[args.vary] for r in rows)} meets the "
            "targets (raise --max)"
        )
    else:
        print(f"minimum {args.vary} = {best}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(
                {
                    "vary": args.vary,
                    "targets": [str(t) for t in targets],
                    "minimum": best,
                    "tried": rows,
                },
                fh,
                indent=2,
            )
    return 0 if best is not None else 1
