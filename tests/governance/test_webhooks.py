"""Webhook delivery: signed batches, at least once, in order, backoff, dead letter and replay."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import web
from svckit import CONSUMER, STRANGER, free_port, running_node, wait_until

from gateway.client import verify_webhook

ROOT = Path(__file__).resolve().parents[2]
FAST = {"scan_s": 0.05, "base_s": 0.02, "cap_s": 0.1, "max_attempts": 1000}


def card(i: int) -> dict[str, Any]:
    key = f"3101011990{i:08d}"
    return {"key": key, "data": {"id_number": key, "name": f"n{i}", "address": "secret"}}


@contextlib.asynccontextmanager
async def endpoint(secret_of: Any) -> AsyncIterator[dict[str, Any]]:
    """A consumer's callback endpoint that can be told to fail; records what it accepted."""
    st: dict[str, Any] = {"fail": False, "got": [], "attempts": 0, "bad_sig": 0}

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        st["attempts"] += 1
        if not verify_webhook(request.headers, body, secret_of(), path=request.path,
                              query=request.query_string):
            st["bad_sig"] += 1
            return web.Response(status=401)
        if st["fail"]:
            return web.Response(status=500)
        doc = json.loads(body)
        st["got"].extend(doc["records"])
        st["next"] = doc["next"]
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    st["url"] = f"http://127.0.0.1:{port}/hook?tenant=7"
    try:
        yield st
    finally:
        await runner.cleanup()


async def test_failing_endpoint_gets_everything_in_order_after_it_recovers(tmp_path: Path) -> None:
    async with running_node(tmp_path, **FAST) as n, \
            endpoint(lambda: n.keys[CONSUMER][1]) as ep:
        r = await n.request(CONSUMER, "POST", "/v1/resources/psb.id-card/subscriptions",
                            json_body={"url": ep["url"], "batch": 7})
        assert r.status == 201, r.body
        sub = r.json()
        ep["fail"] = True
        for b in range(5):
            await n.push("psb.id-card", [card(b * 10 + i) for i in range(10)])

        async def tried_a_few() -> bool:
            return ep["attempts"] >= 4

        await wait_until(tried_a_few)
        assert ep["got"] == []
        ep["fail"] = False
        await n.push("psb.id-card", [card(100 + i) for i in range(3)])

        async def all_there() -> bool:
            return len(ep["got"]) >= 53

        await wait_until(all_there)
        offsets = [x["offset"] for x in ep["got"]]
        assert offsets == sorted(offsets) and len(set(offsets)) == 53  # in order, nothing lost
        assert ep["got"][0]["data"] == {"id_number": card(0)["key"], "name": "n0"}  # projected
        assert ep["bad_sig"] == 0
        r = await n.request(CONSUMER, "GET", f"/v1/subscriptions/{sub['id']}")
        doc = r.json()
        assert doc["state"] == "active" and doc["cursor"] == offsets[-1] and doc["delivered"] >= 53
        async with n.session.get(n.url + "/metrics") as m:
            text = await m.text()
        assert "exchange_webhook_lag_seconds" in text and "exchange_webhook_deliveries_total" in text
        await n.node.audit.flush()
        log = await n.node.governance.audit_range(limit=1000)
        delivered = [e for e in log if e.op == "deliver" and e.status == 204]
        assert sum(e.count for e in delivered) >= 53
        assert any(e.op == "deliver" and e.status == 500 for e in log)


async def test_dead_letter_and_operator_replay(tmp_path: Path) -> None:
    async with running_node(tmp_path, **{**FAST, "max_attempts": 3}) as n, \
            endpoint(lambda: n.keys[CONSUMER][1]) as ep:
        await n.push("psb.id-card", [card(i) for i in range(4)])
        ep["fail"] = True
        r = await n.request(CONSUMER, "POST", "/v1/resources/psb.id-card/subscriptions",
                            json_body={"url": ep["url"]})
        sid = r.json()["id"]

        async def dead() -> bool:
            s = await n.node.governance.sub_get(sid)
            return s.state == "dead"

        await wait_until(dead)
        assert ep["attempts"] == 3
        s = (await n.request(CONSUMER, "GET", f"/v1/subscriptions/{sid}")).json()
        assert s["state"] == "dead" and "500" in s["last_error"]
        ep["fail"] = False
        db = str(tmp_path / "data" / "governance.db")
        run = lambda *a: subprocess.run([sys.executable, "-m", "gateway", "webhooks", *a],  # noqa: E731
                                        cwd=ROOT, capture_output=True, text=True, timeout=60)
        r = await asyncio.to_thread(run, "list", "--db", db)
        assert r.returncode == 0 and '"state":"dead"' in r.stdout
        r = await asyncio.to_thread(run, "replay", "s-nope", "--db", db)
        assert r.returncode == 2 and "unknown subscription" in r.stderr
        r = await asyncio.to_thread(run, "replay", sid, "--db", db)
        assert r.returncode == 0 and "dead -> active" in r.stdout, r.stderr

        async def four() -> bool:
            return len(ep["got"]) == 4

        await wait_until(four)


async def test_subscription_rules(tmp_path: Path) -> None:
    async with running_node(tmp_path, **FAST) as n:
        path = "/v1/resources/psb.id-card/subscriptions"
        for body, status in [({"url": "ftp://x"}, 422), ({"url": "http://u:p@h/x"}, 422),
                             ({"url": "http://h/x", "batch": 0}, 422), ({"url": "http://h/x", "x": 1}, 422),
                             ({"nope": 1}, 422)]:
            r = await n.request(CONSUMER, "POST", path, json_body=body)
            assert r.status == status, (body, r.body)
        assert (await n.request(CONSUMER, "POST", path, body=b"{")).status == 400
        r = await n.request(STRANGER, "POST", path, json_body={"url": "http://127.0.0.1:9/x"})
        assert r.status == 403  # no read access, no subscription
        r = await n.request(CONSUMER, "POST", "/v1/resources/nope/subscriptions", json_body={"url": "http://h/"})
        assert r.status == 404
        r = await n.request(CONSUMER, "POST", path, json_body={"url": "http://127.0.0.1:9/x"})
        sid = r.json()["id"]
        assert [s["id"] for s in (await n.request(CONSUMER, "GET", "/v1/subscriptions")).json()["subscriptions"]] == [sid]
        assert (await n.request(STRANGER, "GET", f"/v1/subscriptions/{sid}")).status == 403
        assert (await n.request(CONSUMER, "DELETE", f"/v1/subscriptions/{sid}")).status == 200
        assert (await n.request(CONSUMER, "GET", f"/v1/subscriptions/{sid}")).status == 404
        assert (await n.request(CONSUMER, "GET", path)).json()["subscriptions"] == []
