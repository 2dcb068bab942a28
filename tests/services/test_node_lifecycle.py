"""A node keeps every background task it starts and ends them all when it stops."""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec
from svckit import OWNER, PORTAL, backend, free_port, grant_toml, running_node, service_toml

SID = "SH/GOV/hrss/employment/register"


async def test_a_started_and_stopped_node_leaves_no_task_running(tmp_path: Path) -> None:
    before = asyncio.all_tasks()
    async with backend() as (url, _):
        extra = service_toml(SID, [url], health={"path": "/healthz", "interval_s": 0.05})
        async with running_node(tmp_path, extra + grant_toml(PORTAL, SID)) as n:
            # background work of every kind: audit writer, webhook scan, health checks, ...
            await n.push("psb.stations", [{"key": "s1", "data": {"code": "s1", "name": "Hongqiao"}}])
            assert (await n.request(PORTAL, "GET", f"/v1/services/{SID}/echo")).status == 200
            r = await n.request(OWNER, "GET", "/v1/resources/psb.stations/records", query="wait=1")
            assert r.status == 200
            # a catalog reload that changes the service retires its pool (closed later) and
            # starts the health checks of the new one
            spec = n.node.services.get(SID).spec
            backends = [msgspec.structs.replace(spec.backends[0], url=f"http://127.0.0.1:{free_port()}")]
            n.node.services.update([msgspec.structs.replace(spec, backends=backends)])
            running = {t.get_coro().__qualname__ for t in asyncio.all_tasks() - before}
            assert {"AuditLog._run", "Checkpointer._run", "Deliverer._scan_forever",
                    "ServicePool._check_forever", "ServiceRegistry._close_later"} <= running, running
        # running_node ended with node.stop(): nothing is left, not even a cancelled task
        left = asyncio.all_tasks() - before - {asyncio.current_task()}
        assert not left, sorted(repr(t) for t in left)


async def test_closing_the_services_ends_the_pools_waiting_to_close() -> None:
    from gateway.services.proxy import ServiceRegistry
    from gateway.services.spec import Backend, Service

    before = asyncio.all_tasks()
    reg = ServiceRegistry()
    reg.start()
    spec = Service(id=SID, backends=[Backend(url=f"http://127.0.0.1:{free_port()}")])
    reg.update([spec])
    reg.update([msgspec.structs.replace(spec, timeout_s=5.0)])  # the old pool closes ~6 s later
    assert len(asyncio.all_tasks() - before) == 1
    await reg.close()
    assert not asyncio.all_tasks() - before - {asyncio.current_task()}
