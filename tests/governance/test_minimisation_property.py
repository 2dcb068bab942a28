"""Property: over random catalogs, grants, masks and records, no value that a consumer's
grant masks or leaves out reaches that consumer: not in a pull page (JSON or msgpack), a
keyed read, a webhook delivery, nor through the record ``key``. Keys the grant does not
release in clear arrive as stable per-consumer pseudonyms (DESIGN: minimisation)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import msgspec
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from svckit import free_port, running_node, wait_until

OWNER = "SH/GOV/src/sys"
CONSUMERS = ["SH/GOV/c1/sys", "SH/GOV/c2/sys", "SH/GOV/c3/sys"]
FAST = {"scan_s": 0.02, "base_s": 0.02, "cap_s": 0.1, "max_attempts": 1000}


@st.composite
def worlds(draw: st.DrawFn) -> dict[str, Any]:
    """A catalog of 1-2 resources with grants for up to three consumers, and records."""
    resources = []
    for r in range(draw(st.integers(1, 2))):
        fields = [f"f{i}" for i in range(draw(st.integers(2, 5)))]
        key = draw(st.sampled_from([None, *fields]))
        grants = {}
        for c in CONSUMERS:
            if not draw(st.booleans()):
                continue
            allowed = draw(st.lists(st.sampled_from(fields), unique=True, min_size=1))
            if draw(st.integers(0, 4)) == 0:
                allowed = ["*"]
            shown = fields if allowed == ["*"] else allowed
            masks = {f: [draw(st.integers(0, 3)), draw(st.integers(0, 3))]
                     for f in shown if draw(st.integers(0, 2)) == 0}
            grants[c] = (allowed, masks)
        n = draw(st.integers(1, 4))
        records = []
        for i in range(n):
            data = {f: f"{f}.{r}.{i}.{secrets.token_hex(6)}" for f in fields}
            records.append({"key": data[key] if key else f"k.{r}.{i}.{secrets.token_hex(6)}", "data": data})
        resources.append({"id": f"res-{r}", "fields": fields, "key": key, "grants": grants,
                          "records": records, "personal": draw(st.booleans())})
    return {"resources": resources}


def catalog_toml(world: dict[str, Any], hook_port: int) -> str:
    subs = [OWNER, *CONSUMERS]
    out = ['instance = "SH"\n']
    for s in subs:
        member = s.rsplit("/", 1)[0]
        out.append(f'[[members]]\nid = "{member}"\n[[subsystems]]\nid = "{s}"\n')
    for res in world["resources"]:
        fields = ", ".join(f'{f} = "str"' for f in res["fields"])
        key = f'key = "{res["key"]}"\n' if res["key"] else ""
        out.append(f'[[resources]]\nid = "{res["id"]}"\nowner = "{OWNER}"\nsharing = "conditional"\n'
                   f'personal = {"true" if res["personal"] else "false"}\n{key}fields = {{ {fields} }}\n')
        for c, (allowed, masks) in res["grants"].items():
            mask = "".join(f"masks.{f} = {m}\n" for f, m in masks.items())
            # a legal basis: keyed reads of personal records need no consent in this property
            out.append(f'[[grants]]\nconsumer = "{c}"\nresource = "{res["id"]}"\nfields = {json.dumps(allowed)}\n'
                       f'legal_basis = "test law"\n{mask}')
    for c in CONSUMERS:
        out.append(f'[[webhook_targets]]\nconsumer = "{c}"\nurl_prefix = "http://127.0.0.1:{hook_port}/"\n'
                   "allow_http = true\nallow_private = true\n")
    return "\n".join(out)


def withheld(res: dict[str, Any], consumer: str) -> tuple[set[str], dict[str, tuple[int, int]]]:
    """The fields a consumer must not see in clear: left out, and masked (head, tail)."""
    allowed, masks = res["grants"][consumer]
    shown = set(res["fields"]) if allowed == ["*"] else set(allowed)
    return set(res["fields"]) - shown, {f: (m[0], m[1]) for f, m in masks.items()}


def check(payload: bytes, res: dict[str, Any], consumer: str, where: str) -> None:
    """No withheld value, and no key the grant hides, anywhere in ``payload``."""
    out, masked = withheld(res, consumer)
    for rec in res["records"]:
        for f in out | set(masked):
            assert rec["data"][f].encode() not in payload, f"{where}: {consumer} got {f} of {res['id']}"
        if not key_clear(res, consumer):
            assert rec["key"].encode() not in payload, f"{where}: {consumer} got the key of {res['id']}"


def projected(res: dict[str, Any], consumer: str, data: dict[str, str]) -> dict[str, str]:
    """What the grant releases of ``data``: its fields, masked (DESIGN: projection)."""
    out, masked = withheld(res, consumer)
    shown = {}
    for f, v in data.items():
        if f in out:
            continue
        if f in masked:
            head, tail = masked[f]
            v = "*" * len(v) if len(v) <= head + tail else v[:head] + "*" * (len(v) - head - tail) + v[len(v) - tail:]
        shown[f] = v
    return shown


def key_clear(res: dict[str, Any], consumer: str) -> bool:
    out, masked = withheld(res, consumer)
    if not out and not masked:
        return True
    return res["key"] is not None and res["key"] not in out and res["key"] not in masked


def check_records(got: list[dict[str, Any]], res: dict[str, Any], consumer: str,
                  by_offset: dict[int, dict[str, Any]], where: str) -> None:
    """Each released record is exactly the grant's projection; its key in clear only where
    the grant releases the key field in clear, else a pseudonym."""
    for r in got:
        rec = by_offset[r["offset"]]
        assert r["data"] == projected(res, consumer, rec["data"]), where
        if key_clear(res, consumer):
            assert r["key"] == rec["key"], where
        else:
            assert r["key"].startswith("~") and len(r["key"]) == 33 and r["key"] != rec["key"], where


@contextlib.asynccontextmanager
async def receiver(port: int) -> AsyncIterator[list[tuple[str, bytes]]]:
    got: list[tuple[str, bytes]] = []

    async def hook(request: web.Request) -> web.Response:
        got.append((request.path, await request.read()))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/{tail:.*}", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield got
    finally:
        await runner.cleanup()


async def run_world(tmp: Path, world: dict[str, Any]) -> None:
    port = free_port()
    async with receiver(port) as hooks, running_node(tmp, base=catalog_toml(world, port), **FAST) as n:
        for res in world["resources"]:
            await n.push(res["id"], res["records"], client=OWNER)
        expected_hooks = 0
        offsets: dict[str, dict[int, dict[str, Any]]] = {}
        for res in world["resources"]:
            for c in res["grants"]:
                path = f"/v1/resources/{res['id']}/records"
                r = await n.request(c, "GET", path, query="after=0&limit=100")
                assert r.status == 200, r.body
                check(r.body, res, c, "pull")
                first = r.json()["records"]
                by_offset = {x["offset"]: rec for x, rec in zip(first, res["records"], strict=True)}
                offsets[res["id"]] = by_offset
                check_records(first, res, c, by_offset, "pull")
                assert len({x["key"] for x in first}) == len(first)  # records stay apart
                r = await n.request(c, "GET", path, query="after=0&limit=100",
                                    headers={"Accept": "application/msgpack"})
                check(r.body, res, c, "pull msgpack")
                again = msgspec.msgpack.decode(r.body)["records"]
                assert [x["key"] for x in again] == [x["key"] for x in first]  # stable pseudonyms
                for rec, shown in zip(res["records"], first, strict=True):
                    r = await n.request(c, "GET", f"{path}/{quote(rec['key'], safe='')}")
                    assert r.status == 200, r.body
                    check(r.body, res, c, "keyed read")
                    assert r.json()["key"] == shown["key"]  # one key per record, whatever the path
                sub = f"/{c.split('/')[2]}/{res['id']}"
                r = await n.request(c, "POST", f"/v1/resources/{res['id']}/subscriptions",
                                    json_body={"url": f"http://127.0.0.1:{port}{sub}"})
                assert r.status == 201, r.body
                expected_hooks += 1
        async def delivered() -> bool:
            return len({p for p, _ in hooks}) >= expected_hooks

        await wait_until(delivered, timeout=20)
        for p, body in hooks:
            code, rid = p.strip("/").split("/")
            c = f"SH/GOV/{code}/sys"
            res = next(x for x in world["resources"] if x["id"] == rid)
            check(body, res, c, "webhook")
            check_records(json.loads(body)["records"], res, c, offsets[rid], "webhook")
        # another consumer's pseudonym of the same key is another value
        for res in world["resources"]:
            cs = list(res["grants"])
            keys = {}
            for c in cs:
                r = await n.request(c, "GET", f"/v1/resources/{res['id']}/records", query="after=0")
                keys[c] = [x["key"] for x in r.json()["records"]]
            hidden = [c for c in cs if keys[c][0] not in {x["key"] for x in res["records"]}]
            for a in hidden:
                for b in cs:
                    if a != b:
                        assert not set(keys[a]) & set(keys[b])


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(world=worlds())
def test_no_withheld_value_reaches_a_consumer(tmp_path_factory: Any, world: dict[str, Any]) -> None:
    tmp = tmp_path_factory.mktemp("world")
    asyncio.run(run_world(tmp, world))
