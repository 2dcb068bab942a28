"""``python -m bench gateway`` (also ``python -m loadtest bench``): the gateway against bare
aiohttp, as ratios in one run.

Each server runs in its own process pinned to core 0; ``wrk`` (maximum throughput,
closed loop) and the open-model pacer (latency at half of that maximum, from intended
start times) run pinned to core 1. Servers, in order:

1. ``hello``: bare aiohttp + uvloop ``GET /hello``                 -> hello_rps
2. ``push``: bare aiohttp + msgspec decode-and-drop of a 100-record batch
                                                                    -> push_baseline_records_per_s
3. the gateway (embedded SQLite store, ``synchronous=FULL``; a synthetic Shanghai-scale
   catalog of 16,000 resources; keyring from ``devkit.synth``)     -> query_rps, push_records_per_s,
                                                                       pull_records_per_s
4. the same gateway on its pure-Python twins, a node on JetStream (:mod:`bench.cluster`) and
   the service proxy and audit (:mod:`bench.services`), each optional.

Signed requests are pre-signed in Python right before each measurement and cycled
from a Lua table (see :mod:`harness.wrk`); each measurement is well inside the ±300 s
window of ``X-Exchange-Date``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from bench import cluster as cluster_bench
from bench import services as services_bench
from bench import stages
from bench.city import (
    BATCH,
    PULL_LIMIT,
    batch_body,
    pick_target,
    seed_reads,
    signed_get,
    signed_push,
    write_city,
    write_node_config,
)
from harness import (
    HarnessError,
    bench_cpus,
    child_env,
    free_port,
    node_process,
    pin_process,
    python_cmd,
    server_process,
)
from harness.wrk import WrkResult, find_wrk, lua_script, run_wrk
from loadtest.errors import LoadTestError
from loadtest.openmodel import OpenStats, raw_request, run_open_model_sync
from loadtest.population import City, Credential, ReadTarget, load_city, make_record
from loadtest.units import parse_duration

KEYS = (
    "hello_rps",
    "query_rps",
    "query_ratio",
    "push_records_per_s",
    "push_baseline_records_per_s",
    "push_ratio",
    "pull_records_per_s",
    "push_same_keys_records_per_s",
    "personal_query_rps",
    "p99_ms_at_half_load",
    "hello_p99_ms_at_half_load",
)
MAX_PUSHES = 16000  # distinct pre-signed pushes at most (~13 KB each: the Lua table's size)
READ_KEYS = 1000
STAGE_RATE = 400  # py-spy samples per second while a stage profile is taken
MAX_PHASE_S = 240.0  # pre-signed requests must stay inside the ±300 s date window


@dataclass
class BenchConfig:
    """What the bench measures and how hard it pushes."""

    out: Path
    duration_s: float = 10.0
    connections: int = 64
    resources: int = 16000
    members: int = 50
    seed: int = 1
    pure: bool = True
    repeat: int = 1
    gateway: bool = True
    cluster: bool = True
    services: bool = True
    server_cpu: int | None = 0
    load_cpu: int | None = 1
    stages: bool = True  # a per-stage CPU profile of the node (py-spy) for each kind
    progress: Callable[[str], None] = print
    details: dict[str, Any] = field(default_factory=dict)


def _cpus(cfg: BenchConfig) -> None:
    if bench_cpus() == (None, None):
        cfg.progress("warning: fewer than 2 cores available; server and load share a core")
        cfg.server_cpu = cfg.load_cpu = None


def _write_script(path: Path, requests: list[bytes]) -> Path:
    path.write_text(lua_script(requests))
    return path


def _half_load(
    cfg: BenchConfig, port: int, requests: list[bytes], max_rps: float, name: str
) -> OpenStats:
    rate = max(1.0, max_rps / 2.0)
    runs = [
        run_open_model_sync(
            "127.0.0.1", port, requests, rate, cfg.duration_s, max_connections=cfg.connections * 4
        )
        for _ in range(cfg.repeat)
    ]
    stats = min(runs, key=lambda r: r.as_dict()["latency_ms"]["p99_ms"])  # best of --repeat
    cfg.details[f"{name}_half_load_p99_runs"] = [r.as_dict()["latency_ms"]["p99_ms"] for r in runs]
    d = stats.as_dict()
    if d["started"] and (d["late"] / d["started"] > 0.01 or d["rate_error"] < -0.02):
        msg = (
            f"warning: {name}: the open-model pacer fell behind its schedule ({d['late']} of "
            f"{d['started']} starts late, max {d['max_lateness_ms']:.0f} ms, achieved "
            f"{d['achieved_rate']:.0f}/{rate:.0f} per s); the load core is saturated or shared, "
            "so the half-load p99 includes client lag"
        )
        cfg.progress(msg)
        cfg.details.setdefault("warnings", []).append(msg)
    return stats


def _wrk(cfg: BenchConfig, url: str, script: Path | None, name: str) -> WrkResult:
    runs = [
        run_wrk(url, cfg.duration_s, cfg.connections, script=script, cpu=cfg.load_cpu)
        for _ in range(cfg.repeat)
    ]
    res = max(runs, key=lambda r: r.rps)  # best of --repeat
    cfg.details[name] = {
        "rps_runs": [r.rps for r in runs],
        "rps": res.rps,
        "requests": res.requests,
        "p50_ms": res.p50_ms,
        "p99_ms": res.p99_ms,
        "non_2xx": res.non_2xx,
        "socket_errors": res.socket_errors,
    }
    return res.check(name)


def _stage_profile(cfg: BenchConfig, kind: str, pid: int, url: str, script: Path) -> None:
    """Full load from wrk while py-spy samples the node: microseconds per request by stage
    (bench-details.json ``stages.KIND``); skipped, and said, without py-spy."""
    if not cfg.stages:
        return
    if stages.find_py_spy() is None:
        cfg.details["stages"] = "py-spy is not installed (pip install py-spy): no per-stage profile"
        return
    window = max(1.0, cfg.duration_s - 2.0)
    with ThreadPoolExecutor(1) as pool:
        load = pool.submit(run_wrk, url, cfg.duration_s, cfg.connections, script=script, cpu=cfg.load_cpu)
        time.sleep(1.0)  # past the connection set-up
        try:
            raw = stages.profile(pid, window, STAGE_RATE, script.with_suffix(".stacks"))
        except (RuntimeError, subprocess.SubprocessError) as exc:
            cfg.details.setdefault("stages_errors", {})[kind] = str(exc)
            load.result()
            return
        res = load.result()
    breakdown = stages.breakdown(kind, raw, STAGE_RATE, round(res.rps * window), window)
    cfg.details.setdefault("stages", {})[kind] = breakdown.as_dict()
    cfg.progress(f"stages: {kind}: {breakdown.as_dict()['total_us']} us of the node's CPU per request")


def _distinct_pushes(cfg: BenchConfig, owner: Any, host: str, path: str, fields: dict[str, str],
                     key: str | None, probe: WrkResult | None, start: int) -> list[bytes]:
    """Enough distinct signed pushes (every record another citizen) that wrk never sends one
    twice in ``duration`` at the rate ``probe`` found, up to MAX_PUSHES."""
    rate = probe.rps if probe is not None else 1000.0
    count = min(MAX_PUSHES, max(200, round(rate * cfg.duration_s * 1.3)))
    return [signed_push(owner, host, path, batch_body(fields, key, start + i * BATCH), f"bench-{start + i}")
            for i in range(count)]


def bench_hello(cfg: BenchConfig, work: Path) -> tuple[float, float]:
    """hello_rps and hello_p99_ms_at_half_load."""
    port = free_port()
    cfg.progress(f"hello: bare aiohttp + uvloop on 127.0.0.1:{port}")
    with server_process(
        python_cmd("-m", "bench.baseline", "hello", "--listen", f"127.0.0.1:{port}"),
        f"http://127.0.0.1:{port}/healthz",
        cpu=cfg.server_cpu,
        env=child_env(),
        log=work / "hello.log",
    ):
        res = _wrk(cfg, f"http://127.0.0.1:{port}/hello", None, "hello")
        req = [raw_request("GET", "/hello", f"127.0.0.1:{port}")]
        half = _half_load(cfg, port, req, res.rps, "hello")
    cfg.details["hello_half_load"] = half.as_dict()
    return res.rps, half.as_dict()["latency_ms"]["p99_ms"]


def bench_push_baseline(cfg: BenchConfig, work: Path, body: bytes) -> float:
    """push_baseline_records_per_s: the same body, decoded by msgspec and dropped."""
    port = free_port()
    cfg.progress(f"push baseline: bare aiohttp + msgspec decode-and-drop on 127.0.0.1:{port}")
    host = f"127.0.0.1:{port}"
    req = raw_request(
        "POST", "/v1/resources/bench/records", host, {"Content-Type": "application/json"}, body
    )
    with server_process(
        python_cmd("-m", "bench.baseline", "push", "--listen", host),
        f"http://{host}/healthz",
        cpu=cfg.server_cpu,
        env=child_env(),
        log=work / "push-baseline.log",
    ):
        res = _wrk(
            cfg,
            f"http://{host}/",
            _write_script(work / "push-baseline.lua", [req]),
            "push_baseline",
        )
    return res.rps * BATCH


# -- the gateway ------------------------------------------------------------------------


def pick_personal_target(city: City) -> tuple[ReadTarget, Credential, str] | None:
    """A personal resource read under the citizens' consent (no legal basis): the target,
    the portal that records consents, and the grant's purpose."""
    portals = [c for c in (city.credential(p) for p in sorted(city.catalog.portals)) if c]
    if not portals:
        return None
    for t in city.read_targets(include_personal=True):
        acc = city.catalog.grants.get((t.reader.client, t.resource))
        if t.personal and t.granted and acc is not None and acc.grant is not None \
                and not acc.grant.legal_basis and t.reader.client not in city.catalog.portals:
            return t, portals[0], acc.grant.purpose or "bench"
    return None


async def _seed_consents(url: str, host: str, city: City, target: ReadTarget, portal: Credential,
                         purpose: str) -> list[bytes]:
    """Records of READ_KEYS citizens, each citizen's consent for the reader, and one signed
    consented keyed read per citizen."""
    from gateway.client import ExchangeClient, purpose_header
    from gateway.signing import Signer

    fields, key = city.fields_of(target.resource)
    recs = [make_record(fields, key, i) for i in range(READ_KEYS)]
    spec = city.catalog.by_id[target.resource].spec
    o = target.owner
    async with ExchangeClient(url, o.key_id, o.secret, o.client) as c:
        await c.push(target.resource, recs, idempotency_key="bench-personal-seed")
    citizens = [str(r["data"].get(spec.citizen or spec.key, r["key"])) for r in recs]
    async with ExchangeClient(url, portal.key_id, portal.secret, portal.client) as c:
        for start in range(0, len(citizens), 50):
            await asyncio.gather(*(c.grant_consent(u, target.reader.client, [target.resource], purpose,
                                                   "2030-12-31") for u in citizens[start:start + 50]))
    reader = Signer(target.reader.key_id, target.reader.secret, target.reader.client)
    out = []
    for rec, user in zip(recs, citizens, strict=True):
        path = f"/v1/resources/{target.resource}/records/{quote(rec['key'], safe='')}"
        headers = reader.headers("GET", path, headers={"X-Exchange-UserId": user,
                                                       "X-Exchange-Purpose": purpose_header(purpose)})
        out.append(raw_request("GET", path, host, headers))
    return out


def bench_gateway(
    cfg: BenchConfig,
    work: Path,
    catalog: Path,
    keyring: Path,
    extra_env: dict[str, str] | None = None,
    label: str = "gateway",
) -> dict[str, float]:
    """query_rps, p99_ms_at_half_load, push_records_per_s and pull_records_per_s."""
    from gateway.signing import Signer

    city = load_city(catalog, keyring)
    target = pick_target(city)
    fields, key = city.fields_of(target.resource)
    port = free_port()
    host = f"127.0.0.1:{port}"
    gw = work / label
    gw.mkdir(exist_ok=True)
    for f in (catalog, keyring):
        (gw / f.name).write_bytes(f.read_bytes())
    (gw / "keyring.toml").chmod(0o600)
    node = write_node_config(gw, port, city.catalog.instance)
    cfg.progress(
        f"{label}: python -m gateway serve on {host} ({target.resource}, read by {target.reader.client})"
    )
    out: dict[str, float] = {}
    with node_process(node, f"http://{host}", cpu=cfg.server_cpu, env=extra_env,
                      log=gw / "gateway.log") as proc:
        per_pull = asyncio.run(seed_reads(f"http://{host}", target, fields, key))
        reader = Signer(target.reader.key_id, target.reader.secret, target.reader.client)
        owner = Signer(target.owner.key_id, target.owner.secret, target.owner.client)

        def queries() -> list[bytes]:
            return [
                signed_get(
                    reader,
                    host,
                    f"/v1/resources/{target.resource}/records/{quote(str(k), safe='')}",
                )
                for k in (make_record(fields, key, i)["key"] for i in range(READ_KEYS))
            ]

        res = _wrk(
            cfg, f"http://{host}/", _write_script(gw / "query.lua", queries()), f"{label}_query"
        )
        out["query_rps"] = res.rps
        if label == "gateway":
            half = _half_load(cfg, port, queries(), res.rps, "query")
            cfg.details["query_half_load"] = half.as_dict()
            out["p99_ms_at_half_load"] = half.as_dict()["latency_ms"]["p99_ms"]
            _stage_profile(cfg, "read", proc.pid, f"http://{host}/", gw / "query.lua")
            path = f"/v1/resources/{target.resource}/records"
            # Pushes of distinct keys (every record another citizen, as an agency's sync): a short
            # probe sizes the set so that none is sent twice (a repeat would be a replay).
            probe = run_wrk(f"http://{host}/", 2, cfg.connections, cpu=cfg.load_cpu, script=_write_script(
                gw / "probe.lua", _distinct_pushes(cfg, owner, host, path, fields, key, None, 10**8)[:400]))
            pushes = _distinct_pushes(cfg, owner, host, path, fields, key, probe, 2 * 10**8)
            res = _wrk(cfg, f"http://{host}/", _write_script(gw / "push.lua", pushes), "gateway_push")
            cfg.details["gateway_push"]["distinct_requests"] = len(pushes)
            if res.requests > len(pushes):
                cfg.details.setdefault("warnings", []).append(
                    f"push: {res.requests} requests for {len(pushes)} distinct pushes: some were replays")
            out["push_records_per_s"] = res.rps * BATCH
            # The same, every push repeating one batch's 100 keys (another Idempotency-Key each).
            same = [signed_push(owner, host, path, batch_body(fields, key, 0), f"same-{i}")
                    for i in range(min(MAX_PUSHES, len(pushes)))]
            res = _wrk(cfg, f"http://{host}/", _write_script(gw / "push-same.lua", same), "gateway_push_same_keys")
            out["push_same_keys_records_per_s"] = res.rps * BATCH
            _stage_profile(cfg, "push", proc.pid, f"http://{host}/", _write_script(
                gw / "push-profile.lua", _distinct_pushes(cfg, owner, host, path, fields, key, probe, 3 * 10**8)))
            pull = signed_get(reader, host, path, f"after=0&limit={PULL_LIMIT}")
            res = _wrk(
                cfg, f"http://{host}/", _write_script(gw / "pull.lua", [pull]), "gateway_pull"
            )
            out["pull_records_per_s"] = res.rps * per_pull
            _stage_profile(cfg, "pull", proc.pid, f"http://{host}/", gw / "pull.lua")
            personal = pick_personal_target(city)
            if personal is None:
                cfg.details["personal_query"] = "the catalog has no consented personal read to measure"
            else:
                reads = asyncio.run(_seed_consents(f"http://{host}", host, city, *personal))
                res = _wrk(cfg, f"http://{host}/", _write_script(gw / "personal.lua", reads),
                           "gateway_personal_query")
                cfg.details["gateway_personal_query"]["resource"] = personal[0].resource
                out["personal_query_rps"] = res.rps
            cfg.details["pull_records_per_response"] = per_pull
    return out


def run_bench(cfg: BenchConfig) -> dict[str, Any]:
    """Run every measurement; write ``bench.json`` and ``bench-details.json`` into ``cfg.out``."""
    find_wrk()
    if cfg.repeat < 1:
        raise LoadTestError(f"--repeat must be at least 1, got {cfg.repeat}")
    if cfg.duration_s * cfg.repeat > MAX_PHASE_S:
        raise LoadTestError(
            f"--duration x --repeat: at most {MAX_PHASE_S:.0f} s per measurement "
            "(pre-signed requests expire after 300 s)"
        )
    _cpus(cfg)
    cfg.out.mkdir(parents=True, exist_ok=True)
    pin_process(os.getpid(), cfg.load_cpu)
    result: dict[str, Any] = dict.fromkeys(KEYS)
    with tempfile.TemporaryDirectory(prefix="loadtest-bench-") as tmp:
        work = Path(tmp)
        result["hello_rps"], result["hello_p99_ms_at_half_load"] = bench_hello(cfg, work)
        catalog, keyring, what = write_city(work, cfg.resources, cfg.members, cfg.seed)
        cfg.details["catalog"] = what
        city = load_city(catalog, keyring)
        target = pick_target(city)
        fields, key = city.fields_of(target.resource)
        result["push_baseline_records_per_s"] = bench_push_baseline(
            cfg, work, batch_body(fields, key, 0)
        )
        if cfg.gateway:
            result.update(bench_gateway(cfg, work, catalog, keyring))
            if cfg.pure:
                pure = bench_gateway(
                    cfg,
                    work,
                    catalog,
                    keyring,
                    {"GATEWAY_NO_EXTENSIONS": "1"},
                    label="gateway-pure",
                )
                result["query_rps_pure"] = pure["query_rps"]
                if pure["query_rps"]:
                    result["query_speedup_over_pure"] = result["query_rps"] / pure["query_rps"]
            if cfg.cluster:
                result.update(_bench_cluster(cfg))
            if cfg.services:
                result.update(_bench_services(cfg, work))
    if result["query_rps"] and result["hello_rps"]:
        result["query_ratio"] = result["query_rps"] / result["hello_rps"]
    if result.get("personal_query_rps") and result["query_rps"]:
        result["personal_query_ratio"] = result["personal_query_rps"] / result["query_rps"]
    if result["push_records_per_s"] and result["push_baseline_records_per_s"]:
        result["push_ratio"] = result["push_records_per_s"] / result["push_baseline_records_per_s"]
    result = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in result.items()}
    (cfg.out / "bench.json").write_text(json.dumps(result, indent=2) + "\n")
    cfg.details.update(
        duration_s=cfg.duration_s,
        repeat=cfg.repeat,
        connections=cfg.connections,
        server_cpu=cfg.server_cpu,
        load_cpu=cfg.load_cpu,
    )
    (cfg.out / "bench-details.json").write_text(json.dumps(cfg.details, indent=2) + "\n")
    return result


def _bench_cluster(cfg: BenchConfig) -> dict[str, Any]:
    """One node on one local NATS server against the SQLite node (issue: cluster mode)."""
    cfg.progress("cluster: one node on JetStream vs one on SQLite, 1 and 2 workers")
    try:
        res = cluster_bench.bench_cluster(duration=cfg.duration_s, connections=cfg.connections,
                                          resources=min(cfg.resources, 2000),
                                          progress=cfg.progress)
    except RuntimeError as exc:  # no nats-server here
        cfg.details["cluster_error"] = str(exc)
        return {}
    cfg.details["cluster"] = res
    keys = ("cluster_push_records_per_s", "cluster_pull_records_per_s", "cluster_push_ratio",
            "sqlite_push_workers2_over_1", "cluster_push_workers2_over_1")
    return {k: res[k] for k in keys if k in res}


def _bench_services(cfg: BenchConfig, work: Path) -> dict[str, Any]:
    """Signed service call through the gateway vs straight to the backend; audit on vs off."""
    cfg.progress("services: proxy vs direct, keyed read with audit on vs off")
    folder = work / "services"
    folder.mkdir(exist_ok=True)
    res = services_bench.run(max(1, round(cfg.duration_s)), cfg.connections, folder, rounds=cfg.repeat)
    cfg.details["services"] = res
    return {k: res[k] for k in ("direct_rps", "proxy_rps", "proxy_ratio", "query_rps_audit_on",
                                "query_rps_audit_off", "audit_cost")}


TARGETS = {
    "query_ratio": ">= 0.6",
    "push_ratio": ">= 0.6",
    "query_speedup_over_pure": ">= 1.15",
    "cluster_push_ratio": ">= 0.5",
    "proxy_ratio": ">= 0.5",
    "audit_cost": "<= 0.10",
    "personal_query_ratio": ">= 0.7",
    "p99_ms_at_half_load": "<= 3 x hello p99",
}


def format_table(result: dict[str, Any]) -> str:
    """The bench figures as a text table."""
    rows = [("measure", "value", "target")]
    for k, v in result.items():
        value = "n/a" if v is None else f"{v:,.3f}" if isinstance(v, float) else f"{v:,}"
        rows.append((k, value, TARGETS.get(k, "")))
    hp, p = result.get("hello_p99_ms_at_half_load"), result.get("p99_ms_at_half_load")
    if hp and p:
        rows.append(("p99_half_load_ratio", f"{p / hp:,.3f}", "<= 3"))
    w = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [f"{a:<{w[0]}}  {b:>{w[1]}}  {c}" for a, b, c in rows]
    lines.insert(1, "-" * (w[0] + w[1] + w[2] + 4))
    return "\n".join(lines)


def build_parser(prog: str = "python -m bench gateway") -> argparse.ArgumentParser:
    """The command's options (``python -m loadtest bench`` forwards to it)."""
    b = argparse.ArgumentParser(
        prog=prog,
        description="gateway vs bare aiohttp on pinned cores, writes bench.json (needs wrk)",
    )
    b.add_argument("--out", required=True, help="folder for bench.json and bench-details.json")
    b.add_argument(
        "--duration",
        default="10s",
        help="each measurement's length (default %(default)s, max 240s)",
    )
    b.add_argument(
        "--connections", type=int, default=64, help="wrk connections (default %(default)s)"
    )
    b.add_argument(
        "--resources", type=int, default=16000, help="synthetic catalog size (default %(default)s)"
    )
    b.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run each measurement N times and keep the best (default %(default)s)",
    )
    b.add_argument(
        "--pure",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also measure the gateway with GATEWAY_NO_EXTENSIONS=1 (query_rps_pure)",
    )
    b.add_argument(
        "--cluster",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also measure a node on a local NATS JetStream (cluster_push/pull_records_per_s)",
    )
    b.add_argument(
        "--services",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also measure the service proxy (proxy_rps, direct_rps) and the audit's cost",
    )
    b.add_argument(
        "--stages",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="profile the node (py-spy) under each kind of load: microseconds per request by "
             "stage in bench-details.json",
    )
    b.add_argument("--no-gateway", action="store_true", help="measure only the bare servers")
    return b


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point: a clear message and exit code 2 instead of a traceback."""
    args = build_parser().parse_args(argv)
    try:
        if args.connections < 1:
            raise LoadTestError(f"--connections must be at least 1, got {args.connections}")
        cfg = BenchConfig(
            out=Path(args.out),
            duration_s=parse_duration(args.duration, "--duration"),
            connections=args.connections,
            resources=args.resources,
            pure=args.pure,
            cluster=args.cluster,
            services=args.services,
            repeat=args.repeat,
            gateway=not args.no_gateway,
            stages=args.stages,
        )
        result = run_bench(cfg)
    except (LoadTestError, HarnessError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print()
    print(format_table(result))
    if isinstance(cfg.details.get("stages"), dict):
        print()
        print(stages.format_table(cfg.details["stages"]))
    print(f"\nwrote {cfg.out / 'bench.json'} and {cfg.out / 'bench-details.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
