"""Catalog files: every inconsistency is refused with the file, the key and the reason."""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from gateway.catalog import catalog_from_obj, load_catalog
from gateway.tomlfile import ConfigError

BASE: dict[str, Any] = {
    "instance": "SH",
    "members": [
        {"id": "SH/GOV/psb", "name": "Public Security Bureau"},
        {"id": "SH/GOV/hrss", "name": "Human Resources and Social Security Bureau"},
        {"id": "SH/COM/sh-water", "name": "Shanghai water"},
    ],
    "subsystems": [
        {"id": "SH/GOV/psb/hukou"},
        {"id": "SH/GOV/hrss/employment"},
        {"id": "SH/COM/sh-water/billing"},
    ],
    "resources": [
        {
            "id": "psb.id-card",
            "owner": "SH/GOV/psb/hukou",
            "title": "Resident identity card",
            "sharing": "conditional",
            "personal": True,
            "key": "id_number",
            "fields": {"id_number": "str", "name": "str", "birth_date": "date", "address": "str?"},
        },
        {
            "id": "sh-water.stations",
            "owner": "SH/COM/sh-water/billing",
            "sharing": "open",
            "key": "station_no",
            "fields": {"station_no": "int", "district": "str", "open": "bool"},
        },
        {
            "id": "psb.case-files",
            "owner": "SH/GOV/psb/hukou",
            "sharing": "restricted",
            "fields": {"case_number": "str", "tags": "list[str]", "opened_at": "datetime"},
        },
    ],
    "grants": [
        {
            "consumer": "SH/GOV/hrss/employment",
            "resource": "psb.id-card",
            "fields": ["id_number", "name"],
            "purpose": "flexible employment registration",
            "masks": {"id_number": [6, 4]},
            "expires": dt.date(2099, 12, 31),
        },
        {
            "consumer": "SH/COM/sh-water/billing",
            "resource": "psb.id-card",
            "fields": ["*"],
            "legal_basis": "test",
        },
    ],
}


def variant(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    doc = copy.deepcopy(BASE)
    change(doc)
    return doc


@pytest.fixture
def write_doc(write) -> Callable[[dict[str, Any]], Path]:
    return lambda doc: write(tomli_w.dumps(doc), "catalog.toml")


def test_base_catalog_loads(write_doc) -> None:
    cat = load_catalog(write_doc(BASE))
    assert cat.instance == "SH"
    assert cat.resource_ids == ["psb.id-card", "sh-water.stations", "psb.case-files"]
    entry = cat.by_id["psb.id-card"]
    acc = cat.access("SH/GOV/hrss/employment", entry)
    assert acc is not None and acc.fields == ("id_number", "name")
    assert cat.access("SH/COM/sh-water/billing", entry).fields is None
    assert cat.access("SH/GOV/hrss/employment", cat.by_id["psb.case-files"]) is None


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """A change setting ``a.b[2].c`` (list indexes as ints) to ``value``."""

    def change(doc: dict[str, Any]) -> None:
        parts: list[Any] = []
        for p in path.replace("]", "").split("."):
            name, *idx = p.split("[")
            parts.append(name)
            parts.extend(int(i) for i in idx)
        target: Any = doc
        for p in parts[:-1]:
            target = target[p]
        target[parts[-1]] = value

    return change


def _append(section: str, item: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    return lambda doc: doc[section].append(item)


def _delete(path: str, name: str) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        target: Any = doc
        for p in path.replace("]", "").replace("[", ".").split("."):
            target = target[int(p)] if p.isdigit() else target[p]
        del target[name]

    return change


# fmt: off
BAD: list[tuple[str, Callable[[dict[str, Any]], None], str, str]] = [
    # identifiers
    ("instance", _set("instance", "sh"), "instance", "must be upper-case"),
    ("member id", _set("members[1].id", "SH/hrss"), "members[1].id", "not a member id INSTANCE/CLASS/CODE"),
    ("member code", _set("members[1].id", "SH/GOV/HRSS"), "members[1].id", "not a member id"),
    ("member class", _set("members[1].id", "SH/gov/hrss"), "members[1].id", "not a member id"),
    ("wrong instance", _set("members[2].id", "BJ/COM/sh-water"), "members[2].id", "of SH: 'BJ/COM/sh-water'"),
    ("duplicate member", _append("members", {"id": "SH/GOV/psb"}), "members[3].id", "duplicate member 'SH/GOV/psb'"),
    ("subsystem id", _set("subsystems[0].id", "SH/GOV/psb"), "subsystems[0].id", "not a subsystem id"),
    ("subsystem of unknown member", _append("subsystems", {"id": "SH/GOV/tax/iit"}), "subsystems[3].id", "member 'SH/GOV/tax' is not declared"),
    ("subsystem of other instance", _append("subsystems", {"id": "BJ/GOV/psb/hukou"}), "subsystems[3].id", "member 'BJ/GOV/psb' is not declared"),
    ("duplicate subsystem", _append("subsystems", {"id": "SH/GOV/psb/hukou"}), "subsystems[3].id", "duplicate subsystem"),
    ("resource id upper", _set("resources[0].id", "PSB.id-card"), "resources[0].id", "must match [a-z0-9][a-z0-9.-]*"),
    ("resource id slash", _set("resources[0].id", "psb/id-card"), "resources[0].id", "must match"),
    ("resource id empty", _set("resources[0].id", ""), "resources[0].id", "must match"),
    ("resource id leading dot", _set("resources[1].id", ".stations"), "resources[1].id", "must match"),
    ("duplicate resource", _set("resources[2].id", "psb.id-card"), "resources[2].id", "duplicate resource 'psb.id-card'"),
    # owners, fields, keys
    ("unknown owner", _set("resources[1].owner", "SH/COM/sh-gas/billing"), "resources[1].owner", "unknown subsystem 'SH/COM/sh-gas/billing'"),
    ("owner is a member", _set("resources[1].owner", "SH/COM/sh-water"), "resources[1].owner", "unknown subsystem"),
    ("no fields", _set("resources[1].fields", {}), "resources[1].fields", "at least one field"),
    ("unknown field type", _set("resources[1].fields.open", "boolean"), "resources[1].fields.open", "unknown type 'boolean'"),
    ("double optional", _set("resources[1].fields.open", "bool??"), "resources[1].fields.open", "unknown type 'bool??'"),
    ("list of int", _set("resources[1].fields.open", "list[int]"), "resources[1].fields.open", "unknown type"),
    ("bad field name", _set("resources[1].fields", {"station no": "int"}), "resources[1].fields.station no", "not a valid field name"),
    ("key not a field", _set("resources[0].key", "passport"), "resources[0].key", "key field 'passport' is not among the fields"),
    ("optional key", _set("resources[0].key", "address"), "resources[0].key", "must not be optional"),
    ("list key", _set("resources[2].key", "tags"), "resources[2].key", "a key must be one of str, int, date"),
    ("datetime key", _set("resources[2].key", "opened_at"), "resources[2].key", "a key must be one of"),
    ("sharing", _set("resources[0].sharing", "public"), "resources[0].sharing", "Invalid enum value 'public'"),
    ("missing sharing", _delete("resources[0]", "sharing"), "resources[0].sharing", "required key is missing"),
    ("missing owner", _delete("resources[1]", "owner"), "resources[1].owner", "required key is missing"),
    ("personal as string", _set("resources[0].personal", "yes"), "resources[0].personal", "Expected `bool`, got `str`"),
    ("field type as int", _set("resources[0].fields.name", 1), "resources[0].fields.name", "Expected `str`, got `int`"),
    # grants
    ("grant to unknown consumer", _set("grants[0].consumer", "SH/GOV/hrss/talent"), "grants[0].consumer", "unknown subsystem 'SH/GOV/hrss/talent'"),
    ("grant to a member", _set("grants[0].consumer", "SH/GOV/hrss"), "grants[0].consumer", "unknown subsystem"),
    ("grant of unknown resource", _set("grants[0].resource", "psb.passport"), "grants[0].resource", "unknown resource 'psb.passport'"),
    ("grant of open resource", _set("grants[0].resource", "sh-water.stations"), "grants[0].resource", "'sh-water.stations' is open"),
    ("grant of restricted resource", _set("grants[0].resource", "psb.case-files"), "grants[0].resource", "'psb.case-files' is restricted"),
    ("grant of unknown field", _set("grants[0].fields", ["id_number", "salary"]), "grants[0].fields", "'salary' is not a field of 'psb.id-card'"),
    ("grant of star and field", _set("grants[0].fields", ["*", "name"]), "grants[0].fields", "'*' is not a field"),
    ("empty grant", _set("grants[0].fields", []), "grants[0].fields", "an empty grant grants nothing"),
    ("grant fields as string", _set("grants[0].fields", "*"), "grants[0].fields", "Expected `array`, got `str`"),
    ("duplicate grant", _set("grants[1].consumer", "SH/GOV/hrss/employment"), "grants[1]", "duplicate grant of 'psb.id-card'"),
    ("mask of unknown field", _set("grants[0].masks", {"phone": [3, 4]}), "grants[0].masks.phone", "'phone' is not a field"),
    ("mask of one number", _set("grants[0].masks", {"id_number": [6]}), "grants[0].masks.id_number", "must be [keep_head, keep_tail]"),
    ("mask of three numbers", _set("grants[0].masks", {"id_number": [6, 4, 1]}), "grants[0].masks.id_number", "must be [keep_head, keep_tail]"),
    ("negative mask", _set("grants[0].masks", {"id_number": [-1, 4]}), "grants[0].masks.id_number", "two integers >= 0"),
    ("mask of strings", _set("grants[0].masks", {"id_number": ["6", "4"]}), "grants[0].masks.id_number[0]", "Expected `int`, got `str`"),
    ("mask as int", _set("grants[0].masks", {"id_number": 6}), "grants[0].masks.id_number", "Expected `array`, got `int`"),
    ("expires not a date", _set("grants[0].expires", "next year"), "grants[0].expires", "Invalid RFC3339"),
    ("expires as int", _set("grants[0].expires", 2027), "grants[0].expires", "got `int`"),
    ("missing consumer", _delete("grants[0]", "consumer"), "grants[0].consumer", "required key is missing"),
    # unknown keys anywhere
    ("unknown top-level key", _set("version", 2), "version", "unknown key"),
    ("unknown member key", _set("members[0].code", "psb"), "members[0].code", "unknown key"),
    ("unknown subsystem key", _set("subsystems[0].owner", "x"), "subsystems[0].owner", "unknown key"),
    ("unknown resource key", _set("resources[0].schema", "x"), "resources[0].schema", "unknown key"),
    ("unknown grant key", _set("grants[0].reason", "x"), "grants[0].reason", "unknown key"),
    ("missing instance", lambda doc: doc.pop("instance"), "instance", "required key is missing"),
    ("members not a list", _set("members", {"id": "SH/GOV/psb"}), "members", "Expected `array`, got `table`"),
]
# fmt: on


@pytest.mark.parametrize("change, key, reason", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_catalog(write_doc, expect_error, change, key: str, reason: str) -> None:
    expect_error(load_catalog, write_doc(variant(change)), key, reason)


@pytest.mark.parametrize(
    "change, key, reason", [b[1:] for b in BAD[:12]], ids=[b[0] for b in BAD[:12]]
)
def test_bad_catalog_object_names_its_source(change, key: str, reason: str) -> None:
    """The same checks apply to a catalog decoded elsewhere (e.g. from a KV bucket)."""
    with pytest.raises(ConfigError) as info:
        catalog_from_obj(variant(change), "kv:catalog")
    assert info.value.file == "kv:catalog"
    assert info.value.key == key
    assert reason in info.value.reason


def test_catalog_toml_syntax_error(write, expect_error) -> None:
    path = write('instance = "SH"\n[[members]]\nid = "SH/GOV/psb\n', "catalog.toml")
    err = expect_error(load_catalog, path, "", "invalid TOML")
    assert "line 3" in err.reason


def test_catalog_file_not_found(tmp_path: Path, expect_error) -> None:
    expect_error(load_catalog, tmp_path / "missing.toml", "", "file not found")


def test_catalog_non_utf8(write, expect_error) -> None:
    expect_error(
        load_catalog, write(b'instance = "SH"\n# \xff\xfe\n', "catalog.toml"), "", "not UTF-8"
    )


def test_expired_grant_gives_no_access(write_doc) -> None:
    doc = variant(_set("grants[0].expires", dt.date(2021, 6, 30)))
    cat = load_catalog(write_doc(doc))
    entry = cat.by_id["psb.id-card"]
    assert cat.access("SH/GOV/hrss/employment", entry) is None
    assert cat.access("SH/GOV/hrss/employment", entry, today=dt.date(2021, 6, 30)) is not None
    assert cat.describe("SH/GOV/hrss/employment", entry)["visible_fields"] == []


def test_mask_is_compiled_into_the_plan(write_doc) -> None:
    from fastpath import project

    cat = load_catalog(write_doc(BASE))
    acc = cat.access("SH/GOV/hrss/employment", cat.by_id["psb.id-card"])
    record = {"id_number": "310101199001011234", "name": "Li Lei", "birth_date": "1990-01-01"}
    assert project(acc.plan, record) == {"id_number": "310101********1234", "name": "Li Lei"}
