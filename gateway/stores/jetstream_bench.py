"""``python -m gateway.stores.jetstream_bench``: cluster-mode push and pull throughput.

One gateway node with the ``jetstream`` store against one local nats-server (started
here, R=1), measured exactly like ``python -m loadtest bench`` measures the SQLite node
(``wrk`` replaying a pre-signed 100-record push, and a pull of 1,000 records; then 500
different pushes cycled, so that concurrent pushes do not share keys), and the
SQLite node in the same run for the ratio. Then both backends again with
``serve --workers 2``. The servers (node and nats-server) are pinned to core 0 and wrk to
core 1; the two-worker runs leave the node unpinned (both cores, shared with wrk).

Prints a table and writes JSON (``--json FILE``); :func:`bench_cluster` returns the dict
(keys ``cluster_push_records_per_s``, ``cluster_pull_records_per_s``, ...).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from gateway.stores.natsproc import NatsServer, find_binary

BATCH = 100
PULL_LIMIT = 1000
SEED = 2000
UNIQUE_BODIES = 500


def _node_config(folder: Path, port: int, instance: str, backend: str, nats_url: str) -> Path:
    store = f'[store]\nbackend = "{backend}"\n'
    if backend == "jetstream":
        store += f'servers = ["{nats_url}"]\nreplicas = 1\nprefix = "bench{port}"\n'
    else:
        store += 'synchronous = "FULL"\n'
    path = folder / "node.toml"
    path.write_text(
        f'[node]\nlisten = "127.0.0.1:{port}"\ninstance = "{instance}"\n'
        'catalog = "../catalog.toml"\nkeyring = "../keyring.toml"\ndata_dir = "data"\n'
        'log_level = "warning"\naccess_log = false\n'
        f"{store}[limits]\nmax_inflight = 65536\nmax_connections_per_ip = 65536\n"
    )
    return path


def _measure(
    label: str, work: Path, catalog: Path, keyring: Path, backend: str, workers: int,
    nats_url: str, duration: float, connections: int, server_cpu: int | None,
    load_cpu: int | None,
) -> dict[str, float]:
    from gateway.signing import Signer
    from loadtest.bench import _seed, batch_body, pick_target, signed_get, signed_push
    from loadtest.population import load_city
    from loadtest.servers import child_env, free_port, python_cmd, server_process
    from loadtest.wrk import lua_script, run_wrk

    city = load_city(catalog, keyring)
    target = pick_target(city)
    fields, key = city.fields_of(target.resource)
    port = free_port()
    host = f"127.0.0.1:{port}"
    folder = work / label
    folder.mkdir()
    node = _node_config(folder, port, city.catalog.instance, backend, nats_url)
    cmd = python_cmd("-m", "gateway", "serve", "--config", str(node))
    if workers > 1:
        cmd += ["--workers", str(workers)]
    out: dict[str, float] = {}
    with server_process(cmd, f"http://{host}/readyz", cpu=server_cpu, env=child_env(),
                        log=folder / "node.log", timeout_s=120):
        if workers > 1:
            time.sleep(3.0)  # let every worker bind before the load starts
        per_pull = asyncio.run(_seed(f"http://{host}", target, fields, key))
        owner = Signer(target.owner.key_id, target.owner.secret, target.owner.client)
        reader = Signer(target.reader.key_id, target.reader.secret, target.reader.client)
        path = f"/v1/resources/{target.resource}/records"
        body = batch_body(fields, key, 0)
        # every request another Idempotency-Key, the same 100 keys in each body
        push = [signed_push(owner, host, path, body, f"same-{n}") for n in range(UNIQUE_BODIES)]
        script = folder / "push.lua"
        script.write_text(lua_script(push))
        res = run_wrk(f"http://{host}/", duration, connections, script=script, cpu=load_cpu)
        if res.non_2xx or res.socket_errors:
            raise RuntimeError(f"{label} push: {res.non_2xx} non-2xx, {res.socket_errors} "
                               f"socket errors; see {folder / 'node.log'}\n{res.output}")
        out["push_records_per_s"] = res.rps * BATCH
        out["push_p99_ms"] = res.p99_ms
        # The same, but every request pushes other keys (no two concurrent pushes share one).
        pushes = []
        for n in range(UNIQUE_BODIES):
            body = batch_body(fields, key, (n + 1) * BATCH)
            pushes.append(signed_push(owner, host, path, body, f"unique-{n}"))
        script = folder / "push-unique.lua"
        script.write_text(lua_script(pushes))
        res = run_wrk(f"http://{host}/", duration, connections, script=script, cpu=load_cpu)
        if res.non_2xx or res.socket_errors:
            raise RuntimeError(f"{label} unique push: {res.non_2xx} non-2xx, {res.socket_errors} "
                               f"socket errors; see {folder / 'node.log'}\n{res.output}")
        out["push_unique_records_per_s"] = res.rps * BATCH
        pull = signed_get(reader, host, path, f"after=0&limit={PULL_LIMIT}")
        script = folder / "pull.lua"
        script.write_text(lua_script([pull]))
        res = run_wrk(f"http://{host}/", duration, connections, script=script, cpu=load_cpu)
        if res.non_2xx or res.socket_errors:
            raise RuntimeError(f"{label} pull: {res.non_2xx} non-2xx, {res.socket_errors} "
                               f"socket errors\n{res.output}")
        out["pull_records_per_s"] = res.rps * per_pull
    return out


def bench_cluster(
    duration: float = 10.0, connections: int = 64, resources: int = 2000, workers: bool = True,
    progress: Any = print,
) -> dict[str, Any]:
    """Measure the jetstream node against the SQLite node (1 and 2 workers); a flat dict."""
    from loadtest.bench import BenchConfig, write_city

    if find_binary() is None:
        raise RuntimeError("nats-server not found (make deps installs it)")
    cpus = sorted(os.sched_getaffinity(0))
    server_cpu, load_cpu = (cpus[0], cpus[1]) if len(cpus) >= 2 else (None, None)
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="exg-cluster-bench-") as tmp:
        work = Path(tmp)
        catalog, keyring, what = write_city(work, BenchConfig(out=work, resources=resources))
        result["catalog"] = what
        nats = NatsServer(work / "nats").start()
        try:
            if server_cpu is not None and nats.proc is not None:
                os.sched_setaffinity(nats.proc.pid, {server_cpu})
            runs = [("sqlite", 1), ("jetstream", 1)]
            if workers:
                runs += [("sqlite", 2), ("jetstream", 2)]
            for backend, n in runs:
                label = f"{backend}-w{n}"
                progress(f"{label}: measuring push and pull for {duration:.0f} s each")
                m = _measure(label, work, catalog, keyring, backend, n, nats.url, duration,
                             connections, server_cpu if n == 1 else None, load_cpu)
                name = "cluster" if backend == "jetstream" else "sqlite"
                suffix = "" if n == 1 else f"_workers{n}"
                result[f"{name}_push_records_per_s{suffix}"] = round(m["push_records_per_s"], 1)
                result[f"{name}_pull_records_per_s{suffix}"] = round(m["pull_records_per_s"], 1)
                result[f"{name}_push_p99_ms{suffix}"] = round(m["push_p99_ms"], 2)
                result[f"{name}_push_unique_records_per_s{suffix}"] = round(
                    m["push_unique_records_per_s"], 1)
        finally:
            nats.stop()
    if result.get("sqlite_push_records_per_s"):
        result["cluster_push_ratio"] = round(
            result["cluster_push_records_per_s"] / result["sqlite_push_records_per_s"], 3)
    if result.get("sqlite_push_unique_records_per_s"):
        result["cluster_push_unique_ratio"] = round(
            result["cluster_push_unique_records_per_s"]
            / result["sqlite_push_unique_records_per_s"], 3)
    for name in ("cluster", "sqlite"):
        one, two = result.get(f"{name}_push_records_per_s"), result.get(f"{name}_push_records_per_s_workers2")
        if one and two:
            result[f"{name}_push_workers2_over_1"] = round(two / one, 3)
    result.update(duration_s=duration, connections=connections, server_cpu=server_cpu,
                  load_cpu=load_cpu, nats_server=nats.binary)
    return result


def format_table(result: dict[str, Any]) -> str:
    """The figures as a text table."""
    targets = {"cluster_push_ratio": ">= 0.5", "cluster_push_unique_ratio": ">= 0.5"}
    rows = [("measure", "value", "target")]
    for k, v in result.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            rows.append((k, f"{v:,.3f}" if isinstance(v, float) else f"{v:,}", targets.get(k, "")))
    w = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [f"{a:<{w[0]}}  {b:>{w[1]}}  {c}" for a, b, c in rows]
    lines.insert(1, "-" * (sum(w) + 4))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gateway.stores.jetstream_bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=10.0, help="seconds per measurement (1..240)")
    p.add_argument("--connections", type=int, default=64, help="wrk connections (1..10000)")
    p.add_argument("--resources", type=int, default=2000, help="synthetic catalog size")
    p.add_argument("--no-workers", action="store_true", help="skip the two-worker runs")
    p.add_argument("--json", type=Path, help="write the figures to this JSON file")
    args = p.parse_args(argv)
    if not 1 <= args.duration <= 240:
        p.error("--duration must be between 1 and 240 seconds")
    if not 1 <= args.connections <= 10000:
        p.error("--connections must be between 1 and 10000")
    if not 10 <= args.resources <= 100_000:
        p.error("--resources must be between 10 and 100000")
    try:
        result = bench_cluster(args.duration, args.connections, args.resources,
                               not args.no_workers, progress=lambda m: print(m, file=sys.stderr))
    except (RuntimeError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(format_table(result))
    text = json.dumps(result, indent=2) + "\n"
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
