"""Load shapes: how the load varies over a run, as Locust ``LoadTestShape`` classes.

Every shape is a factor in [0, 1] of the peak over the run's time
(:func:`loadtest.profile.factor`).
In the closed model the shape sets the user count (peak = ``--users``); in the open
model it scales the arrival rate (peak = ``--open-rate``).

- ``diurnal``: the scenario's 24 hourly weights compressed into the run's duration,
  scaled so that the busiest hour is the peak (linear between hour midpoints).
- ``step``: five equal steps up to the peak, each a fifth of the run.
- ``spike``: a fifth of the peak, with a spike to the peak in the fourth fifth of the run.
"""

from __future__ import annotations

from locust import LoadTestShape

from loadtest.profile import SHAPES, factor

__all__ = ["SHAPES", "SHAPE_CLASSES", "DiurnalShape", "SpikeShape", "StepShape"]


class _ConfiguredShape(LoadTestShape):
    """A shape whose peak, duration and profile come from the run configuration."""

    abstract = True
    name = ""

    def __init__(
        self,
        peak_users: int | None = None,
        duration_s: float | None = None,
        spawn_rate: float | None = None,
        hourly: list[float] | None = None,
    ) -> None:
        super().__init__()
        if peak_users is None or duration_s is None:
            from loadtest.users import config

            cfg = config()
            peak_users, duration_s = cfg.users, cfg.duration_s
            spawn_rate, hourly = cfg.spawn_rate, cfg.hourly
        self.peak = max(1, int(peak_users))
        self.duration = float(duration_s)
        self.spawn_rate = float(spawn_rate or self.peak)
        self.hourly = hourly or [1.0] * 24

    def tick(self) -> tuple[int, float] | None:
        t = self.get_run_time()
        if t >= self.duration:
            return None
        users = max(1, round(self.peak * factor(self.name, t, self.duration, self.hourly)))
        return users, self.spawn_rate


class DiurnalShape(_ConfiguredShape):
    """The scenario's day compressed into the run, busiest hour = peak users."""

    name = "diurnal"


class StepShape(_ConfiguredShape):
    """Five equal steps up to the peak."""

    name = "step"


class SpikeShape(_ConfiguredShape):
    """A fifth of the peak with a spike to the peak in the fourth fifth of the run."""

    name = "spike"


SHAPE_CLASSES = {"diurnal": DiurnalShape, "step": StepShape, "spike": SpikeShape}
