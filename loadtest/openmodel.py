"""Open-model load: requests start on a fixed schedule whatever the response times.

Like wrk2 or k6's constant-arrival-rate: arrival ``i`` is *intended* at
``t0 + i / rate``. Its latency is measured from that intended time, not from when a
connection happened to be free, so a stalled server shows up in the percentiles instead
of silently slowing the load down (no coordinated omission). An arrival that cannot start
on time waits in a bounded queue; it is *late* when it starts more than ``late_ms`` after
its intended time and *dropped* when the queue is full or the run ends before it starts.

:class:`Schedule` is the arithmetic shared by both drivers: :func:`run_open_model`
(asyncio + raw HTTP/1.1 keep-alive connections, used by ``bench`` and usable
standalone) and the Locust open-model user in :mod:`loadtest.users`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from hdrh.histogram import HdrHistogram

from loadtest import hdr
from loadtest.errors import LoadTestError


class Schedule:
    """Intended start times of a constant arrival rate over a duration."""

    __slots__ = ("rate", "duration", "t0", "total")

    def __init__(self, rate: float, duration: float, t0: float) -> None:
        if not rate > 0 or not math.isfinite(rate):
            raise LoadTestError(f"open model: rate must be a positive number, got {rate!r}")
        if not duration > 0:
            raise LoadTestError(f"open model: duration must be positive, got {duration!r}")
        self.rate = float(rate)
        self.duration = float(duration)
        self.t0 = t0
        self.total = max(1, int(self.rate * self.duration))

    def intended(self, i: int) -> float:
        """The intended start time of arrival ``i`` (0-based)."""
        return self.t0 + i / self.rate

    def due(self, now: float) -> int:
        """How many arrivals are due by ``now`` (never more than :attr:`total`)."""
        if now < self.t0:
            return 0
        return min(self.total, int((now - self.t0) * self.rate) + 1)

    @property
    def end(self) -> float:
        """The end of the arrival window."""
        return self.t0 + self.duration


@dataclass
class OpenStats:
    """What an open-model run did: counts, lateness and the latency histogram."""

    target_rate: float
    duration_s: float
    scheduled: int = 0
    started: int = 0
    started_in_window: int = 0
    completed: int = 0
    errors: int = 0
    late: int = 0
    dropped: int = 0
    max_lateness_ms: float = 0.0
    statuses: dict[str, int] = field(default_factory=dict)
    histogram: HdrHistogram = field(default_factory=hdr.new_histogram)

    def note_start(self, intended: float, started: float, window_end: float, late_s: float) -> None:
        """Account for an arrival that started at ``started`` (intended at ``intended``)."""
        self.started += 1
        if started <= window_end:
            self.started_in_window += 1
        lateness = started - intended
        if lateness > late_s:
            self.late += 1
        if lateness * 1000.0 > self.max_lateness_ms:
            self.max_lateness_ms = lateness * 1000.0

    @property
    def achieved_rate(self) -> float:
        """Arrivals actually started inside the window, per second."""
        return self.started_in_window / self.duration_s if self.duration_s else 0.0

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (latencies in ms, measured from intended start times)."""
        lat = hdr.summary(self.histogram, self.duration_s, self.errors)
        return {
            "target_rate": self.target_rate,
            "achieved_rate": round(self.achieved_rate, 3),
            "rate_error": round(self.achieved_rate / self.target_rate - 1.0, 5)
            if self.target_rate
            else 0.0,
            "duration_s": self.duration_s,
            "scheduled": self.scheduled,
            "started": self.started,
            "completed": self.completed,
            "errors": self.errors,
            "late": self.late,
            "dropped": self.dropped,
            "max_lateness_ms": round(self.max_lateness_ms, 3),
            "statuses": dict(self.statuses),
            "latency_ms": {k: lat[k] for k in ("p50_ms", "p95_ms", "p99_ms", "max_ms", "mean_ms")},
        }


_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.I)
_CHUNKED = re.compile(rb"\r\ntransfer-encoding:[^\r]*chunked", re.I)
_CLOSE = re.compile(rb"\r\nconnection:[ \t]*close", re.I)


class _Conn(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection carrying one request at a time."""

    def __init__(self, pacer: _Pacer) -> None:
        self.pacer = pacer
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.job: tuple[float, float] | None = None  # (intended, started)
        self.close_after = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, request: bytes, intended: float, started: float) -> None:
        self.job = (intended, started)
        assert self.transport is not None
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while self.job is not None:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buf[: end + 2])
            status = head[9:12].decode("latin-1")
            m = _LENGTH.search(head)
            length = int(m.group(1)) if m else 0
            if m is None and _CHUNKED.search(head):
                self._fail("chunked responses are not supported")
                return
            if _CLOSE.search(head):
                self.close_after = True
            total = end + 4 + length
            if len(self.buf) < total:
                return
            del self.buf[:total]
            job, self.job = self.job, None
            self.pacer.done(self, job, status)
            if self.close_after and self.transport is not None:
                self.transport.close()

    def _fail(self, reason: str) -> None:
        job, self.job = self.job, None
        if job is not None:
            self.pacer.done(self, job, "error", failed=True)
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.pacer.lost(self)
        job, self.job = self.job, None
        if job is not None:
            self.pacer.done(self, job, "error", failed=True, reuse=False)


class _Pacer:
    """Runs one schedule over a growing pool of connections."""

    def __init__(
        self,
        host: str,
        port: int,
        requests: Sequence[bytes],
        rate: float,
        duration: float,
        max_connections: int,
        max_queue: int,
        late_ms: float,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.host, self.port = host, port
        self.requests = requests
        self.clock = time.perf_counter  # uvloop's loop.time() has millisecond resolution
        self.schedule = Schedule(rate, duration, self.clock() + 0.05)
        self.stats = OpenStats(target_rate=rate, duration_s=duration)
        self.max_connections = max_connections
        self.max_queue = max_queue
        self.late_s = late_ms / 1000.0
        self.idle: list[_Conn] = []
        self.conns: set[_Conn] = set()
        self.opening = 0
        self.queue: collections.deque[tuple[int, float]] = collections.deque()
        self.inflight = 0
        self.idle_event = asyncio.Event()
        self.connect_error: str | None = None
        self.openers: set[asyncio.Task[None]] = set()  # connections being opened

    def _start(self, conn: _Conn, i: int, intended: float) -> None:
        now = self.clock()
        self.stats.note_start(intended, now, self.schedule.end, self.late_s)
        self.inflight += 1
        conn.send(self.requests[i % len(self.requests)], intended, now)

    def dispatch(self, i: int, intended: float) -> None:
        self.stats.scheduled += 1
        while self.idle:
            conn = self.idle.pop()
            if conn.transport is not None and not conn.transport.is_closing():
                self._start(conn, i, intended)
                return
        if len(self.queue) >= self.max_queue:
            self.stats.dropped += 1
            return
        self.queue.append((i, intended))
        if len(self.conns) + self.opening < self.max_connections:
            self.opening += 1
            t = self.loop.create_task(self._open())
            self.openers.add(t)
            t.add_done_callback(self.openers.discard)

    async def _open(self) -> None:
        try:
            _, conn = await self.loop.create_connection(lambda: _Conn(self), self.host, self.port)
        except OSError as exc:
            self.opening -= 1
            self.connect_error = f"cannot connect to {self.host}:{self.port}: {exc.strerror or exc}"
            if self.queue:
                self.queue.popleft()
                self.stats.dropped += 1
            self.idle_event.set()
            return
        self.opening -= 1
        self.conns.add(conn)
        self._next(conn)

    def _next(self, conn: _Conn) -> None:
        if self.queue:
            i, intended = self.queue.popleft()
            self._start(conn, i, intended)
        else:
            self.idle.append(conn)
            if not self.inflight:
                self.idle_event.set()

    def done(
        self,
        conn: _Conn,
        job: tuple[float, float],
        status: str,
        failed: bool = False,
        reuse: bool = True,
    ) -> None:
        intended, _ = job
        now = self.clock()
        self.inflight -= 1
        st = self.stats
        st.statuses[status] = st.statuses.get(status, 0) + 1
        hdr.record_ms(st.histogram, (now - intended) * 1000.0)
        if failed or not status.startswith(("2", "3")):
            st.errors += 1
        st.completed += 1
        if reuse and not conn.close_after:
            self._next(conn)
        elif self.inflight == 0:
            self.idle_event.set()

    def lost(self, conn: _Conn) -> None:
        self.conns.discard(conn)
        if conn in self.idle:
            self.idle.remove(conn)

    async def run(self, drain_s: float) -> OpenStats:
        sched = self.schedule
        i = 0
        while i < sched.total:
            due = sched.due(self.clock())
            while i < due:
                self.dispatch(i, sched.intended(i))
                i += 1
            if i < sched.total:
                await asyncio.sleep(max(0.0, sched.intended(i) - self.clock()))
        deadline = self.clock() + drain_s
        while (self.inflight or self.queue) and self.clock() < deadline:
            if self.queue and not self.conns and not self.opening:
                break  # nothing can serve the queue any more (connect failures)
            self.idle_event.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.idle_event.wait(), timeout=0.05)
        self.stats.dropped += len(self.queue)
        self.queue.clear()
        self.stats.errors += self.inflight  # still waiting at the end of the drain: timed out
        openers = list(self.openers)
        for t in openers:
            t.cancel()
        await asyncio.gather(*openers, return_exceptions=True)
        for conn in list(self.conns):
            if conn.transport is not None:
                conn.transport.close()
        return self.stats


async def run_open_model(
    host: str,
    port: int,
    requests: Sequence[bytes],
    rate: float,
    duration: float,
    *,
    max_connections: int = 1024,
    max_queue: int = 100_000,
    late_ms: float = 10.0,
    drain_s: float = 10.0,
) -> OpenStats:
    """Send ``requests`` (raw HTTP/1.1 bytes, cycled) at ``rate`` per second for ``duration`` s.

    Connections are opened as needed up to ``max_connections``; arrivals that find none
    free wait in a queue of at most ``max_queue``. After the window, in-flight requests get
    ``drain_s`` seconds to finish. Raises :class:`LoadTestError` when nothing could connect.
    """
    if not requests:
        raise LoadTestError("open model: no requests to send")
    pacer = _Pacer(host, port, requests, rate, duration, max_connections, max_queue, late_ms)
    stats = await pacer.run(drain_s)
    if stats.completed == 0 and pacer.connect_error:
        raise LoadTestError(pacer.connect_error)
    return stats


def raw_request(
    method: str,
    path: str,
    host: str,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
) -> bytes:
    """An HTTP/1.1 keep-alive request as bytes (``path`` includes any query string)."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    for k, v in (headers or {}).items():
        lines.append(f"{k}: {v}")
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def run_open_model_sync(*args: Any, **kwargs: Any) -> OpenStats:
    """:func:`run_open_model` in a fresh event loop (uvloop when available)."""
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:  # pragma: no cover
        runner = asyncio.Runner()
    with runner:
        return runner.run(run_open_model(*args, **kwargs))


def monotonic() -> float:
    """The clock the Locust open-model driver uses for intended start times."""
    return time.perf_counter()
