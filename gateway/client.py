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
        retries: int = 4,
        backoff: float = 0.1,
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
            hdrs = self.signer.headers(method, path, query, body)
            if body:
                hdrs["Content-Type"] = "application/json"
            if headers:
                hdrs.update(headers)
            # encoded=True: send the path exactly as signed (yarl would otherwise unescape
            # e.g. %3D and %26 in a key, and the signature would no longer match).
            url = yarl.URL(base + path + ("?" + query if query else ""), encoded=True)
            try:
                async with self.session.request(method, url, data=body or None, headers=hdrs) as resp:
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
                await asyncio.sleep(self.backoff * (2**attempt) * (0.5 + random.random()))
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
        return PullResult(doc["records"], doc["next"])

    async def commit(self, resource: str, offset: int, *, force: bool = False) -> int:
        """Commit the cursor; raises ExchangeError 409 when it would move backwards."""
        body: dict[str, Any] = {"offset": offset}
        if force:
            body["force"] = True
        doc = await self.request("PUT", f"/v1/resources/{resource}/cursor", json=body)
        return doc["offset"]

    async def get(self, resource: str, key: str, *, user_id: str | None = None,
                  purpose: str | None = None, consent: str | None = None) -> dict[str, Any] | None:
        """The latest record for ``key`` (projected to the caller's grant), or None."""
        headers = {k: v for k, v in (("X-Exchange-UserId", user_id), ("X-Exchange-Purpose", purpose),
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
        backend sent them (gateway-side failures are 502/503/504 problems). Not retried."""
        full = f"/v1/services/{service}{path if path != '/' else ''}"
        hdrs = self.signer.headers(method, full, query, body)
        hdrs.update(headers or {})
        url = self.urls[self._node % len(self.urls)] + full + ("?" + query if query else "")
        async with self.session.request(method, url, data=body or None, headers=hdrs) as resp:
            return resp.status, dict(resp.headers), await resp.read()

    async def run_composite(self, composite: str, inputs: dict[str, Any]) -> dict[str, Any]:
        """Run a "one transaction" service; ExchangeError 502 carries every step's result
        in ``problem["steps"]`` when a step failed."""
        return await self.request("POST", f"/v1/composites/{composite}", json={"input": inputs},
                                  retry=False)

    # -- consents (portals) ------------------------------------------------------------

    async def grant_consent(self, user_id: str, consumer: str, resources: Sequence[str], purpose: str,
                            expires: str) -> dict[str, Any]:
        """Record a citizen's consent (portal subsystems only); ``expires`` YYYY-MM-DD or RFC 3339."""
        return await self.request("POST", "/v1/consents", retry=False, json={
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
        return await self.request("POST", f"/v1/resources/{resource}/subscriptions", retry=False,
                                  json={"url": url, "batch": batch, "after": after})

    async def subscriptions(self) -> list[dict[str, Any]]:
        return (await self.request("GET", "/v1/subscriptions"))["subscriptions"]

    async def unsubscribe(self, subscription_id: str) -> dict[str, Any]:
        return await self.request("DELETE", f"/v1/subscriptions/{subscription_id}")


def verify_webhook(headers: Any, body: bytes, secret: str, *, path: str, query: str = "",
                   method: str = "POST", max_skew_s: int = 300, now: float | None = None) -> bool:
    """Check a webhook delivery: signed EXG-HMAC-SHA256 with the subscriber's own key over the
    callback's path and query, within ``max_skew_s`` of now. ``headers`` is any mapping."""
    import hmac
    import time

    from gateway.signing import AUTH_RE, parse_date, signature, string_to_sign

    date, client, auth = (headers.get("X-Exchange-Date"), headers.get("X-Exchange-Client"),
                          headers.get("Authorization"))
    if not (date and client and auth):
        return False
    m = AUTH_RE.match(auth)
    at = parse_date(date)
    if m is None or at is None or abs(at - (time.time() if now is None else now)) > max_skew_s:
        return False
    import hashlib

    want = signature(secret, string_to_sign(date, client, method, path, query, hashlib.sha256(body).hexdigest()))
    return hmac.compare_digest(want, m.group("sig"))


def _problem(status: int, raw: bytes) -> ExchangeError:
    try:
        doc = msgspec.json.decode(raw)
        if isinstance(doc, dict):
            return ExchangeError(status, str(doc.get("code", "")), str(doc.get("detail", "")), doc)
    except msgspec.DecodeError:
        pass
    return ExchangeError(status, "http", raw[:200].decode(errors="replace"))
