"""Retention keys in the catalog and the node configuration: bad values are refused with
the file, the key and the reason."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import tomli_w
from test_config_catalog import BASE

from gateway.catalog import load_catalog
from gateway.config import load_node_config
from gateway.stores.retention import RetentionPolicy, policies

GOOD_NODE = '[node]\ncatalog = "c.toml"\nkeyring = "k.toml"\n'


def _with(**keys: Any) -> dict[str, Any]:
    doc = copy.deepcopy(BASE)
    doc["resources"][1].update(keys)
    return doc


def test_policies_from_the_catalog(write) -> None:
    cat = load_catalog(write(tomli_w.dumps(_with(retention="400d", max_records=1000, compact=True)),
                             "catalog.toml"))
    assert policies(cat) == {
        "sh-water.stations": RetentionPolicy(max_age_s=400 * 86400, max_records=1000, compact=True)}
    assert policies(load_catalog(write(tomli_w.dumps(BASE), "catalog.toml"))) == {}


# fmt: off
@pytest.mark.parametrize("keys, key, reason", [
    ({"retention": "400"}, "resources[1].retention", "a unit s, m, h or d"),
    ({"retention": "1w"}, "resources[1].retention", "a unit s, m, h or d"),
    ({"retention": "0d"}, "resources[1].retention", "whole number"),
    ({"retention": "-5d"}, "resources[1].retention", "whole number"),
    ({"retention": "1.5d"}, "resources[1].retention", "whole number"),
    ({"retention": 400}, "resources[1].retention", "Expected `str | null`, got `int`"),
    ({"max_records": 0}, "resources[1].max_records", "between 1 and 10^12, got 0"),
    ({"max_records": -3}, "resources[1].max_records", "between 1 and 10^12"),
    ({"max_records": "1000"}, "resources[1].max_records", "Expected `int | null`, got `str`"),
    ({"max_records": 1.5}, "resources[1].max_records", "Expected `int | null`, got `float`"),
    ({"compact": True}, "resources[1].compact", "set retention and/or max_records"),
    ({"compact": "yes", "retention": "1d"}, "resources[1].compact", "Expected `bool`, got `str`"),
])
# fmt: on
def test_bad_retention_keys(write, expect_error, keys: dict[str, Any], key: str, reason: str) -> None:
    expect_error(load_catalog, write(tomli_w.dumps(_with(**keys)), "catalog.toml"), key, reason)


@pytest.mark.parametrize("value", ["0", "-1", "86401", "nan", '"often"'])
def test_bad_retention_interval(write, expect_error, value: str) -> None:
    reason = "Expected `float`" if value.startswith('"') else "between 1 and 86400"
    expect_error(load_node_config, write(GOOD_NODE + f"[store]\nretention_interval_s = {value}\n"),
                 "store.retention_interval_s", reason)
