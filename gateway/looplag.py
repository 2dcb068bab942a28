"""The event loop's lag: how late a timer fires, the delay every request on the loop feels.

A task sleeps ``interval`` again and again and notes how much later than asked it woke; the
gauge ``exchange_event_loop_lag_seconds`` holds the worst lag of the last second (Prometheus
and ``python -m bench soak`` read it).
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from prometheus_client import CollectorRegistry, Gauge


class LoopLag:
    """Samples the running loop's lag every ``interval`` seconds."""

    def __init__(self, registry: CollectorRegistry, interval: float = 0.05, window: float = 1.0) -> None:
        self.gauge = Gauge("exchange_event_loop_lag_seconds",
                           "Worst event-loop lag in the last second (how late timers fire)", registry=registry)
        self.interval = interval
        self.window = window
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        worst, since = 0.0, time.monotonic()
        while True:
            asked = time.monotonic()
            await asyncio.sleep(self.interval)
            now = time.monotonic()
            worst = max(worst, now - asked - self.interval)
            if now - since >= self.window:
                self.gauge.set(worst)
                worst, since = 0.0, now
