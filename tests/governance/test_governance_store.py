"""The governance store contract, on SQLite and (when nats-server is installed) JetStream."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import msgspec
import pytest

from gateway.audit import AuditEntry, verify
from gateway.governance.model import Consent, Subscription
from gateway.governance.sqlite import SQLiteGovernance

Factory = Callable[[], contextlib.AbstractAsyncContextManager]


def _sqlite(tmp: Path) -> Factory:
    @contextlib.asynccontextmanager
    async def make() -> AsyncIterator[SQLiteGovernance]:
        g = SQLiteGovernance(tmp / "g.db")
        await g.open()
        try:
            yield g
        finally:
            await g.close()
    return make


def _jetstream(tmp: Path, nats_url: str) -> Factory:
    from gateway.governance.jetstream import JetStreamGovernance

    prefix = "gt" + uuid.uuid4().hex[:8]

    @contextlib.asynccontextmanager
    async def make() -> AsyncIterator[JetStreamGovernance]:
        g = JetStreamGovernance([nats_url], prefix=prefix)
        await g.open()
        try:
            yield g
        finally:
            await g.close()
    return make


async def _cleanup_js(prefix: str, nats_url: str) -> None:
    import nats

    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    for name in (f"{prefix}_AUDIT", f"{prefix}_AUDITCIT", f"{prefix}_AUDIT_CHECKPOINTS", f"KV_{prefix}_consents",
                 f"KV_{prefix}_subs"):
        with contextlib.suppress(Exception):
            await js.delete_stream(name)
    await nc.close()


@pytest.fixture(params=["sqlite", "jetstream"])
async def factory(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Factory]:
    if request.param == "sqlite":
        yield _sqlite(tmp_path)
        return
    nats_url = request.getfixturevalue("nats_url")  # tests/conftest.py: skips without nats-server
    f = _jetstream(tmp_path, nats_url)
    yield f
    async with f() as g:
        prefix = g.prefix
    await _cleanup_js(prefix, nats_url)


def entry(i: int, citizens: list[str] | None = None) -> AuditEntry:
    return AuditEntry(ts=time.time(), request_id=f"r{i}", client="SH/GOV/a/b", op="read", target="t",
                      status=200, count=1, citizens=citizens or [])


async def test_two_writers_build_one_chain(factory: Factory) -> None:
    async with factory() as a, factory() as b:
        async def write(g, tag: int) -> None:  # noqa: ANN001
            for i in range(15):
                await g.audit_append([entry(tag * 100 + i), entry(tag * 100 + 50 + i, ["cit1"])])

        await asyncio.gather(write(a, 1), write(b, 2))
        rows = await a.audit_range(limit=1000)
        assert len(rows) == 60
        assert verify((str(e.seq), msgspec.json.encode(e)) for e in rows) == (60, None)
        assert [e.seq for e in await b.audit_range(after_seq=55, limit=3)] == [56, 57, 58]
        mine = await a.audit_for_citizen("cit1")
        assert len(mine) == 30 and mine[0].seq > mine[-1].seq  # newest first
        assert await a.audit_for_citizen("nobody") == []
        assert await a.audit_range(since=time.time() + 3600) == []


async def test_consents(factory: Factory) -> None:
    async with factory() as g:
        now = time.time()
        c = Consent(id="c-" + "a" * 32, user="u1", consumer="SH/GOV/a/b", resources=["r"], purpose="p",
                    expires=now + 60, created=now, portal="SH/GOV/p/q")
        await g.consent_put(c)
        assert await g.consent_get(c.id) == c
        assert await g.consents_for("u1", "SH/GOV/a/b") == [c]
        assert await g.consents_for("u1", "SH/GOV/x/y") == []
        c.revoked = now
        await g.consent_put(c)
        (got,) = await g.consents_for("u1", "SH/GOV/a/b")
        assert got.revoked == now and not got.valid(now)
        assert await g.consent_get("c-" + "b" * 32) is None


async def test_subscription_leases_are_exclusive(factory: Factory) -> None:
    async with factory() as a, factory() as b:
        s = Subscription(id="s-1", consumer="SH/GOV/a/b", resource="r", url="http://h/", created=1.0)
        await a.sub_put(s)
        now = time.time()
        got = await asyncio.gather(a.sub_claim("s-1", "A", now + 30, now), b.sub_claim("s-1", "B", now + 30, now))
        assert sum(x is not None for x in got) == 1
        winner = "A" if got[0] is not None else "B"
        assert await b.sub_claim("s-1", "C", now + 30, now) is None
        assert await a.sub_claim("s-1", winner, now + 60, now) is not None  # renewal
        assert await a.sub_claim("s-1", "C", now + 99, now + 61) is not None  # expired lease taken over
        assert [x.id for x in await b.sub_list("SH/GOV/a/b")] == ["s-1"]
        assert await b.sub_list("SH/GOV/x/y") == []
        assert await a.sub_get("nope") is None


async def test_due_subscriptions_follow_changes_made_elsewhere(factory: Factory) -> None:
    """The deliverers' cheap scan: active subscriptions free to lease, the dead counted, and
    changes written through another connection show up (JetStream: through the watch)."""
    async with factory() as a, factory() as b:
        now = time.time()
        mk = lambda i, **kw: Subscription(id=f"s-{i}", consumer="SH/GOV/a/b", resource="r",  # noqa: E731
                                          url="http://h/", created=1.0, **kw)
        await a.sub_put(mk(1))
        await a.sub_put(mk(2, lease_owner="B", lease_until=now + 60))
        await a.sub_put(mk(3, lease_owner="B", lease_until=now - 1))
        await a.sub_put(mk(4, lease_owner="A", lease_until=now + 60))
        await a.sub_put(mk(5, state="dead"))

        async def due(g: object, owner: str) -> tuple[list[str], int]:
            subs, dead = await g.sub_due(owner, now)  # type: ignore[attr-defined]
            return [s.id for s in subs], dead

        if hasattr(a, "rescan_s"):
            a.rescan_s = 0.3  # JetStream: rebuild the watched index from a fresh watch often
        assert await due(a, "A") == (["s-1", "s-3", "s-4"], 1)
        for _ in range(200):  # b sees a's writes once its watch delivers them (JetStream)
            if await due(b, "B") == (["s-1", "s-2", "s-3"], 1):
                break
            await asyncio.sleep(0.02)
        assert await due(b, "B") == (["s-1", "s-2", "s-3"], 1)
        await b.sub_put(mk(6))  # written by the other one
        await b.sub_put(mk(5))  # replayed: active again
        assert await b.sub_claim("s-1", "B", now + 60, now) is not None
        for _ in range(200):  # the watch brings b's writes to a within moments
            if await due(a, "A") == (["s-3", "s-4", "s-5", "s-6"], 0):
                break
            await asyncio.sleep(0.02)
        assert await due(a, "A") == (["s-3", "s-4", "s-5", "s-6"], 0)
        await asyncio.sleep(0.7)  # after rebuilds: still the same
        assert await due(a, "A") == (["s-3", "s-4", "s-5", "s-6"], 0)
