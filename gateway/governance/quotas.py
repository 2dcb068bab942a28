"""Per-client rate limits: a token bucket per client, answered 429 with Retry-After.

Quotas come from the catalog (``[[quotas]]``; ``client = "*"`` is the default). The
buckets live in the node's memory: in cluster mode each node enforces the full rate on
its own, so N nodes behind a balancer admit between ``rate`` and ``N x rate`` per client
(``N x rate`` when the balancer spreads a client evenly). Set ``rate`` to the cluster
limit divided by the node count for a limit that is exact to within one bucket's burst
per node.
"""

from __future__ import annotations

import math
import time

from gateway.errors import Problem
from gateway.governance.spec import Quota


class RateLimiter:
    """Token buckets keyed by client; buckets of clients without a quota are never made."""

    def __init__(self, max_clients: int = 100_000) -> None:
        self._buckets: dict[str, list[float]] = {}
        self._max = max_clients

    def check(self, client: str, quotas: dict[str, Quota], now: float | None = None) -> None:
        """Take one token for ``client``; raise 429 ``client.rate_limited`` when there is none."""
        q = quotas.get(client) or quotas.get("*")
        if q is None:
            return
        now = time.monotonic() if now is None else now
        burst = float(q.burst or max(1.0, 2 * q.rate))
        b = self._buckets.get(client)
        if b is None:
            if len(self._buckets) >= self._max:
                self._buckets.clear()
            b = self._buckets[client] = [burst, now]
        tokens = min(burst, b[0] + (now - b[1]) * q.rate)
        b[1] = now
        if tokens >= 1.0:
            b[0] = tokens - 1.0
            return
        b[0] = tokens
        wait = max(1, math.ceil((1.0 - tokens) / q.rate))
        raise Problem("client.rate_limited",
                      f"{client} exceeded its quota of {q.rate:g} requests/s; retry in {wait} s",
                      headers={"Retry-After": str(wait)})
