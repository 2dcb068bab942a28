"""``python -m loadtest run``: check the inputs, then run Locust headless and report.

Everything that can be checked before load starts is checked here, with a clear
message and exit code 2: the duration, the user classes, the shape, the SLO file, the
scenario, the catalog and keyring, and that the host answers. Then Locust runs as a
subprocess (``-f loadtest/locustfile.py``): one process, or a master and ``--workers``
local worker processes. Exit code: 0 when the run passed (SLOs met when given), 1 when
an SLO failed (or, without SLOs, when any request failed), 2 on a usage error.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from harness import child_env, free_port
from loadtest.errors import LoadTestError
from loadtest.host import check_host
from loadtest.mix import load_mix
from loadtest.population import load_city
from loadtest.profile import SHAPES
from loadtest.runconfig import ENV, RunConfig, write_config
from loadtest.units import parse_duration

LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"
CLOSED_CLASSES = ("CitizenPortalUser", "AgencyProducer", "AgencyConsumer", "CatalogBrowser")
ALL_CLASSES = (*CLOSED_CLASSES, "OpenModelUser", "SignedPingUser")


def pick_classes(requested: list[str] | None, shares: dict[str, float]) -> list[str]:
    """The user classes of the run: the requested ones (checked), else those the mix needs."""
    if requested:
        for name in requested:
            if name not in ALL_CLASSES:
                raise LoadTestError(
                    f"--user-classes: unknown user class {name!r} (one of {', '.join(ALL_CLASSES)})"
                )
        return list(dict.fromkeys(requested))
    from loadtest.users import KIND_USERS

    return [KIND_USERS[k] for k in ("read", "push", "pull", "catalog") if shares.get(k, 0) > 0]


def build_config(args: argparse.Namespace) -> RunConfig:
    """Validate every input and return the run configuration."""
    duration = parse_duration(args.duration, "--duration")
    if args.workers < 0:
        raise LoadTestError(f"--workers must be >= 0, got {args.workers}")
    if args.remote_workers < 0:
        raise LoadTestError(f"--remote-workers must be >= 0, got {args.remote_workers}")
    if not 0 <= args.master_port <= 65535:
        raise LoadTestError(f"--master-port must be 0..65535, got {args.master_port}")
    if args.open_concurrency < 1:
        raise LoadTestError(f"--open-concurrency must be >= 1, got {args.open_concurrency}")
    if args.users < 1:
        raise LoadTestError(f"--users must be >= 1, got {args.users}")
    if not args.spawn_rate > 0:
        raise LoadTestError(f"--spawn-rate must be > 0, got {args.spawn_rate}")
    if args.open_rate is not None and not args.open_rate > 0:
        raise LoadTestError(f"--open-rate must be > 0, got {args.open_rate}")
    if args.resources < 0:
        raise LoadTestError(f"--resources must be >= 0, got {args.resources}")
    if args.citizens < 1:
        raise LoadTestError(f"--citizens must be >= 1, got {args.citizens}")
    if not 0 <= args.pull_wait <= 30:
        raise LoadTestError(f"--pull-wait must be 0..30 s, got {args.pull_wait}")
    if args.open_rate and args.user_classes and args.user_classes != ["OpenModelUser"]:
        raise LoadTestError(
            "--open-rate draws every request kind from the mix; leave out --user-classes"
        )
    if args.user_classes and "OpenModelUser" in args.user_classes and not args.open_rate:
        raise LoadTestError("--user-classes OpenModelUser needs --open-rate RPS")
    if args.shape and args.shape not in SHAPES:
        raise LoadTestError(f"--shape: unknown shape {args.shape!r} (one of {', '.join(SHAPES)})")
    if args.slo:
        from loadtest.slo import load_slo

        load_slo(args.slo)
    mix = load_mix(args.scenario, args.catalog_share)
    city = load_city(args.catalog, args.keyring)
    if not city.read_targets() and mix.shares.get("read", 0) > 0:
        raise LoadTestError(
            f"{args.catalog}: no keyed resource that a client of {args.keyring} may read"
        )
    users = args.users
    if args.open_rate:
        users = max(1, args.workers + args.remote_workers)
    return RunConfig(
        host=args.host.rstrip("/"),
        keyring=str(Path(args.keyring).resolve()),
        catalog=str(Path(args.catalog).resolve()),
        out=str(Path(args.out).resolve()),
        duration_s=duration,
        shares=mix.shares,
        hourly=mix.hourly,
        mix_source=mix.source,
        citizens=args.citizens,
        resources=args.resources,
        users=users,
        spawn_rate=args.spawn_rate if not args.open_rate else float(users),
        open_rate=args.open_rate,
        open_concurrency=args.open_concurrency,
        shape=args.shape,
        slo=str(Path(args.slo).resolve()) if args.slo else None,
        push_batch_records=min(max(1, mix.push_batch_records), 1000),
        pull_limit=min(max(1, mix.pull_batch_records), 1000),
        pull_wait_s=args.pull_wait,
        weights_from_mix=not args.user_classes,
        workers=args.workers,
        remote_workers=args.remote_workers,
        master_bind=args.master_bind,
        master_port=args.master_port,
    )


def locust_cmd(cfg: RunConfig, classes: list[str], out: Path, role: str, port: int) -> list[str]:
    """The Locust command line of the master / single process (``role`` "local" or "master")
    or of a worker (``role`` "worker")."""
    base = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--skip-log-setup"]
    if role == "worker":
        host = "127.0.0.1" if cfg.master_bind in ("0.0.0.0", "::", "") else cfg.master_bind
        return [*base, "--worker", "--master-host", host, "--master-port", str(port), *classes]
    cmd = [
        *base,
        "--headless",
        "-H",
        cfg.host,
        "-t",
        f"{max(1, round(cfg.duration_s))}s",
        "-u",
        str(cfg.users),
        "-r",
        str(cfg.spawn_rate),
        "--csv",
        str(out / "locust"),
        "--html",
        str(out / "report.html"),
        "--only-summary",
    ]
    if role == "master":
        cmd += [
            "--master",
            "--master-bind-host",
            cfg.master_bind,
            "--master-bind-port",
            str(port),
            "--expect-workers",
            str(cfg.workers + cfg.remote_workers),
            "--expect-workers-max-wait",
            "120",
        ]
    return [*cmd, *classes]


def _tail(path: Path, n: int = 3000) -> str:
    return path.read_text(errors="replace")[-n:] if path.exists() else ""


def run_locust(cfg: RunConfig, classes: list[str]) -> int:
    """Run Locust (and its local workers); return its exit code."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    conf = out / "run-config.json"
    write_config(cfg, conf)
    env = dict(os.environ)
    env.update(child_env({ENV: str(conf)}))
    port = cfg.master_port or free_port()
    role = "master" if cfg.workers + cfg.remote_workers > 0 else "local"
    if cfg.remote_workers:
        print(
            f"master listening on {cfg.master_bind}:{port}; on each worker machine run:\n"
            f"  python -m loadtest worker --master <this-host>:{port} "
            f"--config run-config.json --user-classes {' '.join(classes)}\n"
            f"(copy {conf} there; its keyring and catalog paths must exist on that machine)",
            flush=True,
        )
    log = out / "locust.log"
    model = f"open model at {cfg.open_rate:g}/s" if cfg.open_rate else f"{cfg.users} users"
    print(
        f"running {' '.join(classes)} ({model}, {cfg.workers} local workers, "
        f"shape {cfg.shape or 'constant'}) against {cfg.host} for {cfg.duration_s:g} s; "
        f"mix from {cfg.mix_source}; log: {log}",
        flush=True,
    )
    workers: list[subprocess.Popen] = []
    wlogs = []
    with open(log, "wb") as lf:
        master = subprocess.Popen(
            locust_cmd(cfg, classes, out, role, port), stdout=lf, stderr=subprocess.STDOUT, env=env
        )
        try:
            time.sleep(0.5 if cfg.workers else 0)
            for i in range(cfg.workers):
                wl = open(out / f"locust-worker-{i}.log", "wb")  # noqa: SIM115 - closed below
                wlogs.append(wl)
                workers.append(
                    subprocess.Popen(
                        locust_cmd(cfg, classes, out, "worker", port),
                        stdout=wl,
                        stderr=subprocess.STDOUT,
                        env=env,
                    )
                )
            code = master.wait(timeout=cfg.duration_s + 180)
        except subprocess.TimeoutExpired:
            master.kill()
            master.wait()
            raise LoadTestError(f"locust did not finish in time; see {log}") from None
        finally:
            for w in workers:
                try:
                    w.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    w.terminate()
                    w.wait(timeout=10)
            for wl in wlogs:
                wl.close()
    stats = out / "locust_stats.csv"
    if stats.exists():
        shutil.copyfile(stats, out / "stats.csv")
    return code


def format_summary(summary: dict[str, Any]) -> str:
    """Per-kind counts, rates and percentiles as a table."""
    rows = [("kind", "count", "rate/s", "p50 ms", "p95 ms", "p99 ms", "failures")]
    items = list(summary.get("kinds", {}).items()) + [("total", summary.get("total", {}))]
    for name, s in items:
        if not s:
            continue
        rows.append(
            (
                name,
                str(s["count"]),
                f"{s['rate']:.1f}",
                f"{s['p50_ms']:.2f}",
                f"{s['p95_ms']:.2f}",
                f"{s['p99_ms']:.2f}",
                str(s["failures"]),
            )
        )
    w = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(c.rjust(w[i]) if i else c.ljust(w[i]) for i, c in enumerate(r)) for r in rows
    )


def run_main(args: argparse.Namespace) -> int:
    """The ``run`` command."""
    cfg = build_config(args)
    classes = (
        ["OpenModelUser"]
        if cfg.open_rate and not args.user_classes
        else pick_classes(args.user_classes, cfg.shares)
    )
    check_host(cfg.host)
    if args.seed:
        from loadtest.seed import seed_city

        n = seed_city(cfg.host, load_city(cfg.catalog, cfg.keyring), cfg.citizens, cfg.resources)
        print(f"seeded {n} records")
    out = Path(cfg.out)
    code = run_locust(cfg, classes)
    summary_path = out / "summary.json"
    if not summary_path.exists():
        raise LoadTestError(
            f"locust ended (exit code {code}) without a summary:\n{_tail(out / 'locust.log')}",
            exit_code=code or 2,
        )
    summary = json.loads(summary_path.read_text())
    print(format_summary(summary))
    if "open_model" in summary:
        om = summary["open_model"]
        print(
            f"open model: target {om['target_rate']}/s, achieved {om['achieved_rate']}/s, "
            f"late {om['late']}, dropped {om['dropped']} (latency from intended start)"
        )
    slo = summary.get("slo")
    if slo:
        if slo["passed"]:
            print(f"SLO passed: {slo['file']}")
        else:
            print("SLO FAILED:", file=sys.stderr)
            for b in slo["breaches"]:
                print(f"  - {b['message']}", file=sys.stderr)
    print(f"wrote {out / 'report.html'}, {out / 'stats.csv'}, {summary_path}")
    return code


def worker_main(args: argparse.Namespace) -> int:
    """The ``worker`` command: a Locust worker for a master on another machine."""
    from loadtest.runconfig import read_config

    cfg = read_config(args.config)
    host, _, port = args.master.rpartition(":")
    if not host or not port.isdigit():
        raise LoadTestError(f"--master must be host:port, got {args.master!r}")
    classes = (
        ["OpenModelUser"]
        if cfg.open_rate and not args.user_classes
        else pick_classes(args.user_classes, cfg.shares)
    )
    env = dict(os.environ)
    env.update(child_env({ENV: str(Path(args.config).resolve())}))
    cmd = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--skip-log-setup",
        "--worker",
        "--master-host",
        host,
        "--master-port",
        port,
        *classes,
    ]
    return subprocess.call(cmd, env=env)
