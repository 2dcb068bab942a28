"""Retry budget: retries may add at most ``ratio`` of the request rate (plus a small floor).

Each request deposits ``ratio`` tokens, time deposits ``min_per_s`` tokens a second, and
each retry takes one token; with no token left the call is not retried. This keeps a
failing backend from receiving a storm of retries on top of its normal load.
"""

from __future__ import annotations

import time


class RetryBudget:
    """A token bucket funded by requests and by time."""

    __slots__ = ("ratio", "min_per_s", "cap", "tokens", "_last")

    def __init__(self, ratio: float = 0.2, min_per_s: float = 10.0, cap: float = 100.0) -> None:
        self.ratio = ratio
        self.min_per_s = min_per_s
        self.cap = cap
        self.tokens = min_per_s
        self._last = time.monotonic()

    def _refill(self) -> None:
        now = time.monotonic()
        self.tokens = min(self.cap, self.tokens + (now - self._last) * self.min_per_s)
        self._last = now

    def on_request(self) -> None:
        """A first attempt went out: fund the budget."""
        self.tokens = min(self.cap, self.tokens + self.ratio)

    def try_retry(self) -> bool:
        """Take one retry from the budget; False when it is spent."""
        self._refill()
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False
