"""Where a node's CPU goes per request, by stage, from a py-spy profile of the running node.

While wrk drives one kind of request at a node, ``py-spy record --gil`` samples the thread
holding the GIL (the one core the node's Python work runs on). Each sample is attributed to
the stage of the innermost frame that a rule below recognises; the samples of a stage,
divided by the sampling rate and the requests answered meanwhile, are its microseconds per
request. Nothing in the node is instrumented: what is measured is the node as it serves.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

#: The stages of bench-details.json, in the order of a request's way through the node.
STAGES = ("parse", "route", "authenticate", "body", "quota", "access", "consent", "store", "project",
          "encode", "audit", "metrics", "access log", "write", "handler", "pipeline", "other")

#: (stage, pattern over "function (file)") — the innermost matching frame decides.
RULES: tuple[tuple[str, re.Pattern[str]], ...] = tuple((stage, re.compile(p)) for stage, p in (
    ("route", r"^Node\._route \(|\(fastpath/(router|_router_py)"),
    ("authenticate", r"\(gateway/(auth|signing)\.py\)$|^idempotency_key \(gateway/app\.py\)$"),
    ("body", r"^(read_body_unslotted|read_body) \("),
    ("quota", r"\(gateway/governance/quotas\.py\)"),
    ("consent", r"\(gateway/governance/(consents|idempotency)\.py\)"),
    ("access", r"^Node\._authorize \(|\(gateway/catalog\.py\)"),
    ("store", r"\(gateway/stores/"),
    ("project", r"\(gateway/release\.py\)|\(fastpath/(projection|_projection_py)"),
    ("encode", r"^(respond|json_encode|msgpack_encode|wants_msgpack|prefers_msgpack|iso_ms) \(|^Node\._respond \("),
    ("audit", r"\(gateway/audit\.py\)|\(gateway/governance/(sqlite|jetstream|checkpoints)\.py\)"),
    ("metrics", r"\(gateway/metrics\.py\)|\(prometheus_client/"),
    ("access log", r"\(gateway/logs\.py\)|\(logging/"),
    ("write", r"\(aiohttp/(web_response|http_writer)\.py\)|^RequestHandler\.finish_response \("),
    ("parse", r"\(aiohttp/(web_protocol|http_parser|web_request|web_server|streams|helpers)\.py\)"
              r"|\(gateway/(protocol|headers|peers)\.py\)"),
    ("handler", r"\(gateway/handlers/"),
    ("pipeline", r"\(gateway/(app|exchange|routes)\.py\)"),
))


def stage_of(frames: list[str]) -> str:
    """The stage of a sampled stack (innermost frame last): its innermost recognised frame's."""
    for frame in reversed(frames):
        for stage, pattern in RULES:
            if pattern.search(frame):
                return stage
    return "other"


def _frames(stack: str) -> list[str]:
    """py-spy's raw frames ``func (path:line)`` as ``func (path)`` with a project-relative path."""
    out = []
    for f in stack.split(";"):
        f = re.sub(r":\d+\)$", ")", f)
        f = re.sub(r"\(/[^()]*?/site-packages/", "(", f)
        f = re.sub(r"\(/[^()]*?/lib/python3\.\d+/", "(", f)
        f = re.sub(r"\(/[^()]*?/(gateway|fastpath)/", r"(\1/", f)
        out.append(f)
    return out


def attribute(raw: str) -> Counter[str]:
    """Samples per stage from py-spy's ``--format raw`` output."""
    counts: Counter[str] = Counter()
    for line in raw.splitlines():
        stack, _, n = line.rstrip().rpartition(" ")
        if stack and n.isdigit():
            counts[stage_of(_frames(stack))] += int(n)
    return counts


@dataclass
class Breakdown:
    """Microseconds of GIL-held CPU per request, by stage."""

    kind: str
    requests: int
    seconds: float
    samples: int
    us_per_request: dict[str, float]

    def as_dict(self) -> dict[str, object]:
        return {"requests": self.requests, "seconds": round(self.seconds, 2), "samples": self.samples,
                "us_per_request": self.us_per_request,
                "total_us": round(sum(self.us_per_request.values()), 1)}


def find_py_spy() -> str | None:
    """The py-spy binary (PyPI's ``py-spy``, in the venv beside this Python), or None."""
    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")


def profile(pid: int, seconds: float, rate: int, out: Path) -> str:
    """Record the process for ``seconds`` (GIL holder only); the raw collapsed stacks."""
    spy = find_py_spy()
    if spy is None:
        raise RuntimeError("py-spy is not installed (pip install py-spy)")
    subprocess.run([spy, "record", "--pid", str(pid), "--duration", str(max(1, round(seconds))),
                    "--rate", str(rate), "--gil", "--nonblocking", "--format", "raw",
                    "--output", str(out)], check=True, capture_output=True, timeout=seconds + 60)
    return out.read_text()


def breakdown(kind: str, raw: str, rate: int, requests: int, seconds: float) -> Breakdown:
    """Per-request microseconds by stage from samples taken at ``rate`` Hz during a window
    in which the node answered ``requests``."""
    counts = attribute(raw)
    per = {s: round(counts.get(s, 0) / rate / max(requests, 1) * 1e6, 2) for s in STAGES}
    return Breakdown(kind, requests, seconds, sum(counts.values()), per)




def format_table(profiles: dict[str, dict[str, object]]) -> str:
    """Microseconds per request by stage, one column per kind."""
    kinds = list(profiles)
    rows = [("stage (us/request)", *kinds)]
    for stage in STAGES:
        rows.append((stage, *(f"{profiles[k]['us_per_request'].get(stage, 0.0):.1f}" for k in kinds)))  # type: ignore[union-attr]
    rows.append(("total", *(f"{profiles[k]['total_us']}" for k in kinds)))
    w = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w[0]) if i == 0 else c.rjust(w[i]) for i, c in enumerate(r))
                     for r in rows)
