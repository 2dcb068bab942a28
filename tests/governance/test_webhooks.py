"""Webhook delivery: batches signed with the node's Ed25519 key, at least once, in order,
backoff, dead letter and replay."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from svckit import CONSUMER, STRANGER, free_port, running_node, wait_until

from gateway.client import ExchangeClient, ExchangeError, WebhookVerificationError, verify_webhook
from gateway.governance.webhooks import KEY_FILE, load_node_key
from gateway.tomlfile import ConfigError

ROOT = Path(__file__).resolve().parents[2]
FAST = {"scan_s": 0.05, "base_s": 0.02, "cap_s": 0.1, "max_attempts": 1000}


def hook_target(port: int, path: str = "/hook", *, consumer: str = CONSUMER, host: str = "127.0.0.1",
                private: bool = True) -> str:
    """A [[webhook_targets]] entry allowing the consumer's loopback test endpoint."""
    return (f'\n[[webhook_targets]]\nconsumer = "{consumer}"\nurl_prefix = "http://{host}:{port}{path}"\n'
            f"allow_http = true\nallow_private = {'true' if private else 'false'}\n")


def card(i: int) -> dict[str, Any]:
    key = f"3101011990{i:08d}"
    return {"key": key, "data": {"id_number": key, "name": f"n{i}", "address": "secret"}}


async def node_keys(n: Any) -> dict[str, bytes]:
    """The node's public keys, fetched with the SDK from GET /v1/node-keys."""
    kid, sec = n.keys[CONSUMER]
    return await ExchangeClient(n.url, kid, sec, CONSUMER, session=n.session).node_keys()


@contextlib.asynccontextmanager
async def endpoint(keys: dict[str, bytes], port: int) -> AsyncIterator[dict[str, Any]]:
    """A consumer's callback endpoint on ``port`` that can be told to fail; records what it
    accepted and the last delivery as received (headers, body, path, query)."""
    st: dict[str, Any] = {"fail": False, "got": [], "attempts": 0, "bad_sig": 0, "signers": set()}

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        st["attempts"] += 1
        st["last"] = (dict(request.headers), body, request.path, request.query_string)
        try:
            st["signers"].add(verify_webhook(request.headers, body, keys, path=request.path,
                                             query=request.query_string))
        except WebhookVerificationError:
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
    await web.TCPSite(runner, "127.0.0.1", port).start()
    st["url"] = f"http://127.0.0.1:{port}/hook?tenant=7"
    try:
        yield st
    finally:
        await runner.cleanup()


async def test_failing_endpoint_gets_everything_in_order_after_it_recovers(tmp_path: Path) -> None:
    port = free_port()
    async with running_node(tmp_path, hook_target(port), **FAST) as n, endpoint(await node_keys(n), port) as ep:
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
        assert ep["bad_sig"] == 0 and ep["signers"] == {n.node.node_key.id}
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
    port = free_port()
    async with running_node(tmp_path, hook_target(port), **{**FAST, "max_attempts": 3}) as n, \
            endpoint(await node_keys(n), port) as ep:
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
        assert s["state"] == "dead" and s["last_error"] == "http_5xx"
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
    async with running_node(tmp_path, hook_target(9, "/"), **FAST) as n:
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



async def test_delivery_verifies_with_the_published_key_and_tampering_fails(tmp_path: Path) -> None:
    port = free_port()
    async with running_node(tmp_path, hook_target(port), **FAST) as n:
        async with n.session.get(n.url + "/v1/node-keys") as r:  # unsigned
            assert r.status == 200
            doc = await r.json()
        [k] = doc["keys"]
        raw = base64.urlsafe_b64decode(k["public_key"] + "==")
        assert k["alg"] == "Ed25519" and len(raw) == 32
        assert k["id"] == hashlib.sha256(raw).hexdigest()[:16] == n.node.node_key.id
        keys = await node_keys(n)
        assert keys == {k["id"]: raw}
        async with endpoint(keys, port) as ep:
            r = await n.request(CONSUMER, "POST", "/v1/resources/psb.id-card/subscriptions",
                                json_body={"url": ep["url"]})
            sid = r.json()["id"]
            await n.push("psb.id-card", [card(1)])

            async def got_one() -> bool:
                return len(ep["got"]) == 1

            await wait_until(got_one)
        assert ep["bad_sig"] == 0
        headers, body, path, query = ep["last"]
        assert headers["X-Exchange-Signature"].startswith(f"ed25519 keyid={k['id']}, sig=")
        assert headers["X-Exchange-Subscription"] == sid and headers["X-Exchange-Client"] == CONSUMER
        assert "Authorization" not in headers  # no shared-secret MAC any more
        assert verify_webhook(headers, body, keys, path=path, query=query) == k["id"]
        verify_webhook(headers, body, path=path, query=query)  # keys remembered by node_keys()

        def fails(match: str, h: dict[str, str] = headers, b: bytes = body, p: str = path,
                  q: str = query, ks: dict[str, bytes] = keys, **kw: float) -> None:
            with pytest.raises(WebhookVerificationError, match=match):
                verify_webhook(h, b, ks, path=p, query=q, **kw)

        fails("bad signature", b=body.replace(b'"n1"', b'"n2"'))  # tampered body
        fails("bad signature", q="tenant=8")
        fails("bad signature", p="/other")
        fails("bad signature", h={**headers, "X-Exchange-Subscription": "s-other"})
        fails("bad signature", h={**headers, "X-Exchange-Client": "SH/GOV/psb/traffic"})
        other = load_node_key(tmp_path / "other.key")
        fails("bad signature", ks={k["id"]: other.public})  # a wrong key under the same id
        fails("unknown node key id", ks={other.id: other.public})
        fails("not 32 raw Ed25519 bytes", ks={k["id"]: b"short"})
        at = n.node.node_key.delivery_headers  # sign a delivery dated in the past
        old = at(CONSUMER, sid, path, query, body, date="2020-01-01T00:00:00Z")
        fails("stale delivery", h=old)
        fails("stale delivery", h=headers, now=1e10)
        fails("malformed X-Exchange-Date", h={**headers, "X-Exchange-Date": "yesterday"})
        fails("no X-Exchange-Signature header", h={k2: v for k2, v in headers.items()
                                                   if k2 != "X-Exchange-Signature"})
        fails("malformed X-Exchange-Signature", h={**headers, "X-Exchange-Signature": "hmac abc"})
        fails("no X-Exchange-Date header", h={})


async def test_key_file_is_private_and_reused_across_restarts(tmp_path: Path) -> None:
    async with running_node(tmp_path) as n:
        first = n.node.node_key.id
    kf = tmp_path / "data" / KEY_FILE
    assert stat.S_IMODE(kf.stat().st_mode) == 0o600
    assert kf.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    async with running_node(tmp_path) as n:
        assert n.node.node_key.id == first
        assert [k["id"] for k in (await (await n.session.get(n.url + "/v1/node-keys")).json())["keys"]] == [first]
        async with n.session.get(n.url + "/openapi.json") as r:
            assert "/v1/node-keys" in (await r.json())["paths"]
    assert load_node_key(kf).id == first  # two nodes never share a key file by accident
    assert load_node_key(tmp_path / "elsewhere.key").id != first


def test_bad_key_files_are_refused_with_the_reason(tmp_path: Path) -> None:
    bad = tmp_path / "garbage.key"
    fd = os.open(bad, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"not a key")
    os.close(fd)
    with pytest.raises(ConfigError, match="garbage.key: not an unencrypted PEM private key"):
        load_node_key(bad)
    ok = tmp_path / "ok.key"
    load_node_key(ok)
    os.chmod(ok, 0o644)
    with pytest.raises(ConfigError, match="permissions 0644 are too open"):
        load_node_key(ok)
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    ecf = tmp_path / "ec.key"
    fd = os.open(ecf, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, pem)
    os.close(fd)
    with pytest.raises(ConfigError, match="not an Ed25519 private key"):
        load_node_key(ecf)


async def test_serve_refuses_a_bad_key_file_without_a_traceback(tmp_path: Path) -> None:
    async with running_node(tmp_path):
        pass
    kf = tmp_path / "data" / KEY_FILE
    os.chmod(kf, 0o640)
    r = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "gateway", "serve", "--config",
                                                 str(tmp_path / "node.toml")],
                                cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    assert f"{KEY_FILE}: permissions 0640 are too open" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("answer", [
    b"{", b'{"nokeys":[]}', b'{"keys":[{"id":"0000000000000000","alg":"Ed25519","public_key":"AAAA"}]}',
    b'{"keys":[{"id":"x","alg":"RSA","public_key":"AAAA"}]}'])
async def test_sdk_refuses_a_bad_node_keys_answer(answer: bytes) -> None:
    async def keys(_r: web.Request) -> web.Response:
        return web.Response(body=answer, content_type="application/json")

    app = web.Application()
    app.router.add_get("/v1/node-keys", keys)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with ExchangeClient(f"http://127.0.0.1:{port}", "k", "s" * 64, CONSUMER) as c:
            with pytest.raises(ExchangeError) as e:
                await c.node_keys()
        assert e.value.code == "node_keys.invalid" and "/v1/node-keys" in e.value.detail
    finally:
        await runner.cleanup()


async def test_sdk_merges_keys_of_several_nodes_and_skips_a_dead_one(tmp_path: Path) -> None:
    async with running_node(tmp_path / "a") as a, running_node(tmp_path / "b") as b:
        kid, sec = a.keys[CONSUMER]
        dead = f"http://127.0.0.1:{free_port()}"
        async with ExchangeClient([a.url, dead, b.url], kid, sec, CONSUMER) as c:
            keys = await c.node_keys()
        assert set(keys) == {a.node.node_key.id, b.node.node_key.id}  # each node has its own key
        async with ExchangeClient(dead, kid, sec, CONSUMER) as c:
            with pytest.raises(ExchangeError) as e:
                await c.node_keys()
        assert e.value.status == 0
