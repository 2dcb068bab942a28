"""Run a scenario's replications (sequentially or on a process pool) and write outputs."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from simulator import summary as _summary
from simulator.model import run_replication
from simulator.progress import Progress
from simulator.scenario import Scenario


def seeds(scn: Scenario, n: int) -> list[np.random.SeedSequence]:
    """Independent seed sequences, one per replication."""
    return np.random.SeedSequence(scn.simulation.seed).spawn(n)


def _one(args: tuple[Scenario, np.random.SeedSequence, int]) -> dict[str, Any]:
    scn, ss, k = args
    return run_replication(scn, ss, k)


def replicate(
    scn: Scenario,
    replications: int | None = None,
    sample: int | None = None,
    jobs: int = 1,
    progress: Progress | None = None,
) -> list[dict[str, Any]]:
    """Observations of each replication, in replication order."""
    n = replications or scn.simulation.replications
    k = sample or scn.simulation.sample
    jobs = jobs or (os.cpu_count() or 1)  # 0 = one process per CPU
    ss = seeds(scn, n)
    if jobs <= 1 or n == 1:
        out = []
        for i, s in enumerate(ss):
            cb = None
            if progress is not None and progress.enabled:

                def cb(f: float, i: int = i) -> None:
                    progress.update((i + f) / n, f"replication {i + 1}/{n}")

            out.append(run_replication(scn, s, k, cb))
        return out
    with ProcessPoolExecutor(max_workers=min(jobs, n)) as pool:
        futs = [pool.submit(_one, (scn, s, k)) for s in ss]
        out = []
        for i, f in enumerate(futs):
            out.append(f.result())
            if progress is not None:
                progress.update((i + 1) / n, f"replication {i + 1}/{n}")
        return out


def simulate(
    scn: Scenario,
    replications: int | None = None,
    sample: int | None = None,
    jobs: int = 1,
    progress: Progress | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(summary, raw replications) of one scenario."""
    t0 = time.perf_counter()
    reps = replicate(scn, replications, sample, jobs, progress)
    return _summary.build(scn, reps, time.perf_counter() - t0), reps


class OutputDir:
    """Writes into a hidden temporary sibling; `commit()` renames it to the target.

    A run that fails leaves nothing that looks like a finished result.
    """

    def __init__(self, target: str | Path, force: bool = False) -> None:
        self.target = Path(target)
        if self.target.exists() and not self.target.is_dir():
            raise FileExistsError(f"{self.target} exists and is not a directory")
        if self.target.is_dir() and any(self.target.iterdir()) and not force:
            raise FileExistsError(f"{self.target} exists and is not empty (use --force)")
        parent = self.target.resolve().parent
        parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.target.name}.partial-", dir=parent))

    def path(self, name: str) -> Path:
        return self.tmp / name

    def commit(self) -> Path:
        old = None
        if self.target.exists():
            old = self.target.with_name(f".{self.target.name}.old-{os.getpid()}")
            self.target.rename(old)
        self.tmp.rename(self.target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return self.target

    def abort(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")
