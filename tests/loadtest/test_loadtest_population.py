"""The synthetic population: records valid for every resource, deterministic, readable targets."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from loadtest.errors import LoadTestError
from loadtest.population import citizen_id, load_city, make_record, workload


def test_records_pass_the_gateways_validation_for_every_resource(city_files) -> None:
    catalog, keyring = city_files
    city = load_city(catalog, keyring)
    for entry in city.catalog.resources:
        fields, key = city.fields_of(entry.id)
        body = msgspec.json.encode({"records": [make_record(fields, key, i) for i in range(3)]})
        batch = entry.push_decoder(False).decode(body)  # raises on any schema mismatch
        if key is not None:
            for rec in batch.records:
                assert rec.key == str(getattr(rec.data, key))


def test_records_are_deterministic(city_files) -> None:
    city = load_city(*city_files)
    rid = city.catalog.resources[0].id
    fields, key = city.fields_of(rid)
    assert make_record(fields, key, 7) == make_record(fields, key, 7)
    assert make_record(fields, key, 7) != make_record(fields, key, 8)
    assert citizen_id(7) == "310000000000000007" and len(citizen_id(7)) == 18


def test_workload_reads_through_grants_and_limits_resources(city_files) -> None:
    city = load_city(*city_files)
    work = workload(city)
    assert work.targets and work.pulls and work.owned
    assert any(t.granted for t in work.targets)
    for t in work.targets:
        access = city.catalog.access(t.reader.client, city.catalog.by_id[t.resource])
        assert access is not None, t
    small = workload(city, limit=2)
    assert len({t.resource for t in small.targets}) == 2
    assert set(small.resources) <= {t.resource for t in work.targets} | {p[0] for p in work.pulls}


def test_bad_catalog_or_keyring_is_a_clear_error(tmp_path: Path, city_files) -> None:
    with pytest.raises(LoadTestError, match="file not found"):
        load_city(tmp_path / "none.toml", city_files[1])
    bad = tmp_path / "keys.toml"
    bad.write_text('[[keys]]\nid = "k"\nclient = "SH/GOV/x/y"\nsecret = "short"\n')
    with pytest.raises(LoadTestError, match="secret"):
        load_city(city_files[0], bad)
