"""Catalog declarations for governance: portals (act for citizens) and per-client quotas.

    portals = ["SH/GOV/bdc/portal"]      # subsystems that record consents and read access logs

    [[quotas]]
    client = "*"                         # default for every client without its own quota
    rate = 200.0                         # requests per second (token bucket refill)
    burst = 400                          # bucket size
"""

from __future__ import annotations

import msgspec

from gateway.tomlfile import ConfigError


class Quota(msgspec.Struct, forbid_unknown_fields=True):
    client: str
    rate: float
    burst: int = 0  # 0 = max(1, 2 * rate)


def check_governance(src: str, subsystems: set[str], portals: list[str], quotas: list[Quota]) -> None:
    """Check portals and quotas; raise ConfigError naming the key."""
    for i, p in enumerate(portals):
        if p not in subsystems:
            raise ConfigError(src, f"portals[{i}]", f"unknown subsystem {p!r}")
    seen: set[str] = set()
    for i, q in enumerate(quotas):
        if q.client != "*" and q.client not in subsystems:
            raise ConfigError(src, f"quotas[{i}].client", f"unknown subsystem {q.client!r} (or \"*\")")
        if q.client in seen:
            raise ConfigError(src, f"quotas[{i}].client", f"duplicate quota for {q.client!r}")
        seen.add(q.client)
        if not 0 < q.rate <= 1_000_000:
            raise ConfigError(src, f"quotas[{i}].rate", f"must be > 0 and <= 1000000 per second, got {q.rate}")
        if not 0 <= q.burst <= 10_000_000:
            raise ConfigError(src, f"quotas[{i}].burst", f"must be between 0 and 10000000, got {q.burst}")
