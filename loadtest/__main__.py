"""``python -m loadtest``: run load tests, seed data, bench the node, compare with the simulator.

run      Locust headless against a gateway (closed or open model), SLO gate, reports
seed     push a deterministic synthetic population so that reads find data
bench    gateway vs bare aiohttp, server on core 0, wrk on core 1 -> bench.json
worker   a Locust worker for a master on another machine (distributed runs)
compare  measured (run summary.json) vs simulated (simulator summary.json) -> compare.json
"""

from __future__ import annotations

import argparse
import os
import sys

from loadtest.errors import LoadTestError


def _cmd_seed(args: argparse.Namespace) -> int:
    from loadtest.seed import seed_main

    return seed_main(args)


def _cmd_run(args: argparse.Namespace) -> int:
    from loadtest.run import run_main

    return run_main(args)


def _cmd_worker(args: argparse.Namespace) -> int:
    from loadtest.run import worker_main

    return worker_main(args)


def _cmd_compare(args: argparse.Namespace) -> int:
    from loadtest.compare import compare_main

    return compare_main(args)


def build_parser() -> argparse.ArgumentParser:
    """The CLI; ``--help`` of each command is its manual."""
    p = argparse.ArgumentParser(
        prog="python -m loadtest",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    r = sub.add_parser("run", help="run Locust headless against a gateway and gate on SLOs")
    r.add_argument("--host", required=True, help="gateway base URL, e.g. http://127.0.0.1:8080")
    r.add_argument("--keyring", required=True, help="keyring TOML with the clients' keys")
    r.add_argument("--catalog", required=True, help="catalog TOML of the deployment")
    r.add_argument(
        "--scenario", help="scenario TOML (request-kind mix, hourly profile); default mix without"
    )
    r.add_argument("--duration", default="30s", help="run time, e.g. 30s, 5m (default %(default)s)")
    r.add_argument("--out", required=True, help="folder for report.html, stats.csv, summary.json")
    r.add_argument(
        "--workers", type=int, default=0, help="local Locust worker processes (0 = one process)"
    )
    r.add_argument("--slo", help="SLO file (e.g. configs/slo.toml); breach -> exit code 1")
    r.add_argument(
        "--users", type=int, default=20, help="concurrent users, closed model (default %(default)s)"
    )
    r.add_argument(
        "--spawn-rate",
        type=float,
        default=20.0,
        help="users started per second (default %(default)s)",
    )
    r.add_argument(
        "--user-classes",
        nargs="+",
        metavar="CLASS",
        help="CitizenPortalUser AgencyProducer AgencyConsumer CatalogBrowser (default: all, weighted by the mix)",
    )
    r.add_argument(
        "--shape", help="load shape: diurnal, step, spike (peak = --users, or --open-rate)"
    )
    r.add_argument(
        "--open-rate",
        type=float,
        help="open model: requests per second started on a fixed schedule (kinds from the mix)",
    )
    r.add_argument(
        "--citizens",
        type=int,
        default=1000,
        help="citizens whose keys are read (default %(default)s)",
    )
    r.add_argument(
        "--seed", action="store_true", help="seed the citizens' records before the run (see `seed`)"
    )
    r.add_argument(
        "--resources",
        type=int,
        default=0,
        help="use (and seed) only the first N keyed readable resources (0 = all; use ~50 with a 16,000-resource catalog)",
    )
    r.add_argument(
        "--pull-wait",
        type=int,
        default=1,
        help="long-poll wait of AgencyConsumer pulls, s (default %(default)s)",
    )
    r.add_argument(
        "--catalog-share",
        type=float,
        default=0.02,
        help="share of catalog requests in the mix (default %(default)s)",
    )
    r.add_argument(
        "--open-concurrency",
        type=int,
        default=200,
        help="open model: most requests in flight per worker; more arrivals are dropped (default %(default)s)",
    )
    r.add_argument(
        "--remote-workers",
        type=int,
        default=0,
        help="also wait for this many workers on other machines (`python -m loadtest worker`)",
    )
    r.add_argument(
        "--master-bind",
        default="127.0.0.1",
        help="address the master listens on for workers (default %(default)s; 0.0.0.0 for remote workers)",
    )
    r.add_argument(
        "--master-port", type=int, default=0, help="master port for workers (default: a free port)"
    )
    r.set_defaults(func=_cmd_run)

    s = sub.add_parser("seed", help="push a deterministic synthetic population")
    s.add_argument("--host", required=True, help="gateway base URL")
    s.add_argument("--keyring", required=True, help="keyring TOML")
    s.add_argument("--catalog", required=True, help="catalog TOML")
    s.add_argument(
        "--citizens",
        type=int,
        default=1000,
        help="citizens per keyed resource (default %(default)s)",
    )
    s.add_argument(
        "--resources",
        type=int,
        default=0,
        help="seed at most this many resources (0 = all readable)",
    )
    s.set_defaults(func=_cmd_seed)

    sub.add_parser(
        "bench",
        help="gateway vs bare aiohttp on pinned cores, writes bench.json (needs wrk; runs "
        "`python -m bench gateway`, see its --help)",
        add_help=False,
    )

    w = sub.add_parser("worker", help="a Locust worker for a master on another machine")
    w.add_argument(
        "--master", required=True, help="master host:port (as printed by `run --remote-workers`)"
    )
    w.add_argument("--config", required=True, help="a copy of the master's OUT/run-config.json")
    w.add_argument(
        "--user-classes",
        nargs="+",
        metavar="CLASS",
        help="the same classes as the master (default: from the mix)",
    )
    w.set_defaults(func=_cmd_worker)

    c = sub.add_parser(
        "compare", help="measured vs simulated throughput and latency per request kind"
    )
    c.add_argument("run_dir", help="folder of a `loadtest run` (summary.json)")
    c.add_argument("sim_dir", help="folder of a `simulator run` (summary.json)")
    c.add_argument("--out", help="where to write compare.json (default: RUN_DIR/compare.json)")
    c.set_defaults(func=_cmd_compare)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point: a clear message and a non-zero exit instead of a traceback."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bench"]:  # the benches live beside the product (bench/gateway.py)
        from harness import forward

        return forward("bench", "gateway", *argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except LoadTestError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:  # output piped into e.g. `head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
