"""Argument parsing helpers shared by the subcommands (clear errors, exit code 2)."""

from __future__ import annotations

import argparse
import re
from typing import Any

from simulator import calibrate
from simulator.scenario import (
    Scenario,
    ScenarioError,
    apply_overrides,
    from_dict,
    parse_value,
    read_raw,
)


class UsageError(Exception):
    """A bad command-line value; printed as `error: ...` with exit code 2."""


def sample_arg(text: str) -> int:
    """`1:k` -> k (k >= 1)."""
    m = re.fullmatch(r"\s*1\s*:\s*(\d+)\s*", text)
    if not m or int(m.group(1)) < 1:
        raise argparse.ArgumentTypeError(f"expected 1:k with k >= 1, got {text!r}")
    return int(m.group(1))


def positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


def set_arg(text: str) -> tuple[str, Any]:
    """`key=value` (value parsed like TOML)."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    key, value = text.split("=", 1)
    return key.strip(), parse_value(value.strip())


def load_scenario(
    path: str, sets: list[tuple[str, Any]] | None = None, bench: str | None = None
) -> tuple[Scenario, dict[str, Any]]:
    """The scenario with --set overrides and --calibrate applied; also the raw dict."""
    raw = read_raw(path)
    over: dict[str, Any] = dict(sets or [])
    if bench:
        over.update(calibrate.overrides(calibrate.read_bench(bench), raw, bench))
    apply_overrides(raw, over, path)
    return from_dict(raw, path), raw


def add_scenario_args(
    p: argparse.ArgumentParser,
    calibrate_flag: bool = True,
    set_help: str = "override a scenario key, e.g. centers.staff=60 (repeatable)",
) -> None:
    p.add_argument("scenario", help="scenario TOML file (configs/scenarios/*.toml)")
    p.add_argument("--replications", type=positive_int, help="override simulation.replications")
    p.add_argument(
        "--sample",
        type=sample_arg,
        metavar="1:k",
        help="simulate 1 in k centres / agencies and 1/k of the gateway traffic "
        "(time-dilated), scaling counts back; see docs/simulator.md",
    )
    p.add_argument(
        "--set",
        dest="sets",
        type=set_arg,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=set_help,
    )
    p.add_argument(
        "--jobs",
        type=positive_int,
        default=0,
        help="parallel processes for replications (sweep: grid points); "
        "default one per CPU, 1 = all in this process",
    )
    if calibrate_flag:
        p.add_argument(
            "--calibrate",
            metavar="BENCH_JSON",
            help="take gateway service times from the load-test kit's bench.json",
        )


__all__ = [
    "ScenarioError",
    "UsageError",
    "add_scenario_args",
    "load_scenario",
    "sample_arg",
    "set_arg",
    "positive_int",
]
