"""``python -m loadtest seed``: push the synthetic population so that the run's reads find data.

For every resource the run uses (:func:`loadtest.population.workload`), its owner pushes
one record per citizen ``0 .. citizens-1`` (certificates, bills, ... keyed by the
citizen's id) through the SDK (:class:`gateway.client.ExchangeClient`). Batches carry
deterministic Idempotency-Keys, so seeding twice appends nothing the second time.
"""

from __future__ import annotations

import argparse
import asyncio

from loadtest.errors import LoadTestError
from loadtest.host import check_host
from loadtest.population import City, load_city, make_record, workload

BATCH = 500
PARALLEL = 8


async def _seed(host: str, city: City, citizens: int, limit: int) -> int:
    from gateway.client import ExchangeClient, ExchangeError

    work = workload(city, limit)
    owners = dict(city.owned())
    sem = asyncio.Semaphore(PARALLEL)
    clients: dict[str, ExchangeClient] = {}

    def client_for(rid: str) -> ExchangeClient:
        cred = owners[rid]
        c = clients.get(cred.client)
        if c is None:
            c = clients[cred.client] = ExchangeClient(host, cred.key_id, cred.secret, cred.client)
        return c

    async def one(rid: str, start: int) -> int:
        fields, key = city.fields_of(rid)
        recs = [make_record(fields, key, i) for i in range(start, min(start + BATCH, citizens))]
        async with sem:
            try:
                await client_for(rid).push(
                    rid, recs, idempotency_key=f"seed-{rid}-{start}-{len(recs)}"
                )
            except ExchangeError as exc:
                raise LoadTestError(f"seeding {rid} failed: {exc}") from None
        return len(recs)

    jobs = [
        one(rid, s) for rid in work.resources if rid in owners for s in range(0, citizens, BATCH)
    ]
    try:
        counts = await asyncio.gather(*jobs)
    finally:
        for c in clients.values():
            await c.close()
    return sum(counts)


def seed_city(host: str, city: City, citizens: int, limit: int = 0) -> int:
    """Push ``citizens`` records into each resource of the workload; return how many."""
    if citizens < 1:
        raise LoadTestError(f"--citizens must be >= 1, got {citizens}")
    if limit < 0:
        raise LoadTestError(f"--resources must be >= 0, got {limit}")
    return asyncio.run(_seed(host.rstrip("/"), city, citizens, limit))


def seed_main(args: argparse.Namespace) -> int:
    """The ``seed`` command."""
    city = load_city(args.catalog, args.keyring)
    check_host(args.host)
    n = seed_city(args.host, city, args.citizens, args.resources)
    print(f"seeded {n} records for {args.citizens} citizens into {args.host}")
    return 0
