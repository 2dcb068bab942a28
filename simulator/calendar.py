"""From simulated days to half-years and years: calendar day weights and extrapolation.

A year is not simulated entity by entity: 365 one-day runs cost 365 times one day
and add nothing the demand model does not already say. Demand is a Poisson stream
whose intensity is a daily level x hour-of-day x day-of-week (x holiday) weight,
so the expected count of any period is the level times the sum of the day weights
of its calendar days. The simulated days measure the level (what the model really
delivers, after baulking and reneging) and the calendar supplies the weights:

    total(period) = sum over sources s of
        (simulated_s / expected_s) * per_day_s * sum_{days d in period} weight_s(d)

The waits, utilisations and latencies come from the simulated days themselves.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable

from simulator.scenario import Scenario, requests_per_application, sync_requests_per_day


def days_of(year: int, period: str) -> list[datetime.date]:
    """Calendar days of `period`: "year", "h1" (Jan-Jun) or "h2"."""
    start = datetime.date(year, 7 if period == "h2" else 1, 1)
    end = datetime.date(year + 1, 1, 1) if period != "h1" else datetime.date(year, 7, 1)
    return [start + datetime.timedelta(days=i) for i in range((end - start).days)]


def source_profile(scn: Scenario, source: str) -> tuple[list[float], float]:
    """(weekday weights Mon..Sun, holiday weight) of a demand source."""
    d, cal = scn.demand, scn.calendar
    if source == "centre":
        return d.weekday_profile, cal.holiday_weight_centres
    if source == "sync":
        return [1.0] * 7, 1.0
    for ch in scn.channels:
        if ch.name == source:
            return ch.weekday_profile or d.weekday_profile, cal.holiday_weight_online
    return d.background_weekday_profile or d.weekday_profile, cal.holiday_weight_online


def weight_sum(scn: Scenario, source: str, days: Iterable[datetime.date]) -> float:
    """Sum of the day weights of `source` over calendar days."""
    weekly, holiday = source_profile(scn, source)
    hol, make = set(scn.calendar.holidays), set(scn.calendar.makeup_workdays)
    tot = 0.0
    for day in days:
        if day in hol:
            tot += holiday
        elif day in make:
            tot += weekly[0]  # a make-up working day behaves like a Monday
        else:
            tot += weekly[day.weekday()]
    return tot


def per_day(scn: Scenario, source: str) -> float:
    """Requests per weight-1 day issued by a gateway source."""
    if source == "sync":
        return sync_requests_per_day(scn)
    if source == "background":
        return scn.demand.background_requests_per_day or 0.0
    per_app = requests_per_application(scn)
    if source == "centre":
        return scn.demand.center_visits_per_day * per_app
    for ch in scn.channels:
        if ch.name == source:
            return ch.applications_per_day * per_app
    return 0.0


def extrapolate_visits(
    scn: Scenario, simulated: float, expected: float, days: list[datetime.date]
) -> float:
    """Centre visits over calendar `days` from one replication's simulated visits."""
    if expected <= 0:
        return 0.0
    level = simulated / expected * scn.demand.center_visits_per_day
    return level * weight_sum(scn, "centre", days)


def extrapolate_requests(
    scn: Scenario, simulated: dict[str, float], offered: dict[str, float], days: list[datetime.date]
) -> float:
    """Gateway requests over calendar `days` from one replication's per-source counts."""
    tot = 0.0
    for src, n in simulated.items():
        exp = offered.get(src, 0.0)
        if exp <= 0:
            continue
        tot += n / exp * per_day(scn, src) * weight_sum(scn, src, days)
    return tot
