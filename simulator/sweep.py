"""`python -m simulator sweep`: a grid of scenario variants on a process pool or Dask.

Each grid point is the scenario with some keys set; all points are checked before
any runs. Points run in parallel (one point per worker, its replications in
sequence) on a local `concurrent.futures` process pool, or on a Dask cluster
(`--dask ADDRESS` or `--dask local`; install with `pip install
onestop-exchange[cluster]`). Seeds come from the scenario, so the table is the
same whichever executor ran it.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from simulator.cli_common import UsageError, load_scenario
from simulator.runner import simulate
from simulator.scenario import parse_value
from simulator.targets import metric

DEFAULT_METRICS = (
    "centers.wait_minutes.mean",
    "centers.wait_minutes.p95",
    "centers.utilization",
    "centers.reneged",
    "gateway.latency_ms.p99",
    "gateway.utilization",
    "gateway.failed",
)


def grid(sets: list[tuple[str, Any]]) -> list[dict[str, Any]]:
    """Cartesian product of `key=v1,v2,...` axes, in the order given."""
    if not sets:
        raise UsageError("sweep needs at least one --set KEY=V1,V2,...")
    axes: list[tuple[str, list[Any]]] = []
    for key, raw in sets:
        if isinstance(raw, list):
            values = raw
        elif isinstance(raw, str):
            values = [parse_value(x.strip()) for x in raw.split(",") if x.strip()]
        else:
            values = [raw]
        if not values:
            raise UsageError(f"--set {key}= has no values")
        if any(k == key for k, _ in axes):
            raise UsageError(f"--set {key} given twice")
        axes.append((key, values))
    return [
        dict(zip([k for k, _ in axes], combo, strict=True))
        for combo in itertools.product(*(v for _, v in axes))
    ]


def run_point(
    job: tuple[str, dict[str, Any], int | None, int | None, str | None, tuple[str, ...]],
) -> dict[str, Any]:
    """Simulate one grid point; returns its row (the point's keys, then the metrics)."""
    path, point, replications, sample, bench, metrics = job
    scn, _ = load_scenario(path, list(point.items()), bench)
    summary, _ = simulate(scn, replications, sample)
    row: dict[str, Any] = dict(point)
    for m in metrics:
        row[m] = metric(summary, m)
    return row


def execute(jobs: list[tuple], workers: int, dask: str | None) -> list[dict[str, Any]]:
    """Rows in grid order, computed on a process pool or on Dask."""
    if dask:
        try:
            from dask.distributed import Client, LocalCluster
        except ImportError:
            raise UsageError(
                "--dask needs dask.distributed, which is not installed: "
                "pip install onestop-exchange[cluster]"
            ) from None
        if dask == "local":
            with (
                LocalCluster(
                    n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
                ) as cluster,
                Client(cluster) as client,
            ):
                return client.gather(client.map(run_point, jobs, pure=False))
        with Client(dask) as client:
            return client.gather(client.map(run_point, jobs, pure=False))
    if workers <= 1 or len(jobs) == 1:
        return [run_point(j) for j in jobs]
    with ProcessPoolExecutor(max_workers=min(workers, len(jobs))) as pool:
        return list(pool.map(run_point, jobs))


def format_rows(rows: list[dict[str, Any]]) -> str:
    from simulator.capacity import format_table

    return format_table(rows)


def write_table(rows: list[dict[str, Any]], path: str) -> None:
    p = Path(path)
    tmp = p.with_name(f".{p.name}.partial")
    if p.suffix == ".json":
        tmp.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    else:
        with tmp.open("w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    tmp.replace(p)


def main(args: argparse.Namespace) -> int:
    points = grid(args.sets)
    metrics = tuple(args.metric or DEFAULT_METRICS)
    if args.out and Path(args.out).suffix not in (".csv", ".json"):
        raise UsageError(f"--out {args.out!r}: use a .csv or .json file name")
    for point in points:  # every point must be a valid scenario before anything runs
        load_scenario(args.scenario, list(point.items()), args.calibrate)
    jobs = [
        (args.scenario, p, args.replications, args.sample, args.calibrate, metrics) for p in points
    ]
    workers = args.jobs or (os.cpu_count() or 1)
    rows = execute(jobs, workers, args.dask)
    print(format_rows(rows))
    if args.out:
        write_table(rows, args.out)
    return 0
