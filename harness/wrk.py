"""Drive ``wrk`` for the benches: find it, write its Lua request table, read its report.

Signed requests: the signature covers the date, so requests are signed in Python just
before a measurement (``X-Exchange-Date`` = now, accepted for ±300 s) and written
pre-formatted into a Lua table that the script cycles through. A measurement therefore
must finish within the 300 s window; the bench refuses longer durations.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness import HarnessError, _pinner

INSTALL_HINT = (
    "wrk is not installed; the bench needs it to generate load. Install it with "
    "`sudo apt-get install -y wrk` (Debian/Ubuntu), `sudo dnf install wrk` (Fedora) or "
    "`brew install wrk` (macOS), then run the bench again."
)

_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def find_wrk() -> str:
    """The path of the wrk binary, or a :class:`HarnessError` saying how to install it."""
    path = shutil.which("wrk")
    if not path:
        raise HarnessError(INSTALL_HINT)
    return path


def lua_quote(data: bytes) -> str:
    """A Lua string literal holding exactly ``data``."""
    out = ['"']
    for b in data:
        c = chr(b)
        if c == '"':
            out.append('\\"')
        elif c == "\\":
            out.append("\\\\")
        elif c == "\r":
            out.append("\\r")
        elif c == "\n":
            out.append("\\n")
        elif 32 <= b < 127:
            out.append(c)
        else:
            out.append(f"\\{b:03d}")
    out.append('"')
    return "".join(out)


def lua_script(requests: Sequence[bytes]) -> str:
    """A wrk script that sends the given raw requests in turn, cycling."""
    table = ",\n".join(lua_quote(r) for r in requests)
    return (
        "-- written by the bench harness: pre-signed requests, cycled\n"
        f"local reqs = {{\n{table}\n}}\n"
        "local n = #reqs\n"
        "local i = 0\n"
        "request = function()\n"
        "  i = i + 1\n"
        "  if i > n then i = 1 end\n"
        "  return reqs[i]\n"
        "end\n"
    )


@dataclass
class WrkResult:
    """The figures the bench takes from one wrk run."""

    requests: int
    duration_s: float
    rps: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: int
    output: str

    def check(self, name: str, log: Path | None = None) -> WrkResult:
        """This result, or a :class:`HarnessError` when any answer was not 2xx or any socket
        failed (``log``: where the server's side of the story is)."""
        if self.non_2xx or self.socket_errors:
            where = f"; see {log}" if log else ""
            raise HarnessError(
                f"{name}: {self.non_2xx} non-2xx answers and {self.socket_errors} socket errors "
                f"out of {self.requests} requests{where}; wrk said:\n{self.output}"
            )
        return self


def _ms(value: str, unit: str) -> float:
    return float(value) * _UNITS_MS[unit]


def parse_output(text: str) -> WrkResult:
    """Read wrk's ``--latency`` report."""
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    n = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", text)
    if not m or not n:
        raise HarnessError(f"could not read wrk's output:\n{text}")
    lat: dict[str, float] = {}
    for pct, value, unit in re.findall(
        r"^\s+(\d+(?:\.\d+)?)%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M
    ):
        lat[pct.split(".")[0]] = _ms(value, unit)
    non2 = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    return WrkResult(
        requests=int(n.group(1)),
        duration_s=_ms(n.group(2), n.group(3)) / 1000.0,
        rps=float(m.group(1)),
        p50_ms=lat.get("50", 0.0),
        p99_ms=lat.get("99", 0.0),
        non_2xx=int(non2.group(1)) if non2 else 0,
        socket_errors=sum(int(x) for x in sock.groups()) if sock else 0,
        output=text,
    )


def run_wrk(
    url: str,
    duration_s: float,
    connections: int,
    *,
    script: Path | None = None,
    headers: Mapping[str, str] | None = None,
    threads: int = 1,
    cpu: int | None = None,
    timeout_s: float = 10.0,
) -> WrkResult:
    """Run wrk against ``url`` (with ``headers`` on every request, optionally pinned to
    ``cpu``) and return its figures."""
    cmd = [
        find_wrk(),
        f"-t{threads}",
        f"-c{max(connections, threads)}",
        f"-d{max(1, round(duration_s))}s",
        f"--timeout={max(1, round(timeout_s))}s",
        "--latency",
    ]
    for name, value in (headers or {}).items():
        cmd += ["-H", f"{name}: {value}"]
    if script is not None:
        cmd += ["-s", str(script)]
    cmd.append(url)
    proc = subprocess.run(
        cmd, capture_output=True, text=True, preexec_fn=_pinner(cpu), timeout=duration_s + 60
    )
    if proc.returncode != 0:
        raise HarnessError(f"wrk failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout}")
    return parse_output(proc.stdout)
