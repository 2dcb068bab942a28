"""The proxy's HTTP/1.1 client against hand-written answers: lengths, chunks, keep-alive, garbage."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from multidict import CIMultiDict
from svckit import free_port

from gateway.services.h1client import H1Client, UpstreamError


@contextlib.asynccontextmanager
async def scripted(answer: bytes, *, close: bool = False) -> AsyncIterator[tuple[str, list]]:
    """A server that answers every request head with ``answer`` (closing after it when asked)."""
    seen: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                seen.append(head)
                writer.write(answer)
                await writer.drain()
                if close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", seen
    finally:
        server.close()
        await server.wait_closed()


async def get(client: H1Client, url: str, method: str = "GET") -> tuple[int, CIMultiDict, bytes]:
    r = await client.request(method, url + "/x?y=1", {"X-A": "1"}, read_timeout=2)
    try:
        body = await r.read()
    except BaseException:
        r.close()
        raise
    r.release()
    return r.status, r.headers, body


async def test_content_length_keep_alive_reuses_one_connection() -> None:
    async with scripted(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-B: 2\r\n\r\nhello") as (url, seen):
        c = H1Client()
        for _ in range(5):
            status, headers, body = await get(c, url)
            assert (status, headers["X-B"], body) == (200, "2", b"hello")
        assert len(seen) == 5 and seen[0].startswith(b"GET /x?y=1 HTTP/1.1\r\nHost: 127.0.0.1:")
        assert len(c.pools[("http", "127.0.0.1", int(url.rsplit(":", 1)[1]))].idle) == 1
        assert c.in_use == 0
        c.close()


async def test_chunked_with_extensions_and_trailers() -> None:
    answer = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
              b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n")
    async with scripted(answer) as (url, _):
        c = H1Client()
        assert (await get(c, url))[2] == b"hello world"
        assert (await get(c, url))[2] == b"hello world"  # the connection was reusable
        c.close()


async def test_until_close_and_interim_and_head() -> None:
    async with scripted(b"HTTP/1.0 200 OK\r\n\r\nall of it", close=True) as (url, _):
        c = H1Client()
        assert (await get(c, url))[2] == b"all of it"
        assert (await get(c, url))[2] == b"all of it"
        c.close()
    async with scripted(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok") as (url, _):
        c = H1Client()
        assert (await get(c, url))[:3:2] == (201, b"ok")
        c.close()
    async with scripted(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n") as (url, _):
        c = H1Client()
        status, headers, body = await get(c, url, "HEAD")
        assert (status, headers["Content-Length"], body) == (200, "1000", b"")
        c.close()


@pytest.mark.parametrize("answer, word", [
    (b"HTTP/2 200 OK\r\n\r\n", "status line"),
    (b"HTTP/1.1 20 OK\r\n\r\n", "status line"),
    (b"HTTP/1.1 200 OK\r\nBad Header: x\r\n\r\n", "header"),
    (b"HTTP/1.1 200 OK\r\n folded\r\n\r\n", "header"),
    (b"HTTP/1.1 200 OK\r\nA: b\r\n folded\r\n\r\n", "header"),
    (b"HTTP/1.1 200 OK\r\nA: b\x00c\r\n\r\n", "header"),
    (b"HTTP/1.1 200 OK\nA: b\n\n", "status line"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\nab", "Content-Length"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n", "Content-Length"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "Content-Length"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "Content-Length"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", "Content-Length"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", "Transfer-Encoding"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "chunk"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n", "chunk"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel", "mid-body"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "mid-body"),
    (b"HTTP/1.1 200 OK\r\nX: " + b"a" * 70000, "64 KiB"),
])
async def test_malformed_answers_are_upstream_errors(answer: bytes, word: str) -> None:
    async with scripted(answer, close=True) as (url, _):
        c = H1Client()
        with pytest.raises(UpstreamError) as e:
            await get(c, url)
        assert word in str(e.value)
        assert c.in_use == 0
        c.close()


async def test_connect_refused_and_stale_keep_alive() -> None:
    c = H1Client(connect_timeout=1)
    with pytest.raises(UpstreamError) as e:
        await get(c, f"http://127.0.0.1:{free_port()}")
    assert e.value.kind == "connect"

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hi")

    app = web.Application()
    app.router.add_get("/x", hello)
    runner = web.AppRunner(app, keepalive_timeout=0.05, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        assert (await get(c, f"http://127.0.0.1:{port}"))[2] == b"hi"
        await asyncio.sleep(0.2)  # the backend closes the idle connection
        with contextlib.suppress(UpstreamError):
            await get(c, f"http://127.0.0.1:{port}")  # either detected closed at once, or stale
        assert (await get(c, f"http://127.0.0.1:{port}"))[2] == b"hi"
    finally:
        c.close()
        await runner.cleanup()


async def test_large_bodies_stream_with_flow_control() -> None:
    big = b"x" * (6 * 1024 * 1024)

    async def blob(request: web.Request) -> web.Response:
        return web.Response(body=big)

    app = web.Application()
    app.router.add_get("/x", blob)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    c = H1Client()
    try:
        r = await c.request("GET", f"http://127.0.0.1:{port}/x", {}, read_timeout=5)
        assert r.content_length == len(big)
        got = 0
        async for piece in r.iter_chunks():
            got += len(piece)
            await asyncio.sleep(0)  # a slow reader: the transport pauses and resumes
        r.release()
        assert got == len(big) and c.in_use == 0
    finally:
        c.close()
        await runner.cleanup()


async def test_strict_parser_details() -> None:
    """Repeated Content-Length is refused even when equal; header values lose outer blanks;
    204 has no body; a HEAD answer's connection is reused; unasked-for bytes forbid reuse."""
    async with scripted(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\na") as (url, _):
        c = H1Client()
        with pytest.raises(UpstreamError) as e:
            await get(c, url)
        assert e.value.kind == "protocol" and "Content-Length" in str(e.value)
        c.close()
    async with scripted(b"HTTP/1.1 204 No Content\r\nX-V:  a b \t\r\n\r\n") as (url, _):
        c = H1Client()
        status, headers, body = await get(c, url)
        assert (status, headers["X-V"], body) == (204, "a b", b"")
        await get(c, url)
        assert len(c.pools[next(iter(c.pools))].idle) == 1  # one connection, reused
        c.close()
    async with scripted(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n") as (url, seen):
        c = H1Client()
        for _ in range(3):
            status, headers, body = await get(c, url, "HEAD")
            assert (status, body) == (200, b"")
        assert len(seen) == 3 and len(c.pools[next(iter(c.pools))].idle) == 1
        c.close()
    async with scripted(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n") as (url, seen):
        c = H1Client()
        assert (await get(c, url))[2] == b"ok"
        assert (await get(c, url))[2] == b"ok"
        assert len(seen) == 2  # the extra bytes made the first connection unusable
        c.close()
