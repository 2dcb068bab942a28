"""JetStream store behaviour beyond the shared contract: subjects for any resource id,
NATS down and back, claims of dead nodes taken over, wake-ups across connections."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from support import NatsServer, free_port

from fastpath import encode_batch
from gateway.stores.base import StoreUnavailable
from gateway.stores.jetstream import JetStreamStore, _Claim, _digest, _enc, _token

pytestmark = pytest.mark.cluster
CLIENT = "SH/GOV/t/own"


def rec(key: str) -> tuple[str, bytes]:
    return key, json.dumps({"id": key}).encode()


@pytest.fixture
async def store(nats_server: NatsServer, prefix: str) -> AsyncIterator[JetStreamStore]:
    s = JetStreamStore([nats_server.url], prefix=prefix)
    await s.open()
    try:
        yield s
    finally:
        await s.close()


async def until(check, timeout: float = 20.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)


async def test_resource_ids_that_are_not_subject_tokens(store: JetStreamStore) -> None:
    odd = ["a..b", "a.", "x-", "a.b", "0", "ab"]
    assert len({_token(r) for r in odd}) == len(odd)
    for i, rid in enumerate(odd):
        await store.append(rid, [rec(f"{rid}-{i}")], client=CLIENT)
    for i, rid in enumerate(odd):
        got = await store.read(rid, 0, 100)
        assert [r.key for r in got] == [f"{rid}-{i}"]
        latest = await store.latest(rid, f"{rid}-{i}")
        assert latest is not None and latest.offset == got[0].offset
        assert await store.wait(rid, 0, 0) is True


async def test_unreachable_nats_then_recovery(tmp_path: Path, prefix: str) -> None:
    port = free_port()
    store = JetStreamStore([f"nats://127.0.0.1:{port}"], prefix=prefix, connect_timeout_s=0.5)
    server = NatsServer(tmp_path / "nats", port=port)
    try:
        await store.open()  # returns although nothing listens
        assert await store.ping() is False
        with pytest.raises(StoreUnavailable, match=str(port)):
            await store.append("r", [rec("a")], client=CLIENT)
        with pytest.raises(StoreUnavailable):
            await store.read("r", 0, 10)
        with pytest.raises(StoreUnavailable):
            await store.wait("r", 0, 1)
        server.start()
        await until(store.ping)
        res = await store.append("r", [rec("a")], client=CLIENT)
        assert [r.offset for r in await store.read("r", 0, 10)] == [res.first]

        # The only server dies and comes back with its data wiped: the streams are re-created.
        server.kill()
        await until(lambda: _not(store.ping))
        shutil.rmtree(tmp_path / "nats" / "js")
        server.start()
        await until(store.ping)

        async def appends() -> bool:
            try:
                await store.append("r", [rec("b")], client=CLIENT)
                return True
            except StoreUnavailable:
                return False

        await until(appends)
        assert [r.key for r in await store.read("r", 0, 10)] == ["b"]
    finally:
        await store.close()
        server.stop()


async def _not(check) -> bool:  # noqa: ANN001
    return not await check()


async def test_claim_of_a_dead_node_is_taken_over(store: JetStreamStore) -> None:
    """A node claimed an Idempotency-Key, published the batch and died before completing."""
    store.takeover_s = 0.5
    bucket = store.names["idempotency"]
    claim = _digest(CLIENT, "r", "k-dead")
    stale = int(time.time() * 1000) - 5000
    await store._kv_write(bucket, claim, _enc(_Claim("h", stale)), 0)
    # ... its batch landed (with the claim as Nats-Msg-Id) but no key entries were written.
    now = int(time.time() * 1000)
    payload = encode_batch([(i, now, k, d) for i, (k, d) in enumerate([rec("x"), rec("y")])])
    seq, dup = await store._publish_acked(f"{store.prefix}.rec.r", payload, {"Nats-Msg-Id": claim})
    assert not dup
    assert await store.latest("r", "y") is None
    again = await store.append("r", [rec("x"), rec("y")], client=CLIENT,
                               idempotency_key="k-dead", body_hash="h")
    assert again.replayed and (again.first, again.last) == (seq * 1024, seq * 1024 + 1)
    assert [r.key for r in await store.read("r", 0, 10)] == ["x", "y"]
    latest = await store.latest("r", "y")  # the taker wrote the missing key entries
    assert latest is not None and latest.offset == again.last and latest.ts_ms == now

    # It died before publishing: the retry appends the batch once.
    claim = _digest(CLIENT, "r", "k-early")
    await store._kv_write(bucket, claim, _enc(_Claim("h2", stale)), 0)
    first = await store.append("r", [rec("z")], client=CLIENT, idempotency_key="k-early",
                               body_hash="h2")
    assert not first.replayed
    replay = await store.append("r", [rec("z")], client=CLIENT, idempotency_key="k-early",
                                body_hash="h2")
    assert replay.replayed and replay.first == first.first
    assert [r.key for r in await store.read("r", 0, 10)] == ["x", "y", "z"]
    assert store.info()["takeovers"] == 2


async def test_wait_wakes_on_an_append_through_another_connection(
    nats_server: NatsServer, prefix: str
) -> None:
    a = JetStreamStore([nats_server.url], prefix=prefix)
    b = JetStreamStore([nats_server.url], prefix=prefix)
    await a.open()
    await b.open()
    try:
        waiter = asyncio.create_task(b.wait("r", 0, 20))
        await asyncio.sleep(0.2)
        assert not waiter.done()
        await a.append("r", [rec("hello")], client=CLIENT)
        assert await asyncio.wait_for(waiter, 20) is True
        assert [r.key for r in await b.read("r", 0, 10)] == ["hello"]
    finally:
        await a.close()
        await b.close()


async def test_replicated_store_on_a_three_server_cluster(
    nats_cluster: list[NatsServer], prefix: str
) -> None:
    """R=3: reads fall back to the stream leader, so a lagging replica never hides a record."""
    urls = [s.url for s in nats_cluster]
    a = JetStreamStore(urls[:1], replicas=3, prefix=prefix, connect_timeout_s=10)
    b = JetStreamStore(urls[2:], replicas=3, prefix=prefix, connect_timeout_s=10)
    await a.open()
    await b.open()
    try:
        await until(a.ping, 30)
        await until(b.ping, 30)
        waiter = asyncio.create_task(b.wait("r", 0, 20))
        first = await a.append("r", [rec("k1"), rec("k2")], client=CLIENT,
                               idempotency_key="i", body_hash="h")
        assert await asyncio.wait_for(waiter, 20) is True
        got = await b.read("r", 0, 10)
        assert [r.offset for r in got] == [first.first, first.last]
        latest = await b.latest("r", "k2")
        assert latest is not None and latest.offset == first.last
        again = await b.append("r", [rec("k1"), rec("k2")], client=CLIENT,
                               idempotency_key="i", body_hash="h")
        assert again.replayed and again.first == first.first
        await a.set_cursor(CLIENT, "r", first.last)
        assert await b.get_cursor(CLIENT, "r") == first.last
        assert await b.read("r", first.last, 10) == []
    finally:
        await a.close()
        await b.close()


async def test_reads_over_many_small_batches_stream_through_a_consumer(
    store: JetStreamStore,
) -> None:
    results = []
    for i in range(60):
        results.append(await store.append("small", [rec(f"s{i}")], client=CLIENT))
        await store.append("other", [rec(f"o{i}")], client=CLIENT)  # interleaved
    offsets = [r.first for r in results]
    got = await store.read("small", 0, 1000)
    assert [r.offset for r in got] == offsets
    assert store.info()["bulk_reads"] >= 1
    for after_i, limit in ((0, 7), (3, 25), (10, 50), (58, 10)):
        page = await store.read("small", offsets[after_i], limit)
        assert [r.offset for r in page] == offsets[after_i + 1 : after_i + 1 + limit]
    assert await store.read("small", offsets[-1], 100) == []
    assert [r.key for r in await store.read("other", 0, 1000)] == [f"o{i}" for i in range(60)]
