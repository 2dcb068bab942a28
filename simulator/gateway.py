"""The gateway cluster: nodes x workers, FIFO per node, round-robin over live nodes.

Every request is its own entity (arrival time, kind, service time, latency), served
by the first free worker of the node the balancer picks. Because each node is a
FIFO multi-server queue, a request's start time is known the moment it arrives
(Kiefer-Wolfowitz: it starts when the earliest worker frees up), so the node keeps
a heap of its workers' next-free times instead of scheduling a completion event
per request. This gives the same waits as a SimPy `Resource` with FIFO service
(tests/simulator/test_gateway.py checks it request by request) at a fraction of
the cost, which matters with ~1.5 million requests a day.

Open Poisson streams that nobody waits on (the background agency-to-agency
traffic) are attached with `add_stream` and served lazily in time order, so
their requests cost no SimPy event; requests that somebody waits on (e-service
sessions, data syncs) are submitted at their SimPy event.

Node failures: a failing node leaves the rotation; the requests it holds that
have not finished at the failure instant fail (the client sees an error; they are
counted in `failed`, not in the latencies); on recovery its workers start idle.
"""

from __future__ import annotations

from array import array
from collections import deque
from collections.abc import Callable, Iterator
from heapq import heapreplace

_INF = float("inf")


class Gateway:
    """State and statistics of the gateway cluster during one replication."""

    def __init__(
        self,
        env,
        nodes: int,
        workers: int,  # noqa: ANN001 - simpy.Environment
        service: list[Callable[[], float]],
        n_sources: int,
        horizon_hours: int,
        warmup_s: float,
        dilation: float = 1.0,
        track_inflight: bool = False,
    ) -> None:
        self.env = env
        self.nodes = nodes
        self.workers = workers
        self._free = [[0.0] * workers for _ in range(nodes)]
        self._service = service  # per kind: draw of a service time in seconds (dilated)
        self._up = list(range(nodes))
        self._rr = 0
        self._inflight: list[deque] | None = (
            [deque() for _ in range(nodes)] if track_inflight else None
        )
        self.warmup_s = warmup_s
        self.dilation = dilation
        self.latency_s = array("d")
        self.kind_of = array("b")
        self.by_hour = [0] * (horizon_hours + 1)  # +1: an arrival at exactly the horizon
        self.by_source = [0] * n_sources
        self.failed = 0
        self.busy_s = [0.0] * nodes
        self.down_since: list[float | None] = [None] * nodes
        self.down_s = [0.0] * nodes
        self._streams: list[list] = []
        self._next_stream = _INF

    def add_stream(self, times: Iterator[float], kinds: Callable[[], int], source: int) -> None:
        """Attach an open Poisson stream of requests (arrival times in increasing order).

        Its requests are served lazily, in time order with everything else: before
        any other request or failure at time t, every stream arrival <= t is served.
        They need no SimPy event of their own.
        """
        self._streams.append([next(times, _INF), times, kinds, source])
        self._next_stream = min(s[0] for s in self._streams)

    def drain(self, until: float) -> None:
        """Serve the attached streams' arrivals up to and including `until`."""
        serve = self._serve
        while self._next_stream <= until:
            for st in self._streams:
                t, times, kinds, source = st
                while t <= until:
                    serve(t, kinds(), source)
                    t = next(times, _INF)
                st[0] = t
            self._next_stream = min(s[0] for s in self._streams)

    def submit(self, kind: int, source: int) -> float:
        """One request arrives now; returns its latency in (dilated) seconds, -1 if refused."""
        now = self.env.now
        if self._next_stream <= now:
            self.drain(now)
        return self._serve(now, kind, source)

    def _serve(self, now: float, kind: int, source: int) -> float:
        up = self._up
        if not up:
            if now >= self.warmup_s:
                self.failed += 1
                self.by_source[source] += 1
            return -1.0
        node = up[self._rr % len(up)]
        self._rr += 1
        heap = self._free[node]
        s = self._service[kind]()
        first = heap[0]
        finish = (first if first > now else now) + s
        heapreplace(heap, finish)
        if now >= self.warmup_s:
            self.busy_s[node] += s
            self.by_hour[int(now * (1 / 3600.0))] += 1
            self.by_source[source] += 1
            self.latency_s.append(finish - now)
            self.kind_of.append(kind)
            if self._inflight is not None:
                self._inflight[node].append((finish, len(self.latency_s) - 1))
        return finish - now

    def fail(self, node: int) -> None:
        """Node `node` goes down now: unfinished requests on it fail."""
        now = self.env.now
        self.drain(now)
        if node in self._up:
            self._up.remove(node)
        self.down_since[node] = now
        if self._inflight is not None:
            q = self._inflight[node]
            for finish, idx in q:
                if finish > now:
                    self.latency_s[idx] = -1.0
                    self.failed += 1
            q.clear()
        # Work not yet done on the failed node is not counted as busy time.
        heap = self._free[node]
        self.busy_s[node] -= sum(max(0.0, f - now) for f in heap)
        self._free[node] = [now] * self.workers

    def recover(self, node: int) -> None:
        """Node `node` is back with idle workers."""
        now = self.env.now
        self.drain(now)
        since = self.down_since[node]
        if since is not None:
            self.down_s[node] += now - max(since, self.warmup_s)
        self.down_since[node] = None
        self._free[node] = [now] * self.workers
        if node not in self._up:
            self._up.append(node)
            self._up.sort()

    def trim_inflight(self) -> None:
        """Forget finished requests (keeps the in-flight queues short)."""
        if self._inflight is None:
            return
        now = self.env.now
        for q in self._inflight:
            while q and q[0][0] <= now:
                q.popleft()
