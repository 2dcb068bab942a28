"""A circuit breaker per service: closed -> open -> half-open -> closed.

Closed: calls pass; ``failures`` consecutive failures open it. Open: calls are refused
at once (503 with Retry-After) for ``open_s``. Half-open: up to ``probes`` calls pass;
a success closes the breaker, a failure opens it again.
"""

from __future__ import annotations

import time

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


class CircuitBreaker:
    """Counts consecutive failures and decides whether a call may go out."""

    __slots__ = ("threshold", "open_s", "probes", "state", "failures", "opened_at", "inflight_probes")

    def __init__(self, failures: int = 5, open_s: float = 10.0, probes: int = 1) -> None:
        self.threshold = failures
        self.open_s = open_s
        self.probes = probes
        self.state = CLOSED
        self.failures = 0
        self.opened_at = 0.0
        self.inflight_probes = 0

    def allow(self, now: float | None = None) -> bool:
        """Whether a call may go out now (a half-open probe counts until its outcome)."""
        if self.state == CLOSED:
            return True
        now = time.monotonic() if now is None else now
        if self.state == OPEN:
            if now - self.opened_at < self.open_s:
                return False
            self.state = HALF_OPEN
            self.inflight_probes = 0
        if self.inflight_probes < self.probes:
            self.inflight_probes += 1
            return True
        return False

    def retry_after(self, now: float | None = None) -> float:
        """Seconds until the breaker lets a probe through."""
        now = time.monotonic() if now is None else now
        return max(0.0, self.open_s - (now - self.opened_at)) if self.state == OPEN else self.open_s

    def success(self) -> None:
        self.state = CLOSED
        self.failures = 0
        self.inflight_probes = 0

    def failure(self, now: float | None = None) -> None:
        self.failures += 1
        if self.state == HALF_OPEN or self.failures >= self.threshold:
            self.state = OPEN
            self.opened_at = time.monotonic() if now is None else now
            self.inflight_probes = 0

    def release(self) -> None:
        """A call ended without a verdict (e.g. cancelled): free its probe slot."""
        if self.state == HALF_OPEN and self.inflight_probes > 0:
            self.inflight_probes -= 1
