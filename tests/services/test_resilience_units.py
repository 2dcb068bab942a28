"""Breaker, retry budget, balancer and grant rules, on their own (deterministic clocks)."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.services.balancer import Balancer
from gateway.services.breaker import CircuitBreaker
from gateway.services.budget import RetryBudget
from gateway.services.spec import GrantRule


def test_breaker_states() -> None:
    b = CircuitBreaker(failures=2, open_s=10, probes=1)
    assert b.allow(0) and b.state == "closed"
    b.failure(0)
    b.success()  # a success resets the count
    b.failure(1)
    assert b.state == "closed"
    b.failure(2)
    assert b.state == "open" and not b.allow(5) and b.retry_after(5) == 7
    assert b.allow(12) and b.state == "half_open"
    assert not b.allow(12)  # one probe at a time
    b.failure(13)
    assert b.state == "open" and not b.allow(14)
    assert b.allow(23)
    b.release()  # the probe was cancelled: another may go
    assert b.allow(23)
    b.success()
    assert b.state == "closed" and b.allow(23)


def test_retry_budget_caps_retries_to_a_share_of_requests() -> None:
    rb = RetryBudget(ratio=0.25, min_per_s=0.0, cap=100)
    rb.tokens = 0
    for _ in range(100):
        rb.on_request()
    granted = sum(rb.try_retry() for _ in range(50))
    assert granted == 25


def test_smooth_weighted_round_robin_is_exact_and_interleaved() -> None:
    bal = Balancer([("http://a", 5), ("http://b", 1), ("http://c", 1)])
    picks = [bal.pick().url for _ in range(70)]
    assert Counter(picks) == {"http://a": 50, "http://b": 10, "http://c": 10}
    assert [p[-1] for p in picks[:7]] == ["a", "a", "b", "a", "c", "a", "a"]  # nginx's smooth order


def test_ejection_and_panic_mode() -> None:
    bal = Balancer([("http://a", 1), ("http://b", 1)], eject_failures=2, eject_s=60)
    a, b = bal.backends
    bal.failure(a)
    assert {bal.pick().url for _ in range(4)} == {"http://a", "http://b"}
    bal.failure(a)
    assert {bal.pick().url for _ in range(4)} == {"http://b"}
    b.healthy = False  # nothing available: every backend is tried (panic)
    assert {bal.pick().url for _ in range(4)} == {"http://a", "http://b"}
    assert bal.pick(exclude=[a]).url == "http://b"


TOKENS = ["a", "pub", ".", "..", "%2e", "%2E", "%2f", "%2F", "%5c", "%00", "%0d", "%70ub", "/", "\\", "%", "%zz"]
SEGMENT = st.lists(st.sampled_from(TOKENS), min_size=0, max_size=6).map("".join)


@settings(max_examples=400, deadline=None)
@given(st.lists(SEGMENT, min_size=1, max_size=5))
def test_grant_prefixes_hold_for_any_routable_tail(parts: list[str]) -> None:
    """Whatever tail the route table lets through, a grant on /pub never admits another path."""
    from urllib.parse import unquote

    import fastpath
    from gateway.routes import ROUTES

    table = fastpath.RouteTable([r.path for r in ROUTES], [], ["SH/GOV/a/b/svc"])
    raw = "/v1/services/SH/GOV/a/b/svc/" + "/".join(parts)
    m = table.match(raw)
    if m is None:
        return
    tail = m[3]
    decoded = unquote(tail)
    segments = decoded.split("/")[1:]
    assert ".." not in segments and "." not in segments and "" not in segments
    rule = GrantRule(frozenset({"GET"}), ("/pub",))
    if rule.allows("GET", tail):
        assert decoded == "/pub" or decoded.startswith("/pub/")
