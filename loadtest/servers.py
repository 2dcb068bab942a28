"""Start and stop the server processes the bench and the tests drive (pinned, on free ports)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

from loadtest.errors import LoadTestError


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, proc: subprocess.Popen | None, timeout_s: float, log: Path | None) -> None:
    """Poll ``url`` until it answers 200; fail early when ``proc`` exits."""
    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
            raise LoadTestError(
                f"server exited with code {proc.returncode} before it was ready:\n{tail}"
            )
        try:
            with urllib.request.urlopen(url, timeout=1.0) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError) as exc:
            last = str(exc)
        time.sleep(0.1)
    raise LoadTestError(f"server at {url} not ready after {timeout_s:.0f} s ({last})")


@contextlib.contextmanager
def server_process(
    cmd: Sequence[str],
    ready_url: str,
    *,
    cpu: int | None = None,
    env: dict[str, str] | None = None,
    log: Path | None = None,
    cwd: str | Path | None = None,
    timeout_s: float = 60.0,
) -> Iterator[subprocess.Popen]:
    """Run ``cmd`` (pinned to ``cpu`` when given) until the block ends; SIGTERM, then SIGKILL."""

    def pin() -> None:
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})

    out = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115 - closed below
    full_env = dict(os.environ)
    full_env.update(env or {})
    proc = subprocess.Popen(
        list(cmd), stdout=out, stderr=subprocess.STDOUT, env=full_env, preexec_fn=pin, cwd=cwd
    )
    try:
        wait_ready(ready_url, proc, timeout_s, log)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if log:
            out.close()  # type: ignore[union-attr]


def python_cmd(*args: str) -> list[str]:
    """``python -m ...`` with this interpreter."""
    return [sys.executable, *args]


def repo_root() -> Path:
    """The folder holding the ``loadtest`` package (so subprocesses can import it)."""
    return Path(__file__).resolve().parent.parent


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for child Python processes: the repo root on PYTHONPATH."""
    env = {
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(repo_root()), os.environ.get("PYTHONPATH")])
        )
    }
    env.update(extra or {})
    return env
