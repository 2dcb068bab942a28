"""What a backend can trust: the identity headers of a proxied call come from the node
(the authenticated caller, the node's request id), never from the caller."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import web
from multidict import CIMultiDict
from svckit import PORTAL, free_port, grant_toml, running_node, service_toml

SID = "SH/GOV/hrss/employment/register"
BASE = f"/v1/services/{SID}"
FORGED = "SH/GOV/psb/hukou"  # a subsystem the caller is not


@contextlib.asynccontextmanager
async def recorder() -> AsyncIterator[tuple[str, list[list[tuple[str, str]]]]]:
    """A backend answering 200 and keeping every request's headers, repeats included."""
    seen: list[list[tuple[str, str]]] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append([(k.lower(), v) for k, v in request.headers.items()])
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        await runner.cleanup()


def values(headers: list[tuple[str, str]], name: str) -> list[str]:
    return [v for k, v in headers if k == name]


async def test_backend_sees_only_the_node_asserted_identity(tmp_path: Path) -> None:
    async with recorder() as (url, seen), running_node(
        tmp_path, service_toml(SID, [url]) + grant_toml(PORTAL, SID)
    ) as n:
        path = BASE + "/who"
        body = b'{"a":1}'
        forged: dict[str, Any] = {
            "X-Exchange-Composite": "flexible-employment",
            "X-Exchange-Step": "register",
            "X-Exchange-Request-Id": "forged-id",
            "X-Exchange-Delivery": "forged",
            "X-Exchange-Subscription": "forged",
            "X-Exchange-Signature": "forged",
            "Forwarded": "for=10.9.9.9;by=gateway",
            "X-Forwarded-For": "10.9.9.9",
            "X-Forwarded-Host": "evil.example",
            "X-Forwarded-Proto": "https",
            "X-Real-IP": "10.9.9.9",
            "Via": "1.1 forged-proxy",
        }
        forged.update({"Content-Type": "application/json", "X-Exchange-Purpose": "employment",
                       "X-Exchange-UserId": "citizen-1", "X-Exchange-Id": "corr-7", "Idempotency-Key": "who-1"})
        # The caller signs its forgeries (it is authenticated); the proxy still drops them.
        headers: CIMultiDict[str] = CIMultiDict(n.signer(PORTAL).headers("POST", path, "", body, headers=forged))
        twice = headers.copy()
        twice.add("X-Exchange-Client", FORGED)  # a second identity after the signed one
        async with n.session.post(n.url + path, data=body, headers=twice) as r:
            assert r.status == 401, await r.text()
            assert "X-Exchange-Client" in (await r.json())["detail"]
        async with n.session.post(n.url + path, data=body, headers=headers) as r:
            assert r.status == 200, await r.text()
            request_id = r.headers["X-Exchange-Request-Id"]
        (got,) = seen
        assert values(got, "x-exchange-client") == [PORTAL]
        assert values(got, "x-exchange-request-id") == [request_id]
        assert values(got, "x-forwarded-for") == ["127.0.0.1"]
        assert values(got, "via") == ["1.1 onestop-exchange"]
        for name in ("x-exchange-composite", "x-exchange-step", "x-exchange-delivery",
                     "x-exchange-subscription", "x-exchange-signature", "x-exchange-date",
                     "forwarded", "x-forwarded-host", "x-forwarded-proto", "x-real-ip", "authorization"):
            assert values(got, name) == [], (name, got)
        # The caller's own assertions pass, once each.
        assert values(got, "x-exchange-purpose") == ["employment"]
        assert values(got, "x-exchange-userid") == ["citizen-1"]
        assert values(got, "x-exchange-id") == ["corr-7"]


async def test_non_latin1_header_on_a_service_call_is_400_and_not_forwarded(tmp_path: Path) -> None:
    async with recorder() as (url, seen), running_node(
        tmp_path, service_toml(SID, [url]) + grant_toml(PORTAL, SID)
    ) as n:
        path = BASE + "/who"
        signed = "".join(f"{k}: {v}\r\n" for k, v in n.signer(PORTAL).headers("GET", path, "", b"").items())
        head = (f"GET {path} HTTP/1.1\r\nHost: x\r\n{signed}").encode() + (
            "X-Exchange-Purpose: 灵活就业登记\r\n\r\n".encode())
        port = int(n.url.rsplit(":", 1)[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(head)
            async with asyncio.timeout(10):
                lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
                length = next(int(x.split(":")[1]) for x in lines if x.lower().startswith("content-length:"))
                reply = await reader.readexactly(length)
        finally:
            writer.close()
        assert lines[0].split()[1] == "400", (lines[0], reply[:300])
        doc = json.loads(reply)
        assert doc["code"] == "client.bad_request" and "X-Exchange-Purpose" in doc["detail"], doc
        assert seen == []
