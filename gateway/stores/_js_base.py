"""The state every part of the JetStream store shares, and the checks every call makes."""

from __future__ import annotations

import asyncio
from typing import Any

from nats.aio.client import Client as NATS
from nats.aio.subscription import Subscription
from nats.js.kv import KeyValue

from gateway.redact import redact_urls
from gateway.stores.base import AppendResult, StoreUnavailable
from gateway.stores.hwm import HighWaterMark


class _Base:
    """Attributes set by :class:`gateway.stores.jetstream.JetStreamStore` and used by its parts."""

    servers: list[str]
    replicas: int
    prefix: str
    names: dict[str, str]
    idempotency_ttl_s: float
    duplicate_window_s: float
    takeover_s: float
    op_timeout_s: float
    stats: dict[str, int]
    nc: NATS | None
    js: Any
    hwm: HighWaterMark | None
    reset_reason: str | None
    schema_error: str | None
    _state: str
    _ready: asyncio.Event | None
    _setup_error: str | None
    _verified: bool
    _accept_reset: bool
    _idem: KeyValue | None
    _cursors: KeyValue | None
    _inflight_idem: dict[str, tuple[str, asyncio.Future[AppendResult]]]
    _subs: dict[str, Subscription]
    _waiters: dict[str, set[asyncio.Future[None]]]
    _pending: set[asyncio.Future[Any]]
    _max_payload: int
    _inbox: str
    _replies: dict[str, asyncio.Future[Any]]
    _reply_seq: int
    _idx_pending: dict[str, tuple[int, int, str, bytes]]
    _idx_waiters: list[asyncio.Future[None]]
    _idx_task: asyncio.Future[None] | None

    # -- state checks ------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True when the NATS connection is up and the streams exist."""
        nc = self.nc
        return (
            self._state == "open"
            and nc is not None
            and nc.is_connected
            and self._ready is not None
            and self._ready.is_set()
        )

    def _check(self) -> None:
        if self._state != "open":
            raise StoreUnavailable(
                "the store is closed" if self._state == "closed" else "the store is not open"
            )
        if self.reset_reason is not None:
            raise StoreUnavailable(self.reset_reason)
        if not self._verified and self.connected:
            raise StoreUnavailable("checking the JetStream streams after a reconnect; retry shortly")
        if not self.connected:
            why = self._setup_error or "no connection"
            raise StoreUnavailable(
                f"NATS JetStream is not reachable at {redact_urls(self.servers)} ({why})"
            )

    def unready_reason(self) -> str | None:
        """Why the store cannot serve now (for /readyz), None when it can."""
        if self._state != "open":
            return "the store is closed" if self._state == "closed" else "the store is not open"
        if self.reset_reason is not None:
            return self.reset_reason
        if not self.connected:
            why = self._setup_error or "no connection"
            return f"NATS JetStream is not reachable at {redact_urls(self.servers)} ({why})"
        if not self._verified:
            return "checking the JetStream streams after a reconnect"
        return None
