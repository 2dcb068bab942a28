"""Fixtures for the gateway's HTTP tests: a shared node subprocess, SDK clients, raw requests."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from gwkit import CATALOG, NodeProcess, Raw, write_keyring

from gateway.catalog import Catalog, load_catalog
from gateway.client import ExchangeClient
from gateway.keyring import Keyring, load_keyring


@pytest.fixture(scope="session")
def keyring_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_keyring(tmp_path_factory.mktemp("keys") / "keyring.toml")


@pytest.fixture(scope="session")
def keyring(keyring_path: Path) -> Keyring:
    return load_keyring(keyring_path)


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return load_catalog(CATALOG)


@pytest.fixture(scope="session")
def make_node(
    tmp_path_factory: pytest.TempPathFactory, keyring_path: Path
) -> Iterator[Callable[..., NodeProcess]]:
    """Factory of started nodes, each in its own folder; all are stopped at the end, and then
    every node's log is checked for the session keyring's secrets."""
    nodes: list[NodeProcess] = []

    def make(**kw: Any) -> NodeProcess:
        n = NodeProcess(tmp_path_factory.mktemp("node"), kw.pop("keyring", keyring_path), **kw)
        nodes.append(n)
        return n.start()

    yield make
    for n in nodes:
        n.stop()
    secrets = [k.secret for k in load_keyring(keyring_path).by_id.values()]
    leaked = [str(n.log_path) for n in nodes if any(s in n.log_text() for s in secrets)]
    assert not leaked, f"a secret of the keyring is in these node logs: {leaked}"


@pytest.fixture(scope="session")
def jetstream_node(make_node: Callable[..., NodeProcess], nats_url: str) -> NodeProcess:
    """A node on the jetstream backend (cluster mode) with its own stream prefix."""
    return make_node(
        store={
            "backend": "jetstream",
            "servers": [nats_url],
            "replicas": 1,
            "prefix": f"gw{uuid.uuid4().hex[:10]}",
        }
    )


@pytest.fixture(scope="session")
def node(make_node: Callable[..., NodeProcess]) -> NodeProcess:
    """The shared node: sample catalog, default limits. Tests use their own keys/records."""
    return make_node()


# -- clients --------------------------------------------------------------------------


@pytest.fixture
async def sdk(node: NodeProcess, keyring: Keyring) -> AsyncIterator[Callable[..., ExchangeClient]]:
    """``sdk(subsystem, **kw)``: an SDK client of the shared node, closed after the test."""
    made: list[ExchangeClient] = []

    def make(client: str, *, url: str | None = None, **kw: Any) -> ExchangeClient:
        key = keyring.for_client(client)
        assert key is not None, client
        c = ExchangeClient(url or node.url, key.id, key.secret, client, **kw)
        made.append(c)
        return c

    yield make
    for c in made:
        await c.close()


@pytest.fixture
async def raw(node: NodeProcess, keyring: Keyring) -> AsyncIterator[Raw]:
    async with aiohttp.ClientSession() as session:
        yield Raw(session, node.url, keyring)
