"""The city as a SimPy model: one process function per actor.

Actors: demand sources (citizens and firms, per channel), visitors at centres,
centres (shift schedules open and close counters), e-service sessions (issue the
gateway requests of one application), agencies (scheduled data-sync pushes;
back offices process applications), gateway nodes (fail and recover).
The model never prints or plots: `run_replication` returns raw observations that
`simulator.summary` turns into statistics.

Clock: seconds from midnight of simulated day 0.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Generator, Iterator
from heapq import heapreplace
from typing import Any

import numpy as np
import simpy

from simulator.gateway import Gateway
from simulator.scenario import (
    KINDS,
    Scenario,
    day_weekday,
    eservice_table,
    gateway_service,
    profile,
)
from simulator.streams import Streams

HOUR = 3600.0
DAY = 86400.0


class Counters(simpy.Resource):
    """A centre's counters; the number staffed changes with the shift schedule.

    SimPy resources have a fixed capacity; this sets the `_capacity` it checks and
    re-runs its put queue (SimPy 4.1 internals). Counters that close finish their
    current visitor first, because a lower capacity only stops new grants.
    """

    def set_capacity(self, n: int) -> None:
        self._capacity = n
        self._trigger_put(None)  # admit waiting visitors when counters open


class Centre:
    """State and observations of one service centre."""

    __slots__ = (
        "idx",
        "counters",
        "q_len",
        "q_area",
        "q_last",
        "busy_s",
        "staffed_s",
        "visits",
        "served",
        "baulked",
        "reneged",
        "reneged_wait_s",
    )

    def __init__(self, env: simpy.Environment, idx: int, staff: int) -> None:
        self.idx = idx
        self.counters = Counters(env, capacity=staff)
        self.q_len = 0
        self.q_area = 0.0
        self.q_last = 0.0
        self.busy_s = 0.0
        self.staffed_s = 0.0
        self.visits = 0
        self.served = 0
        self.baulked = 0
        self.reneged = 0
        self.reneged_wait_s = 0.0


class BackOffice:
    """An agency's back office: FIFO, `officers` in parallel, working office hours.

    Applications never wait on each other's events, so a FIFO multi-server queue
    with office hours is computed on arrival from the officers' next-free times
    (a file is started only within office hours and finished even past closing).
    """

    def __init__(
        self,
        officers: int,
        hours: list[float],
        mean_s: float,
        draw: Callable[[], float],
        warmup_s: float,
    ) -> None:
        self.free = [0.0] * officers
        self.open_s, self.close_s = hours[0] * HOUR, hours[1] * HOUR
        self.mean_s = mean_s
        self.draw = draw
        self.warmup_s = warmup_s
        self.busy_s = 0.0
        self.turnaround_s = array("d")

    def submit(self, now: float) -> None:
        f = self.free[0]
        start = f if f > now else now
        day, tod = divmod(start, DAY)
        if tod < self.open_s:
            start = day * DAY + self.open_s
        elif tod >= self.close_s:
            start = (day + 1) * DAY + self.open_s
        s = self.draw() * self.mean_s
        heapreplace(self.free, start + s)
        if now >= self.warmup_s:
            self.busy_s += s
            self.turnaround_s.append(start + s - now)


class World:
    """Everything one replication shares: clock, streams, actors' state, observations."""

    def __init__(self, scn: Scenario, seed_seq: np.random.SeedSequence, sample: int) -> None:
        self.scn = scn
        self.env = simpy.Environment()
        self.streams = Streams(seed_seq)
        self.k = sample
        self.days = scn.simulation.days
        self.horizon_s = self.days * DAY
        self.warmup_s = scn.simulation.warmup_hours * HOUR
        self.hours = self.days * 24
        # Sources of gateway requests: 0 = centre visits, 1.. = channels, then background, sync.
        self.sources = ["centre", *(ch.name for ch in scn.channels), "background", "sync"]
        self.src_background = len(self.sources) - 2
        self.src_sync = len(self.sources) - 1
        self.offered = [0.0] * len(self.sources)  # expected requests (for extrapolation)
        self.applications = [0] * len(self.sources)
        self.pop, self.owner, self.seqs = eservice_table(scn)
        self.mean_seq = sum(p * len(q) for p, q in zip(self.pop, self.seqs, strict=True))
        self.think_s = scn.eservices.think_ms / 1000.0


def hourly_rates(
    per_day: float,
    hourly: list[float],
    weekly: list[float],
    days: int,
    scn: Scenario,
    mask: list[float] | None = None,
) -> list[float]:
    """Arrivals per second for each hour of the run (piecewise-constant intensity)."""
    w = list(hourly)
    if mask is not None:
        w = [a * b for a, b in zip(w, mask, strict=True)]
    tot = sum(w)
    rates = []
    for d in range(days):
        wd = weekly[day_weekday(scn, d)]
        rates += [per_day * wd * x / tot / HOUR for x in w]
    return rates


def expected_count(rates: list[float], warmup_s: float) -> float:
    """Expected arrivals after the warm-up for per-hour rates."""
    tot = 0.0
    for h, r in enumerate(rates):
        lo = max(h * HOUR, warmup_s)
        if lo < (h + 1) * HOUR:
            tot += r * ((h + 1) * HOUR - lo)
    return tot


# ----------------------------------------------------------------------------- actors


def poisson_times(rates: list[float], unit: Callable[[], float], t: float = 0.0) -> Iterator[float]:
    """Arrival times of a Poisson stream with piecewise-constant hourly intensity.

    Inversion of the cumulative intensity: exact for piecewise-constant rates.
    """
    h = int(t // HOUR)
    n = len(rates)
    while True:
        e = unit()
        while True:
            if h >= n:
                return
            r = rates[h]
            end = (h + 1) * HOUR
            if r > 0 and e <= r * (end - t):
                t += e / r
                break
            e -= r * (end - t)
            t = end
            h += 1
        yield t


def demand(
    env: simpy.Environment, rates: list[float], unit: Callable[[], float], act: Callable[[], Any]
) -> Generator:
    """Citizens or firms of one channel: a Poisson stream with hourly intensity."""
    for t in poisson_times(rates, unit, env.now):
        yield env.timeout(t - env.now)
        act()


def visitor(
    env: simpy.Environment,
    w: World,
    c: Centre,
    patience: Callable[[], float] | None,
    baulk: int | None,
    service: Callable[[], float],
    obs: dict,
) -> Generator:
    """A citizen at a centre: queues (or baulks), may renege, is served, runs an e-service."""
    t0 = env.now
    counted = t0 >= w.warmup_s
    if counted:
        c.visits += 1
        obs["visits_hour"][int(t0 // HOUR) % 24] += 1
    res = c.counters
    if baulk is not None and len(res.queue) >= baulk:
        if counted:
            c.baulked += 1
        return
    req = res.request()
    if not req.triggered:
        c.q_area += c.q_len * (t0 - c.q_last)
        c.q_last = t0
        c.q_len += 1
        if patience is not None:
            env.timeout(patience()).callbacks.append(lambda _ev: _renege(env, c, req, counted, t0))
        yield req
        now = env.now
        c.q_area += c.q_len * (now - c.q_last)
        c.q_last = now
        c.q_len -= 1
    wait = env.now - t0
    s = service()
    if counted:
        c.served += 1
        c.busy_s += s
        obs["wait"].append(wait / 60.0)
        obs["wait_hour"].append(int(t0 // HOUR) % 24)
    yield env.timeout(s)
    res.release(req)
    start_application(env, w, 0)


def _renege(
    env: simpy.Environment, c: Centre, req: simpy.Resource, counted: bool, t0: float
) -> None:
    """Patience ran out: a still-waiting visitor leaves the queue (and its process ends)."""
    if req.triggered:
        return
    req.cancel()
    now = env.now
    c.q_area += c.q_len * (now - c.q_last)
    c.q_last = now
    c.q_len -= 1
    if counted:
        c.reneged += 1
        c.reneged_wait_s += now - t0


def start_application(env: simpy.Environment, w: World, src: int) -> None:
    """An application of a popular e-service: its back office and its gateway requests."""
    e = w.pick_eservice()
    if env.now >= w.warmup_s:
        w.applications[src] += 1
    if w.backoffices and (w.review_share >= 1 or w.review() < w.review_share):
        w.backoffices[w.owner[e]].submit(env.now)
    seq = w.seqs[e]
    if len(seq) == 1:
        w.gateway.submit(seq[0], src)
    elif seq:
        env.process(eservice_session(env, w, seq, src))


def eservice_session(env: simpy.Environment, w: World, seq: tuple[int, ...], src: int) -> Generator:
    """An e-service run for one application: its requests one after the other."""
    gw = w.gateway
    last = len(seq) - 1
    for i, kind in enumerate(seq):
        lat = gw.submit(kind, src)
        if i < last:
            yield env.timeout((lat if lat > 0 else 0.0) + w.think_s)


def centre_shifts(
    env: simpy.Environment, w: World, c: Centre, staff: int, plan: list[tuple[float, int]]
) -> Generator:
    """A centre: staffs counters by the shift plan [(second of day, counters)], day after day."""
    for day in range(w.days):
        for t, n in plan:
            at = day * DAY + t
            if at > env.now:
                yield env.timeout(at - env.now)
            c.counters.set_capacity(n)


def agency_sync(
    env: simpy.Environment, w: World, interval_s: float, pushes: int, phase_s: float
) -> Generator:
    """An agency's scheduled data-sync job: `pushes` sequential pushes every interval."""
    gw = w.gateway
    yield env.timeout(phase_s)
    while True:
        for _ in range(pushes):
            lat = gw.submit(2, w.src_sync)
            yield env.timeout(lat if lat > 0 else 0.0)
        nxt = env.now + interval_s - (env.now - phase_s) % interval_s
        if nxt >= w.horizon_s:
            return
        yield env.timeout(nxt - env.now)


def gateway_node(
    env: simpy.Environment, w: World, node: int, outages: list[tuple[float, float]]
) -> Generator:
    """A gateway node: goes down and comes back at the scenario's failure events."""
    for start, dur in sorted(outages):
        if start > env.now:
            yield env.timeout(start - env.now)
        w.gateway.fail(node)
        yield env.timeout(dur)
        w.gateway.recover(node)


def monitor(env: simpy.Environment, w: World, every_s: float, obs: dict) -> Generator:
    """Samples queue lengths (for the by-hour plot) and trims gateway bookkeeping."""
    centres = w.centres
    while env.now < w.horizon_s:
        h = int(env.now // HOUR) % 24
        obs["queue_samples"][h] += sum(c.q_len for c in centres)
        obs["queue_n"][h] += 1
        w.gateway.drain(env.now)
        w.gateway.trim_inflight()
        yield env.timeout(every_s)


def warmup_mark(env: simpy.Environment, w: World) -> Generator:
    """Notes the queue-length integral at the end of the warm-up."""
    yield env.timeout(w.warmup_s)
    now = env.now
    for c in w.centres:
        c.q_area += c.q_len * (now - c.q_last)
        c.q_last = now
    w.area_at_warmup = sum(c.q_area for c in w.centres)


# ----------------------------------------------------------------------------- assembly


def shift_plan(scn: Scenario, staff: int) -> list[tuple[float, int]]:
    """Counters staffed from each change point of the day (seconds of day, counters)."""
    c = scn.centers
    a, b = c.open_hours
    if not c.shifts:
        return [(a * HOUR, staff)]
    points = sorted(
        {
            a,
            *(s.start for s in c.shifts if a <= s.start < b),
            *(s.end for s in c.shifts if a < s.end < b),
        }
    )
    plan = []
    for p in points:
        share = sum(s.share for s in c.shifts if s.start <= p < s.end)
        plan.append((p * HOUR, max(1, round(staff * min(1.0, share)))))
    return plan


def staffed_seconds(
    plan: list[tuple[float, int]], open_hours: list[float], lo: float, hi: float
) -> float:
    """Counter-seconds staffed during opening hours between lo and hi (seconds of day)."""
    a, b = open_hours[0] * HOUR, open_hours[1] * HOUR
    tot = 0.0
    for i, (t, n) in enumerate(plan):
        end = plan[i + 1][0] if i + 1 < len(plan) else b
        s, e = max(t, a, lo), min(end, b, hi)
        if e > s:
            tot += n * (e - s)
    return tot


def _scaled(unit: Callable[[], float], mean: float) -> Callable[[], float]:
    """Draws of mean `mean` from unit-mean draws."""
    if mean == 1.0:
        return unit

    def draw() -> float:
        return unit() * mean

    return draw


def run_replication(
    scn: Scenario,
    seed_seq: np.random.SeedSequence,
    sample: int = 1,
    progress: Callable[[float], None] | None = None,
) -> dict[str, Any]:
    """Simulate one replication; returns raw observations (numbers and numpy arrays)."""
    w = World(scn, seed_seq, sample)
    env, st, k = w.env, w.streams, sample
    c, d, g = scn.centers, scn.demand, scn.gateway
    obs: dict[str, Any] = {
        "wait": array("d"),
        "wait_hour": array("b"),
        "queue_samples": [0.0] * 24,
        "queue_n": [0] * 24,
        "visits_hour": [0] * 24,
    }

    # E-service choice.
    w.pick_eservice = st.choices("eservice", w.pop)

    # Back offices (sampled runs keep 1 in k officers: see docs/simulator.md).
    a = scn.agencies
    w.backoffices = []
    w.review = st.draws("backoffice.review", "uniform")
    w.review_share = a.review_share
    if a.officers > 0:
        share = [0.0] * a.count
        for p, o in zip(w.pop, w.owner, strict=True):
            share[o] += p
        per = (
            [a.officers * a.count * x for x in share]
            if a.officers_by_load
            else [a.officers] * a.count
        )
        bo_draw = st.draws("backoffice", a.processing.dist, a.processing.cv)
        w.backoffices = [
            BackOffice(
                max(1, round(n / k)),
                a.office_hours,
                a.processing.mean_minutes * 60.0,
                bo_draw,
                w.warmup_s,
            )
            for n in per
        ]

    # Gateway.
    dil = float(k)
    svc = []
    for kind in KINDS:
        gs = gateway_service(scn, kind)
        unit = st.draws(f"gateway.{kind}", gs.dist, gs.cv)
        mean = gs.mean_ms / 1000.0 * dil
        svc.append(_scaled(unit, mean))
    w.gateway = Gateway(
        env,
        g.nodes,
        g.workers_per_node,
        svc,
        len(w.sources),
        w.hours,
        w.warmup_s,
        dilation=dil,
        track_inflight=bool(g.failures),
    )

    # Centres: every k-th centre is simulated (with its full demand) when sampling.
    rng_sizes = np.random.default_rng([scn.simulation.seed, 104729])
    sizes = (
        rng_sizes.lognormal(0.0, c.size_spread, c.count) if c.size_spread > 0 else np.ones(c.count)
    )
    simulated = list(range(0, c.count, k))
    sim_sizes = sizes[simulated]
    centre_frac = float(sim_sizes.sum() / sizes.sum())
    if c.staff_by_size:
        staff = [
            max(1, round(c.staff * c.count * float(sizes[i] / sizes.sum()))) for i in simulated
        ]
    else:
        staff = [c.staff] * len(simulated)
    w.centres = [Centre(env, i, n) for i, n in zip(simulated, staff, strict=True)]
    for ce, n in zip(w.centres, staff, strict=True):
        plan = shift_plan(scn, n)
        ce.counters.set_capacity(0 if c.open_hours[0] > 0 else plan[0][1])
        env.process(centre_shifts(env, w, ce, n, plan))
        lo = w.warmup_s
        for day in range(w.days):
            ce.staffed_s += staffed_seconds(plan, c.open_hours, max(0.0, lo - day * DAY), DAY)
    hp = profile(d.hourly_profile, scn.source, "demand.hourly_profile")
    mask = [max(0.0, min(c.open_hours[1], h + 1) - max(c.open_hours[0], h)) for h in range(24)]
    v_rates = hourly_rates(
        d.center_visits_per_day * centre_frac, hp, d.weekday_profile, w.days, scn, mask
    )
    pick_centre = st.choices("centre.choice", sim_sizes.tolist())
    patience = None
    if c.patience_minutes is not None:
        patience = _scaled(st.draws("centre.patience"), c.patience_minutes * 60.0)
    service = _scaled(
        st.draws("centre.service", c.service_time.dist, c.service_time.cv),
        c.service_time.mean_minutes * 60.0,
    )
    centres = w.centres

    def visit() -> None:
        env.process(visitor(env, w, centres[pick_centre()], patience, c.baulk_queue, service, obs))

    env.process(demand(env, v_rates, st.draws("arrivals.centre"), visit))
    w.expected_visits = expected_count(v_rates, w.warmup_s)
    w.offered[0] = w.expected_visits * w.mean_seq

    # Online channels.
    for i, ch in enumerate(scn.channels, start=1):
        chp = profile(ch.hourly_profile or d.hourly_profile, scn.source, "channels.hourly_profile")
        rates = hourly_rates(
            ch.applications_per_day / k, chp, ch.weekday_profile or d.weekday_profile, w.days, scn
        )
        env.process(
            demand(
                env,
                rates,
                st.draws(f"arrivals.{ch.name}"),
                lambda i=i: start_application(env, w, i),
            )
        )
        w.offered[i] = expected_count(rates, w.warmup_s) * w.mean_seq

    # Background gateway traffic (agency-to-agency requests not tied to an application).
    bg = (d.background_requests_per_day or 0.0) / k
    if bg > 0:
        rates = hourly_rates(bg, hp, d.background_weekday_profile or d.weekday_profile, w.days, scn)
        mix = [getattr(d.background_mix, kk) for kk in KINDS]
        pick_kind = st.choices("background.kind", mix)
        src = w.src_background
        w.gateway.add_stream(poisson_times(rates, st.draws("arrivals.background")), pick_kind, src)
        w.offered[src] = expected_count(rates, w.warmup_s)

    # Scheduled data syncs: 1 in k agencies when sampling.
    if a.sync_interval_minutes > 0 and a.sync_pushes > 0:
        phase = st.draws("sync.phase", "uniform")
        interval = a.sync_interval_minutes * 60.0
        syncing = range(0, a.count, k)
        for _ in syncing:
            env.process(agency_sync(env, w, interval, a.sync_pushes, phase() * interval))
        rounds = (w.horizon_s - w.warmup_s) / interval
        w.offered[w.src_sync] = rounds * a.sync_pushes * len(syncing)
        w.sync_scale = a.count / len(syncing)
    else:
        w.sync_scale = 1.0

    # Gateway nodes and their failures.
    for node in range(g.nodes):
        outs = [
            (f.day * DAY + f.at_hour * HOUR, f.duration_minutes * 60.0)
            for f in g.failures
            if f.node == node
        ]
        if outs:
            env.process(gateway_node(env, w, node, outs))
    env.process(monitor(env, w, scn.simulation.monitor_minutes * 60.0, obs))
    w.area_at_warmup = 0.0
    if w.warmup_s > 0:
        env.process(warmup_mark(env, w))

    # Run (in slices when someone shows progress).
    if progress is None:
        env.run(until=w.horizon_s)
    else:
        steps = 50
        for i in range(1, steps + 1):
            env.run(until=w.horizon_s * i / steps)
            progress(i / steps)
    w.gateway.drain(w.horizon_s)
    events = next(env._eid)  # SimPy numbers every scheduled event
    return _observations(w, obs, centre_frac, events)


def _observations(w: World, obs: dict, centre_frac: float, events: int) -> dict[str, Any]:
    scn, gw, end = w.scn, w.gateway, w.horizon_s
    span = end - w.warmup_s
    scale_c = 1.0 / centre_frac
    for ce in w.centres:
        ce.q_area += ce.q_len * (end - ce.q_last)
    lat = np.frombuffer(gw.latency_s, dtype=float) if len(gw.latency_s) else np.zeros(0)
    ok = lat >= 0
    kinds = np.frombuffer(gw.kind_of, dtype=np.int8) if len(gw.kind_of) else np.zeros(0, np.int8)
    up_s = [
        span
        - gw.down_s[n]
        - (end - max(gw.down_since[n], w.warmup_s) if gw.down_since[n] is not None else 0.0)
        for n in range(gw.nodes)
    ]
    bo_turn = np.concatenate(
        [np.frombuffer(b.turnaround_s, dtype=float) for b in w.backoffices if len(b.turnaround_s)]
        or [np.zeros(0)]
    )
    bo_days = w.days * (scn.agencies.office_hours[1] - scn.agencies.office_hours[0]) * HOUR
    k = w.k
    by_source = [
        n * (scale_c if i == 0 else (w.sync_scale if i == w.src_sync else k))
        for i, n in enumerate(gw.by_source)
    ]
    offered = [
        n * (scale_c if i == 0 else (w.sync_scale if i == w.src_sync else k))
        for i, n in enumerate(w.offered)
    ]
    return {
        "events": events,
        "entities": {
            "centre_visits": sum(c.visits for c in w.centres),
            "gateway_requests": sum(gw.by_source),
            "applications": sum(w.applications),
        },
        "span_s": span,
        "sample": k,
        "centres": {
            "wait_min": np.frombuffer(obs["wait"], dtype=float).copy(),
            "wait_hour": np.frombuffer(obs["wait_hour"], dtype=np.int8).copy(),
            "visits": sum(c.visits for c in w.centres) * scale_c,
            "expected_visits": w.expected_visits * scale_c,
            "served": sum(c.served for c in w.centres) * scale_c,
            "baulked": sum(c.baulked for c in w.centres) * scale_c,
            "reneged": sum(c.reneged for c in w.centres) * scale_c,
            "visits_by_centre": np.array([c.visits for c in w.centres], dtype=float),
            "util_by_centre": np.array(
                [c.busy_s / c.staffed_s if c.staffed_s else 0.0 for c in w.centres]
            ),
            "busy_s": sum(c.busy_s for c in w.centres),
            "staffed_s": sum(c.staffed_s for c in w.centres),
            "queue_area": sum(c.q_area for c in w.centres) - w.area_at_warmup,
            "reneged_wait_s": sum(c.reneged_wait_s for c in w.centres),
            "reneged_n": sum(c.reneged for c in w.centres),
            "n_centres": len(w.centres),
            "visits_by_hour": [n * scale_c for n in obs["visits_hour"]],
            "queue_by_hour": [
                q / n / len(w.centres) if n else 0.0
                for q, n in zip(obs["queue_samples"], obs["queue_n"], strict=True)
            ],
            "centre_ids": [c.idx for c in w.centres],
        },
        "gateway": {
            "latency_ms": lat[ok] * 1000.0 / gw.dilation,
            "kind": kinds[ok] if len(kinds) else kinds,
            "requests": float(sum(by_source)),
            "requests_by_source": dict(zip(w.sources, by_source, strict=True)),
            "offered_by_source": dict(zip(w.sources, offered, strict=True)),
            "by_kind": dict(
                zip(KINDS, (np.bincount(kinds, minlength=len(KINDS)) * k).tolist(), strict=True)
            ),
            "by_hour": [n * k for n in gw.by_hour[:-2]] + [(gw.by_hour[-2] + gw.by_hour[-1]) * k],
            "failed": gw.failed * k,
            "busy_s": sum(gw.busy_s),
            "util_by_node": [
                b / (u * gw.workers) if u > 0 else 0.0 for b, u in zip(gw.busy_s, up_s, strict=True)
            ],
            "capacity_s": sum(up_s) * gw.workers,
        },
        "agencies": {
            "turnaround_h": bo_turn / HOUR,
            "utilization": [b.busy_s / (len(b.free) * bo_days) for b in w.backoffices],
            "applications": dict(
                zip(
                    w.sources,
                    [n * (scale_c if i == 0 else k) for i, n in enumerate(w.applications)],
                    strict=True,
                )
            ),
        },
    }
