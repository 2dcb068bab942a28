"""Store micro-benchmark: ``python -m bench stores --out FILE``.

Measures the SQLite store alone (no HTTP): durable appends of ``--batch``-record
batches from ``--tasks`` concurrent tasks, paged reads of 100 records, and keyed
``latest`` reads, for each ``--synchronous`` mode. Prints a table, writes JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from gateway.stores.sqlite import SQLiteStore

CLIENT = "SH/GOV/bench/store"
RESOURCE = "bench.records"


def _record(i: int) -> tuple[str, bytes]:
    key = f"3101{i:014d}"
    data = json.dumps(
        {"id_number": key, "name": f"resident {i}", "birth_date": "1990-01-01", "address": "x" * 80}
    ).encode()
    return key, data


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _drive(
    tasks: int, seconds: float, op: Callable[[int, int], Awaitable[int]]
) -> tuple[int, int, float, list[float]]:
    """Run ``op(task, n)`` in ``tasks`` loops for ``seconds``: (calls, items, elapsed, latencies)."""
    stop = time.perf_counter() + seconds
    latencies: list[float] = []
    items = 0

    async def loop(t: int) -> None:
        nonlocal items
        n = 0
        while time.perf_counter() < stop:
            started = time.perf_counter()
            got = await op(t, n)
            latencies.append(time.perf_counter() - started)
            items += got
            n += 1

    started = time.perf_counter()
    await asyncio.gather(*[loop(t) for t in range(tasks)])
    return len(latencies), items, time.perf_counter() - started, latencies


def _payloads(batch_size: int, keys: int, seed: int) -> list[list[tuple[str, bytes]]]:
    """256 batches of citizen ids drawn at random from ``keys``: each record moves one
    random entry of the latest-by-key index, as pushes of real citizens' records do."""
    rng = random.Random(seed)
    return [[_record(rng.randrange(keys)) for _ in range(batch_size)] for _ in range(256)]


async def _append_phase(
    store: SQLiteStore, payloads: list[list[tuple[str, bytes]]], tasks: int, seconds: float
) -> tuple[int, int, float, list[float]]:
    async def append(t: int, n: int) -> int:
        result = await store.append(RESOURCE, payloads[(t * 31 + n) % 256], client=CLIENT)
        return result.count

    return await _drive(tasks, seconds, append)


async def bench_mode(directory: Path, synchronous: str, args: argparse.Namespace) -> dict[str, Any]:
    """Appends, then paged reads, then keyed reads, on a fresh file."""
    path = directory / f"bench-{synchronous.lower()}.db"
    _remove_db(path)
    async with SQLiteStore(path, synchronous=synchronous) as store:
        rng = random.Random(1)
        payloads = _payloads(args.batch, args.keys, 1)
        calls, records, elapsed, lat = await _append_phase(
            store, payloads, args.tasks, args.seconds
        )
        stats = store.stats()
        head = await store.head(RESOURCE)
        out: dict[str, Any] = {
            "synchronous": synchronous,
            "append_batches_per_s": calls / elapsed,
            "append_records_per_s": records / elapsed,
            "append_p50_ms": _percentile(lat, 0.5) * 1000,
            "append_p99_ms": _percentile(lat, 0.99) * 1000,
            "commits": stats["commits"],
            "mean_group": stats["mean_group"],
            "mean_commit_ms": stats["mean_commit_seconds"] * 1000,
        }

        async def read(t: int, n: int) -> int:
            after = rng.randrange(0, max(head - 100 * 1024, 1))
            return len(await store.read(RESOURCE, after, 100))

        calls, records, elapsed, lat = await _drive(args.tasks, args.seconds, read)
        out.update(
            read_calls_per_s=calls / elapsed,
            read_records_per_s=records / elapsed,
            read_p99_ms=_percentile(lat, 0.99) * 1000,
        )

        async def latest(t: int, n: int) -> int:
            key = rng.choice(rng.choice(payloads))[0]
            return 1 if await store.latest(RESOURCE, key) is not None else 0

        calls, _, elapsed, lat = await _drive(args.tasks, args.seconds, latest)
        out.update(latest_per_s=calls / elapsed, latest_p99_ms=_percentile(lat, 0.99) * 1000)
    return out


async def _append_only(
    path: str,
    synchronous: str,
    tasks: int,
    batch: int,
    keys: int,
    seconds: float,
    start_at: float,
    seed: int,
) -> dict[str, Any]:
    async with SQLiteStore(path, synchronous=synchronous) as store:
        payloads = _payloads(batch, keys, seed)
        await asyncio.sleep(max(0.0, start_at - time.time()))
        calls, records, elapsed, lat = await _append_phase(store, payloads, tasks, seconds)
        return {
            "batches": calls,
            "records": records,
            "elapsed": elapsed,
            "p99_ms": _percentile(lat, 0.99) * 1000,
        }


def _append_worker(*args: Any) -> dict[str, Any]:
    """One process of the multi-process run (top level, so that ``spawn`` can find it)."""
    return _runner()(_append_only(*args))


def bench_processes(
    directory: Path, synchronous: str, processes: int, args: argparse.Namespace
) -> dict[str, Any]:
    """``processes`` processes, each with its own store and writer, append to one file;
    the ``--tasks`` are shared out between them."""
    path = directory / f"bench-{processes}p.db"
    _remove_db(path)
    share = [args.tasks // processes + (i < args.tasks % processes) for i in range(processes)]
    ctx = multiprocessing.get_context("spawn")
    start_at = time.time() + 1.0 + 0.5 * processes
    with ProcessPoolExecutor(max_workers=processes, mp_context=ctx) as pool:
        futures = [
            pool.submit(
                _append_worker,
                str(path),
                synchronous,
                share[i],
                args.batch,
                args.keys,
                args.seconds,
                start_at,
                i + 1,
            )
            for i in range(processes)
            if share[i] > 0
        ]
        results = [f.result() for f in futures]
    elapsed = max(r["elapsed"] for r in results)
    return {
        "processes": processes,
        "synchronous": synchronous,
        "append_records_per_s": sum(r["records"] for r in results) / elapsed,
        "append_batches_per_s": sum(r["batches"] for r in results) / elapsed,
        "append_p99_ms": max(r["p99_ms"] for r in results),
    }


def _remove_db(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)


def _runner() -> Callable[[Any], Any]:
    try:
        import uvloop
    except ImportError:
        return asyncio.run
    return uvloop.run


def _process_table(rows: list[dict[str, Any]]) -> str:
    lines = ["processes  append rec/s  batches/s  append p99 ms"]
    lines.append("---------  ------------  ---------  -------------")
    for row in rows:
        lines.append(
            f"{row['processes']:>9}  {row['append_records_per_s']:>12,.0f}"
            f"  {row['append_batches_per_s']:>9,.0f}  {row['append_p99_ms']:>13.1f}"
        )
    return "\n".join(lines)


def _table(rows: list[dict[str, Any]]) -> str:
    columns = [
        ("synchronous", "sync", "{}"),
        ("append_records_per_s", "append rec/s", "{:,.0f}"),
        ("append_batches_per_s", "batches/s", "{:,.0f}"),
        ("append_p99_ms", "append p99 ms", "{:.1f}"),
        ("mean_group", "ops/commit", "{:.1f}"),
        ("mean_commit_ms", "commit ms", "{:.2f}"),
        ("read_records_per_s", "read rec/s", "{:,.0f}"),
        ("read_calls_per_s", "reads/s", "{:,.0f}"),
        ("latest_per_s", "latest/s", "{:,.0f}"),
    ]
    cells = [[title for _, title, _ in columns]] + [
        [fmt.format(row[key]) for key, _, fmt in columns] for row in rows
    ]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be > 0")
    return value


def _batch_size(text: str) -> int:
    return _bounded_int(text, 1000)


def _bounded_int(text: str, high: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if not 1 <= value <= high:
        raise argparse.ArgumentTypeError(f"{text!r} must be between 1 and {high}")
    return value


def _tasks(text: str) -> int:
    return _bounded_int(text, 10_000)


def _tasks_or_keys(text: str) -> int:
    return _bounded_int(text, 10**12)


def _modes(text: str) -> list[str]:
    modes = [m.strip().upper() for m in text.split(",") if m.strip()]
    bad = [m for m in modes if m not in ("FULL", "NORMAL", "EXTRA")]
    if not modes or bad:
        raise argparse.ArgumentTypeError(f"{text!r}: use FULL, NORMAL or EXTRA, comma-separated")
    return modes


def _process_counts(text: str) -> list[int]:
    counts = [_bounded_int(part.strip(), 64) for part in text.split(",") if part.strip()]
    return counts


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    parser = argparse.ArgumentParser(prog="python -m bench stores", description=__doc__)
    parser.add_argument("--out", required=True, help="JSON file to write")
    parser.add_argument("--seconds", type=_positive_float, default=3.0, help="per phase")
    parser.add_argument("--tasks", type=_tasks, default=32, help="concurrent tasks")
    parser.add_argument("--batch", type=_batch_size, default=100, help="records per append")
    parser.add_argument("--keys", type=_tasks_or_keys, default=1_000_000, help="distinct keys")
    parser.add_argument("--synchronous", type=_modes, default=["FULL", "NORMAL"])
    parser.add_argument(
        "--processes",
        type=_process_counts,
        default=[1, 2],
        help="writer-process counts to compare on one file, e.g. 1,2 (empty: skip)",
    )
    parser.add_argument("--dir", default=None, help="where the database goes (default: a temp dir)")
    args = parser.parse_args(argv)
    runner = _runner()
    rows = []
    process_rows = []
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for mode in args.synchronous:
            rows.append(runner(bench_mode(Path(tmp), mode, args)))
        for count in args.processes:
            process_rows.append(bench_processes(Path(tmp), args.synchronous[0], count, args))
    result = {
        "tasks": args.tasks,
        "keys": args.keys,
        "batch": args.batch,
        "seconds": args.seconds,
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "modes": rows,
        "processes": process_rows,
    }
    print(_table(rows))
    if process_rows:
        print()
        print(f"several processes on one file ({args.synchronous[0]}, {args.tasks} tasks in all):")
        print(_process_table(process_rows))
    out = Path(args.out)
    if out.parent and not out.parent.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
