"""``serve --workers N``: N node processes sharing one port through SO_REUSEPORT.

Each worker is a full node with its own event loop and store connection; the kernel
spreads connections over them. The parent forwards SIGTERM/SIGINT/SIGHUP to the
workers and exits when they have all stopped.
"""

from __future__ import annotations

import multiprocessing as mp
import signal
import sys

from gateway.config import NodeConfig


def _worker(config: NodeConfig, accept_reset: bool) -> None:
    from gateway.server import bind_socket, serve
    from gateway.tomlfile import ConfigError

    sock = bind_socket(config.host, config.port, reuse_port=True)
    try:
        serve(config, sock, accept_reset=accept_reset)
    except ConfigError as exc:  # e.g. a citizen key the governance store does not know
        print(f"error: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)


def serve_workers(config: NodeConfig, workers: int, *, accept_reset: bool = False) -> int:
    """Start ``workers`` processes and wait for them; returns the exit code."""
    if not 1 <= workers <= 256:
        print("error: --workers must be between 1 and 256", file=sys.stderr)
        return 2
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_worker, args=(config, accept_reset), name=f"gateway-worker-{i}")
             for i in range(workers)]
    for p in procs:
        p.start()

    def forward(sig: int, _frame: object) -> None:
        for p in procs:
            if p.pid and p.is_alive():
                try:
                    import os

                    os.kill(p.pid, sig)
                except ProcessLookupError:
                    pass

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    code = 0
    for p in procs:
        p.join()
        code = code or (p.exitcode or 0)
    return code
