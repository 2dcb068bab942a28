"""The synthetic catalog: deterministic, loadable, Shanghai-shaped; and its CLI's bad flags."""

from __future__ import annotations

import collections
import hashlib
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from devkit.synth import synth_catalog, synth_keyring, write_catalog
from gateway.catalog import catalog_from_obj, load_catalog
from gateway.keyring import load_keyring

REPO = Path(__file__).resolve().parents[2]
CLI = "import sys; from devkit.synth import main; sys.exit(main(sys.argv[1:]))"
RESOURCE_ID = re.compile(r"^(?P<code>[a-z0-9-]+)\.[a-z]+-(?P<n>\d+)$")


@pytest.fixture(scope="module")
def small() -> dict:
    return synth_catalog(resources=500, members=20, seed=7)


def test_same_seed_same_catalog(small: dict) -> None:
    assert synth_catalog(resources=500, members=20, seed=7) == small
    assert synth_catalog(resources=500, members=20, seed=8) != small


def test_same_seed_same_file(tmp_path: Path, small: dict) -> None:
    a, b = tmp_path / "a.toml", tmp_path / "b.toml"
    write_catalog(small, a)
    write_catalog(synth_catalog(resources=500, members=20, seed=7), b)
    assert a.read_bytes() == b.read_bytes()


def _run(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", CLI, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def test_same_file_across_processes(tmp_path: Path) -> None:
    """No dependence on hash randomisation or anything else of the process."""
    digests = set()
    for hashseed in ("1", "2"):
        out = tmp_path / f"c{hashseed}.toml"
        r = _run(["--resources", "300", "--members", "12", "--seed", "3", "--out", str(out)],
                 {"PYTHONHASHSEED": hashseed})  # fmt: skip
        assert r.returncode == 0, r.stderr
        digests.add(hashlib.sha256(out.read_bytes()).hexdigest())
    assert len(digests) == 1


def test_small_synth_loads(tmp_path: Path, small: dict) -> None:
    path = tmp_path / "synth.toml"
    write_catalog(small, path)
    cat = load_catalog(path)
    assert len(cat.members) == 20
    assert len(cat.resources) == 500
    assert len(cat.doc.grants) == len(small["grants"])
    assert catalog_from_obj(small).resource_ids == cat.resource_ids


def test_shape(small: dict) -> None:
    cat = catalog_from_obj(small)
    classes = collections.Counter(m.split("/")[1] for m in cat.members)
    assert set(classes) == {"GOV", "COM"} and classes["GOV"] > classes["COM"]
    assert all(m.startswith("SH/") for m in cat.members)
    per_member = collections.Counter(s.rpartition("/")[0] for s in cat.subsystems)
    assert set(per_member) == set(cat.members)
    assert all(1 <= n <= 3 for n in per_member.values())
    assert "SH/GOV/bdc/portal" in cat.subsystems
    assert cat.portals == {"SH/GOV/bdc/portal"}

    owners = collections.Counter()
    for e in cat.resources:
        r = e.spec
        m = RESOURCE_ID.match(r.id)
        assert m, r.id
        assert r.owner.split("/")[2] == m.group("code")
        assert r.owner != "SH/GOV/bdc/portal"
        assert 3 <= len(r.fields) <= 12
        assert r.key in r.fields and not r.fields[r.key].endswith("?")
        owners[r.owner.rpartition("/")[0]] += 1
    assert set(owners) == set(cat.members)  # every member owns something

    sharing = collections.Counter(e.spec.sharing for e in cat.resources)
    assert 0.5 < sharing["conditional"] / 500 < 0.7
    assert 0.2 < sharing["open"] / 500 < 0.4
    assert 0.04 < sharing["restricted"] / 500 < 0.16
    types = {t.rstrip("?") for e in cat.resources for t in e.spec.fields.values()}
    assert types == {"str", "int", "float", "bool", "date", "datetime", "list[str]"}


def test_grants(small: dict) -> None:
    cat = catalog_from_obj(small)
    conditional = [e for e in cat.resources if e.spec.sharing == "conditional"]
    others = [g for g in small["grants"] if g["consumer"] != "SH/GOV/bdc/portal"]
    assert 2.0 < len(others) / len(conditional) < 4.0
    for g in small["grants"]:
        res = cat.by_id[g["resource"]].spec
        assert res.sharing == "conditional"
        if g["consumer"] != "SH/GOV/bdc/portal":
            assert g["consumer"].rpartition("/")[0] != res.owner.rpartition("/")[0]
    assert any(g.get("masks") for g in small["grants"])
    assert any(g.get("legal_basis") for g in small["grants"])
    # the portal reads every personal conditional resource, by key, with every field
    for e in conditional:
        acc = cat.access("SH/GOV/bdc/portal", e)
        if e.spec.personal:
            assert acc is not None and acc.fields is None
    # every grant gives access (none expired), so a load test may pick any of them
    for g in small["grants"]:
        assert cat.access(g["consumer"], cat.by_id[g["resource"]]) is not None


def test_keyring(tmp_path: Path, small: dict) -> None:
    text = synth_keyring(small, seed=7)
    assert "benchmarks only" in text
    assert synth_keyring(small, seed=7) == text
    assert synth_keyring(small, seed=8) != text
    path = tmp_path / "keyring.toml"
    path.write_text(text)
    ring = load_keyring(path)
    ring.check_clients(set(catalog_from_obj(small).subsystems))
    assert sorted(k.client for k in ring.by_id.values()) == sorted(
        s["id"] for s in small["subsystems"]
    )
    assert len({k.secret for k in ring.by_id.values()}) == len(ring.by_id)


def test_tiny_catalogs_load() -> None:
    for resources, members in ((1, 1), (2, 2), (5, 1), (7, 7), (40, 11)):
        cat = catalog_from_obj(synth_catalog(resources, members, seed=resources))
        assert (len(cat.resources), len(cat.members)) == (resources, members)


def test_more_members_than_named_agencies_and_firms() -> None:
    cat = catalog_from_obj(synth_catalog(resources=400, members=120, seed=1))
    assert len(cat.members) == 120
    assert any("/agency-" in m for m in cat.members)
    assert any("/firm-" in m for m in cat.members)


@pytest.mark.parametrize(
    "resources, members, message",
    [
        (0, 1, "resources must be between 1 and"),
        (-5, 1, "resources must be between 1 and"),
        (10, 0, "members must be between 1 and"),
        (10, 11, "members (11) must not exceed resources (10)"),
        (10**9, 50, "resources must be between 1 and"),
        ("10", 5, "resources must be an integer"),
        (10, True, "members must be an integer"),
    ],
)
def test_bad_sizes(resources, members, message: str) -> None:
    with pytest.raises(ValueError) as info:
        synth_catalog(resources, members)
    assert message in str(info.value)


def test_shanghai_scale_loads(tmp_path: Path) -> None:
    """16,000 resources over 50 members write and load (a few seconds; not timed here)."""
    doc = synth_catalog()
    path = tmp_path / "shanghai-scale.toml"
    write_catalog(doc, path)
    cat = load_catalog(path)
    assert len(cat.resources) == 16000
    assert len(cat.members) == 50
    assert len(cat.doc.grants) > 16000


# -- CLI -------------------------------------------------------------------------------


def test_cli_writes_catalog_and_keyring(tmp_path: Path) -> None:
    out, keys = tmp_path / "c.toml", tmp_path / "k.toml"
    r = _run(["--resources", "200", "--members", "10", "--out", str(out), "--keyring", str(keys)])
    assert r.returncode == 0, r.stderr
    assert "200 resources" in r.stdout
    cat = load_catalog(out)
    assert len(cat.resources) == 200
    assert stat.S_IMODE(keys.stat().st_mode) == 0o600
    load_keyring(keys).check_clients(set(cat.subsystems))
    assert out.read_text() == _written(tmp_path, 200, 10, 0)


def _written(tmp_path: Path, resources: int, members: int, seed: int) -> str:
    p = tmp_path / "expected.toml"
    write_catalog(synth_catalog(resources, members, seed), p)
    return p.read_text()


def test_cli_help() -> None:
    r = _run(["--help"])
    assert r.returncode == 0
    assert r.stdout.startswith("usage: python -m gateway catalog synth")
    for flag in ("--resources", "--members", "--out", "--seed", "--keyring"):
        assert flag in r.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--resources", "0"], "resources must be between 1 and"),
        (["--resources", "-1"], "resources must be between 1 and"),
        (["--members", "0"], "members must be between 1 and"),
        (["--resources", "10", "--members", "20"], "members (20) must not exceed resources (10)"),
        (["--resources", "ten"], "argument --resources: invalid int value: 'ten'"),
        (["--members", "1.5"], "argument --members: invalid int value: '1.5'"),
        (["--seed", "x"], "argument --seed: invalid int value: 'x'"),
        (["--frobnicate"], "unrecognized arguments: --frobnicate"),
        (["--resources"], "argument --resources: expected one argument"),
    ],
)
def test_cli_bad_flags(tmp_path: Path, args: list[str], message: str) -> None:
    out = tmp_path / "c.toml"
    r = _run([*args, "--out", str(out)])
    assert r.returncode == 2
    assert "python -m gateway catalog synth: error:" in r.stderr
    assert message in r.stderr
    assert "Traceback" not in r.stderr
    assert not out.exists()


def test_cli_missing_out() -> None:
    r = _run(["--resources", "10"])
    assert r.returncode == 2
    assert "the following arguments are required: --out" in r.stderr


def test_cli_out_in_missing_folder(tmp_path: Path) -> None:
    r = _run(["--resources", "10", "--members", "2", "--out", str(tmp_path / "no" / "c.toml")])
    assert r.returncode == 2
    assert "does not exist" in r.stderr and "Traceback" not in r.stderr


def test_cli_out_is_a_directory(tmp_path: Path) -> None:
    r = _run(["--resources", "10", "--members", "2", "--out", str(tmp_path)])
    assert r.returncode == 2
    assert "is a directory" in r.stderr and "Traceback" not in r.stderr


def test_cli_keyring_in_missing_folder(tmp_path: Path) -> None:
    out = tmp_path / "c.toml"
    r = _run(["--resources", "10", "--members", "2", "--out", str(out),
              "--keyring", str(tmp_path / "no" / "k.toml")])  # fmt: skip
    assert r.returncode == 2
    assert "--keyring" in r.stderr and "does not exist" in r.stderr
    assert not out.exists()
