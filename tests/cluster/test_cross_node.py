"""Cross-node semantics: two gateway nodes sharing one NATS JetStream."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from clusterkit import (
    OWNER,
    READER,
    ROOT,
    GatewayNode,
    catalog_text,
    client,
    eventually,
    operator_key,
    pull_all,
    rec,
    write_files,
)
from support import NatsServer

from gateway.client import ExchangeError

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def two_nodes(
    nats_server: NatsServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[GatewayNode, GatewayNode, Path, Path]]:
    folder = tmp_path_factory.mktemp("nodes")
    cat, ring = write_files(folder)
    _key, public = operator_key(folder)  # cat.parent / "operator.key": signs what _publish puts
    nodes = [
        GatewayNode(folder / name, cat, ring, servers=[nats_server.url], prefix="xnode",
                    operator_keys=[public])
        for name in ("a", "b")
    ]
    try:
        for n in nodes:
            n.start(wait_for="/readyz")
        yield nodes[0], nodes[1], cat, ring
    finally:
        for n in nodes:
            n.stop()


async def test_push_on_a_pull_on_b(two_nodes) -> None:
    a, b, _cat, ring = two_nodes
    async with client(a.url, ring) as ca, client(b.url, ring, READER) as cb:
        res = await ca.push("test.r0", [rec(f"k{i}", i) for i in range(25)])
        assert res["count"] == 25 and not res["replayed"]
        got = await pull_all(cb, "test.r0")
        assert [r["key"] for r in got] == [f"k{i}" for i in range(25)]
        assert got[0]["offset"] == res["first"] and got[-1]["offset"] == res["last"]
        latest = await cb.get("test.r0", "k7")
        assert latest is not None and latest["data"] == {"id": "k7", "n": 7}


async def test_retry_through_b_is_replayed(two_nodes) -> None:
    a, b, _cat, ring = two_nodes
    async with client(a.url, ring) as ca, client(b.url, ring) as cb:
        body = [rec("once", 1), rec("twice", 2)]
        first = await ca.push("test.r1", body, idempotency_key="retry-1")
        again = await cb.push("test.r1", body, idempotency_key="retry-1")
        assert again["replayed"] is True
        assert (again["first"], again["last"]) == (first["first"], first["last"])
        with pytest.raises(ExchangeError) as info:
            await cb.push("test.r1", [rec("other", 3)], idempotency_key="retry-1")
        assert info.value.status == 409
        assert [r["key"] for r in await pull_all(cb, "test.r1")] == ["once", "twice"]


async def test_long_poll_on_b_wakes_when_a_appends(two_nodes) -> None:
    a, b, _cat, ring = two_nodes
    async with client(a.url, ring) as ca, client(b.url, ring, READER) as cb:
        head = (await ca.push("test.r2", [rec("before")]))["last"]
        poll = asyncio.create_task(cb.pull("test.r2", after=head, wait=25))
        await asyncio.sleep(0.5)
        assert not poll.done()  # nothing new yet: B is waiting
        pushed = await ca.push("test.r2", [rec("after")])
        page = await asyncio.wait_for(poll, 30)
        assert [r["key"] for r in page.records] == ["after"]
        assert page.next == pushed["last"]


async def test_cursor_committed_on_a_is_seen_on_b(two_nodes) -> None:
    a, b, _cat, ring = two_nodes
    async with client(a.url, ring, READER) as ra, client(b.url, ring, READER) as rb, \
            client(a.url, ring) as owner:
        res = await owner.push("test.r3", [rec(f"c{i}") for i in range(6)])
        assert await ra.commit("test.r3", res["first"] + 2) == res["first"] + 2
        page = await rb.pull("test.r3")  # no `after`: from the committed cursor
        assert [r["key"] for r in page.records] == ["c3", "c4", "c5"]
        with pytest.raises(ExchangeError) as info:
            await rb.commit("test.r3", res["first"])
        assert info.value.status == 409
        assert await rb.commit("test.r3", res["first"], force=True) == res["first"]
        assert len((await ra.pull("test.r3")).records) == 5


def _publish(path: Path, url: str, prefix: str, *extra: str, key: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", "catalog", "publish", str(path), "--servers", url,
         "--prefix", prefix, "--operator-key", str(key), *extra],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )


async def test_catalog_publish_reaches_both_nodes(two_nodes, nats_server, tmp_path) -> None:
    a, b, cat, ring = two_nodes
    key = cat.parent / "operator.key"
    new = tmp_path / "catalog.toml"
    new.write_text(catalog_text(extra=["test.published"]))
    async with client(a.url, ring) as ca, client(b.url, ring) as cb:
        for c in (ca, cb):
            with pytest.raises(ExchangeError) as info:
                await c.catalog_entry("test.published")
            assert info.value.status == 404

        bad = tmp_path / "bad.toml"
        bad.write_text(catalog_text(extra=["test.published"]).replace('sharing = "open"', 'sharing = "everyone"', 1))
        refused = _publish(bad, nats_server.url, "xnode", key=key)
        assert refused.returncode == 2
        assert "sharing" in refused.stderr and "nothing published" in refused.stderr

        done = _publish(new, nats_server.url, "xnode", "--keyring", str(ring), key=key)
        assert done.returncode == 0, done.stderr

        async def visible_on(c) -> bool:
            try:
                return (await c.catalog_entry("test.published"))["id"] == "test.published"
            except ExchangeError:
                return False

        for c in (ca, cb):
            await eventually(lambda c=c: visible_on(c))
        res = await cb.push("test.published", [rec("new")])
        assert res["count"] == 1
        assert (await ca.catalog_entry("test.published"))["owner"] == OWNER


async def test_bad_bucket_value_is_ignored_and_logged(two_nodes, nats_server, tmp_path) -> None:
    """A value that did not come through `publish` (garbage) never replaces a node's state."""
    import nats

    from gateway.publish import BUNDLE_KEY, bucket_name

    a, b, cat, ring = two_nodes
    new = tmp_path / "catalog.toml"
    new.write_text(catalog_text(extra=["test.before-garbage"]))
    assert _publish(new, nats_server.url, "xnode", key=cat.parent / "operator.key").returncode == 0
    async with client(a.url, ring) as ca, client(b.url, ring) as cb:

        async def visible(c, rid: str) -> bool:
            try:
                return (await c.catalog_entry(rid))["id"] == rid
            except ExchangeError:
                return False

        for c in (ca, cb):
            await eventually(lambda c=c: visible(c, "test.before-garbage"))
        nc = await nats.connect(nats_server.url)
        try:
            kv = await nc.jetstream().key_value(bucket_name("xnode"))
            await kv.put(BUNDLE_KEY, b"this is not a catalog")
        finally:
            await nc.close()
        for n in (a, b):
            await eventually(lambda n=n: _logged(n, "catalog_refused"))
        for c in (ca, cb):  # the running state stays
            assert await visible(c, "test.before-garbage")
            assert (await c.push("test.r4", [rec("still-serving")]))["count"] == 1


async def _logged(node: GatewayNode, event: str) -> bool:
    return f'"event":"{event}"' in node.log_tail(100_000)
