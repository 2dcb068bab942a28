"""Consent is for a purpose; the citizen's access log is what was released, not what a
header claims; a personal keyed read tells nothing about a key before consent passes."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import pytest
from svckit import CONSUMER, LEGAL, OWNER, PORTAL, STRANGER, free_port, running_node, wait_until
from test_consents import CAR, CARD, ID, OTHER, READ, consent_body, grant
from test_webhooks import FAST, endpoint, hook_target, node_keys

from gateway.audit import citizen_hash
from gateway.client import purpose_header

PURPOSE = consent_body()["purpose"]


def asking(purpose: str | None, user: str = ID) -> dict[str, str]:
    h = {"X-Exchange-UserId": user}
    if purpose is not None:
        h["X-Exchange-Purpose"] = purpose_header(purpose)
    return h


async def test_a_consent_opens_reads_for_its_purpose_only(tmp_path: Path) -> None:
    async with running_node(tmp_path) as n:
        await n.push("psb.id-card", [CARD])
        cid = await grant(n)
        for purpose in ("marketing", PURPOSE[:-1], PURPOSE.upper(), None):
            r = await n.request(CONSUMER, "GET", READ, headers=asking(purpose))
            assert r.status == 403, (purpose, r.body)
            assert "purpose" in r.json()["detail"]
        r = await n.request(CONSUMER, "GET", READ, headers={**asking("marketing"), "X-Exchange-Consent": cid})
        assert r.status == 403  # naming the consent does not widen it
        r = await n.request(CONSUMER, "GET", READ, headers=asking(PURPOSE))
        assert r.status == 200, r.body
        await n.node.audit.flush()
        reads = [e for e in await n.node.governance.audit_range() if e.op == "read"]
        assert [(e.status, e.purpose, e.consent) for e in reads if e.status == 200] == [(200, PURPOSE, cid)]
        assert all(e.purpose is None and not e.citizens for e in reads if e.status == 403)


async def test_a_purpose_in_any_script_is_percent_encoded(tmp_path: Path) -> None:
    purpose = "灵活就业登记 (flexible employment, 100%)"
    async with running_node(tmp_path) as n:
        await n.push("psb.id-card", [CARD])
        await grant(n, purpose=purpose)
        r = await n.request(CONSUMER, "GET", READ, headers=asking(purpose))
        assert r.status == 200, r.body
        for bad in ("%E7%81", "%FF%FE", "%00x"):
            r = await n.request(CONSUMER, "GET", READ, headers={"X-Exchange-UserId": ID, "X-Exchange-Purpose": bad})
            assert r.status == 400 and "X-Exchange-Purpose" in r.json()["detail"], (bad, r.body)


async def test_a_header_cannot_write_a_citizens_access_log(tmp_path: Path) -> None:
    async with running_node(tmp_path) as n:
        await n.push("psb.stations", [{"key": "s1", "data": {"code": "s1", "name": "People's Square"}}])
        for client in (STRANGER, CONSUMER):  # an open resource, read "for" a citizen
            r = await n.request(client, "GET", "/v1/resources/psb.stations/records",
                                headers={"X-Exchange-UserId": ID, "X-Exchange-Purpose": "x"})
            assert r.status == 200
            r = await n.request(client, "GET", "/v1/resources/psb.stations/records/s1",
                                headers={"X-Exchange-UserId": ID})
            assert r.status == 200
        r = await n.request(PORTAL, "GET", f"/v1/citizens/{ID}/access-log")
        assert r.status == 200 and r.json()["entries"] == []


async def test_every_release_of_a_citizens_record_is_in_their_access_log(tmp_path: Path) -> None:
    port = free_port()
    async with running_node(tmp_path, hook_target(port), **FAST) as n, \
            endpoint(await node_keys(n), port) as ep:
        r = await n.request(CONSUMER, "POST", "/v1/resources/psb.id-card/subscriptions",
                            json_body={"url": ep["url"]})
        assert r.status == 201, r.body
        other = {"key": OTHER, "data": {"id_number": OTHER, "name": "Han Mei"}}
        await n.push("psb.id-card", [CARD, other])
        await n.push("psb.vehicles", [CAR])

        async def delivered() -> bool:
            return len(ep["got"]) >= 2

        await wait_until(delivered)
        assert (await n.request(CONSUMER, "GET", "/v1/resources/psb.id-card/records",
                                query="after=0")).status == 200
        assert (await n.request(CONSUMER, "GET", "/v1/resources/psb.vehicles/records",
                                query="after=0")).status == 200
        r = await n.request(LEGAL, "GET", READ, headers={"X-Exchange-Purpose": "anything"})
        assert r.status == 200, r.body
        r = await n.request(PORTAL, "GET", f"/v1/citizens/{ID}/access-log")
        ops = sorted((e["client"], e["operation"], e["target"]) for e in r.json()["entries"])
        assert ops == sorted([
            (CONSUMER, "deliver", "psb.id-card"),  # the webhook batch carried the card
            (CONSUMER, "pull", "psb.id-card"),
            (CONSUMER, "pull", "psb.vehicles"),  # the car names ID as its owner
            (LEGAL, "read", "psb.id-card"),
        ])
        r = await n.request(PORTAL, "GET", f"/v1/citizens/{OTHER}/access-log")
        assert sorted(e["operation"] for e in r.json()["entries"]) == ["deliver", "pull"]
        await n.node.audit.flush()
        pulls = [e for e in await n.node.governance.audit_range() if e.op == "pull"]
        h = citizen_hash(n.node.citizen_key, ID)
        assert pulls[0].citizens == sorted([h, citizen_hash(n.node.citizen_key, OTHER)])


@pytest.mark.parametrize("resource, known, unknown", [
    ("psb.id-card", ID, OTHER),
    ("psb.vehicles", "沪A12345", "沪B99999"),
])
async def test_without_consent_a_known_key_answers_as_an_unknown_one(
        tmp_path: Path, resource: str, known: str, unknown: str) -> None:
    async with running_node(tmp_path) as n:
        await n.push("psb.id-card", [CARD])
        await n.push("psb.vehicles", [CAR])
        answers = []
        for key in (known, unknown):
            for headers in ({}, asking(PURPOSE, user=ID), asking(PURPOSE, user=OTHER)):
                r = await n.request(CONSUMER, "GET", f"/v1/resources/{resource}/records/{quote(key, safe='')}",
                                    headers=headers)
                doc = r.json()
                answers.append((key, r.status, doc["code"], doc["detail"]))
        mine = [a[1:] for a in answers if a[0] == known]
        theirs = [a[1:] for a in answers if a[0] == unknown]
        assert mine == theirs and all(s == 403 for s, _, _ in mine), answers


async def test_a_consent_for_one_citizen_does_not_reveal_another_citizens_record(tmp_path: Path) -> None:
    async with running_node(tmp_path) as n:
        theirs = {"key": "沪C00001", "data": {"plate": "沪C00001", "owner_id": OTHER, "model": "EV"}}
        await n.push("psb.vehicles", [CAR, theirs])
        await grant(n, resources=["psb.vehicles"])
        path = "/v1/resources/psb.vehicles/records/"
        mine = await n.request(CONSUMER, "GET", path + quote(CAR["key"], safe=""), headers=asking(PURPOSE))
        assert mine.status == 200, mine.body
        other = await n.request(CONSUMER, "GET", path + quote(theirs["key"], safe=""), headers=asking(PURPOSE))
        none = await n.request(CONSUMER, "GET", path + quote("沪Z00000", safe=""), headers=asking(PURPOSE))
        assert (other.status, other.json()["detail"]) == (none.status, none.json()["detail"]) == (
            404, none.json()["detail"])
        assert OTHER not in other.body.decode() and "沪C00001" not in other.body.decode()


async def test_the_owner_needs_no_purpose(tmp_path: Path) -> None:
    async with running_node(tmp_path) as n:
        await n.push("psb.id-card", [CARD])
        assert (await n.request(OWNER, "GET", READ)).status == 200
