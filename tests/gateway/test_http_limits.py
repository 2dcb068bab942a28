"""Node limits over HTTP: a fast 503 over max_inflight (ops routes still answered), and
graceful shutdown on SIGTERM."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable

import aiohttp
from gwkit import (
    GRANTED,
    ID_CARD,
    OWNER,
    NodeProcess,
    Raw,
    assert_problem,
    id_card,
    inflight,
    wait_until,
)

from gateway.client import ExchangeClient
from gateway.keyring import Keyring


def _client(node: NodeProcess, keyring: Keyring, sub: str, **kw: object) -> ExchangeClient:
    key = keyring.for_client(sub)
    assert key is not None
    return ExchangeClient(node.url, key.id, key.secret, sub, **kw)  # type: ignore[arg-type]


async def test_over_max_inflight_is_a_fast_503(
    make_node: Callable[..., NodeProcess], keyring: Keyring
) -> None:
    n = make_node(limits={"max_inflight": 2})
    async with aiohttp.ClientSession() as session:
        raw = Raw(session, n.url, keyring)
        res = (await raw.push(ID_CARD, [id_card()])).json()
        consumer = _client(n, keyring, GRANTED, retries=0)
        try:
            polls = [
                asyncio.create_task(consumer.pull(ID_CARD, after=res["last"], wait=30))
                for _ in range(2)
            ]
            await wait_until(lambda: _refused(raw))
            for path in ("/healthz", "/readyz", "/metrics"):  # never wait behind max_inflight
                r = await raw.request("GET", path, signed=False)
                assert r.status == 200, (path, r.body[:200])
            for method, path, signed in (
                ("POST", f"/v1/resources/{ID_CARD}/records", True),
                ("GET", "/v1/catalog", True),
                ("GET", "/openapi.json", False),
            ):
                body = {"records": [id_card()]} if method == "POST" else None
                r = await raw.request(method, path, signed=signed, json_body=body)
                doc = assert_problem(r, 503, "server.unavailable")
                assert r.headers["Retry-After"].isdigit(), r.headers
                assert "max_inflight" in doc["detail"]
            assert not any(p.done() for p in polls)
        finally:
            for p in polls:
                p.cancel()
            await consumer.close()  # clients that go away free their slots
        await wait_until(lambda: _accepted(raw))
        r = await raw.request("GET", "/metrics", signed=False)
        rejected = [
            ln
            for ln in r.body.decode().splitlines()
            if ln.startswith("exchange_overload_rejections_total ")
        ]
        assert rejected and float(rejected[0].split()[1]) >= 3
        assert len(await raw.snapshot(ID_CARD)) == 1  # the refused push appended nothing


async def test_sdk_retries_a_503_until_capacity_returns(
    make_node: Callable[..., NodeProcess], keyring: Keyring
) -> None:
    n = make_node(limits={"max_inflight": 1})
    statuses: list[int] = []

    async def on_end(_s: object, _ctx: object, params: aiohttp.TraceRequestEndParams) -> None:
        statuses.append(params.response.status)

    trace = aiohttp.TraceConfig()
    trace.on_request_end.append(on_end)
    traced = aiohttp.ClientSession(trace_configs=[trace])
    holder = _client(n, keyring, GRANTED, retries=0)
    owner = _client(n, keyring, OWNER, retries=10, backoff=0.05, session=traced)
    try:
        async with aiohttp.ClientSession() as session:
            raw = Raw(session, n.url, keyring)
            poll = asyncio.create_task(holder.pull(ID_CARD, after=0, wait=30))
            await wait_until(lambda: _refused(raw))
            push = asyncio.create_task(owner.push(ID_CARD, [id_card()]))
            await wait_until(lambda: 503 in statuses or push.done())
            poll.cancel()
            await holder.close()  # capacity returns
            res = await push  # 503 first, then retried with the same Idempotency-Key
            assert res["count"] == 1 and res["replayed"] is False
            assert statuses[0] == 503 and statuses[-1] == 200
            assert len(await raw.snapshot(ID_CARD)) == 1
    finally:
        await holder.close()
        await owner.close()
        await traced.close()


async def _refused(raw: Raw) -> bool:
    return (await raw.request("GET", "/v1/catalog")).status == 503


async def _accepted(raw: Raw) -> bool:
    return (await raw.request("GET", "/v1/catalog")).status == 200


async def test_sigterm_answers_inflight_long_poll_and_closes_store(
    make_node: Callable[..., NodeProcess], keyring: Keyring
) -> None:
    # The poll waits far longer than shutdown_timeout_s: draining must answer it, not cut it.
    n = make_node(limits={"shutdown_timeout_s": 2.0})
    owner, consumer = _client(n, keyring, OWNER), _client(n, keyring, GRANTED, retries=0)
    try:
        rec = id_card()
        res = await owner.push(ID_CARD, [rec])
        poll = asyncio.create_task(consumer.pull(ID_CARD, after=res["last"], wait=30))
        async with aiohttp.ClientSession() as session:
            raw = Raw(session, n.url, keyring)
            await wait_until(lambda: _poll_in_flight(raw))
        n.signal(signal.SIGTERM)
        page = await asyncio.wait_for(poll, 30)  # answered, not dropped
        assert page.records == [] and page.next == res["last"]
        assert n.wait(30) == 0
        log = n.log_text()
        assert '"draining"' in log and '"stopped"' in log
        assert "Traceback" not in log
    finally:
        await owner.close()
        await consumer.close()

    # The store was closed cleanly: a new node on the same data_dir serves the record.
    n.start()
    owner = _client(n, keyring, OWNER)
    try:
        got = await owner.get(ID_CARD, rec["key"])
        assert got is not None and got["data"] == rec["data"] and got["offset"] == res["first"]
        assert (await owner.push(ID_CARD, [id_card()]))["first"] > res["last"]
    finally:
        await owner.close()


async def _poll_in_flight(raw: Raw) -> bool:
    return await inflight(raw) >= 2
