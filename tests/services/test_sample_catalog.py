"""The README's examples on the sample Shanghai catalog, with the demo agencies, via the SDK."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from svckit import free_port, running_node

from devkit.demo import make_app
from gateway.client import ExchangeClient, ExchangeError, WebhookVerificationError, verify_webhook

ROOT = Path(__file__).resolve().parents[2]
SHANGHAI = (ROOT / "configs" / "catalog" / "shanghai.toml").read_text()
PORTAL, EMPLOYMENT, HUKOU = "SH/GOV/bdc/portal", "SH/GOV/hrss/employment", "SH/GOV/psb/hukou"
ID = "310101199001011234"
CARD = {"key": ID, "data": {"id_number": ID, "name": "Wang Fang", "gender": "F", "ethnicity": "Han",
                            "birth_date": "1990-01-01", "address": "1 Renmin Rd",
                            "issuing_authority": "PSB Huangpu", "valid_from": "2010-01-01"}}


@contextlib.asynccontextmanager
async def serve(app: web.Application, port: int = 0) -> AsyncIterator[int]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = port or free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield port
    finally:
        await runner.cleanup()


@pytest.fixture
async def sample(tmp_path: Path):  # noqa: ANN201
    hook_port = free_port()  # the sample's local webhook target, http://127.0.0.1:9102/hooks/
    base = SHANGHAI.replace("127.0.0.1:9102", f"127.0.0.1:{hook_port}")
    async with serve(make_app()) as port, \
            running_node(tmp_path, base=base.replace("127.0.0.1:9101", f"127.0.0.1:{port}")) as n:
        n.extra["hook_port"] = hook_port
        clients: list[ExchangeClient] = []

        def sdk(client: str) -> ExchangeClient:
            kid, sec = n.keys[client]
            c = ExchangeClient(n.url, kid, sec, client, retries=0)
            clients.append(c)
            return c

        yield n, sdk
        for c in clients:
            await c.close()


async def test_service_call_and_composite(sample) -> None:  # noqa: ANN001
    n, sdk = sample
    portal = sdk(PORTAL)
    listed = {s["id"] for s in await portal.services()}
    assert {"SH/GOV/psb/hukou/identity", "flexible-employment"} <= listed
    status, headers, body = await portal.call_service(
        "SH/GOV/psb/hukou/identity", "/verifications", method="POST",
        body=json.dumps({"id_number": ID, "name": "Wang Fang"}).encode(),
        headers={"Content-Type": "application/json"})
    assert status == 200 and json.loads(body)["match"] is True and "X-Exchange-Request-Id" in headers
    doc = await portal.run_composite("flexible-employment", {"id_number": ID, "name": "Wang Fang"})
    assert doc["status"] == "completed"
    steps = {s["name"]: s for s in doc["steps"]}
    reg = steps["register"]["body"]["registration_id"]
    assert steps["pension"]["body"]["registration"] == reg == steps["medical"]["body"]["registration"]
    with pytest.raises(ExchangeError) as e:  # no name: a caller error, no backend is called
        await portal.run_composite("flexible-employment", {"id_number": ID})
    assert e.value.status == 422 and "$input.name" in e.value.detail


async def test_consented_personal_read_and_access_log(sample) -> None:  # noqa: ANN001
    n, sdk = sample
    await sdk(HUKOU).push("psb.id-card", [CARD])
    emp, portal = sdk(EMPLOYMENT), sdk(PORTAL)
    with pytest.raises(ExchangeError) as e:
        await emp.get("psb.id-card", ID, user_id=ID)
    assert e.value.status == 403
    purpose = "flexible employment registration (灵活就业登记)"
    consent = await portal.grant_consent(ID, EMPLOYMENT, ["psb.id-card"], purpose, "2030-01-01")
    with pytest.raises(ExchangeError) as e:  # a consent is for its purpose only
        await emp.get("psb.id-card", ID, user_id=ID, purpose="marketing")
    assert e.value.status == 403
    rec = await emp.get("psb.id-card", ID, user_id=ID, purpose=purpose)
    assert rec["data"] == {"id_number": ID, "name": "Wang Fang"}
    log = await portal.access_log(ID)
    assert log[0]["client"] == EMPLOYMENT and log[0]["consent"] == consent["id"]
    assert log[0]["purpose"] == purpose and log[0]["operation"] == "read"
    await portal.revoke_consent(consent["id"])
    with pytest.raises(ExchangeError):
        await emp.get("psb.id-card", ID, user_id=ID, purpose=purpose)


async def test_webhook_subscription_with_sdk_verification(sample) -> None:  # noqa: ANN001
    n, sdk = sample
    n.node.webhooks.scan_s = 0.05
    got: list[dict] = []
    node_keys = await sdk(EMPLOYMENT).node_keys()  # the node's public keys, GET /v1/node-keys

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        try:
            verify_webhook(request.headers, body, node_keys, path=request.path)
        except WebhookVerificationError:
            return web.Response(status=401)
        got.extend(json.loads(body)["records"])
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hooks/employment", hook)
    async with serve(app, n.extra["hook_port"]) as port:
        emp = sdk(EMPLOYMENT)
        sub = await emp.subscribe("psb.id-card", f"http://127.0.0.1:{port}/hooks/employment", batch=10)
        assert sub["state"] == "active"
        with pytest.raises(ExchangeError) as refused:  # not among the consumer's webhook targets
            await emp.subscribe("psb.id-card", "http://127.0.0.1:4222/")
        assert refused.value.status == 403 and "webhook target" in refused.value.detail
        await sdk(HUKOU).push("psb.id-card", [CARD])
        async with asyncio.timeout(10):
            while not got:
                await asyncio.sleep(0.02)
        assert got[0]["data"] == {"id_number": ID, "name": "Wang Fang"}
        assert [s["id"] for s in await emp.subscriptions()] == [sub["id"]]
        with pytest.raises(WebhookVerificationError):
            verify_webhook({"X-Exchange-Date": "x"}, b"", node_keys, path="/hook")
