"""Quotas: per-client token buckets answered 429 with Retry-After."""

from __future__ import annotations

from pathlib import Path

import pytest
from svckit import BASE_CATALOG, CONSUMER, OWNER, running_node

from gateway.catalog import load_catalog
from gateway.governance.quotas import RateLimiter
from gateway.governance.spec import Quota
from gateway.tomlfile import ConfigError

QUOTAS = """
[[quotas]]
client = "*"
rate = 0.5
burst = 3

[[quotas]]
client = "SH/GOV/psb/hukou"
rate = 1000
"""


async def test_over_quota_is_429_with_retry_after(tmp_path: Path) -> None:
    async with running_node(tmp_path, QUOTAS) as n:
        statuses = [(await n.request(CONSUMER, "GET", "/v1/catalog")).status for _ in range(5)]
        assert statuses == [200, 200, 200, 429, 429]
        r = await n.request(CONSUMER, "GET", "/v1/catalog")
        doc = r.json()
        assert doc["code"] == "client.rate_limited" and CONSUMER in doc["detail"]
        assert int(r.headers["Retry-After"]) >= 1
        # another client has its own bucket; unsigned ops endpoints are not limited
        assert [(await n.request(OWNER, "GET", "/v1/catalog")).status for _ in range(10)] == [200] * 10
        assert (await n.request(None, "GET", "/healthz")).status == 200


def test_token_bucket_refills() -> None:
    lim = RateLimiter()
    q = {"*": Quota("*", rate=2.0, burst=2)}
    lim.check("a", q, now=0.0)
    lim.check("a", q, now=0.0)
    with pytest.raises(Exception) as e:
        lim.check("a", q, now=0.1)
    assert e.value.status == 429 and e.value.headers["Retry-After"] == "1"
    lim.check("a", q, now=0.6)  # 0.6 s * 2/s = 1.2 tokens
    lim.check("b", {}, now=0.0)  # no quota: never limited


@pytest.mark.parametrize("text, key", [
    ('[[quotas]]\nclient = "SH/X/y/z"\nrate = 1\n', "quotas[0].client"),
    ('[[quotas]]\nclient = "*"\nrate = 0\n', "quotas[0].rate"),
    ('[[quotas]]\nclient = "*"\nrate = 1\nburst = -1\n', "quotas[0].burst"),
    ('[[quotas]]\nclient = "*"\nrate = 1\n[[quotas]]\nclient = "*"\nrate = 2\n', "quotas[1].client"),
    ('[[quotas]]\nclient = "*"\nrate = "fast"\n', "quotas[0].rate"),
])
def test_bad_quotas_are_refused(tmp_path: Path, text: str, key: str) -> None:
    p = tmp_path / "c.toml"
    p.write_text(BASE_CATALOG + "\n" + text)
    with pytest.raises(ConfigError) as e:
        load_catalog(p)
    assert e.value.key == key, str(e.value)
