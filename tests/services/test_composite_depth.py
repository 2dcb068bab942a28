"""Composite input and backend answers nested deeper than the node follows: a 400 naming
the limit (input) or text in the step's result (answer), never a 500."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import web
from svckit import PORTAL, free_port, grant_toml, running_node, service_toml

from gateway.nesting import MAX_DEPTH

SID = "SH/GOV/hrss/employment/register"
PATH = "/v1/composites/deep"


def nested(depth: int) -> Any:
    """A list nested ``depth`` levels deep (``[]`` is 1)."""
    doc: Any = []
    for _ in range(depth - 1):
        doc = [doc]
    return doc


def nested_json(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@contextlib.asynccontextmanager
async def agency(answer: bytes | None = None) -> AsyncIterator[tuple[str, list[bytes]]]:
    """A backend recording each body it gets; answers ``answer`` (or ``{"ok": true}``)."""
    seen: list[bytes] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append(await request.read())
        return web.Response(body=answer or b'{"ok":true}', content_type="application/json")

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        await runner.cleanup()


def catalog(url: str) -> str:
    return service_toml(SID, [url]) + grant_toml(PORTAL, SID, ["POST"]) + """
[[composites]]
id = "deep"
title = "Pass the input on"
consumers = ["SH/GOV/bdc/portal"]

[[composites.steps]]
name = "register"
service = "SH/GOV/hrss/employment/register"
path = "/registrations"
body = { data = "$input" }
"""


def depth_of(doc: Any) -> int:
    level = 0
    while isinstance(doc, list):
        level += 1
        doc = doc[0] if doc else None
    return level


async def test_input_nested_5000_deep_is_a_400_naming_the_limit(tmp_path: Path) -> None:
    async with agency() as (url, seen), running_node(tmp_path, catalog(url)) as n:
        r = await n.request(PORTAL, "POST", PATH, body=b'{"input":' + nested_json(5000) + b"}",
                            headers={"Content-Type": "application/json"})
        assert r.status == 400, r.body[:300]
        doc = r.json()
        assert doc["code"] == "client.bad_request" and str(MAX_DEPTH) in doc["detail"], doc
        assert doc["request_id"] == r.headers["X-Exchange-Request-Id"]
        assert seen == []


async def test_input_depth_limit_is_exact(tmp_path: Path) -> None:
    async with agency() as (url, seen), running_node(tmp_path, catalog(url)) as n:
        r = await n.request(PORTAL, "POST", PATH, json_body={"input": nested(MAX_DEPTH + 1)})
        assert r.status == 400 and str(MAX_DEPTH) in r.json()["detail"], r.body[:300]
        assert seen == []
        r = await n.request(PORTAL, "POST", PATH, json_body={"input": nested(MAX_DEPTH)})
        assert r.status == 200, r.body[:300]
        assert depth_of(json.loads(seen[0])["data"]) == MAX_DEPTH


async def test_backend_answer_nested_too_deep_is_kept_as_text(tmp_path: Path) -> None:
    for depth in (5000, MAX_DEPTH + 100):
        answer = nested_json(depth)
        async with agency(answer) as (url, seen), running_node(tmp_path / str(depth), catalog(url)) as n:
            r = await n.request(PORTAL, "POST", PATH, json_body={"input": {"id": "1"}})
            assert r.status == 200, (depth, r.body[:300])
            step = r.json()["steps"][0]
            assert step["status"] == "ok" and step["body"] == answer[:2000].decode(), step["body"][:80]
