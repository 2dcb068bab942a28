"""Python SDK: signed requests, push with automatic Idempotency-Key and retries, pull iterator.

    async with ExchangeClient.from_keyring("http://127.0.0.1:8080",
                                           "configs/keyring.dev.toml", "SH/GOV/psb/hukou") as c:
        await c.push("psb.id-card", [{"key": "310101199001011234", "data": {...}}])
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import msgspec
import yarl

from gateway.signing import Signer

RETRY_STATUSES = {502, 503, 504}
NO_AUTO = ("Content-Type",)  # aiohttp would add an unsigned one to a bytes body


def purpose_header(purpose: str) -> str:
    """``X-Exchange-Purpose``: the purpose as UTF-8, percent-encoded where not printable ASCII."""
    return quote(purpose, safe=_PURPOSE_SAFE)


_PURPOSE_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%")


class ExchangeError(Exception):
    """A problem+json answer (or a transport failure when ``status`` is 0)."""

    def __init__(self, status: int, code: str, detail: str, problem: dict[str, Any] | None = None) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail
        self.problem = problem or {}


class PullResult(msgspec.Struct):
    records: list[dict[str, Any]]
    next: int
    #: Set when retention removed records after ``after``: the resource's earliest offset.
    earliest: int | None = None


class ExchangeClient:
    """An async client for one subsystem; ``urls`` may list several nodes for fail-over."""

    def __init__(
        self,
        urls: str | Sequence[str],
        key_id: str,
        secret: str,
        client: str,
        *,
        timeout: float = 40.0,
        retries: int = 8,
        backoff: float = 0.1,
        max_backoff: float = 2.0,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.urls = [urls] if isinstance(urls, str) else list(urls)
        if not self.urls:
            raise ValueError("at least one node URL is needed")
        self.urls = [u.rstrip("/") for u in self.urls]
        self.signer = Signer(key_id, secret, client)
        self.client = client
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._session = session
        self._own_session = session is None
        self._node = 0

    @classmethod
    def from_keyring(cls, urls: str | Sequence[str], keyring_path: str, client: str, **kw: Any) -> ExchangeClient:
        """Build a client with the subsystem's key from a keyring file."""
        from gateway.keyring import load_keyring

        key = load_keyring(keyring_path).for_client(client)
        if key is None:
            raise ValueError(f"no key for {client} in {keyring_path}")
        return cls(urls, key.id, key.secret, client, **kw)

    async def __aenter__(self) -> ExchangeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None and self._own_session:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        return self._session

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        headers: dict[str, str] | None = None,
        retry: bool = True,
        ok404: bool = False,
    ) -> Any:
        """Send a signed request; retry on 502/503/504, timeouts and connection errors
        (failing over to the next node URL); raise :class:`ExchangeError` on a problem."""
        query = urlencode({k: v for k, v in (params or {}).items() if v is not None})
        body = msgspec.json.encode(json) if json is not None else b""
        attempts = (self.retries + 1) if retry else 1
        last: ExchangeError | None = None
        for attempt in range(attempts):
            base = self.urls[self._node % len(self.urls)]
            extra = {"Content-Type": "application/json"} if body else {}
            extra.update(headers or {})
            hdrs = self.signer.headers(method, path, query, body, headers=extra)
            # encoded=True: send the path exactly as signed (yarl would otherwise unescape
            # e.g. %3D and %26 in a key, and the signature would no longer match).
            url = yarl.URL(base + path + ("?" + query if query else ""), encoded=True)
            try:
                async with self.session.request(method, url, data=body or None, headers=hdrs,
                                                skip_auto_headers=NO_AUTO) as resp:
                    raw = await resp.read()
                    if resp.status < 300:
                        return msgspec.json.decode(raw) if raw else None
                    if resp.status == 404 and ok404:
                        return None
                    last = _problem(resp.status, raw)
                    if resp.status not in RETRY_STATUSES:
                        raise last
            except (TimeoutError, aiohttp.ClientConnectionError) as exc:
                last = ExchangeError(0, "transport", f"{type(exc).__name__}: {exc} ({base})")
            self._node += 1  # fail over to the next node, if any
            if attempt + 1 < attempts:
                # 0.1, 0.2, 0.4, 0.8, 1.6, then 2 s (jittered): the defaults ride out a NATS
                # leader election (a few seconds) without the caller seeing a 503.
                delay = min(self.backoff * (2**attempt), self.max_backoff)
                await asyncio.sleep(delay * (0.5 + random.random()))
        assert last is not None
        raise last

    # -- records -----------------------------------------------------------------------

    async def push(self, resource: str, records: Sequence[dict[str, Any]], *,
                   idempotency_key: str | None = None) -> dict[str, Any]:
        """Push a batch ``[{"key": ..., "data": {...}}]``; retried safely with one Idempotency-Key."""
        key = idempotency_key or uuid.uuid4().hex
        return await self.request("POST", f"/v1/resources/{resource}/records",
                                  json={"records": list(records)}, headers={"Idempotency-Key": key})

    async def pull(self, resource: str, *, after: int | None = None, limit: int = 100,
                   wait: int = 0) -> PullResult:
        """Records after ``after`` (default: the committed cursor), long-polling ``wait`` s."""
        doc = await self.request("GET", f"/v1/resources/{resource}/records",
                                 params={"after": after, "limit": limit, "wait": wait})
        return PullResult(doc["records"], doc["next"], doc.get("earliest"))

    async def commit(self, resource: str, offset: int, *, force: bool = False) -> int:
        """Commit the cursor; raises ExchangeError 409 when it would move backwards."""
        body: dict[str, Any] = {"offset": offset}
        if force:
            body["force"] = True
        doc = await self.request("PUT", f"/v1/resources/{resource}/cursor", json=body)
        return doc["offset"]

    async def get(self, resource: str, key: str, *, user_id: str | None = None,
                  purpose: str | None = None, consent: str | None = None) -> dict[str, Any] | None:
        """The latest record for ``key`` (projected to the caller's grant), or None. A keyed
        read of a personal resource names the citizen (``user_id``) and the purpose, which
        must be the purpose of the citizen's consent (or of a legal-basis grant)."""
        headers = {k: v for k, v in (("X-Exchange-UserId", user_id),
                                     ("X-Exchange-Purpose", purpose_header(purpose) if purpose else None),
                                     ("X-Exchange-Consent", consent)) if v}
        return await self.request("GET", f"/v1/resources/{resource}/records/{quote(key, safe='')}",
                                  headers=headers, ok404=True)

    async def records(self, resource: str, *, wait: int = 10, limit: int = 100,
                      commit: bool = True) -> AsyncIterator[dict[str, Any]]:
        """Iterate forever over new records from the committed cursor, committing after each page."""
        after: int | None = None
        while True:
            page = await self.pull(resource, after=after, limit=limit, wait=wait)
            for rec in page.records:
                yield rec
            if page.records:
                after = page.next
                if commit:
                    await self.commit(resource, page.next)

    # -- catalog -----------------------------------------------------------------------

    async def catalog(self) -> dict[str, Any]:
        return await self.request("GET", "/v1/catalog")

    async def catalog_entry(self, resource: str) -> dict[str, Any]:
        return await self.request("GET", f"/v1/catalog/{resource}")

    # -- services ----------------------------------------------------------------------

    async def services(self) -> list[dict[str, Any]]:
        """The services and composites this subsystem may call."""
        return (await self.request("GET", "/v1/services"))["services"]

    async def call_service(self, service: str, path: str = "/", *, method: str = "GET",
                           body: bytes = b"", query: str = "",
                           headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        """Call a provider's service through the node; answers (status, headers, body) as the
        backend sent them (gateway-side failures are 502/503/504 problems). Not retried.
        Every header is signed where the contract asks; a POST or PATCH gets an
        ``Idempotency-Key`` when ``headers`` has none (the node forwards it at most once)."""
        full = f"/v1/services/{service}{path if path != '/' else ''}"
        extra = dict(headers or {})
        if method in ("POST", "PATCH") and not any(k.lower() == "idempotency-key" for k in extra):
            extra["Idempotency-Key"] = uuid.uuid4().hex  # the node forwards it at most once
        hdrs = self.signer.headers(method, full, query, body, headers=extra)
        url = self.urls[self._node % len(self.urls)] + full + ("?" + query if query else "")
        async with self.session.request(method, url, data=body or None, headers=hdrs,
                                        skip_auto_headers=NO_AUTO) as resp:
            return resp.status, dict(resp.headers), await resp.read()

    async def run_composite(self, composite: str, inputs: dict[str, Any]) -> dict[str, Any]:
        """Run a "one transaction" service; ExchangeError 502 carries every step's result
        in ``problem["steps"]`` when a step failed."""
        return await self.request("POST", f"/v1/composites/{composite}", json={"input": inputs},
                                  headers={"Idempotency-Key": uuid.uuid4().hex})

    # -- consents (portals) ------------------------------------------------------------

    async def grant_consent(self, user_id: str, consumer: str, resources: Sequence[str], purpose: str,
                            expires: str) -> dict[str, Any]:
        """Record a citizen's consent (portal subsystems only); ``expires`` YYYY-MM-DD or RFC 3339."""
        return await self.request("POST", "/v1/consents", headers={"Idempotency-Key": uuid.uuid4().hex}, json={
            "user_id": user_id, "consumer": consumer, "resources": list(resources),
            "purpose": purpose, "expires": expires})

    async def revoke_consent(self, consent_id: str) -> dict[str, Any]:
        return await self.request("DELETE", f"/v1/consents/{consent_id}")

    async def access_log(self, user_id: str, limit: int = 100) -> list[dict[str, Any]]:
        """Who read which of a citizen's data, when and why (portal subsystems only)."""
        doc = await self.request("GET", f"/v1/citizens/{quote(user_id, safe='')}/access-log",
                                 params={"limit": limit})
        return doc["entries"]

    # -- webhooks ----------------------------------------------------------------------

    async def subscribe(self, resource: str, url: str, *, batch: int = 100, after: int = 0) -> dict[str, Any]:
        """Register a callback URL that receives the resource's new records (signed batches)."""
        return await self.request("POST", f"/v1/resources/{resource}/subscriptions",
                                  headers={"Idempotency-Key": uuid.uuid4().hex},
                                  json={"url": url, "batch": batch, "after": after})

    async def subscriptions(self) -> list[dict[str, Any]]:
        return (await self.request("GET", "/v1/subscriptions"))["subscriptions"]

    async def unsubscribe(self, subscription_id: str) -> dict[str, Any]:
        return await self.request("DELETE", f"/v1/subscriptions/{subscription_id}")

    async def node_keys(self) -> dict[str, bytes]:
        """The webhook-signing public keys of every node in ``urls`` (``GET /v1/node-keys``,
        unsigned) as {key id: raw 32 bytes}; also remembered for :func:`verify_webhook`.
        Unreachable nodes are skipped; ExchangeError when none answered."""
        import base64
        import hashlib

        keys: dict[str, bytes] = {}
        last: ExchangeError | None = None
        for base in self.urls:
            try:
                async with self.session.get(base + "/v1/node-keys") as resp:
                    raw = await resp.read()
                    if resp.status != 200:
                        last = _problem(resp.status, raw)
                        continue
            except (TimeoutError, aiohttp.ClientConnectionError) as exc:
                last = ExchangeError(0, "transport", f"{type(exc).__name__}: {exc} ({base})")
                continue
            try:
                for k in msgspec.json.decode(raw)["keys"]:
                    pub = base64.urlsafe_b64decode(k["public_key"] + "==")
                    if k["alg"] != "Ed25519" or len(pub) != 32 or hashlib.sha256(pub).hexdigest()[:16] != k["id"]:
                        raise ValueError(f"key {k.get('id')!r} is not an Ed25519 key matching its id")
                    keys[k["id"]] = pub
            except (msgspec.DecodeError, KeyError, TypeError, ValueError) as exc:
                raise ExchangeError(200, "node_keys.invalid", f"{base}/v1/node-keys: {exc}") from None
        if not keys and last is not None:
            raise last
        _NODE_KEYS.update(keys)
        return keys


class WebhookVerificationError(ValueError):
    """A webhook delivery failed verification; the message says what is wrong."""


_NODE_KEYS: dict[str, bytes] = {}  # every key fetched by ExchangeClient.node_keys() in this process


def verify_webhook(headers: Any, body: bytes, public_keys: dict[str, bytes] | None = None, *, path: str,
                   query: str = "", max_skew_s: int = 300, now: float | None = None) -> str:
    """Check a webhook delivery: an Ed25519 signature by a node's key over the date, subscriber,
    subscription, ``POST``, the callback's path and query and the body's SHA-256, dated within
    ``max_skew_s`` of now. ``headers`` is any mapping; ``public_keys`` maps key id to the raw
    32-byte public key (as :meth:`ExchangeClient.node_keys` answers; None = every key that
    method fetched so far). Answers the signing key's id; raises
    :class:`WebhookVerificationError` for a missing or malformed header, a stale or future
    date, an unknown key id (fetch the node keys again) or a bad signature."""
    import base64
    import hashlib
    import re
    import time

    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from gateway.governance.webhooks import SIGNATURE_HEADER, delivery_string
    from gateway.signing import parse_date

    def need(name: str) -> str:
        value = headers.get(name)
        if not value:
            raise WebhookVerificationError(f"the delivery has no {name} header")
        return value

    date, client, sub, sig_header = (need("X-Exchange-Date"), need("X-Exchange-Client"),
                                     need("X-Exchange-Subscription"), need(SIGNATURE_HEADER))
    m = re.fullmatch(r"ed25519 keyid=([0-9a-f]{16}), ?sig=([A-Za-z0-9_-]{86})", sig_header)
    if m is None:
        raise WebhookVerificationError(
            f"malformed {SIGNATURE_HEADER}: expected 'ed25519 keyid=<16 hex>, sig=<base64url>'")
    at = parse_date(date)
    if at is None:
        raise WebhookVerificationError("malformed X-Exchange-Date: expected YYYY-MM-DDTHH:MM:SSZ")
    skew = (time.time() if now is None else now) - at
    if abs(skew) > max_skew_s:
        raise WebhookVerificationError(f"stale delivery: X-Exchange-Date is {skew:+.0f} s from now "
                                       f"(at most {max_skew_s} s accepted)")
    kid = m.group(1)
    keys = _NODE_KEYS if public_keys is None else public_keys
    raw = keys.get(kid)
    if raw is None:
        raise WebhookVerificationError(f"unknown node key id {kid}: fetch the keys again with "
                                       "ExchangeClient.node_keys() (GET /v1/node-keys on each node)")
    try:
        public = Ed25519PublicKey.from_public_bytes(raw)
    except ValueError:
        raise WebhookVerificationError(f"the public key given for {kid} is not 32 raw Ed25519 bytes") from None
    to_sign = delivery_string(date, client, sub, path, query, hashlib.sha256(body).hexdigest())
    try:
        public.verify(base64.urlsafe_b64decode(m.group(2) + "=="), to_sign.encode())
    except InvalidSignature:
        raise WebhookVerificationError(f"bad signature for key {kid}: the body, path, query or a "
                                       "signed header was changed, or another key signed it") from None
    return kid


def _problem(status: int, raw: bytes) -> ExchangeError:
    try:
        doc = msgspec.json.decode(raw)
        if isinstance(doc, dict):
            return ExchangeError(status, str(doc.get("code", "")), str(doc.get("detail", "")), doc)
    except msgspec.DecodeError:
        pass
    return ExchangeError(status, "http", raw[:200].decode(errors="replace"))
