"""A hostile network against a real node: stalled bodies, slow or partial request heads,
connection floods from one address, header values that are not Latin-1, and pushes nested
deeper than the decoder follows. Every test talks HTTP over loopback sockets.

The attacking sockets connect from 127.0.0.2 (any 127/8 address is loopback on Linux) so
that the per-address connection cap tells them apart from the probes sent from 127.0.0.1,
the way a load balancer's health checks come from another address than an attacker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest
from gwkit import (
    ID_CARD,
    OWNER,
    NodeProcess,
    Raw,
    assert_problem,
    id_card,
    raw_http,
    wait_until,
)

from gateway.keyring import Keyring

ATTACKER = "127.0.0.2"
RECORDS = f"/v1/resources/{ID_CARD}/records"
UNSIGNED_POST = (
    f"POST {RECORDS} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    "Content-Length: 100\r\n\r\n"
).encode()


def signed_head(raw: Raw, body: bytes, length: int | None = None) -> bytes:
    """A POST head whose signature headers pass the checks made before the body is read
    (client, date, key id, signed headers): what an attacker knowing a key id can send."""
    h = raw.sign("POST", RECORDS, "", body, headers={"Content-Type": "application/json",
                                                      "Idempotency-Key": uuid.uuid4().hex})
    return (f"POST {RECORDS} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body) if length is None else length}\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in h.items()) + "\r\n").encode()


def stalled_post(raw: Raw) -> bytes:
    """The head of a POST whose 100-byte body never comes."""
    return signed_head(raw, b"x" * 100)
CLOSED_WITHIN_S = 15.0  # generous bound for "the node closed it" (timeouts here are 1 to 5 s)

Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def connect(port: int, source: str = ATTACKER) -> Conn:
    return await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))


@contextlib.asynccontextmanager
async def sockets(port: int, n: int, first: bytes = b"") -> AsyncIterator[list[Conn]]:
    """``n`` attacker connections, each having sent ``first``; all closed on exit."""
    conns: list[Conn] = []
    try:
        for _ in range(n):
            r, w = await connect(port)
            conns.append((r, w))
            if first:
                w.write(first)
        yield conns
    finally:
        for _, w in conns:
            w.close()


async def closed_by_node(reader: asyncio.StreamReader, within: float = CLOSED_WITHIN_S) -> bytes:
    """Read until the node closes the connection; fail when it is still open after ``within`` s."""
    data = b""
    try:
        async with asyncio.timeout(within):
            while chunk := await reader.read(65536):
                data += chunk
    except ConnectionResetError:
        pass
    except TimeoutError:
        raise AssertionError(f"connection still open after {within} s (got {data[:200]!r})") from None
    return data


async def read_response(reader: asyncio.StreamReader, within: float = 10.0) -> tuple[int, bytes]:
    """One HTTP/1.1 response with a Content-Length: (status, body)."""
    async with asyncio.timeout(within):
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        length = next(int(ln.split(":", 1)[1]) for ln in lines if ln.lower().startswith("content-length:"))
        return int(lines[0].split()[1]), await reader.readexactly(length)


async def metric(raw: Raw, name: str) -> float:
    """A sample of the node's /metrics (0 when absent, e.g. a counter never incremented)."""
    r = await raw.request("GET", "/metrics", signed=False)
    assert r.status == 200, r.body[:200]
    for line in r.body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


async def node_is_full_or_reading(raw: Raw, n: int) -> bool:
    """The stalled requests have all reached the node: its ops routes are refused (how the
    node behaved before the fix) or ``n`` bodies are being waited for."""
    r = await raw.request("GET", "/healthz", signed=False)
    if r.status == 503:
        return True
    return await metric(raw, "exchange_body_reads") >= n


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


# -- 1. stalled bodies ------------------------------------------------------------------


async def test_stalled_bodies_hold_no_slot_and_ops_routes_answer(
    make_node: Callable[..., NodeProcess], keyring: Keyring, session: aiohttp.ClientSession
) -> None:
    """32 sockets sending only the head of a POST no longer fill ``max_inflight = 32``:
    /healthz, /readyz, /metrics and signed requests are answered while they stall."""
    n = make_node(limits={"max_inflight": 32})
    raw = Raw(session, n.url, keyring)
    async with sockets(n.port, 64, stalled_post(raw)):
        await wait_until(lambda: node_is_full_or_reading(raw, 64), timeout=20)
        for path in ("/healthz", "/readyz", "/metrics"):
            r = await raw.request("GET", path, signed=False)
            assert r.status == 200, (path, r.status, r.body[:200])
        r = await raw.request("GET", "/v1/catalog")
        assert r.status == 200, r.body[:200]
        assert await metric(raw, "exchange_body_reads") >= 64


async def test_a_thousand_stalled_bodies_do_not_fail_health_checks(
    make_node: Callable[..., NodeProcess], keyring: Keyring, session: aiohttp.ClientSession
) -> None:
    """The finding on default limits: 1,024 stalled POST heads from one address. Past the
    per-address cap (256) connections are closed at once; /healthz and /readyz stay 200.
    (body_timeout_s is raised so that no stalled body is answered while the test runs.)"""
    n = make_node(limits={"body_timeout_s": 120.0})
    raw = Raw(session, n.url, keyring)
    async with sockets(n.port, 1024, stalled_post(raw)) as conns:
        await wait_until(lambda: node_is_full_or_reading(raw, 256), timeout=30)
        for path in ("/healthz", "/readyz"):
            r = await raw.request("GET", path, signed=False)
            assert r.status == 200, (path, r.status, r.body[:200])
        assert await metric(raw, "exchange_body_reads") == 256
        # Every connection over the cap was closed by the node without an answer.
        refused = await asyncio.gather(*(closed_by_node(r, 10) for r, _ in conns[256:]))
        assert refused == [b""] * 768
        assert await metric(raw, 'exchange_connections_refused_total{reason="per_address"}') >= 768


async def test_stalled_body_is_answered_400_within_body_timeout(node: NodeProcess, raw: Raw) -> None:
    """On default limits a body that stops coming is answered after body_timeout_s (5 s),
    not client_timeout_s (30 s), and the connection is then closed."""
    body = json.dumps({"records": [{"key": "1", "data": {}}]}).encode()
    head = signed_head(raw, body)
    reader, writer = await connect(node.port, "127.0.0.1")
    try:
        t0 = time.monotonic()
        writer.write(head + body[:10])
        status, reply = await read_response(reader, within=12)
        assert status == 400, reply
        doc = json.loads(reply)
        assert doc["code"] == "client.bad_request" and "body_timeout_s" in doc["detail"], doc
        assert time.monotonic() - t0 < 12
        assert await closed_by_node(reader) == b""
    finally:
        writer.close()


async def test_deprecated_client_timeout_is_logged_and_does_not_extend_the_body_deadline(
    make_node: Callable[..., NodeProcess], keyring: Keyring, session: aiohttp.ClientSession
) -> None:
    n = make_node(limits={"client_timeout_s": 30.0, "body_timeout_s": 1.0})
    assert '"config_deprecated"' in n.log_text() and "limits.client_timeout_s" in n.log_text()
    reader, writer = await connect(n.port, "127.0.0.1")
    try:
        writer.write(stalled_post(Raw(session, n.url, keyring)) + b"{")
        status, reply = await read_response(reader, within=CLOSED_WITHIN_S)
        assert status == 400 and "within 1 s" in json.loads(reply)["detail"], reply
    finally:
        writer.close()


async def test_an_unsigned_head_is_refused_before_its_body(node: NodeProcess) -> None:
    """Without valid signature headers a POST costs no body read: 401 at once, though its
    body has not come (signature headers are checked first)."""
    reader, writer = await connect(node.port, "127.0.0.1")
    try:
        writer.write(UNSIGNED_POST)
        status, reply = await read_response(reader, within=3)
        assert status == 401 and json.loads(reply)["code"] == "client.unauthenticated", reply
    finally:
        writer.close()


# -- 2. slow request heads --------------------------------------------------------------


@pytest.fixture(scope="module")
def head_node(make_node: Callable[..., NodeProcess]) -> NodeProcess:
    """header_timeout_s = 1 s; body_timeout_s = 3 s."""
    return make_node(limits={"header_timeout_s": 1.0, "body_timeout_s": 3.0})


@pytest.fixture
async def head_raw(head_node: NodeProcess, keyring: Keyring) -> AsyncIterator[Raw]:
    async with aiohttp.ClientSession() as s:
        yield Raw(s, head_node.url, keyring)


GET_HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
PARTIAL_HEAD = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: "


@pytest.mark.parametrize(
    "sent",
    [b"", PARTIAL_HEAD, b"G", GET_HEALTHZ + PARTIAL_HEAD],
    ids=["nothing", "partial-head", "one-byte", "pipelined-partial-head"],
)
async def test_incomplete_request_head_is_closed_after_header_timeout(
    head_node: NodeProcess, sent: bytes
) -> None:
    reader, writer = await connect(head_node.port)
    try:
        writer.write(sent)
        data = await closed_by_node(reader)
        if sent.startswith(GET_HEALTHZ):  # the complete request was answered first
            assert data.startswith(b"HTTP/1.1 200 "), data[:200]
            assert data.count(b"HTTP/1.1 ") == 1
        else:
            assert data == b""
    finally:
        writer.close()


async def test_partial_head_is_closed_on_default_limits(node: NodeProcess) -> None:
    """With default limits (header_timeout_s = 10 s) a partial head is closed in seconds,
    not held for aiohttp's keep-alive timeout (an hour)."""
    reader, writer = await connect(node.port)
    try:
        t0 = time.monotonic()
        writer.write(PARTIAL_HEAD)
        assert await closed_by_node(reader, within=25) == b""
        assert time.monotonic() - t0 >= 9  # the default, not a shorter guard
    finally:
        writer.close()


async def test_trickled_request_head_is_closed(head_node: NodeProcess) -> None:
    """A head that keeps coming a byte at a time but never completes is cut off."""
    reader, writer = await connect(head_node.port)

    async def trickle() -> None:
        for b in (PARTIAL_HEAD + b"x" * 1000):
            writer.write(bytes([b]))
            await asyncio.sleep(0.1)  # the attacker's pace, not a wait for the node

    sender = asyncio.create_task(trickle())
    try:
        assert await closed_by_node(reader) == b""
        assert not sender.done()  # cut off while it was still trickling
    finally:
        sender.cancel()
        writer.close()


async def test_next_head_on_a_kept_alive_connection_is_timed(head_node: NodeProcess) -> None:
    reader, writer = await connect(head_node.port)
    try:
        writer.write(GET_HEALTHZ)
        assert (await read_response(reader))[0] == 200
        writer.write(PARTIAL_HEAD)
        assert await closed_by_node(reader) == b""
    finally:
        writer.close()


async def test_idle_kept_alive_connection_is_not_cut_by_the_header_timer(
    head_node: NodeProcess,
) -> None:
    """An idle connection (no byte of a next request) is left to keepalive_timeout: it is
    still served after a slow-head connection opened later was closed."""
    idle_r, idle_w = await connect(head_node.port)
    slow_r, slow_w = await connect(head_node.port)
    try:
        idle_w.write(GET_HEALTHZ)
        assert (await read_response(idle_r))[0] == 200
        slow_w.write(PARTIAL_HEAD)
        assert await closed_by_node(slow_r) == b""  # more than header_timeout_s has passed
        idle_w.write(GET_HEALTHZ)
        assert (await read_response(idle_r))[0] == 200
    finally:
        idle_w.close()
        slow_w.close()


async def test_request_taking_longer_than_header_timeout_is_answered(head_raw: Raw) -> None:
    """The header timer stops once the head is complete: a 3 s long-poll is answered."""
    res = await head_raw.push(ID_CARD, [id_card()])
    assert res.status == 200, res.body
    t0 = time.monotonic()
    r = await head_raw.request("GET", RECORDS, query=f"after={res.json()['last']}&wait=3")
    assert r.status == 200 and r.json()["records"] == [], r.body[:200]
    assert time.monotonic() - t0 >= 2.5


async def test_slow_body_is_a_body_timeout_not_a_header_timeout(
    head_node: NodeProcess, head_raw: Raw
) -> None:
    """A complete head with a body trickling past header_timeout_s is answered 400 once
    body_timeout_s (3 s) has passed; the header timer does not cut it silently."""
    body = json.dumps({"records": [id_card()]}).encode()
    head = signed_head(head_raw, body)
    reader, writer = await connect(head_node.port)

    async def trickle() -> None:
        writer.write(head)
        for b in body[:-1]:
            writer.write(bytes([b]))
            await asyncio.sleep(0.1)  # the client's pace

    sender = asyncio.create_task(trickle())
    try:
        status, reply = await read_response(reader, within=CLOSED_WITHIN_S)
        assert status == 400 and "body_timeout_s" in json.loads(reply)["detail"], reply
    finally:
        sender.cancel()
        writer.close()


# -- 3. connections per address ---------------------------------------------------------


async def test_connections_per_address_are_capped(
    make_node: Callable[..., NodeProcess], keyring: Keyring, session: aiohttp.ClientSession
) -> None:
    n = make_node(limits={"max_connections_per_ip": 4, "header_timeout_s": 60.0})
    raw = Raw(session, n.url, keyring)
    held = [await connect(n.port) for _ in range(4)]
    try:
        for r, w in held:  # each is registered and served
            w.write(GET_HEALTHZ)
            assert (await read_response(r))[0] == 200
        r5, w5 = await connect(n.port)
        try:
            w5.write(GET_HEALTHZ)
            assert await closed_by_node(r5, within=5) == b""  # at once, far below header_timeout_s
        finally:
            w5.close()
        # Another address is served; so is this one once a connection is given back.
        assert (await raw.request("GET", "/healthz", signed=False)).status == 200
        held.pop()[1].close()

        async def accepted() -> bool:
            r, w = await connect(n.port)
            try:
                w.write(GET_HEALTHZ)
                return (await read_response(r, within=5))[0] == 200
            except (asyncio.IncompleteReadError, ConnectionError):
                return False
            finally:
                w.close()

        await wait_until(accepted)
        assert await metric(raw, 'exchange_connections_refused_total{reason="per_address"}') >= 1
    finally:
        for _, w in held:
            w.close()


# -- 5. header values that are not Latin-1 ----------------------------------------------

BAD_VALUES = {
    "utf8-cjk": "出于就业登记".encode(),
    "invalid-utf8": b"\xff\xfe",
    "emoji": "\U0001f600".encode(),
}


@pytest.mark.parametrize("value", sorted(BAD_VALUES))
@pytest.mark.parametrize(
    "route",
    ["GET /healthz", "GET /v1/catalog", f"GET {RECORDS}", f"POST {RECORDS}", "GET /nope"],
)
async def test_header_value_not_latin1_is_400_naming_it(
    node: NodeProcess, raw: Raw, route: str, value: str
) -> None:
    """Refused on every route (signed or not, known or not); the same request with a
    Latin-1 value (UTF-8 for U+00E9, and a tab) is not."""
    method, path = route.split()

    async def send(purpose: bytes) -> tuple[int, dict[str, str], bytes]:
        body = json.dumps({"records": [id_card()]}).encode() if method == "POST" else b""
        extra = {"Content-Type": "application/json", "Idempotency-Key": uuid.uuid4().hex,
                 "X-Exchange-Purpose": purpose.decode("utf-8", "replace")}  # as the node reads it
        h = raw.sign(method, path, "", body, client=OWNER, headers=extra)
        purpose_line = b"X-Exchange-Purpose: " + purpose + b"\r\n"
        h.pop("X-Exchange-Purpose")
        signed = "".join(f"{k}: {v}\r\n" for k, v in h.items())
        head = (f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n{signed}"
                ).encode() + purpose_line + b"\r\n"
        return await raw_http(node.port, head + body)

    status, headers, reply = await send(BAD_VALUES[value])
    assert status == 400, (status, reply[:300])
    doc = json.loads(reply)
    assert doc["code"] == "client.bad_request" and "X-Exchange-Purpose" in doc["detail"], doc
    assert headers["x-exchange-request-id"] == doc["request_id"]
    assert "Traceback" not in node.log_text()
    status, _, reply = await send("caf\u00e9\tstats".encode())
    assert status in (200, 404), (status, reply[:300])


# -- deep JSON in a push ------------------------------------------------------


def _deep(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@pytest.mark.parametrize(
    "body",
    [
        b'{"records":' + _deep(5000) + b"}",
        b'{"records":[{"key":"1","data":{"x":' + _deep(5000) + b"}}]}",
        b'{"records":[{"key":"1","data":{"id_number":' + _deep(5000) + b"}}]}",
        b'{"extra":' + _deep(5000) + b',"records":[]}',
    ],
    ids=["records", "unknown-field", "field", "extra-key"],
)
async def test_deeply_nested_push_is_a_client_error(raw: Raw, body: bytes) -> None:
    """A push nested 5,000 deep (in the batch, a record or a field) is a 4xx problem, never a 500."""
    r = await raw.request("POST", RECORDS, body=body)
    assert 400 <= r.status < 500, (r.status, r.body[:300])
    assert_problem(r, r.status, r.json()["code"])
