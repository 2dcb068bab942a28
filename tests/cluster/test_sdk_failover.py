"""The SDK with several node URLs fails over on connection errors and on 503."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp import web
from clusterkit import READER, GatewayNode, client, pull_all, rec, write_files
from support import free_port

from gateway.client import ExchangeError

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayNode, Path]]:
    folder = tmp_path_factory.mktemp("sdk")
    cat, ring = write_files(folder)
    n = GatewayNode(folder / "node", cat, ring, backend="sqlite")
    try:
        n.start(wait_for="/readyz")
        yield n, ring
    finally:
        n.stop()


@pytest.fixture
async def unavailable() -> AsyncIterator[tuple[str, list[str]]]:
    """A node stand-in on loopback that answers every request 503 server.unavailable."""
    seen: list[str] = []

    async def answer(request: web.Request) -> web.Response:
        seen.append(request.path)
        return web.json_response(
            {"type": "about:blank", "title": "Service Unavailable", "status": 503,
             "detail": "store unavailable", "code": "server.unavailable", "request_id": "x"},
            status=503, content_type="application/problem+json")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        await runner.cleanup()


async def test_fails_over_from_a_dead_url(node) -> None:
    n, ring = node
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    async with client([dead, n.url], ring, backoff=0.01) as c:
        res = await c.push("test.r8", [rec("via-failover")])
        assert res["count"] == 1
    async with client(n.url, ring, READER) as r:
        assert "via-failover" in [x["key"] for x in await pull_all(r, "test.r8")]


async def test_fails_over_on_503(node, unavailable) -> None:
    n, ring = node
    url503, seen = unavailable
    async with client([url503, n.url], ring, backoff=0.01) as c:
        res = await c.push("test.r9", [rec("after-503")], idempotency_key="same-key")
        assert res["count"] == 1 and not res["replayed"]
        assert seen == ["/v1/resources/test.r9/records"]
        again = await c.push("test.r9", [rec("after-503")], idempotency_key="same-key")
        assert again["replayed"] is True  # the retry kept its Idempotency-Key


async def test_gives_up_with_the_last_error_when_every_node_fails(unavailable, tmp_path) -> None:
    url503, seen = unavailable
    _cat, ring = write_files(tmp_path)
    dead = f"http://127.0.0.1:{free_port()}"
    async with client([dead, url503], ring, retries=3, backoff=0.01) as c:
        with pytest.raises(ExchangeError) as info:
            await c.push("test.r0", [rec("x")])
    assert info.value.status in (0, 503)
    assert len(seen) == 2  # attempts alternate between the two URLs
