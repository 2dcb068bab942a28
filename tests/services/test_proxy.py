"""Service routing through a node to real aiohttp backends on loopback."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from svckit import (
    CONSUMER,
    PORTAL,
    STRANGER,
    backend,
    free_port,
    grant_toml,
    raw_server,
    running_node,
    service_toml,
    wait_until,
)

SID = "SH/GOV/hrss/employment/register"
BASE = f"/v1/services/{SID}"


def cat(backends, grants: str | None = None, **opts) -> str:
    return service_toml(SID, backends, **opts) + (grants if grants is not None else grant_toml(PORTAL, SID))


async def test_call_is_proxied_with_headers_and_body(tmp_path: Path) -> None:
    async with backend() as (url, st), running_node(tmp_path, cat([url + "/api"])) as n:
        r = await n.request(PORTAL, "POST", BASE + "/echo/a%20b", query="x=1&y=%20",
                            json_body={"hello": "世界"},
                            headers={"X-Exchange-UserId": "u1", "X-Exchange-Purpose": "test",
                                     "Connection": "keep-alive, X-Secret-Hop", "X-Secret-Hop": "no"})
        assert r.status == 200, r.body
        doc = r.json()
        assert doc["raw_path"] == "/api/echo/a%20b?x=1&y=%20"
        assert doc["method"] == "POST" and json.loads(doc["body"]) == {"hello": "世界"}
        h = {k.lower(): v for k, v in doc["headers"].items()}
        assert h["x-exchange-client"] == PORTAL
        assert h["x-exchange-userid"] == "u1" and h["x-exchange-purpose"] == "test"
        assert h["x-exchange-request-id"] == r.headers["X-Exchange-Request-Id"]
        assert "authorization" not in h and "x-secret-hop" not in h
        assert r.headers["X-Backend"] == "yes" and r.headers["Set-Cookie"] == "a=1"


async def test_backend_errors_pass_through_untouched(tmp_path: Path) -> None:
    async with backend() as (url, _), running_node(tmp_path, cat([url])) as n:
        for code in (404, 409, 500, 503):
            r = await n.request(PORTAL, "GET", BASE + f"/status/{code}")
            assert r.status == code
            assert r.body == f"backend says {code}".encode()
            assert r.headers["X-Backend-Error"] == "1"
            assert "problem" not in r.headers.get("Content-Type", "")


async def test_streamed_and_head(tmp_path: Path) -> None:
    async with backend() as (url, _), running_node(tmp_path, cat([url])) as n:
        r = await n.request(PORTAL, "GET", BASE + "/stream", query="n=500")
        assert r.status == 200 and r.body == b"".join(f"chunk{i}\n".encode() for i in range(500))
        r = await n.request(PORTAL, "HEAD", BASE + "/echo")
        assert r.status == 200 and r.body == b""


async def test_grants_decide_method_and_path(tmp_path: Path) -> None:
    grants = grant_toml(PORTAL, SID, ["GET"], ["/echo/public"])
    async with backend() as (url, st), running_node(tmp_path, cat([url], grants)) as n:
        assert (await n.request(PORTAL, "GET", BASE + "/echo/public/x")).status == 200
        denied = [("POST", "/echo/public"), ("GET", "/echo/publicity"), ("GET", "/echo/admin"),
                  ("GET", "/echo/%70ublic2"), ("GET", "")]
        for method, tail in denied:
            r = await n.request(PORTAL, method, BASE + tail)
            assert r.status == 403, (method, tail, r.body)
            assert r.json()["code"] == "client.access_denied"
        r = await n.request(STRANGER, "GET", BASE + "/echo/public")
        assert r.status == 403
        r = await n.request(PORTAL, "GET", "/v1/services/SH/GOV/hrss/employment/nope/x")
        assert r.status == 404 and r.json()["code"] == "client.not_found"
        # the provider calls its own service without a grant
        assert (await n.request(CONSUMER, "DELETE", BASE + "/echo/any")).status == 200
        assert len(st["calls"]) == 2


@pytest.mark.parametrize("tail", ["/echo/../admin", "/echo/%2e%2e/admin", "/echo/%2E%2E/admin",
                                  "/echo/.%2e/admin", "/echo/a%2Fb", "/echo/a%2f..%2fadmin", "/echo/a%5Cb",
                                  "/echo/./x", "/echo//x", "/echo/%00", "/echo/%0d%0aX:1",
                                  "/..", "/%2e"])
async def test_traversal_never_reaches_a_backend(tmp_path: Path, tail: str) -> None:
    async with backend() as (url, st), running_node(tmp_path, cat([url + "/api/v1"])) as n:
        r = await n.request(PORTAL, "GET", BASE + tail)
        assert r.status in (400, 404), (tail, r.status, r.body)
        assert st["calls"] == []


async def test_crlf_in_headers_is_refused(tmp_path: Path) -> None:
    async with backend() as (url, st), running_node(tmp_path, cat([url])) as n:
        port = int(n.url.rsplit(":", 1)[1])
        path = BASE + "/echo"
        hdrs = n.signer(PORTAL).headers("GET", path)
        for evil in (b"X-Exchange-Purpose: a\rInjected: 1", b"X-Exchange-Purpose: a\nInjected: 1",
                     b"X-Exchange-Purpose: a\x00b", b"X-Exchange-Purpose: a\r\n folded"):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            req = (f"GET {path} HTTP/1.1\r\nHost: x\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items())
                   ).encode() + evil + b"\r\nConnection: close\r\n\r\n"
            writer.write(req)
            await writer.drain()
            status_line = await asyncio.wait_for(reader.readline(), 5)
            writer.close()
            assert status_line.split()[1] == b"400", (evil, status_line)
        assert st["calls"] == []


async def test_backend_down_is_502(tmp_path: Path) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    async with running_node(tmp_path, cat([down], retries=2)) as n:
        for method in ("GET", "POST"):
            r = await n.request(PORTAL, method, BASE + "/x")
            assert r.status == 502, r.body
            assert r.json()["code"] == "server.upstream_failed"
            assert r.headers["Content-Type"].startswith("application/problem+json")


async def test_slow_backend_is_504_within_the_timeout(tmp_path: Path) -> None:
    async with backend() as (url, _), running_node(tmp_path, cat([url], timeout_s=0.3)) as n:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        r = await n.request(PORTAL, "GET", BASE + "/slow", query="s=5")
        assert r.status == 504 and r.json()["code"] == "server.upstream_timeout"
        assert loop.time() - t0 < 4  # answered long before the backend would have
        pool = n.node.services.get(SID)
        assert pool is not None and pool.client.in_use == 0


@pytest.mark.parametrize("behaviour", ["reset", "garbage"])
async def test_resetting_or_garbage_backend_is_502(tmp_path: Path, behaviour: str) -> None:
    async with raw_server(behaviour) as url, running_node(tmp_path, cat([url])) as n:
        for _ in range(3):
            r = await n.request(PORTAL, "GET", BASE + "/x")
            assert r.status == 502, r.body
            assert r.json()["code"] == "server.upstream_failed"
        pool = n.node.services.get(SID)
        assert pool is not None and pool.client.in_use == 0


async def test_no_connections_leak_after_many_failures(tmp_path: Path) -> None:
    async with backend() as (url, st), running_node(tmp_path, cat([url], timeout_s=0.2, max_connections=4,
                                                                  breaker={"failures": 1000})) as n:
        rs = await asyncio.gather(*(n.request(PORTAL, "GET", BASE + "/slow", query="s=2") for _ in range(8)))
        assert all(r.status == 504 for r in rs)
        rs = await asyncio.gather(*(n.request(PORTAL, "GET", BASE + "/echo") for _ in range(20)))
        assert all(r.status == 200 for r in rs)  # the pool of 4 was not exhausted by the timeouts
        pool = n.node.services.get(SID)
        assert pool.client.in_use == 0

        def established() -> int:
            import psutil

            return sum(1 for c in psutil.Process().net_connections("tcp")
                       if c.raddr and c.raddr.port == st["port"] and c.status == "ESTABLISHED")

        assert established() <= 4


async def test_circuit_breaker_opens_and_closes_again(tmp_path: Path) -> None:
    async with backend() as (url, st), \
            running_node(tmp_path, cat([url], breaker={"failures": 3, "open_s": 0.3})) as n:
        st["fail"] = 3
        for _ in range(3):
            assert (await n.request(PORTAL, "GET", BASE + "/echo")).status == 503  # the backend's own
        r = await n.request(PORTAL, "GET", BASE + "/echo")
        assert r.status == 503 and r.json()["code"] == "server.unavailable"
        assert "circuit open" in r.json()["detail"] and r.headers["Retry-After"].isdigit()
        assert len(st["calls"]) == 3  # refused without touching the backend
        pool = n.node.services.get(SID)
        assert pool.breaker.state == "open"
        await asyncio.sleep(0.35)
        r = await n.request(PORTAL, "GET", BASE + "/echo")  # the half-open probe
        assert r.status == 200
        assert pool.breaker.state == "closed"
        assert (await n.request(PORTAL, "GET", BASE + "/echo")).status == 200
        async with n.session.get(n.url + "/metrics") as m:
            text = await m.text()
        assert 'exchange_service_calls_total{outcome="circuit_open"} 1.0' in text
        assert 'exchange_service_calls_total{outcome="backend_5xx"} 3.0' in text
        assert "exchange_service_breakers_open 0.0" in text


async def test_weighted_balancing(tmp_path: Path) -> None:
    async with backend() as (a, sa), backend() as (b, sb), \
            running_node(tmp_path, cat([(a, 3), (b, 1)])) as n:
        for _ in range(40):
            assert (await n.request(PORTAL, "GET", BASE + "/echo")).status == 200
        assert (len(sa["calls"]), len(sb["calls"])) == (30, 10)


async def test_active_health_checks_take_a_backend_out_and_back(tmp_path: Path) -> None:
    async with backend() as (a, sa), backend() as (b, sb), \
            running_node(tmp_path, cat([a, b], health={"path": "/healthz", "interval_s": 0.05})) as n:
        pool = n.node.services.get(SID)
        sa["healthy"] = False

        async def a_down() -> bool:
            return not pool.balancer.backends[0].healthy

        await wait_until(a_down)
        for _ in range(10):
            assert (await n.request(PORTAL, "GET", BASE + "/echo")).status == 200
        assert len(sa["calls"]) == 0 and len(sb["calls"]) == 10
        sa["healthy"] = True

        async def a_up() -> bool:
            return pool.balancer.backends[0].healthy

        await wait_until(a_up)
        for _ in range(10):
            await n.request(PORTAL, "GET", BASE + "/echo")
        assert len(sa["calls"]) == 5


async def test_idempotent_calls_retry_on_another_backend_others_do_not(tmp_path: Path) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    async with backend() as (up, st), \
            running_node(tmp_path, cat([down, up], retries=1, eject_failures=1000)) as n:
        gets = [await n.request(PORTAL, "GET", BASE + "/echo") for _ in range(10)]
        assert all(r.status == 200 for r in gets)
        posts = [await n.request(PORTAL, "POST", BASE + "/echo", body=b"x") for _ in range(10)]
        assert sorted({r.status for r in posts}) == [200, 502]


async def test_passive_ejection(tmp_path: Path) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    async with backend() as (up, st), \
            running_node(tmp_path, cat([down, up], retries=0, eject_failures=1, eject_s=60)) as n:
        statuses = [(await n.request(PORTAL, "POST", BASE + "/echo")).status for _ in range(10)]
        assert statuses.count(502) == 1 and statuses.count(200) == 9


async def test_list_services(tmp_path: Path) -> None:
    async with running_node(tmp_path, cat(["http://127.0.0.1:9"], grant_toml(PORTAL, SID, ["GET"], ["/a"]))) as n:
        r = await n.request(PORTAL, "GET", "/v1/services")
        assert r.status == 200
        (svc,) = r.json()["services"]
        assert svc["id"] == SID and svc["methods"] == ["GET"] and svc["paths"] == ["/a"]
        assert (await n.request(STRANGER, "GET", "/v1/services")).json()["services"] == []
        assert (await n.request(None, "GET", "/v1/services")).status == 401


def test_bad_service_declarations_are_refused(tmp_path: Path) -> None:
    from svckit import BASE_CATALOG

    from gateway.catalog import load_catalog
    from gateway.tomlfile import ConfigError

    bad = {
        "services[0].id": service_toml("SH/GOV/nobody/x/svc", ["http://a"]),
        "services[0].backends[0].url": service_toml(SID, ["ftp://a"]),
        "services[0].timeout_s": service_toml(SID, ["http://a"], timeout_s=0),
        "services[0].backends": service_toml(SID, []),
        "service_grants[0].service": grant_toml(PORTAL, "SH/GOV/hrss/employment/none"),
        "service_grants[0].paths": service_toml(SID, ["http://a"]) + grant_toml(PORTAL, SID, ["GET"], ["/../x"]),
        "service_grants[0].methods": service_toml(SID, ["http://a"]) + grant_toml(PORTAL, SID, ["FETCH"]),
    }
    for key, extra in bad.items():
        p = tmp_path / "c.toml"
        p.write_text(BASE_CATALOG + extra)
        with pytest.raises(ConfigError) as e:
            load_catalog(p)
        assert e.value.key.startswith(key), (key, str(e.value))



async def test_large_bodies_both_ways(tmp_path: Path) -> None:
    payload = b"y" * (1024 * 1024)
    async with backend() as (url, _), running_node(tmp_path, cat([url])) as n:
        r = await n.request(PORTAL, "POST", BASE + "/echo/big", body=payload)
        assert r.status == 200 and len(r.body) > 1024 * 1024
        assert json.loads(r.body)["body"] == payload.decode()
        assert r.headers["Content-Length"] == str(len(r.body))
        assert n.node.services.get(SID).client.in_use == 0


async def test_caller_hanging_up_releases_the_backend_connection(tmp_path: Path) -> None:
    async with backend() as (url, _), running_node(tmp_path, cat([url], timeout_s=10)) as n:
        with pytest.raises(asyncio.TimeoutError):
            async with asyncio.timeout(0.3):
                await n.request(PORTAL, "GET", BASE + "/slow", query="s=5")
        pool = n.node.services.get(SID)

        async def released() -> bool:
            return pool.client.in_use == 0

        await wait_until(released)
        assert pool.breaker.state == "closed" and pool.breaker.inflight_probes == 0
        assert (await n.request(PORTAL, "GET", BASE + "/echo")).status == 200
        await n.node.audit.flush()
        calls = [e for e in await n.node.governance.audit_range() if e.op == "call"]
        assert [e.status for e in calls] == [499, 200]  # the abandoned call is audited too
