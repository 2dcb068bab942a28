"""Service-proxy and audit benchmarks: ``python -m bench services``.

Measures, in one run, with wrk on loopback:

* ``direct_rps``: wrk straight to a bare aiohttp+uvloop backend (pinned to core 0);
* ``proxy_rps``: wrk through a gateway node (pinned to core 0; the backend moves to
  core 1 next to wrk) with a signed ``GET /v1/services/...`` call to that backend;
* ``query_rps_audit_on`` / ``query_rps_audit_off``: signed keyed reads of a granted,
  projected resource on a node with and without the audit log.

Measurements are interleaved over ``--rounds``: the best rps of each, and the median CPU
microseconds per request of the serving processes (from /proc; robust when other work
shares the host, which rps is not). Prints a table and writes JSON (``--out``).
Targets: proxy/direct >= 0.5, audit cost <= 10 %.
The signed requests reuse one signature (valid for 300 s), so a run must stay short.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import tempfile
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness import (
    bench_cpus,
    child_env,
    cpu_seconds,
    free_port,
    node_config_text,
    pin_process,
    python_cmd,
    repo_root,
    start_process,
    stop_process,
    wait_http,
)
from harness.wrk import find_wrk, run_wrk

SID = "SH/GOV/hrss/employment/echo"
CONSUMER = "SH/GOV/bdc/portal"
OWNER = "SH/GOV/psb/hukou"
CATALOG = """
instance = "SH"
[[members]]
id = "SH/GOV/bdc"
[[members]]
id = "SH/GOV/psb"
[[members]]
id = "SH/GOV/hrss"
[[subsystems]]
id = "SH/GOV/bdc/portal"
[[subsystems]]
id = "SH/GOV/psb/hukou"
[[subsystems]]
id = "SH/GOV/hrss/employment"
[[resources]]
id = "psb.residents"
owner = "SH/GOV/psb/hukou"
sharing = "conditional"
key = "rid"
fields = { rid = "str", name = "str", district = "str", phone = "str" }
[[grants]]
consumer = "SH/GOV/bdc/portal"
resource = "psb.residents"
fields = ["rid", "name", "phone"]
masks = { phone = [3, 2] }
[[services]]
id = "SH/GOV/hrss/employment/echo"
backends = [{ url = "http://127.0.0.1:BACKEND_PORT" }]
timeout_s = 5.0
max_connections = 256
[[service_grants]]
consumer = "SH/GOV/bdc/portal"
service = "SH/GOV/hrss/employment/echo"
methods = ["GET"]
"""


def _wrk(url: str, headers: dict[str, str], seconds: int, connections: int,
         core: int | None) -> dict[str, float]:
    r = run_wrk(url, seconds, connections, headers=headers, cpu=core)
    return {"rps": r.rps, "non_2xx": r.non_2xx, "p99_ms": r.p99_ms}


def _serve_backend(port: int) -> None:
    """A bare aiohttp + uvloop backend answering a small JSON document."""
    import uvloop
    from aiohttp import web

    body = b'{"ok":true,"service":"echo"}'

    async def hello(request: web.BaseRequest) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    async def main() -> None:
        runner = web.ServerRunner(web.Server(hello), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port, backlog=2048).start()
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await runner.cleanup()

    uvloop.run(main())


def _serve_node(config: str, audit: bool) -> None:
    """A node like ``gateway serve`` but with the audit log switched on or off."""
    import uvloop
    from aiohttp import web

    from gateway.app import Node
    from gateway.config import load_node_config
    from gateway.protocol import make_server
    from gateway.server import load_state
    from gateway.stores import open_store

    async def main() -> None:
        cfg = load_node_config(config)
        node = Node(cfg, load_state(cfg), open_store(cfg), audit=audit)
        await node.start()
        runner = web.ServerRunner(make_server(node), handle_signals=False, shutdown_timeout=1)
        await runner.setup()
        await web.TCPSite(runner, cfg.host, cfg.port, backlog=2048).start()
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await runner.cleanup()
        await node.stop()

    uvloop.run(main())


class _Proc:
    """``python -m bench.services ARGS`` (a backend or a node), started on ``core``."""

    def __init__(self, args: list[str], core: int | None) -> None:
        self.p: subprocess.Popen[bytes] = start_process(
            python_cmd("-m", "bench.services", *args), env=child_env(), cwd=repo_root(), cpu=core)

    def pin(self, core: int | None) -> None:
        """Move the process (all its threads) to one core."""
        pin_process(self.p.pid, core)

    def cpu_s(self) -> float:
        """User + system CPU seconds of the process (all threads)."""
        return cpu_seconds(self.p.pid)

    def stop(self) -> None:
        stop_process(self.p, 15)


def _measure(url: str, headers: dict[str, str], seconds: int, connections: int,
             procs: list[_Proc], core: int | None) -> dict[str, float]:
    """wrk on ``core`` against ``url``; rps, p99 and CPU microseconds per request of ``procs``."""
    before = [p.cpu_s() for p in procs]
    r = _wrk(url, headers, seconds, connections, core=core)
    total = r["rps"] * seconds
    r["cpu_us"] = [round((p.cpu_s() - b) * 1e6 / total, 1) if total else 0.0 for p, b in zip(procs, before, strict=True)]
    return r


def _push_one(nport: int, owner: Any) -> None:
    from gateway.signing import Signer

    body = json.dumps({"records": [{"key": "r1", "data": {"rid": "r1", "name": "Wang Fang",
                                                         "district": "Huangpu", "phone": "13800001234"}}]}).encode()
    path = "/v1/resources/psb.residents/records"
    h = Signer(owner.id, owner.secret, OWNER).headers("POST", path, "", body, headers={
        "Content-Type": "application/json", "Idempotency-Key": "bench-seed"})
    req = urllib.request.Request(f"http://127.0.0.1:{nport}{path}", data=body, method="POST", headers=h)
    urllib.request.urlopen(req, timeout=10).read()


def run(seconds: int, connections: int, work: Path, rounds: int = 3) -> dict[str, Any]:
    """Run every measurement ``rounds`` times, interleaved; best rps and median CPU per request."""
    from gateway.keyring import dev_keyring_text, load_keyring, write_private
    from gateway.signing import Signer

    find_wrk()
    server, load = bench_cpus()
    bport, on_port, off_port = free_port(), free_port(), free_port()
    (work / "catalog.toml").write_text(CATALOG.replace("BACKEND_PORT", str(bport)))
    write_private(work / "keyring.toml", dev_keyring_text([CONSUMER, OWNER, "SH/GOV/hrss/employment"]))
    for name, port in (("on", on_port), ("off", off_port)):
        (work / f"node-{name}.toml").write_text(node_config_text(
            {"listen": f"127.0.0.1:{port}", "catalog": "catalog.toml", "keyring": "keyring.toml",
             "data_dir": f"data-{name}", "access_log": False},
            limits={"max_inflight": 100000, "max_connections_per_ip": 100000}))  # wrk: loopback
    ring = load_keyring(work / "keyring.toml")
    key, owner = ring.for_client(CONSUMER), ring.for_client(OWNER)
    assert key is not None and owner is not None
    signer = Signer(key.id, key.secret, CONSUMER)
    qpath, spath = "/v1/resources/psb.residents/records/r1", f"/v1/services/{SID}/hello"
    backend = _Proc(["--backend", str(bport)], core=server)
    on = _Proc(["--node", str(work / "node-on.toml")], core=server)
    off = _Proc(["--node", str(work / "node-off.toml"), "--no-audit"], core=server)
    samples: dict[str, list[dict[str, Any]]] = {k: [] for k in ("direct", "proxy", "on", "off")}
    try:
        wait_http(f"http://127.0.0.1:{bport}/", 30, proc=backend.p, ok=lambda status: status < 500)
        for port, proc in ((on_port, on), (off_port, off)):
            wait_http(f"http://127.0.0.1:{port}/readyz", 30, proc=proc.p)
            _push_one(port, owner)
        qh, sh = signer.headers("GET", qpath), signer.headers("GET", spath)
        plan = [("direct", f"http://127.0.0.1:{bport}/", {}, [backend], server),
                ("proxy", f"http://127.0.0.1:{on_port}{spath}", sh, [on, backend], load),
                ("on", f"http://127.0.0.1:{on_port}{qpath}", qh, [on], server),
                ("off", f"http://127.0.0.1:{off_port}{qpath}", qh, [off], server)]
        for _name, url, hdrs, _procs, backend_core in plan:  # warm-up
            backend.pin(backend_core)
            _wrk(url, hdrs, 1, connections, core=load)
        for _ in range(rounds):
            for name, url, hdrs, procs, backend_core in plan:
                backend.pin(backend_core)
                samples[name].append(_measure(url, hdrs, seconds, connections, procs, load))
    finally:
        for p in (on, off, backend):
            p.stop()

    def best(name: str) -> float:
        return max(s["rps"] for s in samples[name])

    def cpu(name: str, i: int = 0) -> float:
        vals = sorted(s["cpu_us"][i] for s in samples[name])
        return vals[len(vals) // 2]

    out: dict[str, Any] = {
        "direct_rps": best("direct"), "proxy_rps": best("proxy"),
        "query_rps_audit_on": best("on"), "query_rps_audit_off": best("off"),
        "direct_cpu_us_per_req": cpu("direct"), "proxy_gateway_cpu_us_per_req": cpu("proxy"),
        "proxy_backend_cpu_us_per_req": cpu("proxy", 1),
        "query_cpu_us_per_req_audit_on": cpu("on"), "query_cpu_us_per_req_audit_off": cpu("off"),
        "non_2xx": sum(s["non_2xx"] for v in samples.values() for s in v),
        "rounds": rounds, "seconds": seconds, "connections": connections,
        "load_average": os.getloadavg()[0], "cpus": os.cpu_count(),
    }
    out["proxy_ratio"] = round(out["proxy_rps"] / out["direct_rps"], 3) if out["direct_rps"] else 0.0
    off_rps = out["query_rps_audit_off"]
    out["audit_cost"] = round(1 - out["query_rps_audit_on"] / off_rps, 3) if off_rps else 0.0
    on_cpu = out["query_cpu_us_per_req_audit_on"]
    out["audit_cost_cpu"] = round(1 - out["query_cpu_us_per_req_audit_off"] / on_cpu, 3) if on_cpu else 0.0
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point."""
    p = argparse.ArgumentParser(prog="python -m bench services", description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=int, default=5, help="seconds per measurement (1..60, default 5)")
    p.add_argument("--connections", type=int, default=64, help="wrk connections (1..1024, default 64)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds; best rps, median CPU (1..10)")
    p.add_argument("--out", default="bench-services.json", help="JSON output file")
    p.add_argument("--backend", type=int, help=argparse.SUPPRESS)
    p.add_argument("--node", help=argparse.SUPPRESS)
    p.add_argument("--no-audit", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.backend:
        _serve_backend(args.backend)
        return 0
    if args.node:
        _serve_node(args.node, not args.no_audit)
        return 0
    if not 1 <= args.seconds <= 60:
        p.error(f"--seconds must be between 1 and 60, got {args.seconds}")
    if not 1 <= args.connections <= 1024:
        p.error(f"--connections must be between 1 and 1024, got {args.connections}")
    if not 1 <= args.rounds <= 10:
        p.error(f"--rounds must be between 1 and 10, got {args.rounds}")
    with tempfile.TemporaryDirectory(prefix="svc-bench-") as tmp:
        res = run(args.seconds, args.connections, Path(tmp), args.rounds)
    rows = [("direct_rps", "wrk -> bare aiohttp backend"), ("proxy_rps", "wrk -> gateway -> backend (signed)"),
            ("proxy_ratio", "proxy/direct (target >= 0.5)"),
            ("query_rps_audit_on", "signed keyed read, audit on"),
            ("query_rps_audit_off", "signed keyed read, audit off"),
            ("audit_cost", "1 - on/off (target <= 0.10)"),
            ("direct_cpu_us_per_req", "backend CPU us per direct request"),
            ("proxy_gateway_cpu_us_per_req", "gateway CPU us per proxied request"),
            ("proxy_backend_cpu_us_per_req", "backend CPU us per proxied request"),
            ("query_cpu_us_per_req_audit_on", "node CPU us per keyed read, audit on"),
            ("query_cpu_us_per_req_audit_off", "node CPU us per keyed read, audit off"),
            ("audit_cost_cpu", "1 - CPU off/on (contention-robust audit cost)"),
            ("load_average", "1-min load average at the end (other work on the host)")]
    print(f"{'figure':<31} {'value':>12}  what")
    for k, what in rows:
        fmt = ",.3f" if ("ratio" in k or "cost" in k or "load" in k) else ",.1f" if "cpu" in k else ",.0f"
        print(f"{k:<31} {res[k]:>12{fmt}}  {what}")
    Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
