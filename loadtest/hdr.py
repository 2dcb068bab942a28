"""HDR latency histograms per request kind: record, merge across workers, summarise."""

from __future__ import annotations

from typing import Any

from hdrh.histogram import HdrHistogram

#: Latencies are recorded in microseconds, from 1 us to 1 hour, 3 significant digits.
LOWEST_US = 1
HIGHEST_US = 3_600_000_000
DIGITS = 3


def new_histogram() -> HdrHistogram:
    """An empty latency histogram (microseconds)."""
    return HdrHistogram(LOWEST_US, HIGHEST_US, DIGITS)


def record_ms(hist: HdrHistogram, ms: float) -> None:
    """Record one latency given in milliseconds (clamped into the histogram's range)."""
    us = int(ms * 1000.0)
    hist.record_value(min(max(us, LOWEST_US), HIGHEST_US))


def encode(hist: HdrHistogram) -> str:
    """A compact text form (base64 of the compressed histogram) to ship between processes."""
    data = hist.encode()
    return data.decode() if isinstance(data, bytes) else str(data)


def decode(text: str) -> HdrHistogram:
    """The histogram from :func:`encode`."""
    return HdrHistogram.decode(text.encode() if isinstance(text, str) else text)


def merge_into(target: HdrHistogram, other: HdrHistogram) -> None:
    """Add ``other``'s counts to ``target``."""
    if other.get_total_count():
        target.add(other)


def summary(hist: HdrHistogram, duration_s: float, failures: int = 0) -> dict[str, Any]:
    """count, rate (per second), p50/p95/p99/max/mean in ms, failures and failure ratio.

    ``hist`` holds every request of the kind (failed ones included); ``failures`` is how
    many of them failed.
    """
    count = hist.get_total_count()

    def pct(p: float) -> float:
        return round(hist.get_value_at_percentile(p) / 1000.0, 3) if count else 0.0

    total = max(count, failures)
    return {
        "count": count,
        "rate": round(count / duration_s, 3) if duration_s > 0 else 0.0,
        "p50_ms": pct(50),
        "p95_ms": pct(95),
        "p99_ms": pct(99),
        "max_ms": round(hist.get_max_value() / 1000.0, 3) if count else 0.0,
        "mean_ms": round(hist.get_mean_value() / 1000.0, 3) if count else 0.0,
        "failures": failures,
        "failure_ratio": round(failures / total, 6) if total else 0.0,
    }
