"""The gateway's next-free-worker computation equals a SimPy FIFO Resource."""

from __future__ import annotations

import random

import pytest
import simpy

from simulator.gateway import Gateway


def _simpy_latencies(arrivals: list[float], services: list[float], c: int) -> list[float]:
    env = simpy.Environment()
    res = simpy.Resource(env, c)
    out = [0.0] * len(arrivals)

    def req(i: int):
        t0 = env.now
        with res.request() as r:
            yield r
            yield env.timeout(services[i])
        out[i] = env.now - t0

    def src():
        for i, t in enumerate(arrivals):
            yield env.timeout(t - env.now)
            env.process(req(i))

    env.process(src())
    env.run()
    return out


@pytest.mark.parametrize("c", [1, 3])
def test_same_latencies_as_simpy_resource(c: int) -> None:
    rnd = random.Random(7)
    t, arrivals = 0.0, []
    for _ in range(3000):
        t += rnd.expovariate(1.0)
        arrivals.append(t)
    services = [rnd.expovariate(1.0 / (0.9 * c)) for _ in arrivals]
    expected = _simpy_latencies(arrivals, services, c)

    env = simpy.Environment()
    it = iter(services)
    gw = Gateway(
        env,
        nodes=1,
        workers=c,
        service=[lambda: next(it)] * 3,
        n_sources=1,
        horizon_hours=int(t // 3600) + 1,
        warmup_s=0.0,
    )
    got = []

    def src():
        for a in arrivals:
            yield env.timeout(a - env.now)
            got.append(gw.submit(0, 0))

    env.process(src())
    env.run()
    assert got == pytest.approx(expected, abs=1e-9)


def test_stream_requests_are_served_in_time_order_with_others() -> None:
    env = simpy.Environment()
    gw = Gateway(
        env,
        nodes=1,
        workers=1,
        service=[lambda: 1.0] * 3,
        n_sources=2,
        horizon_hours=1,
        warmup_s=0.0,
    )
    gw.add_stream(iter([0.5, 2.0]), lambda: 0, 1)
    seen = []

    def client():
        yield env.timeout(1.0)
        seen.append(gw.submit(0, 0))  # arrives at 1.0 while the 0.5 request runs until 1.5

    env.process(client())
    env.run()
    gw.drain(10.0)
    assert seen == [pytest.approx(0.5 + 1.0)]
    # 0.5 -> [0.5, 1.5]; 1.0 -> [1.5, 2.5]; 2.0 waits for it -> [2.5, 3.5]
    assert list(gw.latency_s) == pytest.approx([1.0, 1.5, 1.5])
    assert gw.by_source == [1, 2]


def test_failure_fails_inflight_and_recovery_restores() -> None:
    env = simpy.Environment()
    gw = Gateway(
        env,
        nodes=2,
        workers=1,
        service=[lambda: 10.0] * 3,
        n_sources=1,
        horizon_hours=1,
        warmup_s=0.0,
        track_inflight=True,
    )

    def proc():
        gw.submit(0, 0)  # node 0, busy until 10
        gw.submit(0, 0)  # node 1
        yield env.timeout(5.0)
        gw.fail(0)
        assert gw.failed == 1
        gw.submit(0, 0)  # only node 1 is up: waits until 10, finishes at 20
        yield env.timeout(1.0)
        gw.fail(1)
        assert gw.submit(0, 0) == -1.0  # nothing up: refused
        yield env.timeout(1.0)
        gw.recover(0)
        assert gw.submit(0, 0) == 10.0

    env.process(proc())
    env.run()
    assert gw.failed == 4  # node 0's request, node 1's two, and the refused one
