"""Kit for services and governance tests: an in-process node on loopback with a small
catalog, real aiohttp backends, and signed raw requests."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import support
from aiohttp import web
from support import free_port as free_port  # re-exported for the services tests
from support import wait_until as wait_until  # re-exported

from gateway.app import Node
from gateway.config import load_node_config
from gateway.protocol import make_server
from gateway.server import load_state
from gateway.signing import Signer
from gateway.stores import open_store

PORTAL = "SH/GOV/bdc/portal"
OWNER = "SH/GOV/psb/hukou"
CONSUMER = "SH/GOV/hrss/employment"
LEGAL = "SH/GOV/sicenter/pension"
MEDICAL = "SH/GOV/medinsurance/accounts"
STRANGER = "SH/GOV/psb/traffic"
SUBSYSTEMS = [PORTAL, OWNER, CONSUMER, LEGAL, MEDICAL, STRANGER]

BASE_CATALOG = """
instance = "SH"
portals = ["SH/GOV/bdc/portal"]

[[members]]
id = "SH/GOV/bdc"
[[members]]
id = "SH/GOV/psb"
[[members]]
id = "SH/GOV/hrss"
[[members]]
id = "SH/GOV/sicenter"
[[members]]
id = "SH/GOV/medinsurance"

[[subsystems]]
id = "SH/GOV/bdc/portal"
[[subsystems]]
id = "SH/GOV/psb/hukou"
[[subsystems]]
id = "SH/GOV/psb/traffic"
[[subsystems]]
id = "SH/GOV/hrss/employment"
[[subsystems]]
id = "SH/GOV/sicenter/pension"
[[subsystems]]
id = "SH/GOV/medinsurance/accounts"

[[resources]]
id = "psb.id-card"
owner = "SH/GOV/psb/hukou"
sharing = "conditional"
personal = true
key = "id_number"
fields = { id_number = "str", name = "str", address = "str?" }

[[resources]]
id = "psb.vehicles"
owner = "SH/GOV/psb/hukou"
sharing = "conditional"
personal = true
key = "plate"
citizen = "owner_id"
fields = { plate = "str", owner_id = "str", model = "str" }

[[resources]]
id = "psb.stations"
owner = "SH/GOV/psb/hukou"
sharing = "open"
key = "code"
fields = { code = "str", name = "str" }

[[grants]]
consumer = "SH/GOV/hrss/employment"
resource = "psb.id-card"
fields = ["id_number", "name"]
purpose = "employment registration"

[[grants]]
consumer = "SH/GOV/hrss/employment"
resource = "psb.vehicles"
fields = ["*"]

[[grants]]
consumer = "SH/GOV/sicenter/pension"
resource = "psb.id-card"
fields = ["*"]
legal_basis = "Social Insurance Law art. 58"

[[grants]]
consumer = "SH/GOV/bdc/portal"
resource = "psb.id-card"
fields = ["*"]
"""


def write_keyring(path: Path, clients: list[str] | None = None, *, citizen_key: str | None = None,
                  keys: dict[str, tuple[str, str]] | None = None) -> dict[str, tuple[str, str]]:
    """A keyring file (mode 0600) with fresh keys for ``clients`` (SUBSYSTEMS), or ``keys``,
    and, when given, the cluster's ``citizen_key``."""
    return support.write_keyring(path, clients or SUBSYSTEMS, citizen_key=citizen_key, keys=keys)


@dataclass
class Reply:
    status: int
    headers: Any
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class RunningNode:
    """A node served on 127.0.0.1 with its files; ``request`` sends signed raw requests."""

    node: Node
    url: str
    keys: dict[str, tuple[str, str]]
    dir: Path
    session: aiohttp.ClientSession
    runner: web.ServerRunner
    extra: dict[str, Any] = field(default_factory=dict)

    def signer(self, client: str) -> Signer:
        kid, sec = self.keys[client]
        return Signer(kid, sec, client)

    async def request(self, client: str | None, method: str, path: str, *, query: str = "",
                      body: bytes | None = None, json_body: Any = None,
                      headers: dict[str, str] | None = None, idempotency: bool = True,
                      unsigned: dict[str, str] | None = None) -> Reply:
        """``headers`` are signed with the request (v2), ``unsigned`` added after signing; a
        POST gets a fresh Idempotency-Key unless ``headers`` has one or ``idempotency`` is False."""
        if json_body is not None:
            body = json.dumps(json_body).encode()
        body = body or b""
        hdrs: dict[str, str] = {"Content-Type": "application/json"} if json_body is not None else {}
        hdrs.update(headers or {})
        if method == "POST" and idempotency and not any(k.lower() == "idempotency-key" for k in hdrs):
            hdrs["Idempotency-Key"] = uuid.uuid4().hex
        if client is not None:
            hdrs = self.signer(client).headers(method, path, query, body, headers=hdrs)
        hdrs.update(unsigned or {})
        url = self.url + path + ("?" + query if query else "")
        from yarl import URL

        async with self.session.request(method, URL(url, encoded=True), data=body or None,
                                        headers=hdrs, skip_auto_headers=("Content-Type",)) as r:
            return Reply(r.status, r.headers, await r.read())

    async def push(self, resource: str, records: list[dict[str, Any]], client: str = OWNER) -> Reply:
        r = await self.request(client, "POST", f"/v1/resources/{resource}/records",
                               json_body={"records": records})
        assert r.status == 200, r.body
        return r


@contextlib.asynccontextmanager
async def running_node(tmp: Path, extra_catalog: str = "", *, audit: bool = True,
                       audit_queue: int | None = None, base: str = BASE_CATALOG,
                       store: str = '[store]\nsynchronous = "NORMAL"\n', keys: dict | None = None,
                       citizen_key: str | None = None, **deliverer: Any) -> AsyncIterator[RunningNode]:
    """Start a node (sqlite store in ``tmp``) with ``base`` (BASE_CATALOG) + ``extra_catalog``;
    ``citizen_key`` (hex) goes into its keyring (nodes on one JetStream need the same one)."""
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "catalog.toml").write_text(base + extra_catalog)
    import tomllib

    clients = [s["id"] for s in tomllib.loads(base + extra_catalog).get("subsystems", [])]
    if citizen_key is None and "jetstream" in store:
        citizen_key = secrets.token_hex(32)  # cluster mode needs one in the keyring
    keys = write_keyring(tmp / "keyring.toml", clients, citizen_key=citizen_key, keys=keys)
    port = free_port()
    (tmp / "node.toml").write_text(
        f'[node]\nlisten = "127.0.0.1:{port}"\ncatalog = "catalog.toml"\nkeyring = "keyring.toml"\n'
        f'data_dir = "data"\naccess_log = false\n' + store)
    cfg = load_node_config(tmp / "node.toml")
    node = Node(cfg, load_state(cfg), open_store(cfg), audit=audit)
    if audit_queue is not None and node.audit is not None:
        node.audit.queue = asyncio.Queue(maxsize=audit_queue)
    for k, v in deliverer.items():
        setattr(node.webhooks, k, v)
    await node.start()
    runner = web.ServerRunner(make_server(node), handle_signals=False, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    session = aiohttp.ClientSession()
    try:
        yield RunningNode(node, f"http://127.0.0.1:{port}", keys, tmp, session, runner)
    finally:
        await session.close()
        await runner.cleanup()
        await node.stop()


@contextlib.asynccontextmanager
async def backend(routes: Callable[[web.Application], None] | None = None,
                  middleware: Callable[[web.Request], Awaitable[None]] | None = None
                  ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """A real aiohttp backend on loopback: /echo/..., /slow, /status/{n}, /healthz (toggle)."""
    state: dict[str, Any] = {"healthy": True, "calls": [], "delay": 0.0, "fail": 0}

    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        state["calls"].append(request.raw_path)
        if state["fail"] > 0:
            state["fail"] -= 1
            return web.Response(status=503, text="backend busy")
        if state["delay"]:
            await asyncio.sleep(state["delay"])
        return web.json_response({"method": request.method, "raw_path": request.raw_path,
                                  "path": request.path, "headers": dict(request.headers),
                                  "body": body.decode(errors="replace"), "port": request.url.port},
                                 headers={"X-Backend": "yes", "Set-Cookie": "a=1"})

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(float(request.query.get("s", "5")))
        return web.Response(text="late")

    async def status(request: web.Request) -> web.Response:
        n = int(request.match_info["n"])
        return web.Response(status=n, text=f"backend says {n}", headers={"X-Backend-Error": "1"})

    async def health(request: web.Request) -> web.Response:
        return web.Response(status=200 if state["healthy"] else 503)

    async def stream(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        for i in range(int(request.query.get("n", "5"))):
            await resp.write(f"chunk{i}\n".encode())
        await resp.write_eof()
        return resp

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_get("/healthz", health)
    app.router.add_get("/slow", slow)
    app.router.add_get("/stream", stream)
    app.router.add_route("*", "/status/{n}", status)
    app.router.add_route("*", "/{tail:.*}", echo)
    if routes:
        routes(app)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    state["port"] = port
    try:
        yield f"http://127.0.0.1:{port}", state
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def raw_server(behaviour: str) -> AsyncIterator[str]:
    """A TCP server that misbehaves: ``reset`` (RST at once), ``garbage`` (not HTTP), ``hang``."""
    import struct

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            if behaviour == "reset":
                sock = writer.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.transport.abort()
                return
            if behaviour == "garbage":
                writer.write(b"SURPRISE \x00\x01 this is not HTTP\r\n\r\n")
                await writer.drain()
                await asyncio.sleep(0.05)
            if behaviour == "hang":
                await asyncio.sleep(30)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        for t in list(getattr(server, "_clients", ()) or ()):
            t.close()
        await server.wait_closed()


def service_toml(sid: str, backends: list[str] | list[tuple[str, int]], **opts: Any) -> str:
    """A [[services]] block."""
    bs = ", ".join(f'{{ url = "{b}" }}' if isinstance(b, str) else f'{{ url = "{b[0]}", weight = {b[1]} }}'
                   for b in backends)
    lines = ["", "[[services]]", f'id = "{sid}"', f"backends = [{bs}]"]
    for k, v in opts.items():
        if isinstance(v, dict):
            inner = ", ".join(f"{ik} = {json.dumps(iv)}" for ik, iv in v.items())
            lines.append(f"{k} = {{ {inner} }}")
        else:
            lines.append(f"{k} = {json.dumps(v)}")
    return "\n".join(lines) + "\n"


def grant_toml(consumer: str, service: str, methods: list[str] | None = None,
               paths: list[str] | None = None) -> str:
    return (f'\n[[service_grants]]\nconsumer = "{consumer}"\nservice = "{service}"\n'
            f"methods = {json.dumps(methods or ['GET', 'POST', 'PUT', 'DELETE', 'HEAD'])}\n"
            f"paths = {json.dumps(paths or ['/'])}\n")
