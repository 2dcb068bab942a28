"""Scenario files: TOML decoded into msgspec Structs, checked, and resolved.

A scenario is data. `load()` reads a file (following `extends = "base.toml"`),
applies `--set key=value` overrides, decodes the result into `Scenario`
(unknown keys refused), checks every value and returns a `Scenario` whose
derived fields (`demand.background_requests_per_day`) are filled in and whose
`[whatif]` transformations are applied. Any bad value raises `ScenarioError`
naming the file, the key and the reason.
"""

from __future__ import annotations

import datetime
import math
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

import msgspec

from gateway.tomlfile import ConfigError, convert, read_toml

KINDS: tuple[str, ...] = ("keyed_read", "pull", "push")
WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

# Hour-of-day presets (24 weights, any scale; normalised where used).
PROFILES: dict[str, list[float]] = {
    "flat": [1.0] * 24,
    # Service centres: morning peak at 10:00, lunch dip, afternoon peak at 14:00.
    "office": [
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0.2,
        0.6,
        1.2,
        1.5,
        1.3,
        0.8,
        1.1,
        1.4,
        1.3,
        1.0,
        0.6,
        0.1,
        0,
        0,
        0,
        0,
        0,
    ],
    # Web and mobile: low at night, broad day, evening shoulder.
    "online": [
        0.25,
        0.15,
        0.1,
        0.08,
        0.08,
        0.15,
        0.35,
        0.7,
        1.1,
        1.45,
        1.55,
        1.45,
        1.2,
        1.3,
        1.45,
        1.45,
        1.35,
        1.2,
        1.05,
        1.1,
        1.15,
        1.0,
        0.7,
        0.45,
    ],
}


#: A scenario value is wrong: ``file: key: reason`` (the product's one config error).
ScenarioError = ConfigError


class _S(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=False):
    pass


class Simulation(_S):
    days: int = 1
    warmup_hours: float = 0.0
    replications: int = 5
    seed: int = 1
    start_weekday: Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"] = "tue"
    sample: int = 1  # 1:k sampling, see docs/simulator.md
    monitor_minutes: float = 15.0


class CentreServiceTime(_S):
    dist: Literal["exponential", "deterministic", "lognormal", "gamma"] = "exponential"
    mean_minutes: float = 12.0
    cv: float = 1.0  # coefficient of variation for lognormal / gamma


class GatewayServiceTime(_S):
    dist: Literal["exponential", "deterministic", "lognormal", "gamma"] = "exponential"
    mean_ms: float = 1.0
    cv: float = 1.0


class RequestMix(_S):
    keyed_read: float = 0.0
    pull: float = 0.0
    push: float = 0.0


class Population(_S):
    residents: float = 24_000_000
    registered_users: float = 13_000_000


class Demand(_S):
    center_visits_per_day: float
    gateway_requests_per_day: float
    hourly_profile: str | list[float] = "flat"
    weekday_profile: list[float] = msgspec.field(default_factory=lambda: [1.0] * 7)
    background_weekday_profile: list[float] | None = None
    background_mix: RequestMix = msgspec.field(
        default_factory=lambda: RequestMix(keyed_read=0.6, pull=0.3, push=0.1)
    )
    # Derived (never set in a file): gateway requests not produced by modelled sources.
    background_requests_per_day: float | None = None


class Channel(_S):
    name: str
    applications_per_day: float
    hourly_profile: str | list[float] | None = None
    weekday_profile: list[float] | None = None


class Shift(_S):
    start: float
    end: float
    share: float = 1.0


class Centers(_S):
    count: int
    staff: int
    open_hours: list[float] = msgspec.field(default_factory=lambda: [9.0, 17.0])
    service_time: CentreServiceTime = msgspec.field(default_factory=CentreServiceTime)
    shifts: list[Shift] = []
    baulk_queue: int | None = None
    patience_minutes: float | None = None
    size_spread: float = 0.0  # lognormal sigma of centre sizes (share of visits)
    staff_by_size: bool = False  # counters per centre proportional to its size


class EServices(_S):
    count: int = 1
    popularity_zipf: float = 1.0
    requests: RequestMix = msgspec.field(default_factory=RequestMix)
    think_ms: float = 50.0


class Agencies(_S):
    count: int = 1
    officers: int = 0  # per agency (mean); 0 = back offices not modelled
    officers_by_load: bool = False  # spread officers over agencies by their share of applications
    review_share: float = 1.0  # share of applications that need a back-office officer
    office_hours: list[float] = msgspec.field(default_factory=lambda: [9.0, 17.0])
    processing: CentreServiceTime = msgspec.field(
        default_factory=lambda: CentreServiceTime(mean_minutes=20.0)
    )
    sync_interval_minutes: float = 0.0  # 0 = no scheduled data-sync pushes
    sync_pushes: int = 0


class Failure(_S):
    node: int
    at_hour: float
    duration_minutes: float
    day: int = 0


class Gateway(_S):
    nodes: int = 1
    workers_per_node: int = 2
    service_time: GatewayServiceTime = msgspec.field(default_factory=GatewayServiceTime)
    service_time_by_kind: dict[str, GatewayServiceTime] = {}
    push_batch_records: int = 100
    pull_batch_records: int = 100
    failures: list[Failure] = []
    service_time_source: str = "scenario"


class Calendar(_S):
    year: int = 2019
    holidays: list[datetime.date] = []
    makeup_workdays: list[datetime.date] = []
    holiday_weight_centres: float = 0.0
    holiday_weight_online: float = 0.7


class Calibration(_S):
    enabled: bool = True  # false: report extrapolated totals without comparing to targets
    center_visits_first_half: float | None = None
    gateway_requests_year: float | None = None
    tolerance_pct: float = 3.0


class WhatIf(_S):
    centre_factor: float = 1.0
    online_factor: float = 1.0
    shift_centre_to_online: float = 0.0
    description: str = ""


class Validation(_S):
    kind: Literal["mmc"] = "mmc"


class Scenario(_S):
    simulation: Simulation
    demand: Demand
    centers: Centers
    gateway: Gateway = msgspec.field(default_factory=Gateway)
    name: str = ""
    extends: str | None = None
    population: Population = msgspec.field(default_factory=Population)
    channels: list[Channel] = []
    eservices: EServices = msgspec.field(default_factory=EServices)
    agencies: Agencies = msgspec.field(default_factory=Agencies)
    calendar: Calendar = msgspec.field(default_factory=Calendar)
    calibration: Calibration = msgspec.field(default_factory=Calibration)
    whatif: WhatIf = msgspec.field(default_factory=WhatIf)
    validation: Validation | None = None
    source: str = ""  # file the scenario came from (set by load)


# ----------------------------------------------------------------------------- reading


def read_raw(path: str | Path) -> dict[str, Any]:
    """The scenario file as a plain dict, with `extends` merged in."""
    return _read_toml(Path(path))


def _read_toml(path: Path, chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    name = str(path)
    if path.resolve() in chain:
        raise ScenarioError(name, "extends", "circular extends")
    data = read_toml(path)
    base = data.get("extends")
    if base is None:
        return data
    if not isinstance(base, str):
        raise ScenarioError(name, "extends", "must be a file name (string)")
    if not (path.parent / base).is_file():
        raise ScenarioError(name, "extends", f"base scenario {base!r} not found next to this file")
    parent = _read_toml(path.parent / base, chain + (path.resolve(),))
    merged = _merge(parent, data)
    merged.pop("extends", None)
    if "name" not in data:
        merged.pop("name", None)
    return merged


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def parse_value(text: str) -> Any:
    """Parse an override value the way TOML would (number, bool, list, string)."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(data: dict[str, Any], overrides: dict[str, Any], file: str) -> None:
    """Set dotted keys (`centers.staff`) in a raw scenario dict, in place."""
    for dotted, value in overrides.items():
        parts = dotted.split(".")
        if not all(re.fullmatch(r"[a-z_][a-z0-9_]*", p) for p in parts):
            raise ScenarioError(file, dotted, "not a valid dotted key")
        node = data
        for p in parts[:-1]:
            nxt = node.setdefault(p, {})
            if not isinstance(nxt, dict):
                raise ScenarioError(file, dotted, f"`{p}` is not a table")
            node = nxt
        node[parts[-1]] = value


def load(path: str | Path, overrides: dict[str, Any] | None = None) -> Scenario:
    """Read, decode, check and resolve one scenario file."""
    p = Path(path)
    data = _read_toml(p)
    if overrides:
        apply_overrides(data, overrides, str(p))
    return from_dict(data, str(p))


def from_dict(data: dict[str, Any], file: str = "<scenario>") -> Scenario:
    """Decode, check and resolve a scenario given as a plain dict."""
    if "source" in data or "background_requests_per_day" in data.get("demand", {}):
        bad = "source" if "source" in data else "demand.background_requests_per_day"
        raise ScenarioError(file, bad, "unknown key (derived by the simulator)")
    scn = convert(data, Scenario, file)
    scn = msgspec.structs.replace(scn, source=file, extends=None)
    if not scn.name:
        scn = msgspec.structs.replace(scn, name=Path(file).stem)
    check(scn)
    return resolve(scn)


# ----------------------------------------------------------------------------- checks


def profile(value: str | list[float], file: str, key: str, length: int = 24) -> list[float]:
    """A named or explicit profile as a list of `length` non-negative weights."""
    if isinstance(value, str):
        if value not in PROFILES:
            raise ScenarioError(
                file,
                key,
                f"unknown profile {value!r} "
                f"(one of {', '.join(sorted(PROFILES))}, or {length} weights)",
            )
        return list(PROFILES[value])
    if len(value) != length:
        raise ScenarioError(file, key, f"needs {length} weights, got {len(value)}")
    if any(not math.isfinite(w) or w < 0 for w in value):
        raise ScenarioError(file, key, "weights must be finite and >= 0")
    if sum(value) <= 0:
        raise ScenarioError(file, key, "weights must not all be zero")
    return list(value)


def _pos(file: str, key: str, v: float | int | None, allow_zero: bool = False) -> None:
    if v is None:
        return
    ok = math.isfinite(v) and (v >= 0 if allow_zero else v > 0)
    if not ok:
        raise ScenarioError(file, key, f"must be {'>= 0' if allow_zero else '> 0'}, got {v}")


def _hours(file: str, key: str, pair: list[float]) -> None:
    if len(pair) != 2:
        raise ScenarioError(file, key, f"needs [open, close], got {len(pair)} values")
    a, b = pair
    if not (0 <= a < b <= 24):
        raise ScenarioError(file, key, f"needs 0 <= open < close <= 24, got [{a}, {b}]")


def _dist(file: str, key: str, d: CentreServiceTime | GatewayServiceTime) -> None:
    mean = d.mean_minutes if isinstance(d, CentreServiceTime) else d.mean_ms
    _pos(file, f"{key}.mean_{'minutes' if isinstance(d, CentreServiceTime) else 'ms'}", mean)
    _pos(file, f"{key}.cv", d.cv)


def check(s: Scenario) -> None:
    """Refuse values the model cannot run with; raises ScenarioError."""
    f = s.source
    sim = s.simulation
    _pos(f, "simulation.days", sim.days)
    _pos(f, "simulation.replications", sim.replications)
    _pos(f, "simulation.warmup_hours", sim.warmup_hours, allow_zero=True)
    _pos(f, "simulation.sample", sim.sample)
    _pos(f, "simulation.monitor_minutes", sim.monitor_minutes)
    if sim.seed < 0:
        raise ScenarioError(f, "simulation.seed", f"must be >= 0, got {sim.seed}")
    if sim.warmup_hours >= sim.days * 24:
        raise ScenarioError(
            f, "simulation.warmup_hours", f"must be shorter than the run ({sim.days * 24} h)"
        )
    d = s.demand
    _pos(f, "demand.center_visits_per_day", d.center_visits_per_day)
    _pos(f, "demand.gateway_requests_per_day", d.gateway_requests_per_day)
    profile(d.hourly_profile, f, "demand.hourly_profile")
    profile(d.weekday_profile, f, "demand.weekday_profile", 7)
    if d.background_weekday_profile is not None:
        profile(d.background_weekday_profile, f, "demand.background_weekday_profile", 7)
    for k in KINDS:
        _pos(f, f"demand.background_mix.{k}", getattr(d.background_mix, k), allow_zero=True)
    if sum(getattr(d.background_mix, k) for k in KINDS) <= 0:
        raise ScenarioError(f, "demand.background_mix", "weights must not all be zero")
    _pos(f, "population.residents", s.population.residents)
    _pos(f, "population.registered_users", s.population.registered_users)
    names = set()
    for i, ch in enumerate(s.channels):
        key = f"channels[{i}]"
        if not re.fullmatch(r"[a-z][a-z0-9_-]*", ch.name) or ch.name in (
            "centre",
            "background",
            "sync",
        ):
            raise ScenarioError(f, f"{key}.name", f"invalid or reserved channel name {ch.name!r}")
        if ch.name in names:
            raise ScenarioError(f, f"{key}.name", f"duplicate channel {ch.name!r}")
        names.add(ch.name)
        _pos(f, f"{key}.applications_per_day", ch.applications_per_day)
        if ch.hourly_profile is not None:
            profile(ch.hourly_profile, f, f"{key}.hourly_profile")
        if ch.weekday_profile is not None:
            profile(ch.weekday_profile, f, f"{key}.weekday_profile", 7)
    c = s.centers
    _pos(f, "centers.count", c.count)
    _pos(f, "centers.staff", c.staff)
    _hours(f, "centers.open_hours", c.open_hours)
    _dist(f, "centers.service_time", c.service_time)
    _pos(f, "centers.size_spread", c.size_spread, allow_zero=True)
    _pos(f, "centers.patience_minutes", c.patience_minutes)
    _pos(f, "centers.baulk_queue", c.baulk_queue)
    for i, sh in enumerate(c.shifts):
        _hours(f, f"centers.shifts[{i}]", [sh.start, sh.end])
        if not 0 < sh.share <= 1:
            raise ScenarioError(
                f, f"centers.shifts[{i}].share", f"must be in (0, 1], got {sh.share}"
            )
    if c.shifts:
        a, b = c.open_hours
        for h in range(int(a), math.ceil(b)):
            if _shift_share(c.shifts, h + 0.5) <= 0:
                raise ScenarioError(f, "centers.shifts", f"no counter staffed at {h}:30 while open")
    hp = profile(d.hourly_profile, f, "demand.hourly_profile")
    if sum(hp[h] for h in range(24) if _open_overlap(c.open_hours, h) > 0) <= 0:
        raise ScenarioError(f, "demand.hourly_profile", "no demand while the centres are open")
    e = s.eservices
    _pos(f, "eservices.count", e.count)
    _pos(f, "eservices.popularity_zipf", e.popularity_zipf, allow_zero=True)
    _pos(f, "eservices.think_ms", e.think_ms, allow_zero=True)
    for k in KINDS:
        _pos(f, f"eservices.requests.{k}", getattr(e.requests, k), allow_zero=True)
    a = s.agencies
    _pos(f, "agencies.count", a.count)
    _pos(f, "agencies.officers", a.officers, allow_zero=True)
    if not 0 < a.review_share <= 1:
        raise ScenarioError(f, "agencies.review_share", f"must be in (0, 1], got {a.review_share}")
    _hours(f, "agencies.office_hours", a.office_hours)
    _dist(f, "agencies.processing", a.processing)
    _pos(f, "agencies.sync_interval_minutes", a.sync_interval_minutes, allow_zero=True)
    _pos(f, "agencies.sync_pushes", a.sync_pushes, allow_zero=True)
    g = s.gateway
    _pos(f, "gateway.nodes", g.nodes)
    _pos(f, "gateway.workers_per_node", g.workers_per_node)
    _dist(f, "gateway.service_time", g.service_time)
    for k, st in g.service_time_by_kind.items():
        if k not in KINDS:
            raise ScenarioError(
                f,
                f"gateway.service_time_by_kind.{k}",
                f"unknown request kind (one of {', '.join(KINDS)})",
            )
        _dist(f, f"gateway.service_time_by_kind.{k}", st)
    _pos(f, "gateway.push_batch_records", g.push_batch_records)
    _pos(f, "gateway.pull_batch_records", g.pull_batch_records)
    for i, fl in enumerate(g.failures):
        if not 0 <= fl.node < g.nodes:
            raise ScenarioError(
                f, f"gateway.failures[{i}].node", f"must be in 0..{g.nodes - 1}, got {fl.node}"
            )
        if not 0 <= fl.at_hour < 24:
            raise ScenarioError(f, f"gateway.failures[{i}].at_hour", "must be in [0, 24)")
        if not 0 <= fl.day < sim.days:
            raise ScenarioError(f, f"gateway.failures[{i}].day", f"must be in 0..{sim.days - 1}")
        _pos(f, f"gateway.failures[{i}].duration_minutes", fl.duration_minutes)
    cal = s.calendar
    if not 1900 <= cal.year <= 2200:
        raise ScenarioError(f, "calendar.year", f"out of range: {cal.year}")
    for key, w in (
        ("holiday_weight_centres", cal.holiday_weight_centres),
        ("holiday_weight_online", cal.holiday_weight_online),
    ):
        _pos(f, f"calendar.{key}", w, allow_zero=True)
    cb = s.calibration
    _pos(f, "calibration.center_visits_first_half", cb.center_visits_first_half)
    _pos(f, "calibration.gateway_requests_year", cb.gateway_requests_year)
    _pos(f, "calibration.tolerance_pct", cb.tolerance_pct)
    w = s.whatif
    _pos(f, "whatif.centre_factor", w.centre_factor)
    _pos(f, "whatif.online_factor", w.online_factor)
    if not 0 <= w.shift_centre_to_online < 1:
        raise ScenarioError(f, "whatif.shift_centre_to_online", "must be in [0, 1)")
    if w.shift_centre_to_online > 0 and not s.channels:
        raise ScenarioError(f, "whatif.shift_centre_to_online", "needs at least one [[channels]]")
    if s.validation is not None:
        _check_mmc(s)


def _check_mmc(s: Scenario) -> None:
    f, c, d = s.source, s.centers, s.demand
    if c.count != 1:
        raise ScenarioError(f, "centers.count", "an M/M/c validation scenario has 1 centre")
    if c.open_hours != [0, 24]:
        raise ScenarioError(f, "centers.open_hours", "an M/M/c validation scenario is open [0, 24]")
    if d.hourly_profile != "flat" or set(d.weekday_profile) != {1.0}:
        raise ScenarioError(f, "demand.hourly_profile", "an M/M/c validation scenario is flat")
    if c.service_time.dist != "exponential":
        raise ScenarioError(f, "centers.service_time.dist", "M/M/c needs exponential")
    if c.shifts or c.baulk_queue or c.patience_minutes or s.channels:
        raise ScenarioError(f, "centers", "M/M/c has no shifts, baulking, reneging or channels")
    rho = offered_utilisation(s)
    if rho >= 1:
        raise ScenarioError(
            f,
            "centers.staff",
            f"utilisation {rho:.3f} >= 1: the queue "
            "has no steady state (raise centers.staff or lower the demand)",
        )


def offered_utilisation(s: Scenario) -> float:
    """Offered load per counter for a single always-open centre (validation scenarios)."""
    lam = s.demand.center_visits_per_day / 86400.0
    return lam * s.centers.service_time.mean_minutes * 60.0 / s.centers.staff


def _open_overlap(hours: list[float], h: int) -> float:
    a, b = hours
    return max(0.0, min(b, h + 1) - max(a, h))


def _shift_share(shifts: list[Shift], t: float) -> float:
    return sum(sh.share for sh in shifts if sh.start <= t < sh.end)


# ----------------------------------------------------------------------------- resolving


def eservice_table(s: Scenario) -> tuple[list[float], list[int], list[tuple[int, ...]]]:
    """Popularity, owner agency and request sequence of each e-service (fixed by seed)."""
    import numpy as np

    e = s.eservices
    rng = np.random.default_rng([s.simulation.seed, 7919])
    ranks = np.arange(1, e.count + 1, dtype=float)
    pop = ranks ** (-e.popularity_zipf)
    pop = (pop / pop.sum()).tolist()
    owners = [i % s.agencies.count for i in range(e.count)]
    seqs = []
    for _ in range(e.count):
        seq: list[int] = []
        for k, kind in enumerate(KINDS):
            mean = getattr(e.requests, kind)
            seq += [k] * (int(rng.poisson(mean)) if mean > 0 else 0)
        seqs.append(tuple(seq))
    return pop, owners, seqs


def requests_per_application(s: Scenario) -> float:
    """Popularity-weighted mean number of gateway requests per application."""
    pop, _, seqs = eservice_table(s)
    return sum(p * len(q) for p, q in zip(pop, seqs, strict=True))


def sync_requests_per_day(s: Scenario) -> float:
    a = s.agencies
    if a.sync_interval_minutes <= 0 or a.sync_pushes <= 0:
        return 0.0
    return a.count * a.sync_pushes * (1440.0 / a.sync_interval_minutes)


def resolve(s: Scenario) -> Scenario:
    """Fill derived values and apply the [whatif] transformations."""
    f = s.source
    d = s.demand
    apps = d.center_visits_per_day + sum(ch.applications_per_day for ch in s.channels)
    modelled = apps * requests_per_application(s) + sync_requests_per_day(s)
    background = d.gateway_requests_per_day - modelled
    if background < -1e-6 * d.gateway_requests_per_day:
        raise ScenarioError(
            f,
            "demand.gateway_requests_per_day",
            f"{d.gateway_requests_per_day:.0f} is below the {modelled:.0f} requests "
            "the channels, e-services and data syncs already issue",
        )
    w = s.whatif
    visits = d.center_visits_per_day * w.centre_factor
    channels = list(s.channels)
    if w.shift_centre_to_online > 0:
        moved = visits * w.shift_centre_to_online
        visits -= moved
        tot = sum(ch.applications_per_day for ch in channels)
        channels = [
            msgspec.structs.replace(
                ch,
                applications_per_day=ch.applications_per_day
                + moved * ch.applications_per_day / tot,
            )
            for ch in channels
        ]
    channels = [
        msgspec.structs.replace(ch, applications_per_day=ch.applications_per_day * w.online_factor)
        for ch in channels
    ]
    demand = msgspec.structs.replace(
        d,
        center_visits_per_day=visits,
        background_requests_per_day=max(0.0, background) * w.online_factor,
    )
    agencies = s.agencies
    if w.online_factor != 1 and agencies.sync_pushes:
        agencies = msgspec.structs.replace(
            agencies, sync_interval_minutes=agencies.sync_interval_minutes / w.online_factor
        )
    return msgspec.structs.replace(s, demand=demand, channels=channels, agencies=agencies)


def gateway_service(s: Scenario, kind: str) -> GatewayServiceTime:
    """The service time of one request kind (kind-specific, else the default)."""
    return s.gateway.service_time_by_kind.get(kind, s.gateway.service_time)


def day_weekday(s: Scenario, day: int) -> int:
    """0 = Monday for simulated day `day`."""
    return (WEEKDAYS.index(s.simulation.start_weekday) + day) % 7


def to_dict(s: Scenario) -> dict[str, Any]:
    return msgspec.to_builtins(s)
