"""Benchmark of the fast path: compiled modules vs their Python twins (and aiohttp's router).

``python -m bench fastpath [--json FILE] [--resources N] [--repeat N] [--quick]`` prints a
table of operations per second and speed-ups, and writes the same figures as JSON.

* router: ``RouteTable.match`` over a deterministic mix of record pulls, keyed reads,
  cursor commits and catalog reads on a table of ``--resources`` resource ids (16,000 by
  default, from :func:`devkit.synth.synth_catalog`), against aiohttp's own
  ``UrlDispatcher.resolve`` on the same table (one aiohttp resource per rid route, requests
  from ``make_mocked_request``; their parsed URLs are built once and cached, which favours
  aiohttp). Every timed run matches fresh ``str`` objects, as a server would.

Rates are operations per second of CPU time of the benchmarking thread, best of
``--repeat`` runs, the implementations taking turns run by run.
* router (services): service paths with tails, compiled vs twin.
* codec: ``encode_batch`` / ``decode_batch`` of 100-record batches of JSON payloads.
* projection: ``project_many`` / ``project`` with a grant of half the fields and a mask.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import fastpath
from devkit.synth import synth_catalog

__all__ = ["main", "run", "resource_catalog"]

TARGETS = {
    "router": {"cython_vs_aiohttp": 10.0, "cython_vs_python": 5.0},
    "codec encode": {"cython_vs_python": 3.0},
    "codec decode": {"cython_vs_python": 3.0},
    "projection project_many": {"cython_vs_python": 3.0},
}

#: aiohttp's mocked requests are slow to build; it resolves the first this many of the mix.
AIOHTTP_REQUESTS = 5000


def resource_catalog(resources: int, members: int = 50, seed: int = 0) -> list[dict[str, Any]]:
    """Resources ``{"id", "key", "fields"}`` of a synthetic catalog (:mod:`devkit.synth`)."""
    doc = synth_catalog(resources, min(members, resources), seed)
    return [{"id": r["id"], "key": r["key"], "fields": r["fields"]} for r in doc["resources"]]


def _value(rng: random.Random, kind: str, key: bool) -> Any:
    if key:
        return f"3101{rng.randrange(10**14):014d}"
    base = kind.rstrip("?")
    if base == "int":
        return rng.randrange(10**6)
    if base == "float":
        return round(rng.uniform(0, 10**4), 2)
    if base == "bool":
        return rng.random() < 0.5
    if base == "date":
        return f"20{rng.randrange(10, 30)}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}"
    if base == "datetime":
        return "2026-11-26T17:40:35Z"
    if base.startswith("list"):
        return ["a", "b"]
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz ") for _ in range(rng.randint(4, 24)))


def _record(rng: random.Random, resource: dict[str, Any]) -> dict[str, Any]:
    return {
        name: _value(rng, kind, name == resource["key"])
        for name, kind in resource["fields"].items()
    }


Runner = Callable[[int], int]  # run number -> operations done


def _lengthened(fn: Runner | None, seconds: float = 0.03) -> Runner | None:
    """``fn`` repeated within each run so that a run lasts about ``seconds`` of CPU time."""
    if fn is None:
        return None
    start = time.thread_time()
    fn(0)
    once = max(time.thread_time() - start, 1e-6)
    times = max(1, min(1000, round(seconds / once)))

    def go(run: int) -> int:
        return sum(fn(run) for _ in range(times))

    return go


def _compare(runners: dict[str, Runner | None], repeat: int) -> dict[str, float | None]:
    """Operations per second of each runner: the best of ``repeat`` runs.

    Time is the CPU time of this thread (``time.thread_time``), so that other processes
    on a busy machine do not count; the runners also take turns, run by run, so that
    what they share (caches, memory bandwidth) is disturbed alike.
    """
    best: dict[str, float] = {}
    for run in range(repeat):
        for name, fn in runners.items():
            if fn is None:
                continue
            start = time.thread_time()
            ops = fn(run)
            elapsed = max(time.thread_time() - start, 1e-9)
            best[name] = max(best.get(name, 0.0), ops / elapsed)
    return {name: best.get(name) for name in runners}


def _fresh(strings: Sequence[str]) -> list[str]:
    """New str objects equal to ``strings`` (no cached hash), as a server's parser makes."""
    return [s.encode().decode() for s in strings]


def _router_workload(rids: list[str], count: int, rng: random.Random) -> list[tuple[str, str]]:
    out = []
    for _ in range(count):
        rid = rng.choice(rids)
        roll = rng.random()
        if roll < 0.45:
            out.append(("GET", f"/v1/resources/{rid}/records/3101{rng.randrange(10**14):014d}"))
        elif roll < 0.75:
            out.append(("GET", f"/v1/resources/{rid}/records"))
        elif roll < 0.85:
            out.append(("POST", f"/v1/resources/{rid}/records"))
        elif roll < 0.95:
            out.append(("PUT", f"/v1/resources/{rid}/cursor"))
        else:
            out.append(("GET", f"/v1/catalog/{rid}"))
    return out


def _match_runner(table: Any, methods: list[str], paths: list[str], repeat: int) -> Runner:
    runs = [_fresh(paths) for _ in range(repeat)]
    match = table.match

    def go(run: int) -> int:
        for path in runs[run]:
            match(path)
        return len(paths)

    return go


def _aiohttp_runner(
    rids: list[str], workload: list[tuple[str, str]], loop: asyncio.AbstractEventLoop
) -> Runner:
    """aiohttp's UrlDispatcher with one resource per rid route, resolving ``workload``."""
    from aiohttp import web
    from aiohttp.test_utils import make_mocked_request

    async def handler(request: web.Request) -> web.Response:  # pragma: no cover - not called
        return web.Response()

    app = web.Application()
    router = app.router
    for rid in rids:
        records = router.add_resource(f"/v1/resources/{rid}/records")
        records.add_route("GET", handler)
        records.add_route("POST", handler)
        router.add_resource(f"/v1/resources/{rid}/records/{{key}}").add_route("GET", handler)
        router.add_resource(f"/v1/resources/{rid}/cursor").add_route("PUT", handler)
        router.add_resource(f"/v1/catalog/{rid}").add_route("GET", handler)
    requests = [make_mocked_request(method, path, app=app) for method, path in workload]
    resolve = router.resolve

    async def check() -> None:
        for request, (method, path) in zip(requests, workload, strict=True):
            matched = await resolve(request)
            if matched.http_exception is not None:
                raise RuntimeError(f"aiohttp did not resolve {method} {path}: {matched!r}")

    async def one_run() -> None:
        for request in requests:
            await resolve(request)

    loop.run_until_complete(check())

    def go(_run: int) -> int:
        loop.run_until_complete(one_run())
        return len(requests)

    return go


def _service_workload(rng: random.Random, count: int) -> tuple[list[str], list[tuple[str, str]]]:
    services = [f"SH/GOV/agency{i % 50}/sub{i % 7}/service-{i}" for i in range(1000)]
    tails = ["", "/people/42", "/v2/items/a%20b/detail", "/query"]
    workload = [
        ("GET", f"/v1/services/{rng.choice(services)}{rng.choice(tails)}") for _ in range(count)
    ]
    return services, workload


def _row(name: str, unit: str, cy: float | None, py: float, aio: float | None = None) -> dict:
    row: dict[str, Any] = {"name": name, "unit": unit, "cython": cy, "python": py}
    row["cython_vs_python"] = cy / py if cy else None
    if aio is not None:
        row["aiohttp"] = aio
        row["cython_vs_aiohttp"] = cy / aio if cy else None
        row["python_vs_aiohttp"] = py / aio
    targets = TARGETS.get(name, {})
    row["targets"] = targets
    row["meets_targets"] = (
        all(row.get(k) is not None and row[k] >= v for k, v in targets.items()) if targets else None
    )
    return row


def run(resources: int = 16000, repeat: int = 5, requests: int = 20000, seed: int = 0) -> dict:
    """Run every benchmark; return the results as a JSON-ready dict."""
    py = fastpath.implementation("python")
    try:
        cy = fastpath.implementation("cython")
    except ImportError:
        cy = None
    rng = random.Random(seed)
    catalog = resource_catalog(resources, seed=seed)
    rids = [r["id"] for r in catalog]
    rows = []

    # -- router over the resource table
    workload = _router_workload(rids, requests, rng)
    methods = [m for m, _ in workload]
    paths = [p for _, p in workload]
    templates = ["/healthz", "/readyz", "/metrics", "/v1/catalog", "/v1/resources/{rid}/records",
                 "/v1/resources/{rid}/cursor", "/v1/resources/{rid}/records/{key}", "/v1/catalog/{rid}",
                 "/v1/services/{service}/{tail}"]  # the gateway's shapes (gateway.routes)
    loop = asyncio.new_event_loop()
    try:
        ops = _compare(
            {
                "cython": _match_runner(cy.RouteTable(templates, rids), methods, paths, repeat)
                if cy
                else None,
                "python": _match_runner(py.RouteTable(templates, rids), methods, paths, repeat),
                "aiohttp": _aiohttp_runner(rids, workload[:AIOHTTP_REQUESTS], loop),
            },
            repeat,
        )
    finally:
        loop.close()
    rows.append(_row("router", "paths/s", ops["cython"], ops["python"], ops["aiohttp"]))

    # -- router over service paths
    services, svc_workload = _service_workload(rng, requests)
    methods = [m for m, _ in svc_workload]
    paths = [p for _, p in svc_workload]
    ops = _compare(
        {
            "cython": _match_runner(cy.RouteTable(templates, rids, services), methods, paths, repeat)
            if cy
            else None,
            "python": _match_runner(py.RouteTable(templates, rids, services), methods, paths, repeat),
        },
        repeat,
    )
    rows.append(_row("router services", "paths/s", ops["cython"], ops["python"]))

    # -- codec
    import msgspec

    encode_json = msgspec.json.encode
    batches = []
    offset = 0
    for _ in range(50):
        resource = rng.choice(catalog)
        batch = []
        for _ in range(100):
            offset += rng.randint(1, 3)
            data = _record(rng, resource)
            batch.append(
                (offset, 1_764_000_000_000 + offset, str(data[resource["key"]]), encode_json(data))
            )
        batches.append(batch)
    framed = [py.encode_batch(b) for b in batches]
    n_records = sum(len(b) for b in batches)

    def encoder(impl: Any) -> Callable[[int], int]:
        def go(_run: int) -> int:
            for b in batches:
                impl.encode_batch(b)
            return n_records

        return go

    def decoder(impl: Any) -> Callable[[int], int]:
        def go(_run: int) -> int:
            for buf in framed:
                impl.decode_batch(buf)
            return n_records

        return go

    for name, make in (("codec encode", encoder), ("codec decode", decoder)):
        ops = _compare(
            {"cython": _lengthened(make(cy) if cy else None), "python": _lengthened(make(py))},
            repeat,
        )
        rows.append(_row(name, "records/s", ops["cython"], ops["python"]))

    # -- projection: per resource, a grant of half its fields with the key masked
    groups = []
    for resource in rng.sample(catalog, min(50, len(catalog))):
        names = list(resource["fields"])
        granted = [n for i, n in enumerate(names) if i % 2 == 0 or n == resource["key"]]
        masks = {resource["key"]: (6, 4)}
        records = [_record(rng, resource) for _ in range(100)]
        groups.append((granted, masks, records))
    n_projected = sum(len(g[2]) for g in groups)

    def projector(impl: Any, many: bool) -> Runner:
        plans = [(impl.compile_plan(f, m), recs) for f, m, recs in groups]
        project, project_many = impl.project, impl.project_many

        def go(_run: int) -> int:
            if many:
                for plan, recs in plans:
                    project_many(plan, recs)
            else:
                for plan, recs in plans:
                    for r in recs:
                        project(plan, r)
            return n_projected

        return go

    for many, name in ((True, "projection project_many"), (False, "projection project")):
        ops = _compare(
            {
                "cython": _lengthened(projector(cy, many) if cy else None),
                "python": _lengthened(projector(py, many)),
            },
            repeat,
        )
        rows.append(_row(name, "records/s", ops["cython"], ops["python"]))

    import aiohttp

    return {
        "implementation": fastpath.IMPLEMENTATION,
        "compiled_available": cy is not None,
        "resources": resources,
        "requests": requests,
        "repeat": repeat,
        "python": sys.version.split()[0],
        "aiohttp": aiohttp.__version__,
        "results": rows,
    }


def _fmt(value: float | None, ratio: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{value:.1f}x" if ratio else f"{value:,.0f}"


def format_table(result: dict) -> str:
    """The results as a plain-text table."""
    head = ("benchmark", "unit", "cython", "python", "aiohttp", "cy/py", "cy/aiohttp", "targets")
    lines = []
    for r in result["results"]:
        met = r["meets_targets"]
        lines.append(
            (
                r["name"],
                r["unit"],
                _fmt(r["cython"]),
                _fmt(r["python"]),
                _fmt(r.get("aiohttp")),
                _fmt(r["cython_vs_python"], True),
                _fmt(r.get("cython_vs_aiohttp"), True),
                "-" if met is None else ("met" if met else "MISSED"),
            )
        )
    widths = [max(len(str(x)) for x in col) for col in zip(head, *lines, strict=True)]
    fmt = "  ".join(f"{{:<{w}}}" if i < 2 else f"{{:>{w}}}" for i, w in enumerate(widths))
    out = [
        f"fastpath bench: {result['resources']:,} resources, {result['requests']:,} requests, "
        f"best of {result['repeat']}, Python {result['python']}, aiohttp {result['aiohttp']}",
        fmt.format(*head),
        fmt.format(*("-" * w for w in widths)),
    ]
    out += [fmt.format(*line) for line in lines]
    if not result["compiled_available"]:
        out.append("the compiled fast path is not built: run `python setup.py build_ext --inplace`")
    return "\n".join(out)


def _bounded_int(name: str, low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be an integer, not {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(
                f"{name} must be between {low} and {high}, not {value}"
            )
        return value

    return parse


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point."""
    parser = argparse.ArgumentParser(
        prog="python -m bench fastpath",
        description="Ops/s of the compiled fast path, its Python twins and aiohttp's router.",
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the results here")
    parser.add_argument(
        "--resources",
        type=_bounded_int("--resources", 1, 1_000_000),
        default=16000,
        metavar="N",
        help="resource ids in the route table (default 16000)",
    )
    parser.add_argument(
        "--requests",
        type=_bounded_int("--requests", 100, 1_000_000),
        default=20000,
        metavar="N",
        help="paths per router run (default 20000)",
    )
    parser.add_argument(
        "--repeat",
        type=_bounded_int("--repeat", 1, 100),
        default=5,
        metavar="N",
        help="runs per benchmark; the best counts (default 5)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small sizes for a smoke run (2,000 resources, 2 repeats)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.resources, args.requests, args.repeat = 2000, 2000, 2
    if args.json is not None and not args.json.parent.is_dir():
        parser.error(f"--json: directory {str(args.json.parent)!r} does not exist")
    result = run(args.resources, args.repeat, args.requests)
    print(format_table(result))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
