"""Erlang C: the M/M/c queue in steady state (waits are waiting times before service)."""

from __future__ import annotations

import math


def _check(lam: float, mu: float, c: int) -> float:
    if lam <= 0 or mu <= 0 or c < 1:
        raise ValueError("need lam > 0, mu > 0 and c >= 1")
    rho = lam / (c * mu)
    if rho >= 1:
        raise ValueError(f"utilisation {rho:.3f} >= 1: no steady state")
    return rho


def utilisation(lam: float, mu: float, c: int) -> float:
    """Fraction of time a server is busy."""
    return _check(lam, mu, c)


def erlang_c(lam: float, mu: float, c: int) -> float:
    """Probability that an arriving customer waits (Erlang C), computed stably."""
    rho = _check(lam, mu, c)
    a = lam / mu
    # Erlang B by recursion, then C from B.
    b = 1.0
    for k in range(1, c + 1):
        b = a * b / (k + a * b)
    return b / (1 - rho * (1 - b))


def mean_wait(lam: float, mu: float, c: int) -> float:
    """Mean waiting time in queue (same time unit as 1/lam)."""
    return erlang_c(lam, mu, c) / (c * mu - lam)


def wait_percentile(lam: float, mu: float, c: int, q: float) -> float:
    """The q-th percentile (0-100) of the waiting time: P(W > t) = C * exp(-(c mu - lam) t)."""
    pc = erlang_c(lam, mu, c)
    tail = 1 - q / 100.0
    if tail >= pc:
        return 0.0
    return math.log(pc / tail) / (c * mu - lam)


def mean_queue(lam: float, mu: float, c: int) -> float:
    """Mean number waiting (Little: lam * Wq)."""
    return lam * mean_wait(lam, mu, c)
