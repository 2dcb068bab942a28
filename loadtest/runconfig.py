"""The settings one run hands to its Locust processes (master and workers), as a JSON file.

``python -m loadtest run`` writes ``OUT/run-config.json`` and points every Locust process
at it through the ``LOADTEST_CONFIG`` environment variable; workers on other machines
get a copy of the file (it names the keyring and catalog files, never a secret).
"""

from __future__ import annotations

import os
from pathlib import Path

import msgspec

from loadtest.errors import LoadTestError

ENV = "LOADTEST_CONFIG"


class RunConfig(msgspec.Struct, forbid_unknown_fields=True):
    """Everything the users, shapes and hooks need to know about the run."""

    host: str
    keyring: str
    catalog: str
    out: str
    duration_s: float
    shares: dict[str, float]
    hourly: list[float] = msgspec.field(default_factory=lambda: [1.0] * 24)
    mix_source: str = "default mix"
    citizens: int = 1000
    resources: int = 0
    users: int = 20
    spawn_rate: float = 20.0
    open_rate: float | None = None
    open_concurrency: int = 200
    shape: str | None = None
    slo: str | None = None
    push_batch_records: int = 100
    pull_limit: int = 100
    pull_wait_s: int = 1
    think_s: float = 0.0
    late_ms: float = 10.0
    weights_from_mix: bool = True
    workers: int = 0
    remote_workers: int = 0
    master_bind: str = "127.0.0.1"
    master_port: int = 0


def write_config(cfg: RunConfig, path: Path) -> None:
    """Write the config file."""
    path.write_bytes(msgspec.json.format(msgspec.json.encode(cfg)))


def read_config(path: str | Path | None = None) -> RunConfig:
    """The config named by ``path`` or by ``$LOADTEST_CONFIG``."""
    path = path or os.environ.get(ENV)
    if not path:
        raise LoadTestError(
            f"no run configuration: set {ENV} to the run-config.json that `python -m loadtest run` wrote"
        )
    try:
        return msgspec.json.decode(Path(path).read_bytes(), type=RunConfig)
    except OSError as exc:
        raise LoadTestError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except msgspec.DecodeError as exc:
        raise LoadTestError(f"{path}: not a run configuration ({exc})") from None


_current: list[RunConfig] = []


def current_config() -> RunConfig:
    """This process's run configuration (``$LOADTEST_CONFIG``, read once)."""
    if not _current:
        _current.append(read_config())
    return _current[0]
