"""The [limits] keys against a hostile network: defaults, bounds with clear errors, and the
deprecated client_timeout_s still loading."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import load_node_config

REPO = Path(__file__).resolve().parents[2]

GOOD = """
[node]
catalog = "catalog/shanghai.toml"
keyring = "keyring.dev.toml"
"""


def test_defaults(write) -> None:
    lim = load_node_config(write(GOOD)).limits
    assert (lim.body_timeout_s, lim.header_timeout_s, lim.max_connections_per_ip) == (5.0, 10.0, 256)
    assert lim.client_timeout_s is None


def test_sample_config_sets_the_new_limits_and_not_the_deprecated_one() -> None:
    lim = load_node_config(REPO / "configs" / "node.toml").limits
    assert (lim.body_timeout_s, lim.header_timeout_s, lim.max_connections_per_ip) == (5.0, 10.0, 256)
    assert lim.client_timeout_s is None


def test_deprecated_client_timeout_still_loads(write) -> None:
    lim = load_node_config(write(GOOD + "[limits]\nclient_timeout_s = 30.0\n")).limits
    assert lim.client_timeout_s == 30.0 and lim.body_timeout_s == 5.0


# fmt: off
@pytest.mark.parametrize(
    "text, key, reason",
    [
        ("body_timeout_s = 0", "limits.body_timeout_s", "between 0.1 and 3600, got 0"),
        ("body_timeout_s = nan", "limits.body_timeout_s", "between 0.1 and 3600"),
        ("body_timeout_s = 7200", "limits.body_timeout_s", "between 0.1 and 3600, got 7200"),
        ('body_timeout_s = "5"', "limits.body_timeout_s", "Expected `float`, got `str`"),
        ("header_timeout_s = 0.01", "limits.header_timeout_s", "between 0.1 and 3600, got 0.01"),
        ("header_timeout_s = -1", "limits.header_timeout_s", "between 0.1 and 3600"),
        ("max_connections_per_ip = 0", "limits.max_connections_per_ip", "between 1 and 1000000, got 0"),
        ("max_connections_per_ip = 1.5", "limits.max_connections_per_ip", "Expected `int`, got `float`"),
    ],
)
# fmt: on
def test_bad_limits_are_refused_naming_the_key(write, expect_error, text: str, key: str, reason: str) -> None:
    expect_error(load_node_config, write(GOOD + "[limits]\n" + text + "\n"), key, reason)
