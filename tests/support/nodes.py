"""One gateway node in a subprocess: ``python -m gateway serve --config <workdir>/node.toml``.

Its stdout and stderr go to ``node.log`` in its folder, so that tests can grep the logs
(e.g. for secrets). With ``port=0`` it listens on ``127.0.0.1:0`` and the port is read
from its ``listening`` log line; a restart keeps the port. Readiness: the ``ready`` path
answers 200 (or any status, with ``any_status``) and every worker has said ``listening``.
"""

from __future__ import annotations

import json
import signal
import ssl
import subprocess
from pathlib import Path
from typing import Any

from harness import (
    child_env,
    http_status,
    node_config_text,
    python_cmd,
    repo_root,
    start_process,
    stop_process,
    wait_for,
)

SAMPLE_CATALOG = repo_root() / "configs" / "catalog" / "shanghai.toml"
START_TIMEOUT_S = 30.0


def _insecure_ssl() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class NodeProcess:
    """One gateway node in a subprocess, with its config, data_dir and log file.

    ``node``, ``store`` and ``limits`` are the config file's tables (plain values), on
    top of ``listen``, ``catalog``, ``keyring`` and ``data_dir``; ``workers`` > 1 runs
    ``serve --workers N`` (then give a ``port``: workers share it with SO_REUSEPORT).
    """

    def __init__(
        self,
        workdir: Path,
        keyring: Path,
        *,
        catalog: Path = SAMPLE_CATALOG,
        limits: dict[str, Any] | None = None,
        node: dict[str, Any] | None = None,
        store: dict[str, Any] | None = None,
        probe_ssl: ssl.SSLContext | None = None,
        args: tuple[str, ...] = (),
        port: int = 0,
        workers: int = 1,
    ) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.keyring = keyring
        self.catalog = catalog
        self.limits = dict(limits or {})
        self.node_extra = dict(node or {})
        self.store = dict(store or {})
        self.data_dir = workdir / "data"
        self.config = workdir / "node.toml"
        self.log_path = workdir / "node.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = port
        self.args = args
        self.workers = workers
        self.scheme = "https" if "tls_cert" in self.node_extra else "http"
        self.probe_ssl = probe_ssl or (_insecure_ssl() if self.scheme == "https" else None)
        self._log_offset = 0

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def config_text(self) -> str:
        """The node's configuration file."""
        node = {
            "listen": f"127.0.0.1:{self.port}",
            "catalog": str(self.catalog),
            "keyring": str(self.keyring),
            "data_dir": str(self.data_dir),
            **self.node_extra,
        }
        return node_config_text(node, self.store, self.limits)

    def write_config(self) -> None:
        self.config.write_text(self.config_text())

    def start(
        self,
        ready: str = "/readyz",
        *,
        any_status: bool = False,
        timeout: float = START_TIMEOUT_S,
        args: tuple[str, ...] = (),
    ) -> NodeProcess:
        """Start the process (same port as before on a restart; ``args`` added to
        ``serve``'s) and wait until it is ready."""
        assert self.proc is None or self.proc.poll() is not None, "node already running"
        self.write_config()
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        cmd = python_cmd("-m", "gateway", "serve", "--config", str(self.config), *self.args, *args)
        if self.workers > 1:
            cmd += ["--workers", str(self.workers)]
        self.proc = start_process(cmd, log=self.log_path, cwd=repo_root(), new_session=True,
                                  env=child_env({"PYTHONUNBUFFERED": "1"}))

        def is_ready() -> bool:
            if not self.port:
                self.port = self._listening_port()
            if not self.port:
                return False
            status = http_status(self.url + ready, 2.0, self.probe_ssl)
            if status is None or not (status == 200 or any_status):
                return False
            return self._new_log().count(b'"event":"listening"') >= self.workers

        try:
            wait_for(is_ready, timeout, what=f"node {self.workdir.name} ready ({ready})",
                     proc=self.proc, log=self.log_path)
        except RuntimeError:
            self.stop()
            raise
        return self

    def _new_log(self) -> bytes:
        with self.log_path.open("rb") as f:
            f.seek(self._log_offset)
            return f.read()

    def _listening_port(self) -> int:
        for line in self._new_log().splitlines():
            if b'"listening"' in line:
                return int(json.loads(line)["url"].rsplit(":", 1)[1])
        return 0

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, n: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-n:])

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def kill(self) -> None:
        """kill -9 (the node and its workers): no chance to flush or close anything."""
        stop_process(self.proc, 10, group=True, sig=signal.SIGKILL)

    def stop(self) -> int | None:
        """SIGTERM (to the node and its workers) and wait, SIGKILL when it hangs; the exit
        status. Idempotent."""
        return stop_process(self.proc, 30, group=True)
