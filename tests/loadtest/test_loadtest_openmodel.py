"""The open-model pacer: fixed arrival rate, latency from intended start, late and dropped starts."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiohttp import web

from harness import free_port
from loadtest.errors import LoadTestError
from loadtest.openmodel import Schedule, raw_request, run_open_model


def test_schedule_arithmetic() -> None:
    s = Schedule(rate=100, duration=2, t0=10.0)
    assert s.total == 200
    assert s.intended(0) == 10.0
    assert s.intended(100) == pytest.approx(11.0)
    assert s.due(9.0) == 0
    assert s.due(10.0) == 1
    assert s.due(10.5) == 51
    assert s.due(100.0) == 200
    assert s.end == 12.0


@pytest.mark.parametrize("rate", [0, -5, float("nan"), float("inf")])
def test_schedule_refuses_bad_rates(rate: float) -> None:
    with pytest.raises(LoadTestError, match="rate"):
        Schedule(rate=rate, duration=1, t0=0)


async def _stall_server(stall_after: float, stall_s: float) -> tuple[web.AppRunner, int]:
    """A server answering at once, except that it stalls every request for ``stall_s``
    seconds starting ``stall_after`` seconds after its first request."""
    state: dict[str, float] = {}

    async def handler(request: web.Request) -> web.Response:
        now = time.perf_counter()
        first = state.setdefault("first", now)
        start, end = first + stall_after, first + stall_after + stall_s
        if start <= now < end:
            await asyncio.sleep(end - now)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/x", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, port


async def test_pacer_holds_rate_through_a_one_second_stall_and_p99_shows_it() -> None:
    runner, port = await _stall_server(stall_after=1.0, stall_s=1.0)
    try:
        req = [raw_request("GET", "/x", f"127.0.0.1:{port}")]
        stats = await run_open_model("127.0.0.1", port, req, rate=200, duration=3.0)
    finally:
        await runner.cleanup()
    d = stats.as_dict()
    assert d["scheduled"] == 600
    assert d["completed"] == 600 and d["errors"] == 0 and d["dropped"] == 0
    assert abs(d["achieved_rate"] / 200 - 1) <= 0.05, d
    # a third of the arrivals fell into the stall: the tail shows the second they waited
    assert d["latency_ms"]["p99_ms"] >= 800, d
    assert d["latency_ms"]["p50_ms"] < 500, d


async def test_with_few_connections_the_stall_makes_late_starts_and_still_shows_in_latency() -> (
    None
):
    runner, port = await _stall_server(stall_after=0.5, stall_s=1.0)
    try:
        req = [raw_request("GET", "/x", f"127.0.0.1:{port}")]
        stats = await run_open_model(
            "127.0.0.1", port, req, rate=100, duration=2.0, max_connections=4
        )
    finally:
        await runner.cleanup()
    d = stats.as_dict()
    assert d["late"] > 50, d  # arrivals queued behind the stalled connections
    assert d["max_lateness_ms"] >= 500, d
    assert d["latency_ms"]["p99_ms"] >= 800, d  # measured from the intended start, not the send


async def test_bounded_queue_drops_arrivals() -> None:
    runner, port = await _stall_server(stall_after=0.0, stall_s=1.5)
    try:
        req = [raw_request("GET", "/x", f"127.0.0.1:{port}")]
        stats = await run_open_model(
            "127.0.0.1", port, req, rate=100, duration=1.0, max_connections=2, max_queue=5
        )
    finally:
        await runner.cleanup()
    assert stats.dropped > 50
    assert stats.scheduled == stats.started + stats.dropped


async def test_pacer_keeps_its_rate_when_the_server_keeps_up() -> None:
    runner, port = await _stall_server(stall_after=1e9, stall_s=0)
    try:
        req = [raw_request("GET", "/x", f"127.0.0.1:{port}")]
        stats = await run_open_model("127.0.0.1", port, req, rate=500, duration=2.0)
    finally:
        await runner.cleanup()
    d = stats.as_dict()
    assert d["completed"] == 1000 and d["errors"] == 0
    assert abs(d["rate_error"]) <= 0.05, d


async def test_unreachable_server_is_a_clear_error() -> None:
    port = free_port()
    with pytest.raises(LoadTestError, match="cannot connect"):
        await run_open_model("127.0.0.1", port, [b"GET / HTTP/1.1\r\n\r\n"], rate=50, duration=0.2)
