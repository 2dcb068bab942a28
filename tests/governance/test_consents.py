"""Consent: keyed reads of personal resources need the citizen's consent (or a legal basis)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from svckit import CONSUMER, LEGAL, OWNER, PORTAL, STRANGER, running_node

from gateway.audit import citizen_hash
from gateway.governance.model import Consent

ID = "310101199001011234"
OTHER = "310101198502023456"
CARD = {"key": ID, "data": {"id_number": ID, "name": "Li Lei", "address": "1 Renmin Rd"}}
CAR = {"key": "沪A12345", "data": {"plate": "沪A12345", "owner_id": ID, "model": "EV"}}
READ = f"/v1/resources/psb.id-card/records/{ID}"


def consent_body(**kw: object) -> dict:
    return {"user_id": ID, "consumer": CONSUMER, "resources": ["psb.id-card"],
            "purpose": "flexible employment registration", "expires": "2030-01-01", **kw}


async def grant(n, **kw: object) -> str:  # noqa: ANN001
    r = await n.request(PORTAL, "POST", "/v1/consents", json_body=consent_body(**kw))
    assert r.status == 201, r.body
    return r.json()["id"]


PURPOSE = "flexible employment registration"


def me(user: str = ID, **extra: str) -> dict[str, str]:
    """The headers of a consented read: the citizen and the consent's purpose."""
    return {"X-Exchange-UserId": user, "X-Exchange-Purpose": PURPOSE, **extra}


async def test_personal_read_needs_the_citizen_and_a_consent(tmp_path: Path) -> None:
    async with running_node(tmp_path) as n:
        await n.push("psb.id-card", [CARD])
        r = await n.request(CONSUMER, "GET", READ)
        assert r.status == 403 and "X-Exchange-UserId" in r.json()["detail"]
        r = await n.request(CONSUMER, "GET", READ, headers=me(OTHER))
        assert r.status == 403 and "no valid consent" in r.json()["detail"]
        r = await n.request(CONSUMER, "GET", READ, headers={"X-Exchange-UserId": ID})
        assert r.status == 403 and "X-Exchange-Purpose" in r.json()["detail"]
        r = await n.request(CONSUMER, "GET", READ, headers=me())
        assert r.status == 403 and "no valid consent" in r.json()["detail"]
        cid = await grant(n)
        r = await n.request(CONSUMER, "GET", READ, headers=me())
        assert r.status == 200, r.body
        assert r.json()["data"] == {"id_number": ID, "name": "Li Lei"}  # still projected to the grant
        r = await n.request(CONSUMER, "GET", READ, headers=me(OTHER))
        assert r.status == 403  # a consent for one citizen opens nothing of another's
        r = await n.request(CONSUMER, "GET", READ, headers=me(X_Exchange_Consent="x"))
        assert r.status == 200  # (the underscore header is not the consent header)
        r = await n.request(CONSUMER, "GET", READ, headers=me(**{"X-Exchange-Consent": cid}))
        assert r.status == 200
        r = await n.request(CONSUMER, "GET", READ, headers=me(**{"X-Exchange-Consent": "c-" + "0" * 32}))
        assert r.status == 403
        r = await n.request(CONSUMER, "GET", READ, headers=me(**{"X-Exchange-Consent": "bogus"}))
        assert r.status == 400


async def test_unknown_key_does_not_reveal_existence_without_consent(tmp_path: Path) -> None:
    async with running_node(tmp_path) as n:
        r = await n.request(CONSUMER, "GET", f"/v1/resources/psb.id-card/records/{OTHER}", headers=me(OTHER))
        assert r.status == 403


async def test_revoked_consent_stops_reads(tmp_path: Path) -> None:
    async with running_node(tmp_path) as n:
        await n.push("psb.id-card", [CARD])
        cid = await grant(n)
        assert (await n.request(CONSUMER, "GET", READ, headers=me())).status == 200
        r = await n.request(CONSUMER, "DELETE", f"/v1/consents/{cid}")
        assert r.status == 403  # only a portal revokes (for the citizen)
        r = await n.request(PORTAL, "DELETE", f"/v1/consents/{cid}")
        assert r.status == 200 and r.json()["revoked"]
        assert (await n.request(PORTAL, "DELETE", f"/v1/consents/{cid}")).status == 200  # idempotent
        r = await n.request(CONSUMER, "GET", READ, headers=me())
        assert r.status == 403
        r = await n.request(CONSUMER, "GET", READ, headers=me(**{"X-Exchange-Consent": cid}))
        assert r.status == 403 and "revoked" in r.json()["detail"]
        r = await n.request(CONSUMER, "GET", f"/v1/consents/{cid}")
        assert r.status == 200 and r.json()["revoked"]
        assert (await n.request(STRANGER, "GET", f"/v1/consents/{cid}")).status == 403
        assert (await n.request(PORTAL, "DELETE", "/v1/consents/c-" + "1" * 32)).status == 404


async def test_expired_consent_stops_reads(tmp_path: Path) -> None:
    async with running_node(tmp_path) as n:
        await n.push("psb.id-card", [CARD])
        now = time.time()
        await n.node.governance.consent_put(Consent(
            id="c-" + "e" * 32, user=citizen_hash(n.node.citizen_key, ID), consumer=CONSUMER,
            resources=["psb.id-card"], purpose="p", expires=now - 1, created=now - 100, portal=PORTAL))
        r = await n.request(CONSUMER, "GET", READ, headers=me())
        assert r.status == 403
        expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + 2))
        await grant(n, expires=expires)
        assert (await n.request(CONSUMER, "GET", READ, headers=me())).status == 200

        async def expired() -> bool:
            return time.time() > now + 2.1

        while not await expired():
            await __import__("asyncio").sleep(0.1)
        assert (await n.request(CONSUMER, "GET", READ, headers=me())).status == 403


async def test_exemptions_owner_portal_and_legal_basis(tmp_path: Path) -> None:
    async with running_node(tmp_path) as n:
        await n.push("psb.id-card", [CARD])
        assert (await n.request(OWNER, "GET", READ)).status == 200
        assert (await n.request(PORTAL, "GET", READ, headers=me())).status == 200  # the citizen themself
        assert (await n.request(PORTAL, "GET", READ, headers=me(OTHER))).status == 403
        r = await n.request(LEGAL, "GET", READ)
        assert r.status == 200 and r.json()["data"]["address"] == "1 Renmin Rd"
        await n.node.audit.flush()
        log = await n.node.governance.audit_range()
        legal = [e for e in log if e.client == LEGAL][0]
        assert legal.purpose == "Social Insurance Law art. 58"
        assert legal.citizens == [citizen_hash(n.node.citizen_key, ID)]


async def test_declared_citizen_field(tmp_path: Path) -> None:
    async with running_node(tmp_path) as n:
        await n.push("psb.vehicles", [CAR])
        path = "/v1/resources/psb.vehicles/records/%E6%B2%AAA12345"
        assert (await n.request(CONSUMER, "GET", path, headers=me())).status == 403  # no consent yet
        await grant(n, resources=["psb.vehicles"])
        assert (await n.request(CONSUMER, "GET", path, headers=me())).status == 200
        r = await n.request(CONSUMER, "GET", path, headers=me("沪A12345".encode().hex()))
        assert r.status == 403


@pytest.mark.parametrize("body, code, word", [
    (consent_body(user_id="a b"), 422, "user_id"),
    (consent_body(consumer="SH/GOV/nobody/x"), 422, "consumer"),
    (consent_body(resources=[]), 422, "resources"),
    (consent_body(resources=["psb.stations"]), 422, "not a personal resource"),
    (consent_body(resources=["nope"]), 422, "unknown resource"),
    (consent_body(expires="2001-01-01"), 422, "past"),
    (consent_body(expires="2030-01-01T00:00:00"), 422, "zone"),
    (consent_body(expires="soon"), 422, "expires"),
    (consent_body(purpose=""), 422, "purpose"),
    (consent_body(extra=1), 422, "extra"),
    ({"user_id": ID}, 422, "consumer"),
])
async def test_bad_consents_are_refused(tmp_path: Path, body: dict, code: int, word: str) -> None:
    async with running_node(tmp_path) as n:
        r = await n.request(PORTAL, "POST", "/v1/consents", json_body=body)
        assert r.status == code, r.body
        assert word in r.json()["detail"]
        r = await n.request(PORTAL, "POST", "/v1/consents", body=b"{not json")
        assert r.status == 400


async def test_only_portals_record_consents(tmp_path: Path) -> None:
    async with running_node(tmp_path) as n:
        r = await n.request(CONSUMER, "POST", "/v1/consents", json_body=consent_body())
        assert r.status == 403


async def test_citizen_access_log(tmp_path: Path) -> None:
    async with running_node(tmp_path) as n:
        await n.push("psb.id-card", [CARD])
        cid = await grant(n)
        assert (await n.request(CONSUMER, "GET", READ, headers=me())).status == 200
        r = await n.request(CONSUMER, "GET", READ, headers=me(**{"X-Exchange-Purpose": "job registration"}))
        assert r.status == 403  # another purpose than the consent's: refused, released nothing
        await n.request(LEGAL, "GET", READ)
        await n.request(CONSUMER, "GET", READ, headers=me(OTHER))  # refused: about OTHER, not ID
        r = await n.request(PORTAL, "GET", f"/v1/citizens/{ID}/access-log")
        assert r.status == 200, r.body
        got = [(e["client"], e["operation"], e["status"], e["purpose"], e["consent"]) for e in r.json()["entries"]]
        assert got == [
            (LEGAL, "read", 200, "Social Insurance Law art. 58", None),
            (CONSUMER, "read", 200, PURPOSE, cid),
            (PORTAL, "consent-grant", 201, PURPOSE, cid),
        ]
        assert (await n.request(CONSUMER, "GET", f"/v1/citizens/{ID}/access-log")).status == 403
        assert (await n.request(PORTAL, "GET", "/v1/citizens/a%20b/access-log")).status in (400, 404)
        r = await n.request(PORTAL, "GET", f"/v1/citizens/{ID}/access-log", query="limit=0")
        assert r.status == 400
