"""[[webhook_targets]] and max_subscriptions_per_client: checked when the catalog loads, every
refusal naming the file, the key and the reason."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from yarl import URL

from gateway.catalog import load_catalog
from gateway.governance.egress import address_class
from gateway.governance.targets import match

EMPLOYMENT = "SH/GOV/hrss/employment"


def doc(*targets: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {"instance": "SH", **top,
            "members": [{"id": "SH/GOV/hrss"}], "subsystems": [{"id": EMPLOYMENT}],
            "webhook_targets": [{"consumer": EMPLOYMENT, **t} for t in targets]}


@pytest.fixture
def write_doc(write) -> Callable[[dict[str, Any]], Path]:
    return lambda d: write(tomli_w.dumps(d), "catalog.toml")


# fmt: off
BAD = [
    ("ftp", {"url_prefix": "ftp://hrss.example/"}, "webhook_targets[0].url_prefix", "must be an http:// or https:// URL"),
    ("no scheme", {"url_prefix": "hrss.example/hooks"}, "webhook_targets[0].url_prefix", "must be an http:// or https:// URL"),
    ("http without allow_http", {"url_prefix": "http://hrss.example/"}, "webhook_targets[0].url_prefix", "unless the entry says allow_http = true"),
    ("userinfo", {"url_prefix": "https://u:p@hrss.example/"}, "webhook_targets[0].url_prefix", "must not carry credentials"),
    ("user only", {"url_prefix": "https://admin@hrss.example/"}, "webhook_targets[0].url_prefix", "must not carry credentials"),
    ("query", {"url_prefix": "https://hrss.example/hooks?x=1"}, "webhook_targets[0].url_prefix", "must not carry a query"),
    ("fragment", {"url_prefix": "https://hrss.example/hooks#x"}, "webhook_targets[0].url_prefix", "must not carry a fragment"),
    ("dot segment", {"url_prefix": "https://hrss.example/hooks/../admin"}, "webhook_targets[0].url_prefix", "'.' or '..' path segments"),
    ("encoded dot", {"url_prefix": "https://hrss.example/hooks/%2e%2e/admin"}, "webhook_targets[0].url_prefix", "must not percent-encode"),
    ("backslash", {"url_prefix": "https://hrss.example\\@evil/"}, "webhook_targets[0].url_prefix", "backslash"),
    ("no host", {"url_prefix": "https:///hooks"}, "webhook_targets[0].url_prefix", "host"),
    ("port 0", {"url_prefix": "https://hrss.example:0/"}, "webhook_targets[0].url_prefix", "bad port"),
    ("non-ascii host", {"url_prefix": "https://ｈrss.example/"}, "webhook_targets[0].url_prefix", "punycode"),
    ("legacy numeric host", {"url_prefix": "https://2130706433/", "allow_private": True}, "webhook_targets[0].url_prefix", "not a canonical IP address"),
    ("short numeric host", {"url_prefix": "https://127.1/", "allow_private": True}, "webhook_targets[0].url_prefix", "not a canonical IP address"),
    ("loopback literal", {"url_prefix": "https://127.0.0.1:8443/"}, "webhook_targets[0].url_prefix", "set allow_private = true"),
    ("mapped loopback literal", {"url_prefix": "https://[::ffff:127.0.0.1]/"}, "webhook_targets[0].url_prefix", "set allow_private = true"),
    ("rfc1918 literal", {"url_prefix": "https://10.0.1.5/"}, "webhook_targets[0].url_prefix", "set allow_private = true"),
    ("metadata even if private allowed", {"url_prefix": "http://169.254.169.254/", "allow_http": True, "allow_private": True}, "webhook_targets[0].url_prefix", "never reach"),
    ("unspecified", {"url_prefix": "https://0.0.0.0/", "allow_private": True}, "webhook_targets[0].url_prefix", "never reach"),
    ("unknown consumer", {"consumer": "SH/GOV/hrss/talent", "url_prefix": "https://hrss.example/"}, "webhook_targets[0].consumer", "unknown subsystem 'SH/GOV/hrss/talent'"),
    ("unknown key", {"url_prefix": "https://hrss.example/", "allow_any": True}, "webhook_targets[0].allow_any", "unknown key"),
    ("missing prefix", {}, "webhook_targets[0].url_prefix", "required key is missing"),
    ("allow_http as string", {"url_prefix": "https://hrss.example/", "allow_http": "yes"}, "webhook_targets[0].allow_http", "Expected `bool`"),
]
# fmt: on


@pytest.mark.parametrize("target, key, reason", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_webhook_target(write_doc, expect_error, target: dict[str, Any], key: str, reason: str) -> None:
    expect_error(load_catalog, write_doc(doc(target)), key, reason)


def test_duplicate_target_and_bad_cap(write_doc, expect_error) -> None:
    t = {"url_prefix": "https://hrss.example/hooks/"}
    expect_error(load_catalog, write_doc(doc(t, {"url_prefix": "https://HRSS.example:443/hooks/"})),
                 "webhook_targets[1]", "duplicate webhook target")
    expect_error(load_catalog, write_doc(doc(t, max_subscriptions_per_client=0)),
                 "max_subscriptions_per_client", "must be between 1 and 100000, got 0")


def test_prefixes_match_scheme_host_port_and_whole_path_segments(write_doc) -> None:
    cat = load_catalog(write_doc(doc({"url_prefix": "https://hrss.example/hooks"},
                                     {"url_prefix": "http://10.0.1.5:8080/", "allow_http": True,
                                      "allow_private": True})))
    assert cat.max_subscriptions == 16  # the default

    def covered(url: str) -> bool:
        return match(cat.webhook_targets, EMPLOYMENT, URL(url)) is not None

    for ok in ["https://hrss.example/hooks", "https://hrss.example/hooks/a?b=1", "https://HRSS.example:443/hooks/x",
               "http://10.0.1.5:8080/anything"]:
        assert covered(ok), ok
    for bad in ["https://hrss.example/hooksx", "https://hrss.example/", "http://hrss.example/hooks",
                "https://hrss.example:8443/hooks", "https://hrss.example.evil.com/hooks", "https://evil.com/hooks",
                "http://10.0.1.5/", "http://10.0.1.6:8080/"]:
        assert not covered(bad), bad
    assert match(cat.webhook_targets, "SH/GOV/psb/hukou", URL("https://hrss.example/hooks")) is None


@pytest.mark.parametrize("address, cls", [
    ("8.8.8.8", "public"), ("2606:4700:4700::1111", "public"),
    ("127.0.0.1", "private"), ("::1", "private"), ("10.1.2.3", "private"), ("172.16.0.1", "private"),
    ("192.168.1.1", "private"), ("fc00::1", "private"), ("fd12:3456::1", "private"), ("169.254.1.1", "private"),
    ("fe80::1", "private"), ("100.64.0.1", "private"), ("::ffff:127.0.0.1", "private"),
    ("::ffff:10.0.0.1", "private"), ("2002:7f00:1::", "private"),
    ("169.254.169.254", "forbidden"), ("fd00:ec2::254", "forbidden"), ("100.100.100.200", "forbidden"),
    ("::ffff:169.254.169.254", "forbidden"), ("64:ff9b::a9fe:a9fe", "forbidden"), ("0.0.0.0", "forbidden"),
    ("0.1.2.3", "forbidden"), ("::", "forbidden"), ("224.0.0.1", "forbidden"), ("ff02::1", "forbidden"),
    ("255.255.255.255", "forbidden"), ("240.0.0.1", "forbidden"),
])
def test_address_classes(address: str, cls: str) -> None:
    assert address_class(ipaddress.ip_address(address)) == cls
