"""``python -m bench cluster``: cluster-mode push and pull throughput.

One gateway node with the ``jetstream`` store against one local nats-server (started
here, R=1), measured exactly like ``python -m bench gateway`` measures the SQLite node
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
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import city as kit
from devkit.nats import NatsServer, find_binary
from harness import bench_cpus, free_port, node_process, pin_process
from harness.wrk import WrkResult, lua_script, run_wrk
from loadtest.population import load_city

UNIQUE_BODIES = 500


def _measure(
    label: str, work: Path, catalog: Path, keyring: Path, backend: str, workers: int,
    nats_url: str, duration: float, connections: int, server_cpu: int | None,
    load_cpu: int | None,
) -> dict[str, float]:
    from gateway.signing import Signer

    population = load_city(catalog, keyring)
    target = kit.pick_target(population)
    fields, key = population.fields_of(target.resource)
    port = free_port()
    host = f"127.0.0.1:{port}"
    folder = work / label
    folder.mkdir()
    store: dict[str, Any] = {"backend": backend}
    if backend == "jetstream":
        store.update(servers=[nats_url], replicas=1, prefix=f"bench{port}")
    else:
        store["synchronous"] = "FULL"
    node = kit.write_node_config(folder, port, population.catalog.instance,
                                 catalog="../catalog.toml", keyring="../keyring.toml",
                                 store=store)
    args = ["--workers", str(workers)] if workers > 1 else []
    log = folder / "node.log"
    out: dict[str, float] = {}

    def wrk(name: str, requests: list[bytes]) -> WrkResult:
        script = folder / f"{name}.lua"
        script.write_text(lua_script(requests))
        res = run_wrk(f"http://{host}/", duration, connections, script=script, cpu=load_cpu)
        return res.check(f"{label} {name}", log)

    with node_process(node, f"http://{host}", args=args, cpu=server_cpu, log=log):
        if workers > 1:
            time.sleep(3.0)  # let every worker bind before the load starts
        per_pull = asyncio.run(kit.seed_reads(f"http://{host}", target, fields, key))
        owner = Signer(target.owner.key_id, target.owner.secret, target.owner.client)
        reader = Signer(target.reader.key_id, target.reader.secret, target.reader.client)
        path = f"/v1/resources/{target.resource}/records"
        body = kit.batch_body(fields, key, 0)
        # every request another Idempotency-Key, the same 100 keys in each body
        push = [kit.signed_push(owner, host, path, body, f"same-{n}") for n in range(UNIQUE_BODIES)]
        res = wrk("push", push)
        out["push_records_per_s"] = res.rps * kit.BATCH
        out["push_p99_ms"] = res.p99_ms
        # The same, but every request pushes other keys (no two concurrent pushes share one).
        pushes = [kit.signed_push(owner, host, path,
                                  kit.batch_body(fields, key, (n + 1) * kit.BATCH), f"unique-{n}")
                  for n in range(UNIQUE_BODIES)]
        out["push_unique_records_per_s"] = wrk("push-unique", pushes).rps * kit.BATCH
        pull = kit.signed_get(reader, host, path, f"after=0&limit={kit.PULL_LIMIT}")
        out["pull_records_per_s"] = wrk("pull", [pull]).rps * per_pull
    return out


def bench_cluster(
    duration: float = 10.0, connections: int = 64, resources: int = 2000, workers: bool = True,
    progress: Any = print,
) -> dict[str, Any]:
    """Measure the jetstream node against the SQLite node (1 and 2 workers); a flat dict."""
    if find_binary() is None:
        raise RuntimeError("nats-server not found (make deps installs it)")
    server_cpu, load_cpu = bench_cpus()
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="exg-cluster-bench-") as tmp:
        work = Path(tmp)
        catalog, keyring, what = kit.write_city(work, resources)
        result["catalog"] = what
        nats = NatsServer(work / "nats").start()
        try:
            if nats.proc is not None:
                pin_process(nats.proc.pid, server_cpu)
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


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point."""
    p = argparse.ArgumentParser(prog="python -m bench cluster", description=__doc__,
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
