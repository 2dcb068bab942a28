"""``serve --workers N``: N node processes sharing one port through SO_REUSEPORT.

Each worker is a full node with its own event loop and store connection; the kernel
spreads connections over them. The parent forwards SIGTERM/SIGINT/SIGHUP to the
workers and exits when they have all stopped. A worker that dies (a crash, kill -9) is
replaced (after 1 s, doubling up to 30 s while replacements keep dying); one that refuses
to start (exit 2: a bad config, a newer schema) stops them all with that status.
"""

from __future__ import annotations

import contextlib
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
    """Start ``workers`` processes, replace those that die, and wait; returns the exit code."""
    import os
    import time
    from multiprocessing.connection import wait

    if not 1 <= workers <= 256:
        print("error: --workers must be between 1 and 256", file=sys.stderr)
        return 2
    ctx = mp.get_context("spawn")

    def spawn(i: int) -> mp.process.BaseProcess:
        p = ctx.Process(target=_worker, args=(config, accept_reset), name=f"gateway-worker-{i}")
        p.start()
        return p

    procs = {i: spawn(i) for i in range(workers)}
    born = dict.fromkeys(procs, time.monotonic())
    stopping = False

    def forward(sig: int, _frame: object) -> None:
        nonlocal stopping
        if sig != signal.SIGHUP:
            stopping = True
        for p in list(procs.values()):
            if p.pid and p.is_alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p.pid, sig)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    code = 0
    delay = 1.0
    while procs:
        wait([p.sentinel for p in procs.values()], timeout=1.0)
        for i, p in list(procs.items()):
            if p.is_alive():
                continue
            p.join()
            del procs[i]
            if stopping:
                code = code or (p.exitcode or 0)
                continue
            if p.exitcode == 2:  # refused to start: replacing it would fail the same way
                print(f'{{"event":"worker_refused","worker":{i},"exitcode":2}}', file=sys.stderr,
                      flush=True)
                code = 2
                forward(signal.SIGTERM, None)
                continue
            if time.monotonic() - born[i] > 60:
                delay = 1.0  # it had lived a while: not a crash loop
            print(f'{{"event":"worker_replaced","worker":{i},"exitcode":{p.exitcode},'
                  f'"after_s":{delay:g}}}', file=sys.stderr, flush=True)
            time.sleep(delay)
            procs[i], born[i] = spawn(i), time.monotonic()
            delay = min(delay * 2, 30.0)
    return code
