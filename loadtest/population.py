"""The synthetic city the load test talks about: citizens, their records, who reads what.

Everything here is deterministic (a function of the catalog, the keyring and an index)
so that ``seed`` writes exactly the records that the Locust users and the bench read.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.catalog import Catalog, load_catalog
from gateway.keyring import Keyring, load_keyring
from gateway.tomlfile import ConfigError
from loadtest.errors import LoadTestError

#: Field types whose values can name a citizen in a keyed read.
KEY_TYPES = ("str", "int")


def citizen_id(i: int) -> str:
    """The 18-character resident id of synthetic citizen ``i`` (Shanghai prefix 31)."""
    return f"31{i:016d}"


def key_value(field_type: str, i: int) -> str | int:
    """The value of a record's key field for citizen ``i``."""
    return i if field_type.rstrip("?") == "int" else citizen_id(i)


def field_value(name: str, field_type: str, i: int) -> Any:
    """A deterministic, schema-valid JSON value for one field of citizen ``i``'s record."""
    t = field_type.rstrip("?")
    if t == "str":
        return f"{name}-{i}"
    if t == "int":
        return i
    if t == "float":
        return round(i * 1.25 + 0.5, 2)
    if t == "bool":
        return i % 2 == 0
    if t == "date":
        return (dt.date(1950, 1, 1) + dt.timedelta(days=i % 25000)).isoformat()
    if t == "datetime":
        return (dt.datetime(2024, 1, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=i)).strftime(
            "%Y-%m-%dT%H:%M:%SZ"
        )
    if t == "list[str]":
        return [f"{name}-{i}-a", f"{name}-{i}-b"]
    raise LoadTestError(f"unknown field type {field_type!r} in the catalog")


def make_record(fields: dict[str, str], key: str | None, i: int) -> dict[str, Any]:
    """Citizen ``i``'s record ``{"key", "data"}`` for a resource with these fields and key."""
    data = {name: field_value(name, typ, i) for name, typ in fields.items()}
    if key is not None:
        data[key] = key_value(fields[key], i)
        return {"key": str(data[key]), "data": data}
    return {"key": citizen_id(i), "data": data}


@dataclass(frozen=True)
class Credential:
    """One subsystem's signing key."""

    client: str
    key_id: str
    secret: str

    def __repr__(self) -> str:  # never print a secret
        return f"Credential(client={self.client!r}, key_id={self.key_id!r})"


@dataclass(frozen=True)
class ReadTarget:
    """A keyed resource and a client allowed to read it by key."""

    resource: str
    reader: Credential
    owner: Credential
    key: str
    key_type: str
    personal: bool
    granted: bool  # True when the read goes through a conditional grant
    purpose: str | None = None  # the purpose a personal read must state (its grant's)


@dataclass(frozen=True)
class City:
    """The catalog and keyring of one deployment, resolved for load generation."""

    catalog: Catalog
    keyring: Keyring

    def credential(self, client: str) -> Credential | None:
        """The first key of ``client``, or None when the keyring has none."""
        k = self.keyring.for_client(client)
        return Credential(client, k.id, k.secret) if k else None

    def owned(self) -> list[tuple[str, Credential]]:
        """(resource id, owner credential) of every resource whose owner holds a key."""
        out = []
        for e in self.catalog.resources:
            cred = self.credential(e.spec.owner)
            if cred is not None:
                out.append((e.spec.id, cred))
        return out

    def read_targets(self, include_personal: bool = False) -> list[ReadTarget]:
        """Keyed resources with a reader: conditional grants first, then open resources.

        Personal resources need the citizen's consent unless the grant names a legal
        basis; they are left out unless ``include_personal``.
        """
        today = dt.datetime.now(dt.UTC).date()
        granted: list[ReadTarget] = []
        for (consumer, rid), acc in self.catalog.grants.items():
            entry = self.catalog.by_id.get(rid)
            if entry is None or entry.spec.key is None:
                continue
            spec = entry.spec
            if spec.fields[spec.key].rstrip("?") not in KEY_TYPES:
                continue
            g = acc.grant
            if g is not None and g.expires is not None and g.expires < today:
                continue
            if spec.personal and not include_personal and not (g and g.legal_basis):
                continue
            reader, owner = self.credential(consumer), self.credential(spec.owner)
            if reader and owner:
                purpose = (g.purpose or None) if g is not None and spec.personal else None
                granted.append(
                    ReadTarget(
                        rid, reader, owner, spec.key, spec.fields[spec.key], spec.personal, True,
                        purpose,
                    )
                )
        opened: list[ReadTarget] = []
        creds = [self.credential(k.client) for k in self.keyring.by_id.values()]
        for e in self.catalog.resources:
            spec = e.spec
            if spec.sharing != "open" or spec.key is None:
                continue
            if spec.fields[spec.key].rstrip("?") not in KEY_TYPES:
                continue
            if spec.personal and not include_personal:
                continue
            owner = self.credential(spec.owner)
            reader = next((c for c in creds if c and c.client != spec.owner), None)
            if owner and reader:
                opened.append(
                    ReadTarget(
                        spec.id,
                        reader,
                        owner,
                        spec.key,
                        spec.fields[spec.key],
                        spec.personal,
                        False,
                    )
                )
        return granted + opened

    def pull_targets(self) -> list[tuple[str, Credential]]:
        """(resource, reader) pairs for pulls: grantees of conditional resources, else owners."""
        out = []
        for (consumer, rid), _acc in self.catalog.grants.items():
            cred = self.credential(consumer)
            if cred and self.credential(self.catalog.by_id[rid].spec.owner):
                out.append((rid, cred))
        return out or self.owned()

    def fields_of(self, rid: str) -> tuple[dict[str, str], str | None]:
        """The schema and key field of a resource."""
        spec = self.catalog.by_id[rid].spec
        return dict(spec.fields), spec.key


def load_city(catalog: str | Path, keyring: str | Path) -> City:
    """Load the catalog and keyring, turning a bad file into a :class:`LoadTestError`."""
    try:
        cat = load_catalog(catalog)
        ring = load_keyring(keyring)
    except ConfigError as exc:
        raise LoadTestError(str(exc)) from None
    return City(cat, ring)


@dataclass(frozen=True)
class Workload:
    """What a run reads, pulls and pushes; ``seed`` fills exactly ``resources``."""

    targets: list[ReadTarget]
    pulls: list[tuple[str, Credential]]
    owned: list[tuple[str, Credential]]
    resources: list[str]


def workload(city: City, limit: int = 0) -> Workload:
    """The resources a run uses: the first ``limit`` keyed readable ones (0 = all)."""
    targets = city.read_targets()
    if limit > 0:
        keep = list(dict.fromkeys(t.resource for t in targets))[:limit]
        targets = [t for t in targets if t.resource in set(keep)]
    keyed = {t.resource for t in targets}
    pulls = [p for p in city.pull_targets() if p[0] in keyed] or (
        city.pull_targets()[: limit or None]
    )
    owned = [o for o in city.owned() if o[0] in keyed] or city.owned()[: limit or None]
    resources = list(dict.fromkeys([t.resource for t in targets] + [p[0] for p in pulls]))
    return Workload(targets, pulls, owned, resources)
