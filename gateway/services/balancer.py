"""Weighted load balancing over a service's backends, with passive ejection.

Smooth weighted round robin (the nginx algorithm): each pick adds every eligible
backend's weight to its running score, takes the highest and subtracts the total.
A backend is eligible when the active health check says it is up and it is not
ejected; one that fails ``eject_failures`` times in a row is ejected for ``eject_s``.
When no backend is eligible every backend is tried (panic mode), so a recovered
backend is found before the next health check.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from urllib.parse import urlsplit


class Backend:
    """One backend of a service and its health."""

    __slots__ = ("url", "base", "weight", "healthy", "ejected_until", "failures", "score")

    def __init__(self, url: str, weight: int) -> None:
        self.url = url
        u = urlsplit(url)
        self.base = f"{u.scheme}://{u.netloc}{u.path.rstrip('/')}"
        self.weight = weight
        self.healthy = True
        self.ejected_until = 0.0
        self.failures = 0
        self.score = 0

    def target(self, tail: str, query: str) -> str:
        """The backend URL for a (router-checked, still percent-encoded) tail and raw query."""
        url = self.base + tail
        if url.endswith("//") or "://" not in url:  # pragma: no cover - guarded by the router
            raise ValueError("bad backend path")
        if not tail and not urlsplit(self.base).path:
            url += "/"
        return url + ("?" + query if query else "")

    def available(self, now: float) -> bool:
        return self.healthy and now >= self.ejected_until


class Balancer:
    """Picks backends by weight among the available ones."""

    def __init__(self, backends: Iterable[tuple[str, int]], eject_failures: int = 3,
                 eject_s: float = 10.0) -> None:
        self.backends = [Backend(u, w) for u, w in backends]
        self.eject_failures = eject_failures
        self.eject_s = eject_s

    def pick(self, exclude: Iterable[Backend] = ()) -> Backend:
        """The next backend, avoiding ``exclude`` (already tried) when possible."""
        now = time.monotonic()
        skip = set(map(id, exclude))
        pool = [b for b in self.backends if b.available(now) and id(b) not in skip]
        if not pool:
            pool = [b for b in self.backends if id(b) not in skip] or self.backends
        if len(pool) == 1:
            return pool[0]
        total = 0
        best = pool[0]
        for b in pool:
            b.score += b.weight
            total += b.weight
            if b.score > best.score:
                best = b
        best.score -= total
        return best

    def success(self, b: Backend) -> None:
        b.failures = 0
        b.ejected_until = 0.0

    def failure(self, b: Backend) -> None:
        b.failures += 1
        if b.failures >= self.eject_failures:
            b.ejected_until = time.monotonic() + self.eject_s
