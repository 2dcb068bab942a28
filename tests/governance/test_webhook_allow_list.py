"""Webhook allow-list and subscription cap on both governance backends (SQLite and JetStream):
the cap per client, a name resolving to loopback refused at delivery, a removed target
stopping deliveries, a hung endpoint classed as a timeout and an unknown name as dns_failed."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from svckit import (
    BASE_CATALOG,
    CONSUMER,
    LEGAL,
    RunningNode,
    free_port,
    running_node,
    wait_until,
)

from gateway.server import load_state

FAST = {"scan_s": 0.05, "base_s": 0.02, "cap_s": 0.1, "max_attempts": 1000}
SUBSCRIBE = "/v1/resources/psb.id-card/subscriptions"


def target(url_prefix: str, *, consumer: str = CONSUMER, private: bool = True) -> str:
    return (f'\n[[webhook_targets]]\nconsumer = "{consumer}"\nurl_prefix = "{url_prefix}"\n'
            f"allow_http = true\nallow_private = {'true' if private else 'false'}\n")


def card(i: int) -> dict[str, Any]:
    key = f"3101011990{i:08d}"
    return {"key": key, "data": {"id_number": key, "name": f"n{i}"}}


@pytest.fixture(params=["sqlite", "jetstream"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """The node's [store] section: the embedded SQLite, or JetStream (streams removed after)."""
    if request.param == "sqlite":
        yield '[store]\nsynchronous = "NORMAL"\n'
        return
    nats_url = request.getfixturevalue("nats_url")  # tests/conftest.py: skips without nats-server
    prefix = "wh" + uuid.uuid4().hex[:8]
    yield f'[store]\nbackend = "jetstream"\nservers = ["{nats_url}"]\nprefix = "{prefix}"\n'
    import nats

    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    for info in await js.streams_info():
        if info.config.name.startswith((prefix, f"KV_{prefix}")):
            with contextlib.suppress(Exception):
                await js.delete_stream(info.config.name)
    await nc.close()


@contextlib.asynccontextmanager
async def receiver(port: int, delay: float = 0.0) -> AsyncIterator[list[str]]:
    """A callback endpoint on ``port`` answering 204 (after ``delay`` s); lists the paths it got."""
    got: list[str] = []

    async def hook(request: web.Request) -> web.Response:
        got.append(request.path)
        await request.read()
        if delay:
            await asyncio.sleep(delay)
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/{tail:.*}", hook)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield got
    finally:
        await runner.cleanup()


async def sub_doc(n: RunningNode, sid: str) -> dict[str, Any]:
    return (await n.request(CONSUMER, "GET", f"/v1/subscriptions/{sid}")).json()


async def test_subscriptions_per_client_are_capped(tmp_path: Path, store: str) -> None:
    port = free_port()
    extra = target(f"http://127.0.0.1:{port}/") + target(f"http://127.0.0.1:{port}/", consumer=LEGAL)
    async with running_node(tmp_path, extra, store=store, **FAST) as n:
        url = f"http://127.0.0.1:{port}/hook"
        replies = await asyncio.gather(*[n.request(CONSUMER, "POST", SUBSCRIBE, json_body={"url": url})
                                         for _ in range(20)])  # at once: the count and the add are one step
        assert sorted(r.status for r in replies) == [201] * 16 + [409] * 4  # the default cap
        refused = next(r for r in replies if r.status == 409).json()
        assert refused["code"] == "client.conflict" and "max_subscriptions_per_client = 16" in refused["detail"]
        assert refused["detail"].startswith(CONSUMER)
        mine = (await n.request(CONSUMER, "GET", "/v1/subscriptions")).json()["subscriptions"]
        assert len(mine) == 16
        r = await n.request(LEGAL, "POST", SUBSCRIBE, json_body={"url": url})
        assert r.status == 201  # another client's budget is its own
        assert (await n.request(CONSUMER, "DELETE", f"/v1/subscriptions/{mine[0]['id']}")).status == 200
        assert (await n.request(CONSUMER, "POST", SUBSCRIBE, json_body={"url": url})).status == 201
        assert (await n.request(CONSUMER, "POST", SUBSCRIBE, json_body={"url": url})).status == 409


async def test_the_cap_is_set_in_the_catalog(tmp_path: Path) -> None:
    port = free_port()
    base = BASE_CATALOG.replace('instance = "SH"\n', 'instance = "SH"\nmax_subscriptions_per_client = 2\n')
    async with running_node(tmp_path, target(f"http://127.0.0.1:{port}/"), base=base, **FAST) as n:
        url = f"http://127.0.0.1:{port}/hook"
        statuses = [(await n.request(CONSUMER, "POST", SUBSCRIBE, json_body={"url": url})).status for _ in range(3)]
        assert statuses == [201, 201, 409]


async def test_a_name_resolving_to_loopback_is_refused_at_delivery(tmp_path: Path, store: str) -> None:
    port = free_port()
    extra = (target(f"http://localhost:{port}/public/", private=False)  # a name: resolved and checked per delivery
             + target(f"http://localhost:{port}/internal/", private=True))
    async with running_node(tmp_path, extra, store=store, **FAST) as n, receiver(port) as got:
        r = await n.request(CONSUMER, "POST", SUBSCRIBE, json_body={"url": f"http://localhost:{port}/public/hook"})
        assert r.status == 201, r.body  # a name passes at subscribe time ...
        refused = r.json()["id"]
        r = await n.request(CONSUMER, "POST", SUBSCRIBE, json_body={"url": f"http://localhost:{port}/internal/hook"})
        allowed = r.json()["id"]
        await n.push("psb.id-card", [card(1)])

        async def both_tried() -> bool:
            return (await sub_doc(n, refused))["last_error"] != "" and (await sub_doc(n, allowed))["delivered"] == 1

        await wait_until(both_tried)
        assert (await sub_doc(n, refused))["last_error"] == "refused_address"  # ... but not at delivery
        assert set(got) == {"/internal/hook"}  # the refused one never connected
        await n.node.audit.flush()
        log = await n.node.governance.audit_range(limit=1000)
        assert any(e.op == "deliver" and e.detail == "refused_address" and e.count == 0 for e in log)


async def test_removing_a_target_stops_deliveries(tmp_path: Path) -> None:
    port = free_port()
    async with running_node(tmp_path, target(f"http://127.0.0.1:{port}/"), **FAST) as n, receiver(port) as got:
        r = await n.request(CONSUMER, "POST", SUBSCRIBE, json_body={"url": f"http://127.0.0.1:{port}/hook"})
        sid = r.json()["id"]
        await n.push("psb.id-card", [card(1)])

        async def delivered() -> bool:
            return (await sub_doc(n, sid))["delivered"] == 1

        await wait_until(delivered)
        (tmp_path / "catalog.toml").write_text(BASE_CATALOG)  # the target is gone: reload, as SIGHUP does
        n.node.swap_state(load_state(n.node.config))
        await n.push("psb.id-card", [card(2)])

        async def dead() -> bool:
            return (await sub_doc(n, sid))["state"] == "dead"

        await wait_until(dead)
        assert (await sub_doc(n, sid))["last_error"] == "url_not_allowed"
        assert got == ["/hook"]


async def test_a_hung_endpoint_is_a_timeout(tmp_path: Path) -> None:
    port = free_port()
    async with running_node(tmp_path, target(f"http://127.0.0.1:{port}/"), **FAST, timeout_s=0.2) as n, \
            receiver(port, delay=5) as got:
        r = await n.request(CONSUMER, "POST", SUBSCRIBE, json_body={"url": f"http://127.0.0.1:{port}/slow"})
        sid = r.json()["id"]
        await n.push("psb.id-card", [card(1)])

        async def failed() -> bool:
            return (await sub_doc(n, sid))["last_error"] != ""

        await wait_until(failed)
        assert (await sub_doc(n, sid))["last_error"] == "timeout" and got


async def test_an_unresolvable_name_is_dns_failed(tmp_path: Path) -> None:
    extra = target("http://no-such-host.invalid:8080/", private=False)  # RFC 6761: never resolves
    async with running_node(tmp_path, extra, **FAST, timeout_s=2.0) as n:
        r = await n.request(CONSUMER, "POST", SUBSCRIBE, json_body={"url": "http://no-such-host.invalid:8080/h"})
        sid = r.json()["id"]
        await n.push("psb.id-card", [card(1)])

        async def failed() -> bool:
            return (await sub_doc(n, sid))["last_error"] != ""

        await wait_until(failed, timeout=20)
        assert (await sub_doc(n, sid))["last_error"] == "dns_failed"
