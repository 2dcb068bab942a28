"""The node's log (real node processes): one JSON document per line through ``logging``,
filtered by ``[node] log_level``, and a clean stop that leaves no pending task behind."""

from __future__ import annotations

import io
import json
import logging
import shutil
import signal
import uuid
from pathlib import Path
from typing import Any

import pytest
from gwkit import CATALOG, NodeProcess, wait_until

from gateway.logs import JsonLineHandler
from harness import free_port

BAD_HEADER_LINE = b"GET /v1/catalog HTTP/1.1\r\nHost x\r\n\r\n"  # an error line, level "error"


def lines(node: NodeProcess) -> list[dict[str, Any]]:
    """Every line of the node's log as JSON (fails on any line that is not a JSON document)."""
    out = []
    for ln in node.log_text().splitlines():
        doc = json.loads(ln)
        assert isinstance(doc, dict) and {"ts", "level", "event"} <= doc.keys(), ln
        out.append(doc)
    return out


def events(node: NodeProcess) -> list[str]:
    return [d["event"] for d in lines(node)]


async def _exercise(node: NodeProcess, catalog: Path) -> str:
    """Requests that log at info (access lines), warning (a refused reload) and error (a
    malformed request); the malformed request's id."""
    from gwkit import raw_http

    for _ in range(3):
        status, _, _ = await raw_http(node.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status == 200
    status, headers, _ = await raw_http(node.port, BAD_HEADER_LINE)
    assert status == 400
    catalog.write_text(catalog.read_text() + "\n[[resources]]\nid = 'BROKEN id'\n")
    node.signal(signal.SIGHUP)
    return headers["x-exchange-request-id"]


@pytest.fixture
def own_catalog(tmp_path: Path) -> Path:
    path = tmp_path / "catalog.toml"
    shutil.copy(CATALOG, path)
    return path


@pytest.mark.parametrize("level", ["debug", "info", "warning", "error"])
async def test_log_level_filters_what_is_written(tmp_path: Path, keyring_path: Path, own_catalog: Path,
                                                 level: str) -> None:
    node = NodeProcess(tmp_path / "n", keyring_path, catalog=own_catalog, port=free_port(),
                       node={"log_level": level})
    node.start()
    try:
        rid = await _exercise(node, own_catalog)
        await wait_until(lambda: rid in node.log_text())  # the error line is written at once
        if level != "error":
            await wait_until(lambda: '"reload_refused"' in node.log_text())
    finally:
        assert node.stop() == 0
    written = events(node)  # complete: the process has exited
    info_lines = {"access", "draining"}
    assert {"listening", "stopped"} <= set(written), written  # the start and stop announcements, always
    if level in ("debug", "info"):
        assert info_lines <= set(written), written
        assert written.count("access") >= 4
    else:
        assert not info_lines & set(written), written
    assert ("reload_refused" in written) == (level != "error")
    errors = [d for d in lines(node) if d["event"] == "error"]
    assert [e["request_id"] for e in errors] == [rid] and errors[0]["level"] == "error"


async def test_lines_are_json_documents_with_their_fields(node: NodeProcess) -> None:
    from gwkit import raw_http

    status, headers, _ = await raw_http(node.port, b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
    rid = headers["x-exchange-request-id"]
    assert status == 200
    await wait_until(lambda: rid in node.log_text())  # batched: within 100 ms
    access = next(d for d in lines(node) if d.get("request_id") == rid)
    assert list(access) == ["ts", "level", "event", "request_id", "client", "method", "path",
                            "status", "ms"]
    assert access["level"] == "info" and access["event"] == "access" and access["path"] == "/readyz"
    assert "Traceback" not in node.log_text()


@pytest.mark.parametrize("backend", ["sqlite", "jetstream"])
def test_sigterm_leaves_no_pending_task(tmp_path: Path, keyring_path: Path, request: pytest.FixtureRequest,
                                        backend: str) -> None:
    store = {}
    if backend == "jetstream":  # the store's and the governance's NATS clients and watchers too
        store = {"backend": "jetstream", "servers": [request.getfixturevalue("nats_url")],
                 "prefix": f"gw{uuid.uuid4().hex[:10]}"}
    node = NodeProcess(tmp_path / "n", keyring_path, store=store).start()
    assert node.stop() == 0
    text = node.log_text()
    assert '"stopped"' in text
    assert "Task was destroyed but it is pending" not in text and "Traceback" not in text, text[-3000:]
    notes = {d["event"] for d in lines(node) if d["level"] != "info"}  # no error, no closing noise
    assert notes <= {"operator_keys_missing"}, text[-3000:]  # (cluster mode without operator keys)


def test_a_library_record_is_one_redacted_line_without_traceback() -> None:
    stream = io.StringIO()
    handler = JsonLineHandler(stream)
    log = logging.getLogger("somelib.client")
    log.addHandler(handler)
    log.propagate = False
    try:
        try:
            raise OSError("cannot reach nats://exg:s3cret@10.0.0.1:4222")
        except OSError:
            log.exception("connect failed for %s", "nats://exg:s3cret@10.0.0.1:4222")
    finally:
        log.removeHandler(handler)
        handler.close()
    [line] = stream.getvalue().splitlines()
    doc = json.loads(line)
    assert (doc["level"], doc["event"], doc["logger"]) == ("error", "log", "somelib.client")
    assert doc["message"] == "connect failed for nats://10.0.0.1:4222"
    assert doc["error"] == "OSError: cannot reach nats://10.0.0.1:4222"
    assert "s3cret" not in line and "Traceback" not in line
