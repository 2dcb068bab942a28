"""Test kit for the gateway's HTTP tests: raw signed requests, problem assertions and record
builders (fixtures are in conftest.py). Nodes are :class:`support.NodeProcess`: ``python -m
gateway serve`` in a subprocess on ``127.0.0.1:0``, its log in a file the tests can grep.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import secrets
import ssl
import subprocess
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yarl
from multidict import CIMultiDictProxy
from support import SAMPLE_CATALOG, catalog_subsystems
from support import NodeProcess as NodeProcess  # re-exported: the gateway tests import it here
from support import wait_until as wait_until  # re-exported
from support import write_keyring as _write_keyring

from gateway.catalog import Catalog
from gateway.keyring import Keyring
from gateway.signing import sign_headers
from harness import repo_root

ROOT = repo_root()
CATALOG = SAMPLE_CATALOG

# Subsystems of the sample catalog with the roles the tests need.
OWNER = "SH/GOV/psb/hukou"  # owns psb.id-card (conditional, key id_number) and psb.hukou
GRANTED = "SH/GOV/hrss/employment"  # psb.id-card: id_number, name
MASKED = "SH/GOV/bdc/hotline"  # psb.id-card: id_number [6, 4], name [1, 0]
UNGRANTED = "SH/GOV/housing/rental"  # no grant on psb.id-card; owns an open resource
EXPIRED = "SH/GOV/statistics/census"  # grant on psb.hukou expired 2021-06-30
ID_CARD = "psb.id-card"
HUKOU = "psb.hukou"
OPEN = "housing.affordable-listings"  # open, owner UNGRANTED, key listing_id
RESTRICTED = "psb.case-files"  # restricted, owner SH/GOV/psb/cases
RESTRICTED_OWNER = "SH/GOV/psb/cases"

def write_keyring(path: Path, catalog: Path = CATALOG) -> Path:
    """A development keyring like ``python -m gateway keys init`` writes: a key per subsystem
    of ``catalog`` and a citizen_key."""
    _write_keyring(path, catalog_subsystems(catalog), citizen_key=secrets.token_hex(32))
    return path


@dataclass
class Reply:
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Raw:
    """Signed (or deliberately mis-signed) requests with arbitrary headers and bodies.

    Every reply is checked for what holds for all requests: an X-Exchange-Request-Id,
    never a 500, never a secret of the keyring.
    """

    def __init__(self, session: aiohttp.ClientSession, url: str, keyring: Keyring) -> None:
        self.session = session
        self.url = url
        self.keyring = keyring
        self.secrets = [k.secret for k in keyring.by_id.values()]

    def sign(
        self,
        method: str,
        path: str,
        query: str = "",
        body: bytes = b"",
        *,
        client: str = OWNER,
        key_client: str | None = None,
        date: str | None = None,
        headers: dict[str, str] | None = None,
        v1: bool = False,
    ) -> dict[str, str]:
        """``headers`` and the headers that sign the request with them (v2 unless ``v1``)."""
        key = self.keyring.for_client(key_client or client)
        assert key is not None
        return sign_headers(
            key_id=key.id,
            secret=key.secret,
            client=client,
            method=method,
            path=path,
            query=query,
            body=body,
            date=date,
            headers=headers,
            v1=v1,
        )

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: str = "",
        body: bytes | None = None,
        json_body: Any = None,
        headers: dict[str, str] | None = None,
        client: str = OWNER,
        signed: bool = True,
        content_type: str | None = "application/json",
        idempotency: bool = True,
        unsigned: dict[str, str] | None = None,
    ) -> Reply:
        """Send a request: ``headers`` are signed with it (v2), ``unsigned`` added after
        signing; a POST gets a fresh Idempotency-Key unless ``headers`` has one or
        ``idempotency`` is False."""
        if json_body is not None:
            body = json.dumps(json_body).encode()
        body = body or b""
        hdrs: dict[str, str] = {}
        if body and content_type:
            hdrs["Content-Type"] = content_type
        hdrs.update(headers or {})
        if method == "POST" and idempotency and not any(k.lower() == "idempotency-key" for k in hdrs):
            hdrs["Idempotency-Key"] = uuid.uuid4().hex
        if signed:
            hdrs = self.sign(method, path, query, body, client=client, headers=hdrs)
        hdrs.update(unsigned or {})
        url = yarl.URL(self.url + path + (f"?{query}" if query else ""), encoded=True)
        async with self.session.request(
            method, url, data=body or None, headers=hdrs, skip_auto_headers=("Content-Type",)
        ) as resp:
            reply = Reply(resp.status, resp.headers, await resp.read())
        self.check(reply)
        return reply

    def check(self, reply: Reply) -> None:
        assert reply.status != 500, reply.body[:500]
        assert reply.headers.get("X-Exchange-Request-Id"), "response without X-Exchange-Request-Id"
        text = reply.body.decode(errors="replace") + "".join(
            f"{k}:{v}" for k, v in reply.headers.items()
        )
        for s in self.secrets:
            assert s not in text, "a secret was echoed in a response"

    async def push(
        self,
        rid: str,
        records: list[dict[str, Any]],
        *,
        client: str = OWNER,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        return await self.request(
            "POST",
            f"/v1/resources/{rid}/records",
            json_body={"records": records},
            client=client,
            headers=headers,
        )

    async def snapshot(self, rid: str, client: str = OWNER) -> list[dict[str, Any]]:
        """Every record of a resource (read by ``client``, the owner by default)."""
        out: list[dict[str, Any]] = []
        after = 0
        while True:
            r = await self.request(
                "GET",
                f"/v1/resources/{rid}/records",
                query=f"after={after}&limit=1000",
                client=client,
            )
            assert r.status == 200, r.body
            doc = r.json()
            out += doc["records"]
            if not doc["records"]:
                return out
            after = doc["next"]


async def unchanged(raw: Raw, rid: str = ID_CARD) -> Callable[[], Any]:
    """Snapshot a resource now; the returned coroutine function asserts it is the same."""
    before = await raw.snapshot(rid)

    async def check() -> None:
        assert await raw.snapshot(rid) == before

    return check


def assert_problem(reply: Reply, status: int, code: str) -> dict[str, Any]:
    """The reply is an RFC 9457 problem with this status and code (and its request id)."""
    assert reply.status == status, (reply.status, reply.body[:500])
    assert reply.headers["Content-Type"].startswith("application/problem+json"), reply.headers
    doc = reply.json()
    assert doc["code"] == code, doc
    assert doc["status"] == status
    assert {"type", "title", "detail"} <= set(doc)
    assert doc["request_id"] == reply.headers["X-Exchange-Request-Id"]
    return doc


# -- records --------------------------------------------------------------------------

_SAMPLE = {
    "str": lambda tag, name: f"{name}-{tag}",
    "int": lambda tag, name: 7,
    "float": lambda tag, name: 1.5,
    "bool": lambda tag, name: True,
    "date": lambda tag, name: "2020-01-02",
    "datetime": lambda tag, name: "2020-01-02T03:04:05Z",
    "list[str]": lambda tag, name: ["a", tag],
}


def record_for(
    catalog: Catalog, rid: str, tag: str | None = None, **overrides: Any
) -> dict[str, Any]:
    """A valid record ``{"key", "data"}`` for any resource of the catalog, every field set."""
    spec = catalog.by_id[rid].spec
    tag = tag or uuid.uuid4().hex[:12]
    data = {name: _SAMPLE[typ.rstrip("?")](tag, name) for name, typ in spec.fields.items()}
    data.update(overrides)
    key = str(data[spec.key]) if spec.key else tag
    return {"key": key, "data": data}


def id_card(tag: str | None = None, **overrides: Any) -> dict[str, Any]:
    """A psb.id-card record with an 18-character id number."""
    tag = tag or uuid.uuid4().hex[:12]
    num = "310101" + str(int(hashlib.sha256(tag.encode()).hexdigest(), 16) % 10**12).zfill(12)
    data = {
        "id_number": num,
        "name": f"Zhang {tag}",
        "gender": "F",
        "ethnicity": "Han",
        "birth_date": "1990-01-01",
        "address": "1 Renmin Road",
        "issuing_authority": "PSB Huangpu",
        "valid_from": "2015-01-01",
        "valid_until": "2035-01-01",
    }
    data.update(overrides)
    return {"key": data["id_number"], "data": data}


def today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


async def raw_http(
    port: int, request: bytes, *, half_close: bool = False, timeout: float = 10.0
) -> tuple[int, dict[str, str], bytes]:
    """Send bytes exactly as given (no client-side path normalisation) and read one response:
    (status, lower-cased headers, body)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        if half_close:
            writer.write_eof()
        async with asyncio.timeout(timeout):
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split()[1])
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    k, _, v = line.partition(":")
                    headers[k.strip().lower()] = v.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
        return status, headers, body
    finally:
        writer.close()


async def inflight(raw: Raw) -> float:
    """The node's in-flight gauge as read by a /metrics request (which counts itself)."""
    r = await raw.request("GET", "/metrics", signed=False)
    for line in r.body.decode().splitlines():
        if line.startswith("exchange_inflight_requests "):
            return float(line.split()[1])
    raise AssertionError("no exchange_inflight_requests in /metrics")


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(folder: Path, name: str = "ca") -> tuple[Path, Path]:
    """A self-signed CA (EC P-256) with the openssl CLI: (cert, key)."""
    folder.mkdir(parents=True, exist_ok=True)
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        f"{name}.key",
        "-out",
        f"{name}.crt",
        "-days",
        "2",
        "-subj",
        f"/CN=Test {name}",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign",
        cwd=folder,
    )
    return folder / f"{name}.crt", folder / f"{name}.key"


def issue_cert(ca: tuple[Path, Path], name: str, *, cn: str, san: str) -> tuple[Path, Path]:
    """A certificate signed by ``ca`` with this subject CN and subjectAltName: (cert, key)."""
    folder = ca[0].parent
    (folder / f"{name}.ext").write_text(
        f"subjectAltName={san}\n" if san else "basicConstraints=CA:FALSE\n"
    )
    _openssl(
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        f"{name}.key",
        "-out",
        f"{name}.csr",
        "-subj",
        "/CN=" + cn.replace("/", "\\/"),
        cwd=folder,
    )
    _openssl(
        "x509",
        "-req",
        "-in",
        f"{name}.csr",
        "-CA",
        str(ca[0]),
        "-CAkey",
        str(ca[1]),
        "-CAcreateserial",
        "-out",
        f"{name}.crt",
        "-days",
        "2",
        "-extfile",
        f"{name}.ext",
        cwd=folder,
    )
    return folder / f"{name}.crt", folder / f"{name}.key"


def client_ssl(ca_cert: Path, cert: tuple[Path, Path] | None = None) -> ssl.SSLContext:
    """A client TLS context trusting ``ca_cert``, presenting ``cert`` when given."""
    ctx = ssl.create_default_context(cafile=str(ca_cert))
    if cert is not None:
        ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    return ctx
