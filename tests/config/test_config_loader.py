"""One loader for every configuration file: node, catalog, keyring, scenario and SLO files
report the same mistake in the same words, as ``file: key: reason``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.catalog import load_catalog
from gateway.config import load_node_config
from gateway.keyring import load_keyring
from gateway.tomlfile import ConfigError
from loadtest.errors import LoadTestError
from loadtest.slo import load_slo
from simulator.scenario import load as load_scenario

NODE = '[node]\ncatalog = "c.toml"\nkeyring = "k.toml"\n'
SCENARIO = (
    "[simulation]\ndays = 1\n[demand]\ncenter_visits_per_day = 10\ngateway_requests_per_day = 10\n"
    "[centers]\ncount = 1\nstaff = 1\n"
)
SLO = "[kinds.read]\np99_ms = 10\n"


def _message(load: Callable[[Path], Any], path: Path) -> str:
    """The message a loader refuses ``path`` with (the load kit wraps it for its CLI)."""
    with pytest.raises((ConfigError, LoadTestError)) as info:
        load(path)
    return str(info.value)


LOADERS = {
    "node": (load_node_config, NODE, "node.colour", "node.catalgo", "node.catalog"),
    "scenario": (load_scenario, SCENARIO, "centers.colour", "centers.staf", "centers.staff"),
    "slo": (load_slo, SLO, "kinds.read.colour", "kinds.read.p99_m", "kinds.read.p99_ms"),
}


@pytest.mark.parametrize("kind", LOADERS)
def test_every_loader_words_file_problems_alike(tmp_path: Path, kind: str) -> None:
    load = LOADERS[kind][0]
    missing = tmp_path / "missing.toml"
    assert _message(load, missing) == f"{missing}: file not found"
    bad = tmp_path / "bad.toml"
    bad.write_text("[table\n")
    assert _message(load, bad).startswith(f"{bad}: invalid TOML: ")
    latin = tmp_path / "latin.toml"
    latin.write_bytes(b"# caf\xe9\n")
    assert _message(load, latin) == f"{latin}: not UTF-8 text (byte 5)"


@pytest.mark.parametrize("kind", LOADERS)
def test_every_loader_names_unknown_and_close_keys(tmp_path: Path, kind: str) -> None:
    load, good, unknown, typo, meant = LOADERS[kind]
    table, _, _ = unknown.rpartition(".")
    for key, reason in ((unknown, "unknown key"), (typo, f"unknown key (did you mean {meant.rpartition('.')[2]!r}?)")):
        path = tmp_path / f"{kind}.toml"
        leaf = key.rpartition(".")[2]
        text = good.replace(f"[{table}]\n", f"[{table}]\n{leaf} = 1\n")
        assert text != good
        path.write_text(text)
        assert _message(load, path) == f"{path}: {key}: {reason}"


@pytest.mark.parametrize(
    ("load", "text", "key"),
    [
        (load_node_config, '[node]\nkeyring = "k.toml"\n', "node.catalog"),
        (load_scenario, SCENARIO.replace("staff = 1\n", ""), "centers.staff"),
        (load_catalog, '[[members]]\nid = "SH/GOV/a"\n', "instance"),
        (load_keyring, '[[keys]]\nid = "k-1"\nclient = "SH/GOV/a/b"\n', "keys[0].secret"),
    ],
)
def test_every_loader_names_a_missing_key(tmp_path: Path, load: Callable, text: str, key: str) -> None:
    path = tmp_path / "f.toml"
    path.write_text(text)
    assert _message(load, path) == f"{path}: {key}: required key is missing"


def test_an_entry_of_a_table_of_tables_is_named_by_its_key(tmp_path: Path) -> None:
    """msgspec says ``kinds[...]``; the loader names the entry (``kinds.push``)."""
    path = tmp_path / "slo.toml"
    path.write_text("[kinds.read]\np99_ms = 1\n[kinds.push]\np99_ms = 1\nmedian = 2\n")
    assert _message(load_slo, path) == f"{path}: kinds.push.median: unknown key"
    path.write_text('[kinds.read]\np99_ms = 1\n[kinds.pull]\np95_ms = "fast"\n')
    assert _message(load_slo, path).startswith(f"{path}: kinds.pull.p95_ms: Expected `float")
    path.write_text("[kinds]\nread = 3\n")
    assert _message(load_slo, path) == f"{path}: kinds.read: Expected `table`, got `int`"
