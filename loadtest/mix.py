"""The request-kind mix and hourly profile, read from the simulator's scenario file.

The load test and the simulation describe the same city: the share of keyed reads,
pulls and pushes is what the scenario's demand produces per day (its e-services'
request sequences times their applications, the agencies' scheduled data syncs and
the background traffic with ``demand.background_mix``), computed by the simulator's own
scenario loader. Catalog browsing is not in the simulator's model; it gets a small
fixed share (:data:`CATALOG_SHARE`, changeable with ``--catalog-share``).

Without a scenario the default mix is the simulator's default background mix:
read 0.6, pull 0.3, push 0.1 (plus the catalog share), with a flat hourly profile.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from loadtest.errors import LoadTestError
from simulator import scenario as sc

#: Simulator request kinds -> load-test request kinds.
SIM_KINDS = {"keyed_read": "read", "pull": "pull", "push": "push"}
KINDS = ("read", "pull", "push", "catalog")
CATALOG_SHARE = 0.02
DEFAULT_MIX = {"read": 0.6, "pull": 0.3, "push": 0.1}


@dataclass
class Mix:
    """Shares of each request kind (summing to 1), the hourly profile and where they came from."""

    shares: dict[str, float]
    hourly: list[float] = field(default_factory=lambda: [1.0] * 24)
    requests_per_day: float | None = None
    push_batch_records: int = 100
    pull_batch_records: int = 100
    source: str = "default mix"


def _normalise(weights: dict[str, float], catalog_share: float) -> dict[str, float]:
    total = sum(weights.values())
    if total <= 0:
        raise LoadTestError("the request mix has no requests (all shares are zero)")
    out = {k: (1.0 - catalog_share) * weights.get(k, 0.0) / total for k in ("read", "pull", "push")}
    out["catalog"] = catalog_share
    return out


def default_mix(catalog_share: float = CATALOG_SHARE) -> Mix:
    """The documented default: read 0.6, pull 0.3, push 0.1, flat profile."""
    return Mix(_normalise(DEFAULT_MIX, catalog_share))


def load_mix(path: str | Path | None, catalog_share: float = CATALOG_SHARE) -> Mix:
    """The mix of a scenario file (or the default mix when ``path`` is None)."""
    if not 0 <= catalog_share < 1:
        raise LoadTestError(f"--catalog-share must be in [0, 1), got {catalog_share}")
    if path is None:
        return default_mix(catalog_share)
    try:
        scn = sc.load(path)
    except sc.ScenarioError as exc:
        raise LoadTestError(f"scenario {exc}") from None
    d = scn.demand
    per_kind = dict.fromkeys(sc.KINDS, 0.0)
    apps = d.center_visits_per_day + sum(ch.applications_per_day for ch in scn.channels)
    pop, _, seqs = sc.eservice_table(scn)
    for p, seq in zip(pop, seqs, strict=True):
        for k in seq:
            per_kind[sc.KINDS[k]] += apps * p
    per_kind["push"] += sc.sync_requests_per_day(scn)
    bg = d.background_requests_per_day or 0.0
    bg_total = sum(getattr(d.background_mix, k) for k in sc.KINDS)
    for k in sc.KINDS:
        per_kind[k] += bg * getattr(d.background_mix, k) / bg_total
    weights = {SIM_KINDS[k]: v for k, v in per_kind.items()}
    hourly = sc.profile(d.hourly_profile, str(path), "demand.hourly_profile")
    return Mix(
        _normalise(weights, catalog_share),
        hourly=hourly,
        requests_per_day=sum(per_kind.values()),
        push_batch_records=scn.gateway.push_batch_records,
        pull_batch_records=scn.gateway.pull_batch_records,
        source=f"scenario {path}",
    )
