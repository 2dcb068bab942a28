"""Fixtures running every fast-path test on both implementations (aio-libs pattern)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings

import fastpath

settings.register_profile(
    "fastpath",
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def _compiled() -> fastpath.Implementation:
    """The compiled implementation; skip when forced off, fail when it should exist."""
    if fastpath.NO_EXTENSIONS:
        pytest.skip("GATEWAY_NO_EXTENSIONS is set: the compiled fast path is not under test")
    try:
        return fastpath.implementation("cython")
    except ImportError as exc:
        pytest.fail(
            f"the compiled fast path is missing ({exc}); build it with "
            "`python setup.py build_ext --inplace` or `pip install -e .`, "
            "or set GATEWAY_NO_EXTENSIONS=1 to test the Python twins only"
        )


@pytest.fixture(scope="session", params=["cython", "python"])
def impl(request: pytest.FixtureRequest) -> fastpath.Implementation:
    """One implementation of the fast path (ids ``cython`` / ``python``)."""
    if request.param == "cython":
        return _compiled()
    return fastpath.implementation("python")


@pytest.fixture(scope="session")
def pair() -> tuple[fastpath.Implementation, fastpath.Implementation]:
    """(cython, python): for tests that the two implementations agree."""
    return _compiled(), fastpath.implementation("python")
