"""Locust users of the exchange; every request is signed by :class:`gateway.signing.Signer`.

Request names are the request kinds that summaries and SLOs are keyed by:
``read`` (keyed read), ``push``, ``pull``, ``commit``, ``catalog`` (one entry) and
``catalog-list`` (the whole catalog).

- :class:`CitizenPortalUser`: keyed reads of a citizen's certificates and personal data
  (``X-Exchange-UserId`` names the citizen), as the portal does on the citizen's behalf.
- :class:`AgencyProducer`: batch pushes with a fresh ``Idempotency-Key`` each.
- :class:`AgencyConsumer`: pull loop with long-poll ``wait`` and cursor commits.
- :class:`CatalogBrowser`: catalog entries, now and then the whole catalog.
- :class:`OpenModelUser`: the open model; starts requests of every kind (drawn from the
  scenario's mix) on a fixed schedule, latency measured from the intended start time.
- :class:`SignedPingUser`: signs ``GET /hello`` against a bare server; measures how many
  signed requests one worker process can generate.
"""

from __future__ import annotations

import itertools
import random
import time
import uuid
from typing import Any
from urllib.parse import quote

import gevent
import msgspec
from gevent.pool import Pool
from locust import constant, task
from locust.contrib.fasthttp import FastHttpUser

from gateway.client import purpose_header
from gateway.signing import Signer
from loadtest import collect
from loadtest.population import (
    City,
    Credential,
    ReadTarget,
    Workload,
    citizen_id,
    key_value,
    load_city,
    make_record,
    workload,
)
from loadtest.profile import rate_factor
from loadtest.runconfig import RunConfig, current_config

_ENC = msgspec.json.Encoder()
_DEC = msgspec.json.Decoder()
_state: dict[str, Any] = {}
_date_cache: list[Any] = [0, ""]


def _date() -> str:
    """``X-Exchange-Date`` for now, formatted once per second."""
    now = int(time.time())
    if now != _date_cache[0]:
        _date_cache[0] = now
        _date_cache[1] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
    return _date_cache[1]


def config() -> RunConfig:
    """The run's configuration (read once per process)."""
    return current_config()


def city() -> City:
    """The catalog and keyring (loaded once per process)."""
    if "city" not in _state:
        cfg = config()
        _state["city"] = load_city(cfg.catalog, cfg.keyring)
    return _state["city"]


def _signer(cred: Credential) -> Signer:
    cache = _state.setdefault("signers", {})
    s = cache.get(cred.key_id)
    if s is None:
        s = cache[cred.key_id] = Signer(cred.key_id, cred.secret, cred.client)
    return s


def _work() -> Workload:
    if "work" not in _state:
        _state["work"] = workload(city(), config().resources)
    return _state["work"]


def _all_owned() -> list[tuple[str, Credential]]:
    if "all_owned" not in _state:
        _state["all_owned"] = city().owned()
    return _state["all_owned"]


def _targets() -> list[ReadTarget]:
    return _work().targets


def _pulls() -> list[tuple[str, Credential]]:
    return _work().pulls


def _owned() -> list[tuple[str, Credential]]:
    return _work().owned


_counter = itertools.count()


def _reading_for(t: ReadTarget, i: int) -> dict[str, str]:
    """The citizen and, for a personal read, the purpose its grant states."""
    headers = {"X-Exchange-UserId": citizen_id(i)}
    if t.purpose:
        headers["X-Exchange-Purpose"] = purpose_header(t.purpose)
    return headers


class _Exchange:
    """Signed request helpers shared by the users (mixed into FastHttpUser subclasses)."""

    client: Any

    def _send(
        self,
        name: str,
        cred: Credential,
        method: str,
        path: str,
        query: str = "",
        body: bytes = b"",
        extra: dict[str, str] | None = None,
        intended: float | None = None,
        ok: tuple[int, ...] = (200,),
    ) -> Any:
        signed = {"Content-Type": "application/json"} if body else {}
        if extra:
            signed.update(extra)
        headers = _signer(cred).headers(method, path, query, body, _date(), headers=signed)
        url = path + ("?" + query if query else "")
        if intended is None and ok == (200,):  # the common case: Locust's own 4xx/5xx = failure
            resp = self.client.request(method, url, data=body or None, headers=headers, name=name)
            return resp if resp.status_code == 200 else None
        with self.client.request(
            method, url, data=body or None, headers=headers, name=name, catch_response=True
        ) as resp:
            if intended is not None:  # open model: latency from the intended start time
                resp.request_meta["response_time"] = (time.perf_counter() - intended) * 1000.0
            if resp.status_code in ok:
                resp.success()
                return resp
            detail = ""
            if resp.content:
                try:
                    detail = str(_DEC.decode(resp.content).get("code", ""))
                except (msgspec.DecodeError, AttributeError):
                    detail = ""
            resp.failure(f"HTTP {resp.status_code} {detail}".strip())
            return None

    # -- one request of each kind ----------------------------------------------------

    def do_read(self, intended: float | None = None) -> None:
        targets = _targets()
        if not targets:
            raise RuntimeError("no keyed resource is readable by a keyring client")
        t = random.choice(targets)
        i = random.randrange(config().citizens)
        k = str(key_value(t.key_type, i))
        path = f"/v1/resources/{t.resource}/records/{quote(k, safe='')}"
        self._send(
            "read",
            t.reader,
            "GET",
            path,
            extra=_reading_for(t, i),
            intended=intended,
        )

    def do_push(self, intended: float | None = None) -> None:
        rid, owner = random.choice(_owned())
        fields, key = city().fields_of(rid)
        n = max(1, config().push_batch_records)
        start = random.randrange(max(1, config().citizens))
        records = [
            make_record(fields, key, (start + j) % max(1, config().citizens)) for j in range(n)
        ]
        body = _ENC.encode({"records": records})
        self._send(
            "push",
            owner,
            "POST",
            f"/v1/resources/{rid}/records",
            body=body,
            extra={"Idempotency-Key": uuid.uuid4().hex},
            intended=intended,
        )

    def do_pull(
        self,
        rid: str,
        cred: Credential,
        after: int | None,
        wait: int,
        intended: float | None = None,
    ) -> int | None:
        q = []
        if after is not None:
            q.append(f"after={after}")
        q.append(f"limit={config().pull_limit}")
        q.append(f"wait={wait}")
        resp = self._send(
            "pull", cred, "GET", f"/v1/resources/{rid}/records", "&".join(q), intended=intended
        )
        if resp is None:
            return None
        doc = _DEC.decode(resp.content)
        if doc.get("records"):
            self._send(
                "commit",
                cred,
                "PUT",
                f"/v1/resources/{rid}/cursor",
                body=_ENC.encode({"offset": doc["next"]}),
                ok=(200, 409),
            )
        return doc.get("next")

    def do_catalog(self, intended: float | None = None) -> None:
        owned = _all_owned()
        rid, owner = random.choice(owned)
        reader = owner
        if city().catalog.by_id[rid].spec.sharing != "restricted":
            reader = random.choice(owned)[1]  # any member sees open and conditional entries
        if random.random() < 0.05:
            self._send("catalog-list", reader, "GET", "/v1/catalog", intended=intended)
        else:
            self._send("catalog", reader, "GET", f"/v1/catalog/{rid}", intended=intended)


class CitizenPortalUser(_Exchange, FastHttpUser):
    """Keyed reads of a citizen's records through a consumer's grant."""

    wait_time = constant(0)

    @task
    def read(self) -> None:
        self.do_read()


class AgencyProducer(_Exchange, FastHttpUser):
    """An agency system pushing batches of records it owns, each with an Idempotency-Key."""

    wait_time = constant(0)

    @task
    def push(self) -> None:
        self.do_push()


class AgencyConsumer(_Exchange, FastHttpUser):
    """An agency system following a resource: long-poll pulls, cursor commit after each page."""

    wait_time = constant(0)

    def on_start(self) -> None:
        pulls = _pulls()
        self.rid, self.cred = pulls[next(_counter) % len(pulls)]
        self.after: int | None = None

    @task
    def pull(self) -> None:
        nxt = self.do_pull(self.rid, self.cred, self.after, config().pull_wait_s)
        if nxt is not None:
            self.after = nxt


class CatalogBrowser(_Exchange, FastHttpUser):
    """A member browsing the catalog."""

    wait_time = constant(0)

    @task
    def browse(self) -> None:
        self.do_catalog()


class SignedPingUser(_Exchange, FastHttpUser):
    """Signed ``GET /hello`` (against the bare hello server): the generator's own ceiling."""

    wait_time = constant(0)

    @task
    def ping(self) -> None:
        cred = _all_owned()[0][1]
        self._send("ping", cred, "GET", "/hello")


class OpenModelUser(_Exchange, FastHttpUser):
    """Open model: this user's share of ``--open-rate`` started on a fixed schedule.

    Each arrival runs in its own greenlet (at most ``open_concurrency`` at once; an
    arrival that finds none free is dropped). Its latency is measured from its intended
    start; a start later than ``late_ms`` counts as late. Kinds come from the mix.
    """

    wait_time = constant(0)
    concurrency = 200

    def on_start(self) -> None:
        cfg = config()
        self.pool = Pool(cfg.open_concurrency)
        kinds = [k for k, v in cfg.shares.items() if v > 0]
        self.kinds = kinds
        self.weights = [cfg.shares[k] for k in kinds]
        pulls = _pulls()
        self.pull_target = pulls[next(_counter) % len(pulls)]

    def _one(self, kind: str, intended: float) -> None:
        lateness = time.perf_counter() - intended
        collect.note_open_start(lateness * 1000.0, config().late_ms)
        if kind == "read":
            self.do_read(intended)
        elif kind == "push":
            self.do_push(intended)
        elif kind == "pull":
            rid, cred = self.pull_target
            self.do_pull(rid, cred, None, 0, intended)
        else:
            self.do_catalog(intended)

    @task
    def arrivals(self) -> None:
        """Start the arrivals due in the next 0.1 s (short tasks let Locust stop the user)."""
        cfg = config()
        now = time.perf_counter()
        if not hasattr(self, "t0"):
            self.t0 = self.t = now
            self.end = now + cfg.duration_s
            self.rate = (cfg.open_rate or 1.0) / max(1, cfg.users)
        if self.t >= self.end:
            gevent.sleep(0.1)
            return
        chunk_end = min(now + 0.1, self.end)
        while self.t < chunk_end:
            now = time.perf_counter()
            if self.t > now:
                gevent.sleep(self.t - now)
            kind = random.choices(self.kinds, self.weights)[0]
            collect.note_open_scheduled()
            if self.pool.full():
                collect.note_open_dropped()
            else:
                self.pool.spawn(self._one, kind, self.t)
            factor = rate_factor(cfg, self.t - self.t0) if cfg.shape else 1.0
            self.t += 1.0 / max(self.rate * factor, self.rate * 0.001)
        collect.note_open_window(min(self.t, self.end) - self.t0)


USER_CLASSES = {
    c.__name__: c
    for c in (
        CitizenPortalUser,
        AgencyProducer,
        AgencyConsumer,
        CatalogBrowser,
        OpenModelUser,
        SignedPingUser,
    )
}
#: Which closed-model user class carries which request kind of the mix.
KIND_USERS = {
    "read": "CitizenPortalUser",
    "push": "AgencyProducer",
    "pull": "AgencyConsumer",
    "catalog": "CatalogBrowser",
}
