"""Independent random streams, drawn in numpy batches and handed out one at a time.

Each replication gets its own `numpy.random.SeedSequence` child; each consumer of
randomness (arrivals of one source, service times of one kind, ...) gets its own
grand-child, so adding a consumer never shifts the numbers another one sees.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable

import numpy as np

_CHUNK = 16384


class Streams:
    """Factory of named, independent unit-mean draw functions for one replication."""

    def __init__(self, seed_seq: np.random.SeedSequence) -> None:
        self._seq = seed_seq

    def _rng(self, name: str) -> np.random.Generator:
        # A stable child per name (blake2b, not hash(): that is salted per process).
        key = int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "little")
        seq = np.random.SeedSequence(self._seq.entropy, spawn_key=(*self._seq.spawn_key, key))
        return np.random.default_rng(seq)

    def draws(self, name: str, dist: str = "exponential", cv: float = 1.0) -> Callable[[], float]:
        """A function returning the next draw with mean 1 of `dist`."""
        rng = self._rng(name)
        if dist == "exponential":

            def gen() -> list[float]:
                return rng.standard_exponential(_CHUNK).tolist()
        elif dist == "deterministic":

            def gen() -> list[float]:
                return [1.0] * _CHUNK
        elif dist == "lognormal":
            sigma = math.sqrt(math.log(1 + cv * cv))
            mu = -sigma * sigma / 2

            def gen() -> list[float]:
                return rng.lognormal(mu, sigma, _CHUNK).tolist()
        elif dist == "gamma":
            shape = 1.0 / (cv * cv)

            def gen() -> list[float]:
                return rng.gamma(shape, 1.0 / shape, _CHUNK).tolist()
        elif dist == "uniform":

            def gen() -> list[float]:
                return rng.random(_CHUNK).tolist()
        else:  # pragma: no cover - scenario decoding forbids it
            raise ValueError(dist)
        return _Drawer(gen).next

    def choices(self, name: str, weights: list[float]) -> Callable[[], int]:
        """A function returning the next index drawn with the given weights."""
        rng = self._rng(name)
        p = np.asarray(weights, dtype=float)
        cdf = np.cumsum(p / p.sum())
        cdf[-1] = 1.0

        def gen() -> list[int]:
            return np.searchsorted(cdf, rng.random(_CHUNK), side="right").tolist()

        return _Drawer(gen).next

    def generator(self, name: str) -> np.random.Generator:
        return self._rng(name)


class _Drawer:
    __slots__ = ("_gen", "_it")

    def __init__(self, gen: Callable[[], list]) -> None:
        self._gen = gen
        self._it = iter(())

    def next(self):  # noqa: ANN201 - hot path
        for v in self._it:
            return v
        self._it = iter(self._gen())
        return next(self._it)
