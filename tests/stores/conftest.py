"""Store backends for the contract suite.

Every backend in ``BACKENDS`` runs through ``test_store_contract.py``. A backend is a
function ``(tmp_path, namespace) -> StoreFactory``; calling the factory opens a store
as an async context manager, and calling it again (after the first one closed, or even
while it is open) opens the *same* data, so persistence and sharing can be tested.
A backend that cannot run here (e.g. no server) calls ``pytest.skip`` in its factory.

To add one::

    def jetstream_backend(tmp_path: Path, namespace: str) -> StoreFactory:
        @contextlib.asynccontextmanager
        async def factory() -> AsyncIterator[Store]:
            store = JetStreamStore(servers=[...], prefix=namespace)
            await store.open()
            try:
                yield store
            finally:
                await store.close()
        return factory

    BACKENDS["jetstream"] = jetstream_backend
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.stores.base import Store
from gateway.stores.sqlite import SQLiteStore

StoreFactory = Callable[[], contextlib.AbstractAsyncContextManager[Store]]
Backend = Callable[[Path, str], StoreFactory]


def sqlite_backend(tmp_path: Path, namespace: str) -> StoreFactory:
    """One SQLite file per test (``synchronous=FULL``, as in production)."""
    path = tmp_path / f"{namespace}.db"

    @contextlib.asynccontextmanager
    async def factory() -> AsyncIterator[Store]:
        store = SQLiteStore(path)
        await store.open()
        try:
            yield store
        finally:
            await store.close()

    return factory


BACKENDS: dict[str, Backend] = {"sqlite": sqlite_backend}


def jetstream_backend(tmp_path: Path, namespace: str, nats_url: str = "") -> StoreFactory:
    """A JetStream store on the session's nats-server (the ``nats_url`` fixture of
    tests/conftest.py, which ``fresh_store_factory`` passes); each test its own prefix."""

    @contextlib.asynccontextmanager
    async def factory() -> AsyncIterator[Store]:
        from gateway.stores.jetstream import JetStreamStore

        store = JetStreamStore([nats_url], prefix=namespace)
        await store.open()
        try:
            yield store
        finally:
            await store.close()

    return factory


BACKENDS["jetstream"] = jetstream_backend


@pytest.fixture(params=sorted(BACKENDS))
def fresh_store_factory(request: Any, tmp_path: Path) -> Callable[[], StoreFactory]:
    """Makes factories of one backend, each over a new namespace (for property tests)."""
    backend = BACKENDS[request.param]
    if request.param == "jetstream":  # a server for the session (skips without nats-server)
        url = request.getfixturevalue("nats_url")
        return lambda: jetstream_backend(tmp_path, f"t{uuid.uuid4().hex[:12]}", url)
    return lambda: backend(tmp_path, f"t{uuid.uuid4().hex[:12]}")


@pytest.fixture
def store_factory(fresh_store_factory: Callable[[], StoreFactory]) -> StoreFactory:
    """Opens stores of one backend over one fresh namespace."""
    return fresh_store_factory()


@pytest.fixture
async def store(store_factory: StoreFactory) -> AsyncIterator[Store]:
    """An opened store of each backend, closed after the test."""
    async with store_factory() as opened:
        yield opened


def pytest_asyncio_loop_factories(config: Any, item: Any) -> dict[str, Callable[[], Any]]:
    """Run the async store tests on the default loop and on uvloop (what the server uses)."""
    factories: dict[str, Callable[[], Any]] = {"asyncio": asyncio.new_event_loop}
    try:
        import uvloop
    except ImportError:
        return factories
    factories["uvloop"] = uvloop.new_event_loop
    return factories
