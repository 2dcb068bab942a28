"""A child process for the durability tests: appends batches concurrently to a
SQLiteStore and reports each push on stdout, one line each, as soon as it happens.

    S {"id": ...}                    about to push batch `id` (it may or may not land)
    A {"id": ..., "first": ..., ...} the push was acknowledged (durable)

Batches are fully determined by (resource, id) through :func:`batch_for`, so the
parent can check the stored data without receiving it. ``--retry FILE`` re-sends, before
anything else, the pushes listed there (ids sent but never acknowledged by a killed
predecessor) with the same Idempotency-Key, as a retrying client would.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from gateway.stores.sqlite import SQLiteStore  # noqa: E402

CLIENT = "SH/GOV/test/durability"


def batch_for(batch_id: str) -> list[tuple[str, bytes]]:
    """The records of batch ``batch_id`` (1 to 40 of them, sizes vary)."""
    n = 1 + int(hashlib.sha256(batch_id.encode()).hexdigest()[:4], 16) % 40
    return [
        (
            f"{batch_id}/{i}",
            json.dumps({"batch": batch_id, "i": i, "pad": "z" * ((i * 37) % 300)}).encode(),
        )
        for i in range(n)
    ]


def body_hash(batch_id: str) -> str:
    return hashlib.sha256(b"".join(d for _, d in batch_for(batch_id))).hexdigest()


def emit(kind: str, payload: dict) -> None:
    sys.stdout.write(f"{kind} {json.dumps(payload)}\n")
    sys.stdout.flush()


async def push(store: SQLiteStore, resource: str, batch_id: str) -> None:
    emit("S", {"id": batch_id, "resource": resource})
    result = await store.append(
        resource,
        batch_for(batch_id),
        client=CLIENT,
        idempotency_key=batch_id,
        body_hash=body_hash(batch_id),
    )
    emit(
        "A",
        {
            "id": batch_id,
            "resource": resource,
            "first": result.first,
            "last": result.last,
            "count": result.count,
            "replayed": result.replayed,
        },
    )


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    parser.add_argument("--name", required=True, help="prefix of this child's batch ids")
    parser.add_argument("--resources", default="dur.a,dur.b")
    parser.add_argument("--tasks", type=int, default=8)
    parser.add_argument("--batches", type=int, default=100_000, help="per task")
    parser.add_argument("--retry", default=None)
    parser.add_argument("--synchronous", default="FULL")
    args = parser.parse_args()
    resources = args.resources.split(",")
    async with SQLiteStore(args.db, synchronous=args.synchronous) as store:
        if args.retry:
            with open(args.retry) as fh:
                pending = [json.loads(line) for line in fh if line.strip()]
            await asyncio.gather(*[push(store, p["resource"], p["id"]) for p in pending])

        async def task(t: int) -> None:
            for seq in range(args.batches):
                await push(store, resources[(t + seq) % len(resources)], f"{args.name}-t{t}-{seq}")

        await asyncio.gather(*[task(t) for t in range(args.tasks)])


if __name__ == "__main__":
    asyncio.run(main())
