"""Webhook delivery: new records of a resource pushed to a consumer's callback URL.

Each subscription has a delivery cursor in the governance store. A node leases a
subscription (so that several nodes or worker processes never deliver it twice at once),
reads the records after the cursor, projects them to the consumer's grant and POSTs them
in order, in batches, signed with the node's own Ed25519 key (``node-signing.key`` in the
data directory; its public half is served unsigned at ``GET /v1/node-keys`` and a delivery
is checked with :func:`gateway.client.verify_webhook`). Only a 2xx answer moves
the cursor: delivery is at least once and in offset order. Failures back off
exponentially (``base_s * 2**attempt``, capped, with jitter); after ``max_attempts``
failures in a row the subscription is dead-lettered until an operator replays it
(``python -m gateway webhooks replay``).

Egress is confined (gateway.governance.egress, gateway.governance.targets): the URL must
still be under one of the consumer's ``[[webhook_targets]]``; every address the host is or
resolves to is checked and the connection goes to those checked addresses; redirects are
not followed; ``last_error`` is a coarse class, never what the peer sent.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import random
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import aiohttp
import msgspec
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from prometheus_client import Counter, Gauge

from gateway.audit import AuditEntry
from gateway.errors import Problem
from gateway.governance.egress import (
    GuardedResolver,
    allowed,
    failure_class,
    looks_numeric,
    status_class,
)
from gateway.governance.model import Subscription
from gateway.governance.targets import match, parse_url
from gateway.signing import body_digest, format_date
from gateway.tomlfile import ConfigError
from gateway.wiremodel import WebhookBatch

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from gateway.audit import AuditLog
    from gateway.catalog import Catalog
    from gateway.governance.store import GovernanceStore
    from gateway.logs import AccessLog
    from gateway.release import Releaser
    from gateway.stores.base import Store

_enc = msgspec.json.Encoder()


KEY_FILE = "node-signing.key"
SIGNATURE_HEADER = "X-Exchange-Signature"
DELIVERY_ALGORITHM = "EXG-ED25519"


def b64url(raw: bytes) -> str:
    """Unpadded base64url."""
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def key_id(public_raw: bytes) -> str:
    """A node key's id: the first 16 hex characters of SHA-256 of the raw 32-byte public key."""
    return hashlib.sha256(public_raw).hexdigest()[:16]


def delivery_string(date: str, client: str, subscription: str, path: str, query: str,
                    body_sha256: str) -> str:
    """The canonical string a delivery's Ed25519 signature covers (docs/services.md)."""
    return "\n".join((DELIVERY_ALGORITHM, date, client, subscription, "POST", path, query, body_sha256))


#: The public halves of this node's retired signing keys, each listed at ``/v1/node-keys``
#: until its ``until`` (epoch seconds), written by ``python -m gateway node-key rotate``.
RETIRED_FILE = "node-signing.retired.json"


class NodeKey:
    """The node's Ed25519 signing key; every node has its own, named by its key id. After a
    rotation (:func:`rotate_node_key`) :meth:`reload` swaps the new key in (SIGHUP) and the
    retired keys stay listed until their overlap ends, so that deliveries and checkpoints
    signed with them still verify."""

    __slots__ = ("id", "public", "_private", "path", "retired")

    def __init__(self, private: Ed25519PrivateKey, path: Path | None = None) -> None:
        self._private = private
        self.public = private.public_key().public_bytes(serialization.Encoding.Raw,
                                                        serialization.PublicFormat.Raw)
        self.id = key_id(self.public)
        self.path = path
        self.retired: list[dict[str, object]] = load_retired(path) if path is not None else []

    def reload(self) -> bool:
        """Read the key file again; True when it holds another key now (then signs with it)."""
        return self.adopt(load_node_key(self.path)) if self.path is not None else False

    def adopt(self, fresh: NodeKey) -> bool:
        """Sign with ``fresh`` from now on (call on the event loop); True when it is another key."""
        self.retired = fresh.retired
        if fresh.id == self.id:
            return False
        self._private, self.public, self.id = fresh._private, fresh.public, fresh.id
        return True

    def public_docs(self, now: float | None = None) -> list[dict[str, object]]:
        """The current key and the retired ones still in their overlap (``/v1/node-keys``)."""
        now = time.time() if now is None else now
        return [self.public_doc()] + [
            {"id": r["id"], "alg": "Ed25519", "public_key": r["public_key"], "until": r["until_iso"]}
            for r in self.retired if isinstance(r.get("until"), (int, float)) and r["until"] > now]

    def sign(self, data: bytes) -> bytes:
        return self._private.sign(data)

    def public_doc(self) -> dict[str, str]:
        """The entry served by ``GET /v1/node-keys``."""
        return {"id": self.id, "alg": "Ed25519", "public_key": b64url(self.public)}

    def delivery_headers(self, client: str, subscription: str, path: str, query: str, body: bytes,
                         date: str | None = None) -> dict[str, str]:
        """Headers that sign one webhook delivery to ``path``/``query`` for ``client``."""
        date = date or format_date()
        sig = self.sign(delivery_string(date, client, subscription, path, query, body_digest(body)).encode())
        return {"X-Exchange-Date": date, "X-Exchange-Client": client, "X-Exchange-Subscription": subscription,
                SIGNATURE_HEADER: f"ed25519 keyid={self.id}, sig={b64url(sig)}"}


def load_node_key(path: str | Path) -> NodeKey:
    """The node key from a PEM file, created (mode 0600) when missing; ConfigError names a bad file."""
    kp = Path(path)
    if not kp.exists():
        pem = Ed25519PrivateKey.generate().private_bytes(serialization.Encoding.PEM,
                                                         serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption())
        kp.parent.mkdir(parents=True, exist_ok=True)
        tmp = kp.with_name(f".{kp.name}.{os.getpid()}.{os.urandom(4).hex()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(pem)
                f.flush()
                os.fsync(f.fileno())
            with contextlib.suppress(FileExistsError):  # another worker made it first: use theirs
                os.link(tmp, kp)
        finally:
            tmp.unlink(missing_ok=True)
    mode = kp.stat().st_mode & 0o777
    if mode & 0o077:
        raise ConfigError(kp, "", f"permissions {mode:04o} are too open for a private key; chmod 600 it")
    try:
        key = serialization.load_pem_private_key(kp.read_bytes(), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ConfigError(kp, "", f"not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(kp, "", f"holds a {type(key).__name__.lstrip('_')}, not an Ed25519 private key")
    return NodeKey(key, kp)


def load_retired(key_path: Path) -> list[dict[str, object]]:
    """The retired keys beside ``key_path`` (none when the file is missing or unreadable)."""
    path = key_path.with_name(RETIRED_FILE)
    try:
        doc = msgspec.json.decode(path.read_bytes())
    except (OSError, msgspec.DecodeError):
        return []
    return [r for r in doc if isinstance(r, dict)] if isinstance(doc, list) else []


def rotate_node_key(key_path: str | Path, overlap_s: int, now: float | None = None) -> tuple[str, str]:
    """Make a new node key; the old one is listed (public half) for ``overlap_s`` more seconds.
    Answers (old key id, new key id). The node picks the new key up on SIGHUP."""
    kp = Path(key_path)
    old = load_node_key(kp)
    now = time.time() if now is None else now
    until = now + overlap_s
    retired = [r for r in old.retired if isinstance(r.get("until"), (int, float)) and r["until"] > now]
    retired.append({"id": old.id, "public_key": b64url(old.public), "until": until,
                    "until_iso": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(until))})
    _write_atomic(kp.with_name(RETIRED_FILE), _enc.encode(retired))
    pem = Ed25519PrivateKey.generate().private_bytes(serialization.Encoding.PEM,
                                                     serialization.PrivateFormat.PKCS8,
                                                     serialization.NoEncryption())
    _write_atomic(kp, pem)
    return old.id, load_node_key(kp).id


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class Deliverer:
    """Runs the deliveries of every active subscription this node holds a lease on."""

    def __init__(self, *, store: Store, governance: GovernanceStore, releaser: Releaser,
                 audit: AuditLog | None, node_key: NodeKey, log: AccessLog, catalog: Callable[[], Catalog],
                 registry: CollectorRegistry, scan_s: float = 1.0, lease_s: float = 30.0,
                 max_attempts: int = 8, base_s: float = 0.5, cap_s: float = 300.0,
                 timeout_s: float = 10.0) -> None:
        self.store = store
        self.governance = governance
        self.releaser = releaser
        self.audit = audit
        self.node_key = node_key
        self.log = log
        self.catalog = catalog  # the node's current catalog (it changes on reload)
        self.scan_s = scan_s
        self.lease_s = lease_s
        self.max_attempts = max_attempts
        self.base_s = base_s
        self.cap_s = cap_s
        self.timeout_s = timeout_s
        self.owner = f"{os.uname().nodename}:{os.getpid()}:{os.urandom(3).hex()}"
        self.workers: dict[str, asyncio.Task] = {}
        self.lag: dict[str, float] = {}
        self._task: asyncio.Task | None = None
        self._sessions: dict[bool, aiohttp.ClientSession] = {}  # by allow_private
        self._admission: dict[str, asyncio.Lock] = {}
        self._kick = asyncio.Event()
        r = registry
        self.m_deliveries = Counter("exchange_webhook_deliveries", "Webhook batches by outcome",
                                    ["outcome"], registry=r)
        self.m_records = Counter("exchange_webhook_records_delivered", "Records delivered by webhooks",
                                 registry=r)
        self.m_lag = Gauge("exchange_webhook_lag_seconds",
                           "Age of the oldest record not yet delivered, worst subscription", registry=r)
        self.m_dead = Gauge("exchange_webhook_dead", "Dead-lettered subscriptions seen by this node",
                            registry=r)

    def start(self) -> None:
        for allow_private in (False, True):  # one pool per address policy: a connection never crosses
            connector = aiohttp.TCPConnector(resolver=GuardedResolver(allow_private), use_dns_cache=False)
            self._sessions[allow_private] = aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                cookie_jar=aiohttp.DummyCookieJar(), trust_env=False)
        self._task = asyncio.get_running_loop().create_task(self._scan_forever())

    @contextlib.asynccontextmanager
    async def admission(self, client: str) -> AsyncIterator[None]:
        """Serialise this process's subscribes of one client (count, then add: the cap holds)."""
        lock = self._admission.setdefault(client, asyncio.Lock())
        async with lock:
            yield

    def kick(self) -> None:
        """Look for new subscriptions now (after a subscribe)."""
        self._kick.set()

    async def stop(self) -> None:
        held = list(self.workers)
        tasks = [t for t in [self._task, *self.workers.values()] if t is not None]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self.workers.clear()
        now = time.time()
        for sid in held:  # hand the leases back so another node takes over at once
            with contextlib.suppress(Exception):
                await self.governance.sub_claim(sid, self.owner, 0.0, now)
        self._task = None
        sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            await session.close()

    async def _scan_forever(self) -> None:
        failing = ""  # the error last reported: logged once, not on every scan
        while True:
            try:
                await self._scan()
                failing = ""
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - keep scanning; report
                if f"{type(exc).__name__}: {exc}" != failing:
                    self.log.error("webhooks", "subscription scan failed", exc)
                failing = f"{type(exc).__name__}: {exc}"
            self._kick.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.scan_s):
                    await self._kick.wait()

    async def _scan(self) -> None:
        now = time.time()
        subs, dead = await self.governance.sub_due(self.owner, now)  # cheap: no full listing
        self.m_dead.set(dead)
        for s in subs:
            if s.state != "active" or s.id in self.workers:
                continue
            if s.lease_owner not in ("", self.owner) and s.lease_until > now:
                continue
            claimed = await self.governance.sub_claim(s.id, self.owner, now + self.lease_s, now)
            if claimed is None:
                continue
            t = asyncio.get_running_loop().create_task(self._deliver_forever(s.id))
            self.workers[s.id] = t
            t.add_done_callback(lambda _t, sid=s.id: self._ended(sid))
        self.m_lag.set(max(self.lag.values(), default=0.0))

    def _ended(self, sid: str) -> None:
        self.workers.pop(sid, None)
        self.lag.pop(sid, None)

    def backoff(self, attempts: int) -> float:
        """Seconds before the next attempt after ``attempts`` failures in a row."""
        return min(self.cap_s, self.base_s * 2 ** max(0, attempts - 1)) * (0.75 + random.random() / 2)

    async def _deliver_forever(self, sid: str) -> None:
        gov = self.governance
        while True:
            now = time.time()
            sub = await gov.sub_claim(sid, self.owner, now + self.lease_s, now)
            if sub is None or sub.state != "active":
                return
            if sub.next_attempt > now:
                await asyncio.sleep(min(sub.next_attempt - now, self.lease_s / 3))
                continue
            await self.deliver_once(sub)

    async def deliver_once(self, sub: Subscription) -> bool:
        """Deliver one batch (waiting briefly for records); True when something was delivered."""
        catalog = self.catalog()
        entry = catalog.by_id.get(sub.resource)
        access = catalog.access(sub.consumer, entry) if entry is not None else None
        if access is None:
            await self._failed(sub, "access_revoked", final=True)
            return False
        url = parse_url(sub.url)
        target = None if isinstance(url, str) else match(catalog.webhook_targets, sub.consumer, url)
        if target is None:  # the catalog no longer allows this URL (or never did)
            await self._failed(sub, "url_not_allowed", final=True)
            return False
        recs = await self.store.read(sub.resource, sub.cursor, sub.batch)
        if not recs:
            self.lag[sub.id] = 0.0
            await self.store.wait(sub.resource, sub.cursor, min(5.0, self.lease_s / 3))
            return False
        if self.audit is not None and not self.audit.room(1):
            await asyncio.sleep(0.1)  # never an unaudited delivery
            return False
        now = time.time()
        self.lag[sub.id] = max(0.0, now - recs[0].ts_ms / 1000)
        out, citizens = self.releaser.release(sub.consumer, entry, access, recs)
        delivery = f"delivery-{sub.id}-{recs[0].offset}"
        if citizens and self.audit is not None:  # personal data leaves only once durably audited
            try:
                await self.audit.record(AuditEntry(ts=now, request_id=delivery, client=sub.consumer,
                                                   op="deliver", target=sub.resource, status=0,
                                                   count=len(recs), citizens=citizens, detail="sending"))
            except Problem:
                await asyncio.sleep(0.5)  # the audit log cannot write: deliver nothing
                return False
        body = _enc.encode(WebhookBatch(subscription=sub.id, resource=sub.resource, records=out,
                                        next=recs[-1].offset))
        u = urlsplit(sub.url)
        headers = self.node_key.delivery_headers(sub.consumer, sub.id, u.path or "/", u.query, body)
        headers.update({"Content-Type": "application/json", "X-Exchange-Delivery": f"{sub.id}-{recs[0].offset}"})
        status, error = 0, ""
        host = url.raw_host or ""
        if looks_numeric(host) and not allowed(host, target.allow_private):
            error = "refused_address"  # an address literal: aiohttp connects without the resolver
        else:
            try:
                session = self._sessions[target.allow_private]
                async with session.post(url, data=body, headers=headers, allow_redirects=False) as r:
                    await r.content.read(65536)  # never kept, never echoed
                    status = r.status
                    error = status_class(status)
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                error = failure_class(exc)
                self.log.event("webhook_failed", level="warning", subscription=sub.id, error=error,
                               exception=type(exc).__name__)
        self._submit(AuditEntry(ts=time.time(), request_id=delivery, client=sub.consumer,
                                     op="deliver", target=sub.resource,
                                     status=status, count=len(recs) if not error else 0,
                                     detail=error or None))
        if error:
            await self._failed(sub, error)
            return False
        sub.cursor = recs[-1].offset
        sub.attempts, sub.next_attempt, sub.last_error = 0, 0.0, ""
        sub.delivered += len(recs)
        await self.governance.sub_put(sub)
        self.m_deliveries.labels("ok").inc()
        self.m_records.inc(len(recs))
        return True

    def _submit(self, entry: AuditEntry) -> None:
        if self.audit is not None:
            with contextlib.suppress(Problem):  # full: deliveries wait for room before they go
                self.audit.submit(entry)

    async def _failed(self, sub: Subscription, error: str, final: bool = False) -> None:
        sub.attempts += 1
        sub.last_error = error
        if final or sub.attempts >= self.max_attempts:
            sub.state = "dead"
            self.m_deliveries.labels("dead").inc()
        else:
            sub.next_attempt = time.time() + self.backoff(sub.attempts)
            self.m_deliveries.labels("failed").inc()
        await self.governance.sub_put(sub)
