"""Helpers shared by the load-test kit's tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from harness import child_env

ROOT = Path(__file__).resolve().parents[2]


def run_cli(
    *args: str, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """``python -m loadtest ARGS`` as a subprocess (text output captured)."""
    full = dict(os.environ)
    full.update(child_env(env))
    return subprocess.run(
        [sys.executable, "-m", "loadtest", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=full,
    )
