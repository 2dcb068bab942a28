"""exchange_event_loop_lag_seconds: the worst lag of the last second."""

from __future__ import annotations

import asyncio
import time

from prometheus_client import CollectorRegistry

from gateway.looplag import LoopLag


async def test_a_blocked_loop_shows_as_lag_and_goes_away() -> None:
    lag = LoopLag(CollectorRegistry(), interval=0.01, window=0.5)
    lag.start()
    try:
        await asyncio.sleep(0.6)
        assert lag.gauge._value.get() < 0.3  # an idle loop (a loaded test machine adds a little)
        time.sleep(0.6)  # something blocks the loop past a window
        await asyncio.sleep(0.1)  # the monitor wakes 0.6 s late and reports it at once
        assert lag.gauge._value.get() >= 0.5
        await asyncio.sleep(1.1)
        assert lag.gauge._value.get() < 0.3  # the next windows are calm again
    finally:
        await lag.stop()
    assert lag._task is None
