"""Fixtures for cluster tests: nats-server processes on free loopback ports (stopped after
the test or module), and gateway node processes using them."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.stores.natsproc import NatsServer, find_binary, start_cluster


def _need_binary() -> None:
    if find_binary() is None:
        pytest.skip("nats-server is not installed (make deps installs it)")


@pytest.fixture(scope="module")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """One nats-server with JetStream for the module."""
    _need_binary()
    server = NatsServer(tmp_path_factory.mktemp("nats")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def nats_cluster(tmp_path: Path) -> Iterator[list[NatsServer]]:
    """Three nats-servers routed as one JetStream cluster, for one test."""
    _need_binary()
    servers = start_cluster(tmp_path / "nats", 3)
    try:
        yield servers
    finally:
        for s in servers:
            s.stop()


@pytest.fixture
def prefix() -> str:
    """A fresh stream/bucket prefix, so that tests sharing a server never collide."""
    return f"t{uuid.uuid4().hex[:10]}"
