"""Webhook egress on a node subprocess: callback URLs must be allow-listed per consumer
([[webhook_targets]]), internal addresses are refused, redirects are not followed, and
``last_error`` is a coarse class, never what the peer sent."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from gwkit import CATALOG, GRANTED, ID_CARD, NodeProcess, Raw, assert_problem, id_card, wait_until
from support import free_port

from gateway.governance.egress import FAILURE_CLASSES
from gateway.keyring import Keyring

SUBSCRIBE = f"/v1/resources/{ID_CARD}/subscriptions"
NATS = ("127.0.0.1", 4222)
LEAKS = re.compile(r"NATS|INFO|server_id|SURPRISE|\d+\.\d+\.\d+\.\d+|::|\s")


def _target(url_prefix: str, *, private: bool) -> str:
    return (f'\n[[webhook_targets]]\nconsumer = "{GRANTED}"\nurl_prefix = "{url_prefix}"\n'
            f"allow_http = true\nallow_private = {'true' if private else 'false'}\n")


@pytest.fixture(scope="module")
def egress(make_node: Callable[..., NodeProcess], tmp_path_factory: pytest.TempPathFactory
           ) -> tuple[NodeProcess, dict[str, int]]:
    """A node whose catalog allows the employment subsystem a few loopback endpoints."""
    ports = {name: free_port() for name in ("banner", "web", "closed", "internal")}
    extra = "".join([
        _target(f"http://127.0.0.1:{ports['banner']}/", private=True),
        _target(f"http://127.0.0.1:{ports['web']}/", private=True),
        _target(f"https://127.0.0.1:{ports['web']}/tls/", private=True),
        _target(f"http://127.0.0.1:{ports['closed']}/", private=True),
        _target(f"http://{NATS[0]}:{NATS[1]}/", private=True),  # an operator's mistake, say
        _target(f"http://localhost:{ports['web']}/", private=False),  # a name: checked at delivery
    ])
    catalog = tmp_path_factory.mktemp("egress") / "catalog.toml"
    catalog.write_text(CATALOG.read_text() + extra)
    return make_node(catalog=catalog), ports


@pytest.fixture
async def eraw(egress: tuple[NodeProcess, dict[str, int]], keyring: Keyring) -> AsyncIterator[Raw]:
    async with aiohttp.ClientSession() as session:
        yield Raw(session, egress[0].url, keyring)


@contextlib.asynccontextmanager
async def web_endpoint(port: int, internal: int) -> AsyncIterator[dict[str, list[str]]]:
    """Answers by path: /500 and /404 with telltale bodies, /redirect to an internal address;
    everything else 204. Records the paths it was asked for (``hits``), and the internal
    server's (``internal``)."""
    seen: dict[str, list[str]] = {"hits": [], "internal": []}

    async def hook(request: web.Request) -> web.Response:
        seen["hits"].append(request.path)
        if request.path == "/500":
            return web.Response(status=500, text="NATS INFO from 10.0.0.7 Traceback")
        if request.path == "/404":
            return web.Response(status=404, text="no such hook at 10.0.0.7")
        if request.path == "/redirect":
            raise web.HTTPTemporaryRedirect(f"http://127.0.0.1:{internal}/steal")
        return web.Response(status=204)

    async def steal(request: web.Request) -> web.Response:
        seen["internal"].append(request.path)
        return web.Response(status=204)

    runners = []
    for p, handler in ((port, hook), (internal, steal)):
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", p).start()
        runners.append(runner)
    try:
        yield seen
    finally:
        for r in runners:
            await r.cleanup()


@contextlib.asynccontextmanager
async def banner_endpoint(port: int) -> AsyncIterator[None]:
    """Talks like NATS: an INFO banner with internal details the moment a client connects."""

    async def talk(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b'INFO {"server_id":"NATS-SURPRISE","host":"10.0.0.7","port":4222,"version":"2.9.0"}\r\n')
        with contextlib.suppress(Exception):
            await writer.drain()
            await asyncio.wait_for(reader.read(65536), 2)
        writer.close()

    server = await asyncio.start_server(talk, "127.0.0.1", port)
    try:
        yield
    finally:
        server.close()


async def subscribe(raw: Raw, url: str) -> str:
    r = await raw.request("POST", SUBSCRIBE, json_body={"url": url}, client=GRANTED)
    assert r.status == 201, r.body
    return r.json()["id"]


async def last_error(raw: Raw, sid: str) -> str:
    """Push a record and wait for the subscription's first failure; answers ``last_error``
    (and deletes the subscription, which stops its retries)."""
    assert (await raw.push(ID_CARD, [id_card()])).status == 200
    doc: dict[str, Any] = {}

    async def failed() -> bool:
        doc.update((await raw.request("GET", f"/v1/subscriptions/{sid}", client=GRANTED)).json())
        return bool(doc["last_error"])

    await wait_until(failed, timeout=30)
    assert (await raw.request("DELETE", f"/v1/subscriptions/{sid}", client=GRANTED)).status == 200
    assert doc["last_error"] in FAILURE_CLASSES and not LEAKS.search(doc["last_error"]), doc["last_error"]
    return doc["last_error"]


# -- subscribe time --------------------------------------------------------------------


async def test_internal_callback_urls_are_refused_at_subscribe(raw: Raw) -> None:
    """The shared node, sample catalog: employment may only use https://hrss.example/exchange/
    (and a local development receiver)."""
    not_allowed = [
        "http://127.0.0.1:4222/", "http://localhost:4222/", "http://[::ffff:127.0.0.1]:4222/",
        "http://169.254.169.254/latest/meta-data/", "http://[fd00:ec2::254]/", "http://10.0.1.5:9101/psb/identity",
        "http://hrss.example/exchange/",  # http where the entry says https
        "https://hrss.example:8443/exchange/", "https://hrss.example/exchangeX", "https://hrss.example/",
        "https://hrss.example.attacker.test/exchange/", "https://attacker.test/hrss.example/exchange/",
        "http://127.0.0.1:9102/hooksevil",
    ]
    for url in not_allowed:
        r = await raw.request("POST", SUBSCRIBE, json_body={"url": url}, client=GRANTED)
        doc = assert_problem(r, 403, "client.access_denied")
        assert "webhook target" in doc["detail"] and GRANTED in doc["detail"], doc
        assert "4222" not in doc["detail"] and "NATS" not in doc["detail"]
    malformed = [
        "https://hrss.example/exchange/../admin", "https://hrss.example/exchange/%2e%2e/admin",
        "https://hrss.example/exchange/%2fadmin", "https://u:p@hrss.example/exchange/",
        "https://hrss.example/exchange/#frag", "gopher://hrss.example/exchange/", "http://2130706433:4222/",
        "https://hrss.example/exchange/\u00e9",
    ]
    for url in malformed:
        r = await raw.request("POST", SUBSCRIBE, json_body={"url": url}, client=GRANTED)
        assert_problem(r, 422, "client.validation_failed")
    mine = (await raw.request("GET", "/v1/subscriptions", client=GRANTED)).json()["subscriptions"]
    assert not [s for s in mine if s["url"] in not_allowed + malformed]
    sid = await subscribe(raw, "https://hrss.example/exchange/id-card?tenant=7")  # allowed
    assert (await raw.request("DELETE", f"/v1/subscriptions/{sid}", client=GRANTED)).status == 200


# -- delivery time ---------------------------------------------------------------------


async def test_a_name_resolving_to_loopback_is_refused_at_delivery(
        egress: tuple[NodeProcess, dict[str, int]], eraw: Raw) -> None:
    ports = egress[1]
    async with web_endpoint(ports["web"], ports["internal"]) as seen:
        sid = await subscribe(eraw, f"http://localhost:{ports['web']}/ok")  # allow-listed, no allow_private
        assert await last_error(eraw, sid) == "refused_address"
        assert seen["hits"] == []  # never connected
        sid = await subscribe(eraw, f"http://127.0.0.1:{ports['web']}/500")  # same endpoint, allow_private
        assert await last_error(eraw, sid) == "http_5xx"
        assert "/500" in seen["hits"]


async def test_redirects_are_not_followed(egress: tuple[NodeProcess, dict[str, int]], eraw: Raw) -> None:
    ports = egress[1]
    async with web_endpoint(ports["web"], ports["internal"]) as seen:
        sid = await subscribe(eraw, f"http://127.0.0.1:{ports['web']}/redirect")
        assert await last_error(eraw, sid) == "http_3xx"
        assert "/redirect" in seen["hits"] and seen["internal"] == []


async def test_last_error_never_shows_what_the_peer_sent(
        egress: tuple[NodeProcess, dict[str, int]], eraw: Raw) -> None:
    node, ports = egress
    async with banner_endpoint(ports["banner"]), web_endpoint(ports["web"], ports["internal"]):
        assert await last_error(eraw, await subscribe(eraw, f"http://127.0.0.1:{ports['banner']}/")) == "bad_response"
        assert await last_error(eraw, await subscribe(eraw, f"http://127.0.0.1:{ports['web']}/404")) == "http_4xx"
        assert await last_error(eraw, await subscribe(eraw, f"http://127.0.0.1:{ports['closed']}/x")) == "connect_failed"
        tls = await subscribe(eraw, f"https://127.0.0.1:{ports['web']}/tls/hook")  # TLS to a plain HTTP server
        assert await last_error(eraw, tls) == "tls_error"
    with socket.socket() as s:
        nats_up = s.connect_ex(NATS) == 0
    if nats_up:  # the finding itself: the real NATS banner never reaches the subscriber
        assert await last_error(eraw, await subscribe(eraw, "http://127.0.0.1:4222/")) == "bad_response"
    await node_logged_no_banner(node)


async def node_logged_no_banner(node: NodeProcess) -> None:
    text = node.log_text()
    assert "webhook_failed" in text
    assert "NATS-SURPRISE" not in text and "10.0.0.7" not in text and "server_id" not in text


async def test_audit_records_the_class_only(egress: tuple[NodeProcess, dict[str, int]], eraw: Raw) -> None:
    """Deliveries are audited with the same coarse class (python -m gateway audit export)."""
    import subprocess
    import sys

    node, ports = egress
    async with banner_endpoint(ports["banner"]):
        assert await last_error(eraw, await subscribe(eraw, f"http://127.0.0.1:{ports['banner']}/a")) == "bad_response"

    def export() -> str:
        r = subprocess.run([sys.executable, "-m", "gateway", "audit", "export", "--config", str(node.config)],
                           cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        return r.stdout

    async def audited() -> bool:
        return any(json.loads(line).get("detail") == "bad_response" for line in (await asyncio.to_thread(export)).splitlines())

    await wait_until(audited, timeout=20)
    out = await asyncio.to_thread(export)
    assert "NATS-SURPRISE" not in out and "10.0.0.7" not in out
