"""The `run` subcommand: simulate and write summary.json + report.html atomically."""

from __future__ import annotations

import argparse
import sys

from simulator import report, summary
from simulator.cli_common import load_scenario
from simulator.progress import Progress
from simulator.runner import OutputDir, simulate, write_json


def run(args: argparse.Namespace) -> int:
    scn, _ = load_scenario(args.scenario, args.sets, args.calibrate)
    out = OutputDir(args.out, force=args.force)  # refuses a non-empty DIR before simulating
    try:
        prog = Progress(f"simulating {scn.name}")
        result, reps = simulate(scn, args.replications, args.sample, args.jobs, prog)
        prog.done()
        write_json(out.path("summary.json"), result)
        plots = report.plot_all(summary.series(reps), out.tmp)
        report.write_html(result, plots, out.path("report.html"))
    except BaseException:
        out.abort()
        raise
    target = out.commit()
    c, g, cal = result["centers"], result["gateway"], result["calibration"]
    print(
        f"{scn.name}: centre wait mean {c['wait_minutes']['mean']} min "
        f"(p95 {c['wait_minutes']['p95']}), counter utilisation {c['utilization']}; "
        f"gateway p99 {g['latency_ms']['p99']} ms, utilisation {g['utilization']}"
    )
    if cal.get("within_tolerance") is not None:
        print(
            f"calibration: visits H1 {cal['center_visits_first_half']['mean']:,.0f}, "
            f"requests/year {cal['gateway_requests_year']['mean']:,.0f}: "
            f"{'within' if cal['within_tolerance'] else 'NOT within'} "
            f"{cal['tolerance_pct']} %"
        )
    print(f"wrote {target}/summary.json and {target}/report.html", file=sys.stderr)
    return 0
