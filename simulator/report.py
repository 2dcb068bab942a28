"""report.html with PNG plots next to it (matplotlib, Agg backend; readable offline)."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

PLOTS = {
    "arrivals_by_hour.png": "Arrivals by hour of day (mean simulated day)",
    "queue_wait_by_hour.png": "Centre queue length and wait by hour of arrival",
    "utilization_by_centre.png": "Counter utilisation by centre",
    "gateway_latency.png": "Gateway latency distribution",
}


def plot_all(series: dict[str, Any], outdir: Path) -> list[str]:
    """Write the PNG plots; returns their file names."""
    hours = np.arange(24)
    fig, ax = plt.subplots(figsize=(8, 3.6))
    ax.bar(hours, series["visits_by_hour"], color="#4a7bb7", label="centre visits / h")
    ax.set_xlabel("hour of day")
    ax.set_ylabel("centre visits per hour")
    ax2 = ax.twinx()
    ax2.plot(
        hours + 0.0,
        np.asarray(series["gateway_by_hour"]) / 3600.0,
        color="#d9534f",
        marker="o",
        ms=3,
        label="gateway requests / s",
    )
    ax2.set_ylabel("gateway requests per second")
    fig.legend(loc="upper left", fontsize=8)
    _save(fig, outdir / "arrivals_by_hour.png")

    fig, ax = plt.subplots(figsize=(8, 3.6))
    ax.plot(
        hours,
        series["queue_by_hour"],
        color="#4a7bb7",
        marker="o",
        ms=3,
        label="mean queue length per centre",
    )
    ax.set_xlabel("hour of day")
    ax.set_ylabel("visitors waiting per centre")
    ax2 = ax.twinx()
    ax2.plot(
        hours,
        series["wait_by_hour"],
        color="#f0ad4e",
        marker="s",
        ms=3,
        label="mean wait (min) by arrival hour",
    )
    ax2.set_ylabel("wait, minutes")
    fig.legend(loc="upper left", fontsize=8)
    _save(fig, outdir / "queue_wait_by_hour.png")

    fig, ax = plt.subplots(figsize=(8, 3.6))
    util = np.asarray(series["util_by_centre"])
    ax.bar(np.arange(len(util)), np.sort(util)[::-1], width=1.0, color="#5cb85c")
    ax.axhline(1.0, color="#d9534f", lw=0.8, ls="--")
    ax.set_xlabel(f"centres, busiest first ({len(util)} simulated)")
    ax.set_ylabel("utilisation of staffed counters")
    _save(fig, outdir / "utilization_by_centre.png")

    fig, ax = plt.subplots(figsize=(8, 3.6))
    lat = np.asarray(series["latency_ms"])
    if len(lat):
        lo = max(float(lat.min()), 1e-4)
        bins = np.logspace(np.log10(lo), np.log10(max(float(lat.max()), lo * 10)), 80)
        ax.hist(lat, bins=bins, color="#777", log=True)
        ax.set_xscale("log")
        for q, col in ((50, "#5cb85c"), (99, "#d9534f")):
            v = float(np.percentile(lat, q))
            ax.axvline(v, color=col, ls="--", lw=1, label=f"p{q} = {v:.3g} ms")
        ax.legend(fontsize=8)
    ax.set_xlabel("latency at the gateway, ms (queueing + service)")
    ax.set_ylabel("requests")
    _save(fig, outdir / "gateway_latency.png")
    return list(PLOTS)


def _save(fig: Any, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _rows(d: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    rows = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            rows += _rows(v, key + ".")
        elif isinstance(v, list):
            if len(v) <= 12:
                rows.append((key, ", ".join(_fmt(x) for x in v)))
        else:
            rows.append((key, _fmt(v)))
    return rows


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1000 else f"{v:,.0f}"
    return str(v)


def write_html(summary: dict[str, Any], plots: list[str], path: Path) -> None:
    """A self-contained page: headline figures, plots (files next to it), all summary keys."""
    c, g, cal = summary["centers"], summary["gateway"], summary["calibration"]
    w = c["wait_minutes"]
    lat = g["latency_ms"]

    def pm(m: Any, h: Any) -> str:
        return f"{_fmt(m)} ± {_fmt(h)}" if h is not None else _fmt(m)

    head = [
        ("centre visits (simulated period)", pm(c["visits"], c["visits_ci95"])),
        ("centre wait, mean minutes", pm(w["mean"], w["ci95"])),
        ("centre wait p50 / p95, minutes", f"{_fmt(w['p50'])} / {_fmt(w['p95'])}"),
        ("counter utilisation", pm(c["utilization"], c["utilization_ci95"])),
        ("gateway requests (simulated period)", pm(g["requests"], g["requests_ci95"])),
        ("gateway latency p50 / p99, ms", f"{_fmt(lat['p50'])} / {_fmt(lat['p99'])}"),
        ("gateway utilisation", pm(g["utilization"], g["utilization_ci95"])),
        (
            "centre visits, first half of year (extrapolated)",
            pm(cal["center_visits_first_half"]["mean"], cal["center_visits_first_half"]["ci95"]),
        ),
        (
            "gateway requests, year (extrapolated)",
            pm(cal["gateway_requests_year"]["mean"], cal["gateway_requests_year"]["ci95"]),
        ),
    ]
    s = summary["scenario"]
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>Capacity model: {html.escape(str(s['name']))}</title>",
        "<style>body{font-family:sans-serif;max-width:60em;margin:1em auto;padding:0 1em}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px;"
        "text-align:left}td.n{text-align:right}img{max-width:100%}</style></head><body>",
        f"<h1>Capacity model: {html.escape(str(s['name']))}</h1>",
        f"<p>Scenario <code>{html.escape(str(s['file']))}</code>: {s['days']} simulated day(s) "
        f"from a {s['start_weekday']}, {s['replications']} replications, sample {s['sample']}. "
        "Figures are means over replications ± 95 % confidence half-widths (Student t).</p>",
    ]
    if s.get("whatif"):
        parts.append(f"<p><b>What-if:</b> {html.escape(str(s['whatif']))}</p>")
    parts.append("<h2>Headline</h2><table>")
    parts += [
        f"<tr><th>{html.escape(k)}</th><td class='n'>{html.escape(v)}</td></tr>" for k, v in head
    ]
    parts.append("</table>")
    if cal.get("within_tolerance") is not None:
        verdict = "within" if cal["within_tolerance"] else "NOT within"
        parts.append(f"<p>Calibration: {verdict} ±{cal['tolerance_pct']} % of the targets.</p>")
    parts.append(f"<p><small>{html.escape(cal['method'])}</small></p>")
    for name in plots:
        parts.append(f"<h2>{html.escape(PLOTS[name])}</h2><img src='{name}' alt='{name}'>")
    parts.append("<h2>All figures (summary.json)</h2><table>")
    parts += [
        f"<tr><td>{html.escape(k)}</td><td class='n'>{html.escape(v)}</td></tr>"
        for k, v in _rows({k: v for k, v in summary.items() if k != "calibration"})
    ]
    parts.append("</table></body></html>")
    path.write_text("\n".join(parts), encoding="utf-8")
