"""The catalog: members, subsystems, resources with their schemas, and grants.

Loaded from TOML (``configs/catalog/*.toml``), checked for consistency, and compiled
into lookups the request path uses: resource by id, access decision, projection plan
and the record type that validates pushes.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from fastpath import compile_plan
from gateway.governance.spec import Quota, check_governance
from gateway.governance.targets import DEFAULT_MAX_SUBSCRIPTIONS, WebhookTarget, check_targets
from gateway.services.spec import Composite, Service, ServiceGrant, ServiceIndex, check_services
from gateway.stores.retention import parse_duration
from gateway.tomlfile import ConfigError, convert, load_toml

MEMBER_RE = re.compile(r"^[A-Z0-9-]{1,16}/[A-Z]{2,8}/[a-z0-9][a-z0-9._-]{0,63}$")
SUBSYSTEM_RE = re.compile(r"^[A-Z0-9-]{1,16}/[A-Z]{2,8}/[a-z0-9][a-z0-9._-]{0,63}/[a-z0-9][a-z0-9._-]{0,63}$")
RESOURCE_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{0,127}$")
FIELD_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")

INT64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]

FIELD_TYPES: dict[str, Any] = {
    "str": str,
    "int": INT64,
    "float": float,
    "bool": bool,
    "date": dt.date,
    "datetime": dt.datetime,
    "list[str]": list[str],
}

#: Field types that may be a resource's key: a record's key is ``str(data[key])``, which is
#: only the value's own wire text for these (not for floats, datetimes, bools or lists).
KEY_TYPES = ("str", "int", "date")

Sharing = Literal["open", "conditional", "restricted"]


class Member(msgspec.Struct, forbid_unknown_fields=True):
    id: str
    name: str = ""


class Subsystem(msgspec.Struct, forbid_unknown_fields=True):
    id: str
    name: str = ""


class Resource(msgspec.Struct, forbid_unknown_fields=True):
    id: str
    owner: str
    sharing: Sharing
    fields: dict[str, str]
    title: str = ""
    description: str = ""
    personal: bool = False
    key: str | None = None
    citizen: str | None = None  # field naming the citizen of a personal record (default: the key)
    retention: str | None = None  # keep records this long ("400d"; gateway/stores/retention.py)
    max_records: int | None = None  # keep at least the newest this many records
    compact: bool = False  # beyond retention, keep every key's latest record for keyed reads


class Grant(msgspec.Struct, forbid_unknown_fields=True):
    consumer: str
    resource: str
    fields: list[str]
    purpose: str = ""
    expires: dt.date | None = None
    masks: dict[str, list[int]] = {}
    legal_basis: str | None = None


class CatalogFile(msgspec.Struct, forbid_unknown_fields=True):
    """The catalog file as written."""

    instance: str
    members: list[Member] = []
    subsystems: list[Subsystem] = []
    resources: list[Resource] = []
    grants: list[Grant] = []
    services: list[Service] = []
    service_grants: list[ServiceGrant] = []
    composites: list[Composite] = []
    portals: list[str] = []
    quotas: list[Quota] = []
    webhook_targets: list[WebhookTarget] = []
    max_subscriptions_per_client: int = DEFAULT_MAX_SUBSCRIPTIONS


@dataclass(frozen=True, slots=True)
class Access:
    """What one client may read of one resource."""

    owner: bool
    fields: tuple[str, ...] | None  # None = every field
    plan: Any  # fastpath projection plan
    grant: Grant | None = None
    key_clear: bool = True  # False: record keys leave as per-consumer pseudonyms (gateway.release)


@dataclass(slots=True)
class ResourceEntry:
    """A compiled resource: its definition, record type and decoders (built lazily)."""

    index: int
    spec: Resource
    _push_json: Any = None
    _push_msgpack: Any = None
    _record_type: Any = None
    full: Access = field(init=False)

    def __post_init__(self) -> None:
        self.full = Access(owner=False, fields=None, plan=compile_plan(None))

    @property
    def id(self) -> str:
        return self.spec.id

    def record_type(self) -> Any:
        """The msgspec Struct type validating one pushed record ``{"key", "data"}``."""
        if self._record_type is None:
            data_fields = []
            for name, typ in self.spec.fields.items():
                optional = typ.endswith("?")
                py = FIELD_TYPES[typ.rstrip("?")]
                data_fields.append((name, py | None, None) if optional else (name, py))
            data_fields.sort(key=lambda f: len(f) == 3)  # required fields first
            data = msgspec.defstruct(
                "Data", data_fields, forbid_unknown_fields=True, omit_defaults=True
            )
            self._record_type = msgspec.defstruct(
                "PushedRecord", [("key", str), ("data", data)], forbid_unknown_fields=True
            )
        return self._record_type

    def push_decoder(self, msgpack: bool) -> Any:
        """A decoder for a whole push body, built once per resource and format."""
        if self._push_json is None:
            body = msgspec.defstruct(
                "PushBody", [("records", list[self.record_type()])], forbid_unknown_fields=True
            )
            self._push_json = msgspec.json.Decoder(body)
            self._push_msgpack = msgspec.msgpack.Decoder(body)
        return self._push_msgpack if msgpack else self._push_json


class Catalog:
    """A checked, compiled catalog. Immutable once built; reload builds a new one."""

    def __init__(self, doc: CatalogFile, source: str = "<catalog>") -> None:
        self.doc = doc
        self.source = source
        self.instance = doc.instance
        _check(doc, source)
        self.members = {m.id: m for m in doc.members}
        self.subsystems = {s.id: s for s in doc.subsystems}
        self.resources = [ResourceEntry(i, r) for i, r in enumerate(doc.resources)]
        self.by_id = {e.id: e for e in self.resources}
        self.resource_ids = [e.id for e in self.resources]
        self.grants: dict[tuple[str, str], Access] = {}
        for g in doc.grants:
            fields = None if g.fields == ["*"] else tuple(g.fields)
            masks = {k: (v[0], v[1]) for k, v in g.masks.items()}
            spec = self.by_id[g.resource].spec
            every = fields is None or set(spec.fields) <= set(fields)
            # The key leaves in clear only when the grant releases its field in clear (or,
            # without a key field, every field in clear).
            key_clear = (every and not masks) or (
                spec.key is not None and (fields is None or spec.key in fields) and spec.key not in masks)
            self.grants[(g.consumer, g.resource)] = Access(
                owner=False, fields=fields, plan=compile_plan(fields, masks or None), grant=g,
                key_clear=key_clear,
            )
        self._owner_access = {}
        self.services: ServiceIndex = check_services(
            source, doc.instance, set(self.subsystems), doc.services, doc.service_grants, doc.composites)
        self.portals = frozenset(doc.portals)
        self.quotas = {q.client: q for q in doc.quotas}
        self.webhook_targets = check_targets(source, set(self.subsystems), doc.webhook_targets,
                                             doc.max_subscriptions_per_client)
        self.max_subscriptions = doc.max_subscriptions_per_client

    def access(self, client: str, entry: ResourceEntry, today: dt.date | None = None) -> Access | None:
        """What ``client`` may read of the resource, or None when it may not read it."""
        spec = entry.spec
        if client == spec.owner:
            return entry.full
        if spec.sharing == "open":
            return entry.full
        if spec.sharing == "conditional":
            acc = self.grants.get((client, spec.id))
            if acc is not None:
                exp = acc.grant.expires if acc.grant else None
                if exp is None or exp >= (today or dt.datetime.now(dt.UTC).date()):
                    return acc
        return None

    def visible(self, client: str, entry: ResourceEntry) -> bool:
        """Whether the catalog shows this resource to ``client``."""
        return entry.spec.sharing != "restricted" or entry.spec.owner == client

    def describe(self, client: str, entry: ResourceEntry) -> dict[str, Any]:
        """The catalog entry of one resource as seen by ``client``."""
        spec = entry.spec
        acc = self.access(client, entry)
        if acc is None:
            visible: list[str] = []
        elif acc.fields is None:
            visible = list(spec.fields)
        else:
            visible = [f for f in acc.fields if f in spec.fields]
        return {
            "id": spec.id,
            "owner": spec.owner,
            "title": spec.title,
            "description": spec.description,
            "sharing": spec.sharing,
            "personal": spec.personal,
            "key": spec.key,
            "schema": spec.fields,
            "visible_fields": visible,
        }


def _check(doc: CatalogFile, src: str) -> None:
    """Referential and syntactic checks; raise ConfigError naming the key."""
    inst = doc.instance
    if not re.match(r"^[A-Z0-9-]{1,16}$", inst):
        raise ConfigError(src, "instance", f"must be upper-case letters/digits, got {inst!r}")
    members: set[str] = set()
    for i, m in enumerate(doc.members):
        if not MEMBER_RE.match(m.id) or not m.id.startswith(inst + "/"):
            raise ConfigError(src, f"members[{i}].id", f"not a member id INSTANCE/CLASS/CODE of {inst}: {m.id!r}")
        if m.id in members:
            raise ConfigError(src, f"members[{i}].id", f"duplicate member {m.id!r}")
        members.add(m.id)
    subsystems: set[str] = set()
    for i, s in enumerate(doc.subsystems):
        if not SUBSYSTEM_RE.match(s.id):
            raise ConfigError(src, f"subsystems[{i}].id", f"not a subsystem id INSTANCE/CLASS/CODE/SUBSYSTEM: {s.id!r}")
        if s.id.rpartition("/")[0] not in members:
            raise ConfigError(src, f"subsystems[{i}].id", f"member {s.id.rpartition('/')[0]!r} is not declared")
        if s.id in subsystems:
            raise ConfigError(src, f"subsystems[{i}].id", f"duplicate subsystem {s.id!r}")
        subsystems.add(s.id)
    resources: dict[str, Resource] = {}
    for i, r in enumerate(doc.resources):
        where = f"resources[{i}]"
        if not RESOURCE_RE.match(r.id):
            raise ConfigError(src, f"{where}.id", f"must match [a-z0-9][a-z0-9.-]*, got {r.id!r}")
        if r.id in resources:
            raise ConfigError(src, f"{where}.id", f"duplicate resource {r.id!r}")
        if r.owner not in subsystems:
            raise ConfigError(src, f"{where}.owner", f"unknown subsystem {r.owner!r}")
        if not r.fields:
            raise ConfigError(src, f"{where}.fields", "a resource needs at least one field")
        for name, typ in r.fields.items():
            if not FIELD_RE.match(name):
                raise ConfigError(src, f"{where}.fields.{name}", "not a valid field name")
            if typ.rstrip("?") not in FIELD_TYPES or typ.count("?") > 1:
                raise ConfigError(src, f"{where}.fields.{name}", f"unknown type {typ!r} (use {', '.join(FIELD_TYPES)}, '?' for optional)")
        if r.key is not None:
            if r.key not in r.fields:
                raise ConfigError(src, f"{where}.key", f"key field {r.key!r} is not among the fields")
            if r.fields[r.key].endswith("?"):
                raise ConfigError(src, f"{where}.key", f"key field {r.key!r} must not be optional")
            if r.fields[r.key] not in KEY_TYPES:
                raise ConfigError(
                    src,
                    f"{where}.key",
                    f"key field {r.key!r} is {r.fields[r.key]}; a key must be one of {', '.join(KEY_TYPES)}",
                )
        if r.citizen is not None and r.citizen not in r.fields:
            raise ConfigError(src, f"{where}.citizen", f"citizen field {r.citizen!r} is not among the fields")
        _check_retention(src, where, r)
        resources[r.id] = r
    check_governance(src, subsystems, doc.portals, doc.quotas)
    seen: set[tuple[str, str]] = set()
    for i, g in enumerate(doc.grants):
        where = f"grants[{i}]"
        if g.consumer not in subsystems:
            raise ConfigError(src, f"{where}.consumer", f"unknown subsystem {g.consumer!r}")
        res = resources.get(g.resource)
        if res is None:
            raise ConfigError(src, f"{where}.resource", f"unknown resource {g.resource!r}")
        if res.sharing != "conditional":
            raise ConfigError(src, f"{where}.resource", f"grants apply to conditional resources; {g.resource!r} is {res.sharing}")
        if (g.consumer, g.resource) in seen:
            raise ConfigError(src, where, f"duplicate grant of {g.resource!r} to {g.consumer!r}")
        seen.add((g.consumer, g.resource))
        if not g.fields:
            raise ConfigError(src, f"{where}.fields", "an empty grant grants nothing; list fields or [\"*\"]")
        if g.fields != ["*"]:
            for f in g.fields:
                if f not in res.fields:
                    raise ConfigError(src, f"{where}.fields", f"{f!r} is not a field of {g.resource!r}")
        for f, spec in g.masks.items():
            if f not in res.fields:
                raise ConfigError(src, f"{where}.masks.{f}", f"{f!r} is not a field of {g.resource!r}")
            if len(spec) != 2 or min(spec) < 0:
                raise ConfigError(src, f"{where}.masks.{f}", "must be [keep_head, keep_tail], two integers >= 0")


def _check_retention(src: str, where: str, r: Resource) -> None:
    if r.retention is not None:
        try:
            parse_duration(r.retention)
        except ValueError as exc:
            raise ConfigError(src, f"{where}.retention", str(exc)) from None
    if r.max_records is not None and not 1 <= r.max_records <= 10**12:
        raise ConfigError(src, f"{where}.max_records", f"must be between 1 and 10^12, got {r.max_records}")
    if r.compact and r.retention is None and r.max_records is None:
        raise ConfigError(src, f"{where}.compact",
                          "compaction applies beyond a retention; set retention and/or max_records")


def load_catalog(path: str | Path) -> Catalog:
    """Load, check and compile a catalog file."""
    return Catalog(load_toml(path, CatalogFile), str(path))


def catalog_from_obj(obj: Any, source: str = "<catalog>") -> Catalog:
    """Compile a catalog from an already-decoded document (e.g. from a KV bucket)."""
    return Catalog(convert(obj, CatalogFile, source), source)
