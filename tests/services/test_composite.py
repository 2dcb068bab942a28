"""Composite ("one transaction") services: parallel steps, data between steps, per-step results."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import web
from svckit import (
    LEGAL,
    MEDICAL,
    PORTAL,
    STRANGER,
    free_port,
    grant_toml,
    running_node,
    service_toml,
)

REG = "SH/GOV/hrss/employment/register"
PEN = "SH/GOV/sicenter/pension/enrol"
MED = "SH/GOV/medinsurance/accounts/enrol"


@contextlib.asynccontextmanager
async def agency(name: str, log: list, fail: dict[str, int]) -> AsyncIterator[str]:
    async def handle(request: web.Request) -> web.Response:
        body = await request.json()
        log.append(("start", name, request.headers["X-Exchange-Request-Id"], request.headers["X-Exchange-Step"], body))
        await asyncio.sleep(0.2 if name != "register" else 0)
        log.append(("end", name))
        if fail.get(name):
            return web.json_response({"error": f"{name} refused"}, status=fail[name])
        return web.json_response({"ok": True, f"{name}_id": f"{name.upper()}-1",
                                  "registration_id": "R-42" if name == "register" else None})

    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def catalog(reg: str, pen: str, med: str) -> str:
    return (service_toml(REG, [reg]) + service_toml(PEN, [pen]) + service_toml(MED, [med])
            + grant_toml(PORTAL, REG, ["POST"]) + grant_toml(PORTAL, PEN, ["POST"])
            + grant_toml(PORTAL, MED, ["POST"]) + grant_toml(STRANGER, REG, ["POST"]) + """
[[composites]]
id = "flexible-employment"
title = "Flexible employment: registration + pension + medical insurance"
consumers = ["SH/GOV/bdc/portal", "SH/GOV/psb/traffic"]

[[composites.steps]]
name = "register"
service = "SH/GOV/hrss/employment/register"
path = "/registrations"
body = { id_number = "$input.id_number", name = "$input.name" }

[[composites.steps]]
name = "pension"
service = "SH/GOV/sicenter/pension/enrol"
path = "/enrolments"
body = { registration = "$steps.register.body.registration_id", id_number = "$input.id_number" }

[[composites.steps]]
name = "medical"
service = "SH/GOV/medinsurance/accounts/enrol"
method = "POST"
path = "/enrolments"
after = ["register"]
body = { id_number = "$input.id_number", scheme = "flexible" }
""")


@contextlib.asynccontextmanager
async def setup(tmp_path: Path, fail: dict[str, int]) -> AsyncIterator[tuple[Any, list]]:
    log: list = []
    async with agency("register", log, fail) as a, agency("pension", log, fail) as b, \
            agency("medical", log, fail) as c, running_node(tmp_path, catalog(a, b, c)) as n:
        yield n, log


INPUT = {"input": {"id_number": "310101199001011234", "name": "Li Lei"}}


async def test_composite_runs_steps_in_parallel_and_passes_data(tmp_path: Path) -> None:
    async with setup(tmp_path, {}) as (n, log):
        r = await n.request(PORTAL, "POST", "/v1/composites/flexible-employment", json_body=INPUT,
                            headers={"X-Exchange-UserId": "310101199001011234"})
        assert r.status == 200, r.body
        doc = r.json()
        rid = r.headers["X-Exchange-Request-Id"]
        assert doc["status"] == "completed" and doc["request_id"] == rid
        assert [(s["name"], s["status"], s["http_status"]) for s in doc["steps"]] == [
            ("register", "ok", 200), ("pension", "ok", 200), ("medical", "ok", 200)]
        starts = {e[1]: e for e in log if e[0] == "start"}
        assert starts["pension"][4] == {"registration": "R-42", "id_number": "310101199001011234"}
        assert {e[2] for e in starts.values()} == {rid}  # one request id across the agencies
        order = [(e[0], e[1]) for e in log]
        assert order.index(("end", "register")) < order.index(("start", "pension"))
        # pension and medical overlap: both started before either ended
        assert max(order.index(("start", "pension")), order.index(("start", "medical"))) < \
            min(order.index(("end", "pension")), order.index(("end", "medical")))
        await n.node.audit.flush()
        entries = [e for e in await n.node.governance.audit_range() if e.request_id == rid]
        assert sorted((e.op, e.target) for e in entries) == sorted([
            ("composite-step", REG), ("composite-step", PEN), ("composite-step", MED),
            ("composite", "flexible-employment")])
        # X-Exchange-UserId is the caller's claim: it names nobody in the citizens' access log
        assert not any(e.citizens for e in entries)


async def test_a_failed_step_is_reported_never_hidden(tmp_path: Path) -> None:
    async with setup(tmp_path, {"medical": 409}) as (n, _):
        r = await n.request(PORTAL, "POST", "/v1/composites/flexible-employment", json_body=INPUT)
        assert r.status == 502
        doc = r.json()
        assert doc["code"] == "server.upstream_failed" and "medical" in doc["detail"]
        steps = {s["name"]: s for s in doc["steps"]}
        assert steps["register"]["status"] == "ok" and steps["pension"]["status"] == "ok"
        assert steps["medical"]["status"] == "failed" and steps["medical"]["http_status"] == 409
        assert steps["medical"]["body"] == {"error": "medical refused"}


async def test_dependent_steps_are_skipped_after_a_failure(tmp_path: Path) -> None:
    async with setup(tmp_path, {"register": 500}) as (n, log):
        r = await n.request(PORTAL, "POST", "/v1/composites/flexible-employment", json_body=INPUT)
        assert r.status == 502
        steps = {s["name"]: s["status"] for s in r.json()["steps"]}
        assert steps == {"register": "failed", "pension": "skipped", "medical": "skipped"}
        assert {e[1] for e in log if e[0] == "start"} == {"register"}


async def test_composite_access_and_step_grants(tmp_path: Path) -> None:
    async with setup(tmp_path, {}) as (n, log):
        r = await n.request(LEGAL, "POST", "/v1/composites/flexible-employment", json_body=INPUT)
        assert r.status == 403  # not a consumer of the composite
        r = await n.request(STRANGER, "POST", "/v1/composites/flexible-employment", json_body=INPUT)
        assert r.status == 502  # a consumer, but without grants on two of the services
        steps = {s["name"]: (s["status"], s.get("http_status")) for s in r.json()["steps"]}
        assert steps == {"register": ("ok", 200), "pension": ("failed", 403), "medical": ("failed", 403)}
        assert (await n.request(PORTAL, "POST", "/v1/composites/nope", json_body=INPUT)).status == 404
        r = await n.request(PORTAL, "POST", "/v1/composites/flexible-employment", json_body={"x": 1})
        assert r.status == 422 and "`x`" in r.json()["detail"]  # an unknown field: a validation error
        starts = len([e for e in log if e[0] == "start"])
        r = await n.request(PORTAL, "POST", "/v1/composites/flexible-employment", json_body={"input": {}})
        assert r.status == 422 and "$input.id_number, $input.name" in r.json()["detail"]
        assert len([e for e in log if e[0] == "start"]) == starts  # a caller error: no backend called
        services = (await n.request(PORTAL, "GET", "/v1/services")).json()["services"]
        assert any(s["id"] == "flexible-employment" for s in services)
        assert MEDICAL  # the provider subsystems are part of the sample


def test_bad_composites_are_refused(tmp_path: Path) -> None:
    from svckit import BASE_CATALOG

    from gateway.catalog import load_catalog
    from gateway.tomlfile import ConfigError

    base = catalog("http://a", "http://b", "http://c")
    cases = {
        "composites[0].steps[2].after": base.replace('after = ["register"]', 'after = ["later"]'),
        "composites[0].steps[0].service": base.replace('service = "SH/GOV/hrss/employment/register"\npath',
                                                       'service = "SH/GOV/x/y/z"\npath'),
        "composites[0].consumers[0]": base.replace('consumers = ["SH/GOV/bdc/portal"', 'consumers = ["SH/X/y/z"'),
        "composites[0].id": base.replace('id = "flexible-employment"', 'id = "Flex Employment"'),
    }
    for key, text in cases.items():
        p = tmp_path / "c.toml"
        p.write_text(BASE_CATALOG + text)
        try:
            load_catalog(p)
        except ConfigError as e:
            assert e.key.startswith(key), (key, str(e))
        else:
            raise AssertionError(f"{key} accepted")
