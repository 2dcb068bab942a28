"""Fixtures of every area: NATS servers (one per test session, i.e. per xdist worker, or
three for one test), a fresh stream prefix. Helpers are in tests/support."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import NatsServer, find_binary, start_cluster


def _need_nats() -> None:
    if find_binary() is None:
        pytest.skip("nats-server is not installed (make deps installs it)")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under xdist (``--dist loadgroup``): the tests that share a module-scoped fixture (two
    cluster nodes, a long simulation) run on one worker, so that it is built once, unless
    they name an ``xdist_group`` of their own (e.g. ``bench``: CPU-pinned load runs). The
    slow and cluster tests go first, so that the long ones do not start last and leave a
    worker idle at the end."""
    items.sort(key=lambda item: not (item.get_closest_marker("slow")
                                     or item.get_closest_marker("cluster")))  # stable
    for item in items:
        if item.get_closest_marker("xdist_group"):
            continue
        if "nats_cluster" in getattr(item, "fixturenames", ()):  # three nats-servers each:
            item.add_marker(pytest.mark.xdist_group("nats-cluster"))  # one such test at a time
            continue
        info = getattr(item, "_fixtureinfo", None)
        defs = info.name2fixturedefs.values() if info is not None else ()
        if any(d and d[-1].scope in ("module", "package", "class") for d in defs):
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """A private nats-server with JetStream for the session (skips when not installed).
    Tests that share it keep apart by stream prefix (``prefix``)."""
    _need_nats()
    server = NatsServer(tmp_path_factory.mktemp("nats")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def nats_url(nats_server: NatsServer) -> str:
    return nats_server.url


@pytest.fixture
def nats_cluster(tmp_path: Path) -> Iterator[list[NatsServer]]:
    """Three nats-servers routed as one JetStream cluster, for one test."""
    _need_nats()
    servers = start_cluster(tmp_path / "nats", 3)
    try:
        asyncio.run(_wait_for_jetstream_cluster([s.url for s in servers]))
        yield servers
    finally:
        for s in servers:
            s.stop()


async def _wait_for_jetstream_cluster(urls: list[str], timeout: float = 30.0) -> None:
    """Until the cluster has elected its JetStream meta leader (an R=3 stream can be made)."""
    import nats
    from nats.js.api import StreamConfig

    nc = await nats.connect(servers=urls)
    try:
        js = nc.jetstream(timeout=2)
        deadline = time.monotonic() + timeout
        while True:
            try:
                await js.add_stream(StreamConfig(name="READY", subjects=["ready.>"], num_replicas=3))
                await js.delete_stream("READY")
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)
    finally:
        await nc.close()


@pytest.fixture
def prefix() -> str:
    """A fresh stream/bucket prefix, so that tests sharing a server never collide."""
    return f"t{uuid.uuid4().hex[:10]}"
