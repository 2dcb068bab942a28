"""Retention and compaction per resource (catalog: ``retention``, ``max_records``, ``compact``).

A resource with a policy keeps its records for ``retention`` (``"400d"``, ``"12h"``, ...)
and/or its newest ``max_records`` records; older batches are removed whole (a batch is
dropped once every record in it is beyond the policy, so at least ``max_records`` records
stay). With ``compact = true`` the latest record of every key beyond the policy is kept for
keyed reads (as Kafka's compacted topics keep the last value of every key).

Each store remembers per resource its ``earliest`` offset: one more than the last offset
that retention removed (0 when it never removed anything). Offsets stay strictly
increasing; a pull returns only records at or after ``earliest``, and a pull whose ``after``
lies below ``earliest - 1`` carries ``"earliest"`` in its page (records in between are gone).
A keyed read of a key whose latest record was removed answers 404 unless the resource
compacts.

:class:`RetentionJob` applies the catalog's policies in the node every ``interval_s``;
``python -m gateway retention apply`` does it once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable
from typing import Any, Protocol

import msgspec

log = logging.getLogger("gateway.stores.retention")

_DURATION = re.compile(r"^([1-9][0-9]{0,8})(s|m|h|d)$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> int:
    """Seconds of a duration such as ``"400d"``, ``"12h"``, ``"30m"``, ``"90s"``; ValueError."""
    m = _DURATION.match(text) if isinstance(text, str) else None
    if m is None:
        raise ValueError(
            f"must be a whole number and a unit s, m, h or d (e.g. \"400d\"), not {text!r}"
        )
    return int(m.group(1)) * _UNIT_S[m.group(2)]


class RetentionPolicy(msgspec.Struct, frozen=True):
    """What one resource keeps: ``max_age_s`` and/or ``max_records``; ``compact`` keeps the
    latest record of every key beyond them."""

    max_age_s: int | None = None
    max_records: int | None = None
    compact: bool = False


class RetentionResult(msgspec.Struct):
    """What one application of a policy did to one resource."""

    resource: str
    earliest: int = 0  # the resource's earliest offset after this run
    batches_dropped: int = 0
    records_dropped: int = 0
    records_compacted: int = 0  # kept beyond the policy as their key's latest record
    keys_dropped: int = 0  # keyed-read entries removed (not compacting)


def policy_of(spec: Any) -> RetentionPolicy | None:
    """The policy of a catalog resource (its ``retention``, ``max_records``, ``compact``)."""
    if spec.retention is None and spec.max_records is None:
        return None
    age = parse_duration(spec.retention) if spec.retention is not None else None
    return RetentionPolicy(age, spec.max_records, bool(spec.compact))


def policies(catalog: Any) -> dict[str, RetentionPolicy]:
    """Every resource of the catalog that has a policy."""
    out: dict[str, RetentionPolicy] = {}
    for entry in catalog.resources:
        policy = policy_of(entry.spec)
        if policy is not None:
            out[entry.id] = policy
    return out


class RetainingStore(Protocol):
    """What a store offers for retention (both backends)."""

    async def apply_retention(
        self, resource: str, policy: RetentionPolicy, now_ms: int
    ) -> RetentionResult: ...

    async def earliest(self, resource: str) -> int: ...


async def apply_all(
    store: Any, wanted: dict[str, RetentionPolicy], now_ms: int | None = None
) -> list[RetentionResult]:
    """Apply every policy once; results of the resources where something changed."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    out = []
    for resource, policy in wanted.items():
        res = await store.apply_retention(resource, policy, now_ms)
        if res.batches_dropped or res.records_dropped or res.records_compacted or res.keys_dropped:
            out.append(res)
    return out


async def earliest_for(store: Any, resource: str) -> int:
    """The store's earliest offset of the resource; 0 for a store without retention."""
    fn = getattr(store, "earliest", None)
    return await fn(resource) if fn is not None else 0


class RetentionJob:
    """Apply the catalog's policies every ``interval_s`` (the first run after ``first_s``)."""

    def __init__(
        self,
        store: Any,
        catalog: Callable[[], Any],
        *,
        interval_s: float = 300.0,
        first_s: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.catalog = catalog
        self.interval_s = interval_s
        self.first_s = first_s
        self.clock = clock
        self.runs = 0
        self.last: list[RetentionResult] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None and hasattr(self.store, "apply_retention"):
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def run_once(self) -> list[RetentionResult]:
        """One pass over the current catalog's policies."""
        wanted = policies(self.catalog())
        results = await apply_all(self.store, wanted, int(self.clock() * 1000))
        self.runs += 1
        self.last = results
        for r in results:
            log.info(
                "retention: %s: dropped %d batches (%d records, %d key entries), kept %d "
                "compacted; earliest offset now %d", r.resource, r.batches_dropped,
                r.records_dropped, r.keys_dropped, r.records_compacted, r.earliest)
        return results

    async def _loop(self) -> None:
        await asyncio.sleep(self.first_s)
        while True:
            try:
                await self.run_once()
            except Exception as exc:  # noqa: BLE001 - e.g. the store is down: try next time
                log.warning("retention pass failed, retrying in %g s: %s", self.interval_s, exc)
            await asyncio.sleep(self.interval_s)
