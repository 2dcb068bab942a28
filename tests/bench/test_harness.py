"""The harness under the benches: ports, processes started and waited for, wrk's report."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from harness import HarnessError, free_port, server_process, start_process, stop_process, wait_port
from harness.wrk import lua_quote, lua_script, parse_output

WRK_OUTPUT = """Running 2s test @ http://127.0.0.1:8080/
  1 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   403.12us  100.00us   2.00ms   90.00%
    Req/Sec    19.50k     1.00k   21.00k    70.00%
  Latency Distribution
     50%  380.00us
     75%  420.00us
     90%  500.00us
     99%    1.20ms
  39000 requests in 2.00s, 5.00MB read
  Non-2xx or 3xx responses: 3
Requests/sec:  19500.12
Transfer/sec:      2.50MB
"""


def test_wrk_report_and_lua() -> None:
    r = parse_output(WRK_OUTPUT)
    assert r.rps == 19500.12 and r.requests == 39000 and r.non_2xx == 3
    assert r.p50_ms == pytest.approx(0.38) and r.p99_ms == pytest.approx(1.2)
    assert lua_quote(b'a"b\\c\r\n\x01') == '"a\\"b\\\\c\\r\\n\\001"'
    assert "request = function()" in lua_script([b"GET / HTTP/1.1\r\n\r\n"])
    with pytest.raises(HarnessError, match="could not read wrk's output"):
        parse_output("garbage")


def test_server_process_waits_for_ready_and_stops(tmp_path: Path) -> None:
    port = free_port()
    cmd = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
    with server_process(cmd, f"http://127.0.0.1:{port}/", log=tmp_path / "s.log",
                        cwd=tmp_path, timeout_s=30) as proc:
        assert proc.poll() is None
    assert proc.poll() is not None  # stopped when the block ends


def test_a_process_that_exits_fails_the_wait_with_its_log(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    proc = start_process([sys.executable, "-c", "print('bad config'); raise SystemExit(3)"], log=log)
    with pytest.raises(HarnessError, match="exited with code 3") as info:
        wait_port(free_port(), 10, proc=proc, log=log)
    assert "bad config" in str(info.value)
    assert stop_process(proc) == 3
