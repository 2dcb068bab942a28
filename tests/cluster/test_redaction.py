"""No credential in any answer or log line: NATS URLs with a user and password are shown
without their userinfo (503 details, /readyz reasons, node logs, CLI errors)."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from clusterkit import GatewayNode, client, eventually, operator_key, rec, write_files
from support import free_port

from gateway.client import ExchangeError
from gateway.publish import main as publish_main
from gateway.redact import redact, redact_url

pytestmark = pytest.mark.cluster

PASSWORD = "s3cret-Pa55word"


def _readyz(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url + "/readyz", timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_redact_removes_userinfo_only() -> None:
    assert redact_url(f"nats://exg:{PASSWORD}@10.0.0.1:4222") == "nats://10.0.0.1:4222"
    assert redact_url("nats://10.0.0.1:4222") == "nats://10.0.0.1:4222"
    text = (f"cannot reach nats://exg:{PASSWORD}@h1:4222, tls://tok@h2:4222 "
            f"(ParseResult(scheme='nats', netloc='exg:{PASSWORD}@h1:4222', path=''))")
    out = redact(text)
    assert PASSWORD not in out and "exg:" not in out and "tok@" not in out
    assert "nats://h1:4222" in out and "tls://h2:4222" in out and "netloc='h1:4222'" in out
    assert redact("mail a@b.example, http://h/x@y") == "mail a@b.example, http://h/x@y"


async def test_nats_down_answers_and_logs_carry_no_password(tmp_path: Path, prefix: str) -> None:
    port = free_port()  # nothing listens there: NATS is down
    url = f"nats://exguser:{PASSWORD}@127.0.0.1:{port}"
    cat, ring = write_files(tmp_path)
    node = GatewayNode(tmp_path / "node", cat, ring, servers=[url], prefix=prefix)
    try:
        node.start(wait_for="/healthz")
        status, doc = await asyncio.to_thread(_readyz, node.url)
        assert status == 503
        assert f"127.0.0.1:{port}" in doc["reason"] and "NATS" in doc["reason"]
        assert PASSWORD not in json.dumps(doc) and "exguser" not in json.dumps(doc)
        async with client(node.url, ring, retries=0, timeout=5) as c:
            for call in (c.push("test.r0", [rec("a")]), c.pull("test.r0")):
                with pytest.raises(ExchangeError) as info:
                    await call
                assert info.value.status == 503
                assert f"127.0.0.1:{port}" in info.value.detail
                assert PASSWORD not in info.value.detail and "exguser" not in info.value.detail
        # the audit writer reports its failed writes
        await eventually(lambda: "audit_write_failed" in node.log_tail(100_000), timeout=30)
    finally:
        node.stop()
    log = node.log_tail(100_000)
    assert "audit_write_failed" in log and f"127.0.0.1:{port}" in log
    assert PASSWORD not in log and "exguser" not in log


def test_publish_cli_error_carries_no_password(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cat, _ring = write_files(tmp_path)
    key, _public = operator_key(tmp_path)
    port = free_port()
    code = publish_main([str(cat), "--servers", f"nats://exguser:{PASSWORD}@127.0.0.1:{port}",
                         "--timeout", "1", "--operator-key", str(key)])
    err = capsys.readouterr().err
    assert code == 1 and f"nats://127.0.0.1:{port}" in err
    assert PASSWORD not in err and "exguser" not in err
    code = publish_main([str(cat), "--servers", f"http://exguser:{PASSWORD}@127.0.0.1:{port}"])
    err = capsys.readouterr().err
    assert code == 2 and "--servers" in err and PASSWORD not in err
