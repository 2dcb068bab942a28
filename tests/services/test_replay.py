"""A captured state-creating request replayed (byte for byte, inside the date window) is
answered as the original and changes nothing: consent grants, subscriptions, composites;
a service call reaches its backend at most once (DESIGN: "Signing, v2")."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from svckit import CONSUMER, PORTAL, RunningNode, backend, grant_toml, running_node, service_toml
from test_composite import INPUT, setup
from yarl import URL

from gateway.audit import citizen_hash

ID = "310101199001011234"
SID = "SH/GOV/hrss/employment/register"
CARD = {"key": ID, "data": {"id_number": ID, "name": "Li Lei", "address": "1 Renmin Rd"}}
PURPOSE = "flexible employment registration"


class Captured:
    """One signed request, kept to be sent again exactly as it was."""

    def __init__(self, n: RunningNode, client: str, method: str, path: str, body: Any = None,
                 headers: dict[str, str] | None = None) -> None:
        self.n, self.method, self.path = n, method, path
        self.body = b"" if body is None else json.dumps(body).encode()
        extra = {"Content-Type": "application/json"} if body is not None else {}
        extra.update(headers or {})
        self.headers = n.signer(client).headers(method, path, "", self.body, headers=extra)

    async def send(self) -> tuple[int, dict[str, str], bytes]:
        async with self.n.session.request(self.method, URL(self.n.url + self.path, encoded=True),
                                          data=self.body or None, headers=self.headers,
                                          skip_auto_headers=("Content-Type",)) as r:
            return r.status, dict(r.headers), await r.read()


def key() -> dict[str, str]:
    return {"Idempotency-Key": uuid.uuid4().hex}


async def test_a_replayed_consent_grant_after_revocation_creates_nothing(tmp_path: Path) -> None:
    async with running_node(tmp_path) as n:
        await n.push("psb.id-card", [CARD])
        grant = Captured(n, PORTAL, "POST", "/v1/consents", {
            "user_id": ID, "consumer": CONSUMER, "resources": ["psb.id-card"], "purpose": PURPOSE,
            "expires": "2030-01-01"}, key())
        status, _, body = await grant.send()
        assert status == 201, body
        cid = json.loads(body)["id"]
        assert (await n.request(PORTAL, "DELETE", f"/v1/consents/{cid}")).status == 200
        status, headers, body = await grant.send()  # the attacker's replay
        assert status == 201 and headers.get("Idempotent-Replayed") == "true"
        assert json.loads(body)["id"] == cid
        consents = await n.node.governance.consents_for(citizen_hash(n.node.citizen_key, ID), CONSUMER)
        assert [(c.id, c.revoked is not None) for c in consents] == [(cid, True)]
        r = await n.request(CONSUMER, "GET", f"/v1/resources/psb.id-card/records/{ID}",
                            headers={"X-Exchange-UserId": ID, "X-Exchange-Purpose": PURPOSE})
        assert r.status == 403  # still revoked
        assert ID.encode() not in (n.dir / "data" / "governance.db").read_bytes()  # not kept for replays


async def test_a_consent_grant_needs_a_signed_idempotency_key(tmp_path: Path) -> None:
    async with running_node(tmp_path) as n:
        body = {"user_id": ID, "consumer": CONSUMER, "resources": ["psb.id-card"], "purpose": PURPOSE,
                "expires": "2030-01-01"}
        r = await n.request(PORTAL, "POST", "/v1/consents", json_body=body, idempotency=False)
        assert r.status == 400 and "Idempotency-Key" in r.json()["detail"]
        r = await n.request(PORTAL, "POST", "/v1/consents", json_body=body, idempotency=False, unsigned=key())
        assert r.status == 401 and "idempotency-key" in r.json()["detail"]
        same = key()
        assert (await n.request(PORTAL, "POST", "/v1/consents", json_body=body, headers=same)).status == 201
        r = await n.request(PORTAL, "POST", "/v1/consents", json_body={**body, "purpose": "other"}, headers=same)
        assert r.status == 409
        consents = await n.node.governance.consents_for(citizen_hash(n.node.citizen_key, ID), CONSUMER)
        assert len(consents) == 1


async def test_a_replayed_subscription_is_the_same_subscription(tmp_path: Path) -> None:
    extra = ('\n[[webhook_targets]]\nconsumer = "SH/GOV/hrss/employment"\n'
             'url_prefix = "https://hrss.example/hooks/"\n')
    async with running_node(tmp_path, extra) as n:
        sub = Captured(n, CONSUMER, "POST", "/v1/resources/psb.id-card/subscriptions",
                       {"url": "https://hrss.example/hooks/a"}, key())
        first = await sub.send()
        again = await sub.send()
        assert first[0] == again[0] == 201
        assert json.loads(first[2])["id"] == json.loads(again[2])["id"]
        assert again[1].get("Idempotent-Replayed") == "true"
        assert len(await n.node.governance.sub_list(CONSUMER)) == 1


async def test_a_replayed_composite_runs_no_step_again(tmp_path: Path) -> None:
    async with setup(tmp_path, {}) as (n, log):
        run = Captured(n, PORTAL, "POST", "/v1/composites/flexible-employment", INPUT, key())
        first = await run.send()
        assert first[0] == 200, first[2]
        starts = len([e for e in log if e[0] == "start"])
        again = await run.send()
        assert again[0] == 200 and json.loads(again[2]) == json.loads(first[2])
        assert again[1].get("Idempotent-Replayed") == "true"
        assert len([e for e in log if e[0] == "start"]) == starts == 3


async def test_a_replayed_service_post_never_reaches_the_backend_twice(tmp_path: Path) -> None:
    async with backend() as (url, state), running_node(
            tmp_path, service_toml(SID, [url]) + grant_toml(PORTAL, SID)) as n:
        path = f"/v1/services/{SID}/echo/pay"
        keyed = Captured(n, PORTAL, "POST", path, {"amount": 1}, key())
        unkeyed = Captured(n, PORTAL, "POST", path, {"amount": 2})
        for captured in (keyed, unkeyed):
            status, _, body = await captured.send()
            assert status == 200, body
            for _ in range(2):
                status, _, body = await captured.send()
                assert status == 409, body
                assert json.loads(body)["code"] == "client.conflict"
        assert state["calls"] == ["/echo/pay", "/echo/pay"]  # once each
        get = Captured(n, PORTAL, "GET", f"/v1/services/{SID}/echo/balance")
        assert [(await get.send())[0] for _ in range(2)] == [200, 200]  # reads may be repeated

