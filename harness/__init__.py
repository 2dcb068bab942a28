"""The one harness under the benches, the load kit and the tests: free ports, CPU pinning,
server processes started and waited for, and (in :mod:`harness.wrk`) wrk runs.

It imports nothing of the project (stdlib only), so that everything may build on it:
``bench`` and ``devkit`` (not installed with the package), ``loadtest`` (the ``[load]``
extra) and the tests. A node is started as ``python -m gateway serve`` in a child
process, never imported.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "HarnessError",
    "bench_cpus",
    "child_env",
    "cpu_seconds",
    "forward",
    "free_port",
    "http_status",
    "node_config_text",
    "node_process",
    "pin_process",
    "python_cmd",
    "repo_root",
    "server_process",
    "start_process",
    "stop_process",
    "wait_for",
    "wait_http",
    "wait_port",
]


class HarnessError(RuntimeError):
    """A process that would not start or answer, a missing tool; printed without traceback."""

    exit_code = 2


# -- ports, cores, paths ----------------------------------------------------------------


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that is free right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def bench_cpus() -> tuple[int | None, int | None]:
    """(server core, load core): the first two cores this process may use, or (None, None)
    when there are fewer than two (server and load then share the machine)."""
    cpus = sorted(os.sched_getaffinity(0))
    return (cpus[0], cpus[1]) if len(cpus) >= 2 else (None, None)


def _pinner(cpu: int | None) -> Callable[[], None] | None:
    if cpu is None:
        return None

    def pin() -> None:
        os.sched_setaffinity(0, {cpu})

    return pin


def pin_process(pid: int, cpu: int | None) -> None:
    """Move a running process, every thread of it, to one core (no-op for ``None``)."""
    if cpu is None:
        return
    tasks = Path(f"/proc/{pid}/task")
    for tid in [int(t.name) for t in tasks.iterdir()] if tasks.is_dir() else [pid]:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.sched_setaffinity(tid, {cpu})


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by a process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def repo_root() -> Path:
    """The source checkout holding this package (and ``bench``, ``devkit``, ``configs``)."""
    return Path(__file__).resolve().parent.parent


def python_cmd(*args: str) -> list[str]:
    """``python ARGS`` with this interpreter."""
    return [sys.executable, *args]


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Additions to the environment of child Python processes: the checkout on PYTHONPATH
    (so that they import the same code as this process), and ``extra``."""
    env = {
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(repo_root()), os.environ.get("PYTHONPATH")])
        )
    }
    env.update(extra or {})
    return env


def forward(module: str, *args: str) -> int:
    """Run ``python -m MODULE ARGS`` from the checkout and return its exit status: how a
    shipped command (``loadtest bench``) hands over to a tool that is not installed with
    the package (``bench``), without importing it."""
    if not (repo_root() / module.split(".")[0]).is_dir():
        print(
            f"error: `python -m {module}` runs from a source checkout of OneStop Exchange; "
            "it is not installed with the package (see docs/development.md)",
            file=sys.stderr,
        )
        return 2
    env = {**os.environ, **child_env()}
    return subprocess.call(python_cmd("-m", module, *args), env=env)


# -- waiting ----------------------------------------------------------------------------


def _tail(log: Path | None, chars: int = 2000) -> str:
    if log is None or not log.exists():
        return ""
    return log.read_text(errors="replace")[-chars:]


def wait_for(
    check: Callable[[], Any],
    timeout_s: float,
    *,
    what: str,
    proc: subprocess.Popen | None = None,
    log: Path | None = None,
    every: float = 0.05,
) -> Any:
    """Call ``check`` until it returns something true and return that; fail after
    ``timeout_s`` seconds, or at once when ``proc`` exits (with the tail of its ``log``)."""
    deadline = time.monotonic() + timeout_s
    while True:
        if proc is not None and proc.poll() is not None:
            raise HarnessError(
                f"{what}: the process exited with code {proc.returncode}:\n{_tail(log)}"
            )
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise HarnessError(f"{what}: not within {timeout_s:g} s\n{_tail(log)}")
        time.sleep(every)


def http_status(url: str, timeout: float = 2.0, context: ssl.SSLContext | None = None) -> int | None:
    """The status of ``GET url``; None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (OSError, ValueError):
        return None


def wait_http(
    url: str,
    timeout_s: float = 60.0,
    *,
    proc: subprocess.Popen | None = None,
    log: Path | None = None,
    ok: Callable[[int], bool] = lambda status: status == 200,
    context: ssl.SSLContext | None = None,
) -> int:
    """Until ``GET url`` answers a status that is ``ok`` (200 by default); that status."""

    def ready() -> int | None:
        status = http_status(url, 1.0, context)
        return status if status is not None and ok(status) else None

    return wait_for(ready, timeout_s, what=f"waiting for {url}", proc=proc, log=log)


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), 0.2):
            return True
    except OSError:
        return False


def wait_port(
    port: int,
    timeout_s: float = 10.0,
    *,
    host: str = "127.0.0.1",
    proc: subprocess.Popen | None = None,
    log: Path | None = None,
) -> None:
    """Until ``host:port`` accepts TCP connections."""
    wait_for(lambda: _accepts(host, port), timeout_s, what=f"waiting for {host}:{port}",
             proc=proc, log=log)


# -- processes --------------------------------------------------------------------------


def start_process(
    cmd: Sequence[str],
    *,
    log: Path | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
    cpu: int | None = None,
    new_session: bool = False,
) -> subprocess.Popen[bytes]:
    """Start ``cmd`` with ``env`` added to this environment, stdout and stderr appended to
    ``log`` (else discarded), pinned to ``cpu`` when given; ``new_session``: its own
    process group (for :func:`stop_process` with ``group=True``)."""
    out: Any = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - closed below
    try:
        return subprocess.Popen(
            list(cmd),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            preexec_fn=_pinner(cpu),
            start_new_session=new_session,
        )
    finally:
        if log:
            out.close()


def stop_process(proc: subprocess.Popen | None, timeout_s: float = 20.0, *, group: bool = False,
                 sig: int = signal.SIGTERM) -> int | None:
    """``sig`` (SIGTERM), then SIGKILL when it has not exited within ``timeout_s``; its exit
    status. ``group``: signal its whole process group (a node with ``--workers``).
    Idempotent; ``sig=SIGKILL`` is kill -9."""
    if proc is None:
        return None
    if proc.poll() is None:

        def send(s: int) -> None:
            with contextlib.suppress(ProcessLookupError):
                if group:
                    os.killpg(proc.pid, s)
                else:
                    proc.send_signal(s)

        send(sig)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            send(signal.SIGKILL)
            proc.wait(10)
    return proc.returncode


@contextlib.contextmanager
def server_process(
    cmd: Sequence[str],
    ready_url: str,
    *,
    cpu: int | None = None,
    env: Mapping[str, str] | None = None,
    log: Path | None = None,
    cwd: str | Path | None = None,
    timeout_s: float = 60.0,
) -> Iterator[subprocess.Popen]:
    """Run ``cmd`` (pinned to ``cpu`` when given) until the block ends, once ``ready_url``
    answers 200; then SIGTERM, and SIGKILL when it hangs."""
    proc = start_process(cmd, log=log, env=env, cwd=cwd, cpu=cpu)
    try:
        wait_http(ready_url, timeout_s, proc=proc, log=log)
        yield proc
    finally:
        stop_process(proc)


# -- gateway nodes ----------------------------------------------------------------------


def _toml_value(v: Any) -> str:
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    return json.dumps(str(v))


def node_config_text(
    node: Mapping[str, Any],
    store: Mapping[str, Any] | None = None,
    limits: Mapping[str, Any] | None = None,
) -> str:
    """A node configuration file (``[node]``, ``[store]``, ``[limits]``) from plain values."""
    lines = ["[node]"] + [f"{k} = {_toml_value(v)}" for k, v in node.items()]
    for name, table in (("store", store), ("limits", limits)):
        if table:
            lines += ["", f"[{name}]"] + [f"{k} = {_toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def node_process(
    config: Path,
    url: str,
    *,
    args: Sequence[str] = (),
    cpu: int | None = None,
    env: Mapping[str, str] | None = None,
    log: Path | None = None,
    timeout_s: float = 120.0,
) -> Iterator[subprocess.Popen]:
    """``python -m gateway serve --config CONFIG ARGS`` until the block ends, once
    ``URL/readyz`` answers 200."""
    cmd = python_cmd("-m", "gateway", "serve", "--config", str(config), *args)
    with server_process(cmd, url.rstrip("/") + "/readyz", cpu=cpu, env=child_env(env), log=log,
                        cwd=repo_root(), timeout_s=timeout_s) as proc:
        yield proc
