"""The sample Shanghai catalog (configs/catalog/shanghai.toml) that `make serve` serves."""

from __future__ import annotations

import collections
import datetime as dt
from pathlib import Path

import pytest

from fastpath import project
from gateway.catalog import Catalog, load_catalog
from gateway.keyring import Keyring, dev_keyring_text, load_keyring

REPO = Path(__file__).resolve().parents[2]
PATH = REPO / "configs" / "catalog" / "shanghai.toml"
PORTAL = "SH/GOV/bdc/portal"

#: The certificates and personal data services the One-stop portal shows (the seed).
SEED_RESOURCES = [
    "psb.id-card",  # 居民身份证
    "psb.driving-licence",  # 驾驶证
    "psb.vehicle-licence",  # 行驶证
    "psb.hukou",  # 居民户口簿
    "planning.real-estate-title",  # 不动产权证书
    "hrss.social-security-card",  # 社会保障卡
    "exit-entry.passport",  # 护照
    "sicenter.pension",  # 养老金
    "medinsurance.account",  # 医保金
    "hpf.account",  # 公积金
    "sh-water.bills",  # 水费账单
    "sgcc-sh.electricity-bills",  # 电费账单
    "sh-gas.gas-bills",  # 煤气账单
    "psb.traffic-violations",  # 车主服务
    "tax.individual-income-tax",  # 个人纳税查询
    "pbc-crc.credit-report",  # 信用报告
    "health.health-records",  # 健康档案
]


@pytest.fixture(scope="module")
def cat() -> Catalog:
    return load_catalog(PATH)


def test_loads_with_the_expected_size(cat: Catalog) -> None:
    assert cat.instance == "SH"
    assert len(cat.members) >= 45
    assert len(cat.resources) >= 30
    assert len(cat.doc.grants) >= 30
    classes = collections.Counter(m.split("/")[1] for m in cat.members)
    assert classes["GOV"] >= 35 and classes["COM"] >= 8


def test_every_member_has_a_subsystem(cat: Catalog) -> None:
    assert {s.rpartition("/")[0] for s in cat.subsystems} == set(cat.members)
    assert all(m.name for m in cat.members.values())


def test_all_three_sharing_classes(cat: Catalog) -> None:
    sharing = collections.Counter(e.spec.sharing for e in cat.resources)
    assert sharing["open"] >= 5 and sharing["conditional"] >= 20 and sharing["restricted"] >= 3


def test_resources_are_described_and_keyed(cat: Catalog) -> None:
    types = set()
    for e in cat.resources:
        r = e.spec
        assert r.title, r.id
        assert r.key is not None and r.key in r.fields, r.id
        types |= {t.rstrip("?") for t in r.fields.values()}
        if r.sharing == "conditional" and r.key == "id_number":
            assert r.personal, r.id
    assert types == {"str", "int", "float", "bool", "date", "datetime", "list[str]"}
    assert any(t.endswith("?") for e in cat.resources for t in e.spec.fields.values())


def test_seed_certificates_and_data_services(cat: Catalog) -> None:
    id_card = cat.by_id["psb.id-card"].spec
    assert (id_card.key, id_card.sharing, id_card.personal) == ("id_number", "conditional", True)
    for rid in SEED_RESOURCES:
        entry = cat.by_id[rid]
        assert entry.spec.personal, rid
        acc = cat.access(PORTAL, entry)
        assert acc is not None, f"the portal cannot read {rid}"


def test_flexible_employment_grant(cat: Catalog) -> None:
    acc = cat.access("SH/GOV/hrss/employment", cat.by_id["psb.id-card"])
    assert acc is not None and acc.fields == ("id_number", "name")
    record = {"id_number": "310101199001011234", "name": "Wang Fang", "address": "Xuhui"}
    assert project(acc.plan, record) == {"id_number": "310101199001011234", "name": "Wang Fang"}


def test_masked_grant(cat: Catalog) -> None:
    acc = cat.access("SH/GOV/bdc/hotline", cat.by_id["psb.id-card"])
    out = project(acc.plan, {"id_number": "310101199001011234", "name": "Wang Fang"})
    assert out == {"id_number": "310101********1234", "name": "W********"}


def test_grants_have_purposes_and_some_legal_bases(cat: Catalog) -> None:
    assert all(g.purpose for g in cat.doc.grants)
    assert sum(1 for g in cat.doc.grants if g.legal_basis) >= 5
    assert sum(1 for g in cat.doc.grants if g.masks) >= 5


def test_one_grant_has_expired(cat: Catalog) -> None:
    expired = [g for g in cat.doc.grants if g.expires and g.expires < dt.date(2026, 1, 1)]
    assert len(expired) == 1
    g = expired[0]
    assert cat.access(g.consumer, cat.by_id[g.resource]) is None
    assert cat.access(g.consumer, cat.by_id[g.resource], today=g.expires) is not None


def test_restricted_resources_only_for_their_owner(cat: Catalog) -> None:
    for e in cat.resources:
        if e.spec.sharing == "restricted":
            assert cat.access(e.spec.owner, e) is not None
            assert cat.access(PORTAL, e) is None
            assert not cat.visible(PORTAL, e)


def test_every_owner_pushes_and_every_grant_reads(cat: Catalog) -> None:
    """A load test can push as each owner and read through each live grant."""
    for e in cat.resources:
        assert e.spec.owner in cat.subsystems
        e.record_type()  # the push type builds
    live = [g for g in cat.doc.grants if g.expires is None or g.expires >= dt.date.today()]
    for g in live:
        assert cat.access(g.consumer, cat.by_id[g.resource]) is not None


def test_dev_keyring_covers_every_subsystem(cat: Catalog, tmp_path: Path) -> None:
    path = tmp_path / "keyring.dev.toml"
    path.write_text(dev_keyring_text(list(cat.subsystems)))
    ring: Keyring = load_keyring(path)
    ring.check_clients(set(cat.subsystems))
    assert ring.for_client(PORTAL) is not None


def test_file_is_commented() -> None:
    text = PATH.read_text(encoding="utf-8")
    assert text.startswith("# OneStop Exchange")
    assert sum(1 for line in text.splitlines() if line.lstrip().startswith("#")) >= 40


def test_facts_the_gateway_tests_rely_on(cat: Catalog) -> None:
    """tests/gateway/gwkit.py names these subsystems and resources; keep them true."""
    id_card, hukou = cat.by_id["psb.id-card"], cat.by_id["psb.hukou"]
    assert id_card.spec.owner == hukou.spec.owner == "SH/GOV/psb/hukou"
    assert cat.access("SH/GOV/hrss/employment", id_card).fields == ("id_number", "name")
    hotline = cat.access("SH/GOV/bdc/hotline", id_card)
    assert hotline.plan.masks == {"id_number": (6, 4), "name": (1, 0)}
    assert cat.access("SH/GOV/housing/rental", id_card) is None
    assert any(
        e.spec.owner == "SH/GOV/housing/rental" and e.spec.sharing == "open" for e in cat.resources
    )
    census = [g for g in cat.doc.grants if g.consumer == "SH/GOV/statistics/census"]
    assert [(g.resource, g.expires) for g in census] == [("psb.hukou", dt.date(2021, 6, 30))]
    cases = cat.by_id["psb.case-files"].spec
    assert (cases.sharing, cases.owner) == ("restricted", "SH/GOV/psb/cases")


def test_portal_acts_for_citizens(cat: Catalog) -> None:
    assert PORTAL in cat.portals


def test_personal_records_name_their_citizen(cat: Catalog) -> None:
    """The consent rule needs the citizen's ID number: the key, or the `citizen` field."""
    for e in cat.resources:
        r = e.spec
        if not r.personal or r.sharing == "restricted":
            continue
        field = r.citizen or r.key
        assert field is not None and r.fields[field] == "str", r.id
        assert field.endswith("id_number"), f"{r.id}: citizen field {field!r}"
