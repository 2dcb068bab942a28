"""Locust event hooks: HDR histograms per request kind, open-model counters, summary, SLO gate.

Each process records every request into an HDR histogram of its kind (the request's
name). Workers ship their histograms and counters with each stats report
(``report_to_master``) and start afresh; the master merges them (``worker_report``).
On ``quitting`` the master (or the single local process) writes ``summary.json`` and
applies the SLO gate: on a breach it prints which objective failed and by how much and
sets a non-zero exit code.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from locust import events
from locust.runners import MasterRunner, WorkerRunner

from loadtest import hdr

_pending: dict[str, Any] = {}  # this process's samples since the last report
_totals: dict[str, Any] = {}  # merged samples (master / local process)
_open: dict[str, float] = {}
_open_totals: dict[str, float] = {}
_times: dict[str, float] = {}


def _kind_slot(store: dict[str, Any], name: str) -> dict[str, Any]:
    slot = store.get(name)
    if slot is None:
        slot = store[name] = {"hist": hdr.new_histogram(), "failures": 0}
    return slot


def on_request(
    request_type: str,
    name: str,
    response_time: float,
    response_length: int,
    exception: BaseException | None = None,
    **_kw: Any,
) -> None:
    """Record one request into its kind's histogram."""
    slot = _kind_slot(_pending, name)
    hdr.record_ms(slot["hist"], response_time or 0.0)
    if exception is not None:
        slot["failures"] += 1


def note_open_scheduled() -> None:
    """An open-model arrival came due."""
    _open["scheduled"] = _open.get("scheduled", 0) + 1


def note_open_start(lateness_ms: float, late_ms: float) -> None:
    """An open-model arrival started ``lateness_ms`` after its intended time."""
    _open["started"] = _open.get("started", 0) + 1
    if lateness_ms > late_ms:
        _open["late"] = _open.get("late", 0) + 1
    if lateness_ms > _open.get("max_lateness_ms", 0.0):
        _open["max_lateness_ms"] = lateness_ms


def note_open_dropped() -> None:
    """An open-model arrival found no free slot and was not sent."""
    _open["dropped"] = _open.get("dropped", 0) + 1


def note_open_window(duration_s: float) -> None:
    """An open-model user's schedule has covered ``duration_s`` seconds so far."""
    _open["window_s"] = max(_open.get("window_s", 0.0), duration_s)


def _merge_open(into: dict[str, float], other: dict[str, float]) -> None:
    for k, v in other.items():
        if k in ("max_lateness_ms", "window_s"):
            into[k] = max(into.get(k, 0.0), v)
        else:
            into[k] = into.get(k, 0) + v


def _drain_pending() -> dict[str, Any]:
    out = {
        name: {"hist": hdr.encode(s["hist"]), "failures": s["failures"]}
        for name, s in _pending.items()
        if s["hist"].get_total_count()
    }
    _pending.clear()
    return out


def on_report_to_master(client_id: str, data: dict[str, Any]) -> None:
    """Worker: attach this report's histograms and counters."""
    data["exg_hdr"] = _drain_pending()
    data["exg_open"] = dict(_open)
    _open.clear()


def on_worker_report(client_id: str, data: dict[str, Any]) -> None:
    """Master: merge a worker's histograms and counters."""
    for name, s in data.get("exg_hdr", {}).items():
        slot = _kind_slot(_totals, name)
        hdr.merge_into(slot["hist"], hdr.decode(s["hist"]))
        slot["failures"] += s["failures"]
    _merge_open(_open_totals, data.get("exg_open", {}))


def on_test_start(environment: Any, **_kw: Any) -> None:
    _times.setdefault("start", time.time())


def on_test_stop(environment: Any, **_kw: Any) -> None:
    _times["stop"] = time.time()


def build_summary(duration_s: float, config: Any = None) -> dict[str, Any]:
    """The per-kind summary (and the open-model report when it ran)."""
    for name, s in list(_pending.items()):  # a local run: this process's own samples
        slot = _kind_slot(_totals, name)
        hdr.merge_into(slot["hist"], s["hist"])
        slot["failures"] += s["failures"]
    _pending.clear()
    _merge_open(_open_totals, _open)
    _open.clear()
    kinds = {
        name: hdr.summary(s["hist"], duration_s, s["failures"])
        for name, s in sorted(_totals.items())
    }
    total = hdr.new_histogram()
    for s in _totals.values():
        hdr.merge_into(total, s["hist"])
    out: dict[str, Any] = {
        "duration_s": round(duration_s, 3),
        "kinds": kinds,
        "total": hdr.summary(total, duration_s, sum(s["failures"] for s in _totals.values())),
    }
    if config is not None:
        out["config"] = {
            "host": config.host,
            "mix": config.shares,
            "mix_source": config.mix_source,
            "users": config.users,
            "workers": config.workers,
            "shape": config.shape,
            "open_rate": config.open_rate,
        }
    if _open_totals:
        window = _open_totals.get("window_s") or duration_s
        started = _open_totals.get("started", 0)
        target = config.open_rate if config is not None else None
        peak = target
        if target and config.shape:  # the shape scales the rate: compare with its mean
            from loadtest.profile import factor

            n = 1000
            mean = (
                sum(
                    factor(config.shape, (i + 0.5) * window / n, config.duration_s, config.hourly)
                    for i in range(n)
                )
                / n
            )
            target = round(target * mean, 3)
        achieved = started / window if window else 0.0
        out["open_model"] = {
            "target_rate": target,
            "peak_rate": peak,
            "shape": config.shape if config is not None else None,
            "achieved_rate": round(achieved, 3),
            "rate_error": round(achieved / target - 1.0, 5) if target else None,
            "scheduled": int(_open_totals.get("scheduled", 0)),
            "started": int(started),
            "late": int(_open_totals.get("late", 0)),
            "dropped": int(_open_totals.get("dropped", 0)),
            "max_lateness_ms": round(_open_totals.get("max_lateness_ms", 0.0), 3),
            "latency_from": "intended start time",
        }
    return out


def on_quitting(environment: Any, **_kw: Any) -> None:
    """Master / local: write summary.json and apply the SLO gate."""
    if isinstance(environment.runner, WorkerRunner):
        return
    from loadtest.runconfig import current_config
    from loadtest.slo import evaluate, format_breaches, load_slo

    cfg = current_config()
    start = _times.get("start") or environment.stats.total.start_time
    stop = _times.get("stop") or time.time()
    duration = max(stop - start, 1e-3)
    summary = build_summary(duration, cfg)
    if cfg.slo:
        slo = load_slo(cfg.slo)
        breaches = evaluate(slo, summary)
        summary["slo"] = {"file": cfg.slo, "passed": not breaches, "breaches": breaches}
        if breaches:
            print(format_breaches(breaches), file=sys.stderr)
            environment.process_exit_code = 1
        else:
            print(f"SLO: every objective of {cfg.slo} met", file=sys.stderr)
            environment.process_exit_code = 0  # the SLO, not Locust's any-failure rule, decides
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")


def register() -> None:
    """Attach the hooks to Locust's events (once per process)."""
    if _times.get("registered"):
        return
    _times["registered"] = 1.0
    events.request.add_listener(on_request)
    events.report_to_master.add_listener(on_report_to_master)
    events.worker_report.add_listener(on_worker_report)
    events.test_start.add_listener(on_test_start)
    events.test_stop.add_listener(on_test_stop)
    events.quitting.add_listener(on_quitting)


__all__ = ["MasterRunner", "build_summary", "register"]
