"""Catalog declarations of services, service grants and composite ("one transaction") services.

Declared in the catalog file next to resources::

    [[services]]
    id = "SH/GOV/hrss/employment/register"          # provider subsystem + service name
    backends = [{ url = "http://10.0.0.5:8001/api", weight = 2 }, { url = "http://10.0.0.6:8001/api" }]
    timeout_s = 5.0
    retries = 1                                     # idempotent methods only, within the retry budget
    health = { path = "/healthz", interval_s = 5.0 }
    breaker = { failures = 5, open_s = 10.0 }

    [[service_grants]]
    consumer = "SH/GOV/bdc/portal"
    service = "SH/GOV/hrss/employment/register"
    methods = ["GET", "POST"]
    paths = ["/registrations"]                      # path prefixes of the tail, segment-wise

    [[composites]]
    id = "flexible-employment"
    consumers = ["SH/GOV/bdc/portal"]
    steps = [{ name = "register", service = "...", method = "POST", path = "/registrations",
               body = { id_number = "$input.id_number" } }, ...]
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

import msgspec

from gateway.tomlfile import ConfigError

SERVICE_NAME_RE = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
COMPOSITE_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{0,63}$")
STEP_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
METHODS = ("GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE")
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
Method = Literal["GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"]


class Backend(msgspec.Struct, forbid_unknown_fields=True):
    url: str
    weight: int = 1


class HealthCheck(msgspec.Struct, forbid_unknown_fields=True):
    path: str = "/healthz"
    interval_s: float = 5.0
    timeout_s: float = 2.0


class BreakerSpec(msgspec.Struct, forbid_unknown_fields=True):
    failures: int = 5  # consecutive gateway-side failures that open the breaker
    open_s: float = 10.0  # how long it stays open before one half-open probe
    half_open_probes: int = 1


class Service(msgspec.Struct, forbid_unknown_fields=True):
    id: str
    backends: list[Backend]
    title: str = ""
    timeout_s: float = 10.0
    connect_timeout_s: float = 2.0
    retries: int = 1
    retry_budget: float = 0.2  # retries allowed as a fraction of requests (plus 10/s)
    max_connections: int = 64
    eject_failures: int = 3  # consecutive failures that eject a backend (passive)
    eject_s: float = 10.0
    health: HealthCheck | None = None
    breaker: BreakerSpec = msgspec.field(default_factory=BreakerSpec)

    @property
    def provider(self) -> str:
        return self.id.rpartition("/")[0]


class ServiceGrant(msgspec.Struct, forbid_unknown_fields=True):
    consumer: str
    service: str
    methods: list[Method] = msgspec.field(default_factory=lambda: ["GET"])
    paths: list[str] = msgspec.field(default_factory=lambda: ["/"])


class Step(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    service: str
    method: Method = "POST"
    path: str = "/"
    body: Any = None  # JSON template: "$input.a.b" and "$steps.NAME.body.x" are substituted
    after: list[str] = []


class Composite(msgspec.Struct, forbid_unknown_fields=True):
    id: str
    steps: list[Step]
    consumers: list[str]
    title: str = ""
    timeout_s: float = 30.0


@dataclass(frozen=True, slots=True)
class GrantRule:
    """A compiled service grant: allowed methods and decoded path prefixes."""

    methods: frozenset[str]
    prefixes: tuple[str, ...]

    def allows(self, method: str, tail: str) -> bool:
        """Whether ``method`` on the (raw, router-checked) ``tail`` is granted."""
        if method not in self.methods:
            return False
        path = unquote(tail) or "/"
        return any(p == "/" or path == p or path.startswith(p + "/") for p in self.prefixes)


class ServiceIndex:
    """Services, grants and composites of one catalog, compiled for the request path."""

    def __init__(self, services: list[Service], grants: list[ServiceGrant],
                 composites: list[Composite]) -> None:
        self.services = services
        self.ids = [s.id for s in services]
        self.by_id = {s.id: s for s in services}
        self.grants: dict[tuple[str, str], GrantRule] = {}
        for g in grants:
            self.grants[(g.consumer, g.service)] = GrantRule(
                frozenset(g.methods), tuple(p.rstrip("/") or "/" for p in g.paths))
        self.composites = {c.id: c for c in composites}

    def rule(self, client: str, service_id: str) -> GrantRule | None:
        """The caller's grant on a service; the provider subsystem may call its own services."""
        rule = self.grants.get((client, service_id))
        if rule is None and service_id.rpartition("/")[0] == client:
            return GrantRule(frozenset(METHODS), ("/",))
        return rule

    def callable_by(self, client: str) -> list[dict[str, Any]]:
        """What ``client`` may call (GET /v1/services)."""
        out = []
        for s in self.services:
            rule = self.rule(client, s.id)
            if rule is not None:
                out.append({"id": s.id, "title": s.title, "provider": s.provider,
                            "methods": sorted(rule.methods), "paths": list(rule.prefixes),
                            "path": f"/v1/services/{s.id}"})
        comps = [{"id": c.id, "title": c.title, "steps": [st.name for st in c.steps],
                  "path": f"/v1/composites/{c.id}"}
                 for c in self.composites.values() if client in c.consumers]
        return out + comps


def _check_url(src: str, where: str, url: str) -> None:
    u = urlsplit(url)
    if u.scheme not in ("http", "https") or not u.hostname or u.query or u.fragment:
        raise ConfigError(src, where, f"must be http(s)://host[:port][/path] without query, got {url!r}")
    try:
        u.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise ConfigError(src, where, f"bad port in {url!r}") from None


def _check_path(src: str, where: str, path: str) -> None:
    if not path.startswith("/") or any(c in path for c in "?#\\ \r\n\t") or "/../" in path + "/" \
            or "/./" in path + "/" or "//" in path:
        raise ConfigError(src, where, f"must be an absolute path without '..', query or spaces, got {path!r}")


def _refs(obj: Any) -> list[str]:
    """Step names referenced by a body template ("$steps.NAME...")."""
    if isinstance(obj, str):
        return [obj.split(".")[1]] if obj.startswith("$steps.") and obj.count(".") >= 1 else []
    if isinstance(obj, dict):
        return [r for v in obj.values() for r in _refs(v)]
    if isinstance(obj, list):
        return [r for v in obj for r in _refs(v)]
    return []


def check_services(src: str, instance: str, subsystems: set[str], services: list[Service],
                   grants: list[ServiceGrant], composites: list[Composite]) -> ServiceIndex:
    """Check service declarations; raise ConfigError naming the key."""
    ids: set[str] = set()
    for i, s in enumerate(services):
        where = f"services[{i}]"
        provider, _, name = s.id.rpartition("/")
        if provider not in subsystems or not SERVICE_NAME_RE.match(name) or name in (".", ".."):
            raise ConfigError(src, f"{where}.id",
                              f"must be a declared subsystem + '/service-name', got {s.id!r}")
        if s.id in ids:
            raise ConfigError(src, f"{where}.id", f"duplicate service {s.id!r}")
        ids.add(s.id)
        if not s.backends:
            raise ConfigError(src, f"{where}.backends", "a service needs at least one backend")
        for j, b in enumerate(s.backends):
            _check_url(src, f"{where}.backends[{j}].url", b.url)
            if not 1 <= b.weight <= 1000:
                raise ConfigError(src, f"{where}.backends[{j}].weight", f"must be 1..1000, got {b.weight}")
        bounds = {"timeout_s": (s.timeout_s, 0.01, 600), "connect_timeout_s": (s.connect_timeout_s, 0.01, 60),
                  "retries": (s.retries, 0, 5), "retry_budget": (s.retry_budget, 0, 1),
                  "max_connections": (s.max_connections, 1, 10000),
                  "eject_failures": (s.eject_failures, 1, 1000), "eject_s": (s.eject_s, 0, 3600),
                  "breaker.failures": (s.breaker.failures, 1, 1000),
                  "breaker.open_s": (s.breaker.open_s, 0.01, 3600),
                  "breaker.half_open_probes": (s.breaker.half_open_probes, 1, 100)}
        if s.health is not None:
            _check_path(src, f"{where}.health.path", s.health.path)
            bounds["health.interval_s"] = (s.health.interval_s, 0.05, 3600)
            bounds["health.timeout_s"] = (s.health.timeout_s, 0.01, 60)
        for key, (v, lo, hi) in bounds.items():
            if not lo <= v <= hi:
                raise ConfigError(src, f"{where}.{key}", f"must be between {lo} and {hi}, got {v}")
    seen: set[tuple[str, str]] = set()
    for i, g in enumerate(grants):
        where = f"service_grants[{i}]"
        if g.consumer not in subsystems:
            raise ConfigError(src, f"{where}.consumer", f"unknown subsystem {g.consumer!r}")
        if g.service not in ids:
            raise ConfigError(src, f"{where}.service", f"unknown service {g.service!r}")
        if (g.consumer, g.service) in seen:
            raise ConfigError(src, where, f"duplicate grant of {g.service!r} to {g.consumer!r}")
        seen.add((g.consumer, g.service))
        if not g.methods:
            raise ConfigError(src, f"{where}.methods", "grants no method")
        if not g.paths:
            raise ConfigError(src, f"{where}.paths", "grants no path; use [\"/\"] for all")
        for p in g.paths:
            _check_path(src, f"{where}.paths", p)
    cids: set[str] = set()
    for i, c in enumerate(composites):
        where = f"composites[{i}]"
        if not COMPOSITE_RE.match(c.id):
            raise ConfigError(src, f"{where}.id", f"must match [a-z0-9][a-z0-9.-]*, got {c.id!r}")
        if c.id in cids:
            raise ConfigError(src, f"{where}.id", f"duplicate composite {c.id!r}")
        cids.add(c.id)
        if not 0.1 <= c.timeout_s <= 600:
            raise ConfigError(src, f"{where}.timeout_s", f"must be between 0.1 and 600, got {c.timeout_s}")
        for j, con in enumerate(c.consumers):
            if con not in subsystems:
                raise ConfigError(src, f"{where}.consumers[{j}]", f"unknown subsystem {con!r}")
        if not c.steps:
            raise ConfigError(src, f"{where}.steps", "a composite needs at least one step")
        names: set[str] = set()
        for j, st in enumerate(c.steps):
            sw = f"{where}.steps[{j}]"
            if not STEP_RE.match(st.name) or st.name in names:
                raise ConfigError(src, f"{sw}.name", f"must be a unique name [a-z][a-z0-9_]*, got {st.name!r}")
            if st.service not in ids:
                raise ConfigError(src, f"{sw}.service", f"unknown service {st.service!r}")
            _check_path(src, f"{sw}.path", st.path)
            for dep in list(st.after) + _refs(st.body):
                if dep not in names:
                    raise ConfigError(src, f"{sw}.after",
                                      f"step {st.name!r} depends on {dep!r}, which is not an earlier step")
            names.add(st.name)
    return ServiceIndex(services, grants, composites)
