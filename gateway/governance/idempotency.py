"""Signed Idempotency-Keys for the POSTs that create governance state (DESIGN.md, "Signing, v2").

A consent grant, a webhook subscription or a composite run claims ``(operation, client,
key)`` in the governance store before it acts, so that a retry or a captured replay is
answered as the original and changes nothing; a service call claims it so that the node
forwards it to the backend at most once. Claims are shared by every node of a cluster.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from gateway.errors import Problem

#: How long a finished answer is kept for replays (DESIGN: "kept at least 24 h").
KEEP_S = 86400.0
#: Answers that may carry records (composites) are kept only this long: twice the signature's
#: date window, after which a captured request is refused for its stale date anyway.
REPLAY_WINDOW_S = 600.0
#: An unfinished claim older than this is taken over (its node died mid-way).
STALE_S = 60.0


class Claim(msgspec.Struct, omit_defaults=True):
    """One (operation, client, key): the request body's digest and, once done, the answer."""

    body: str
    at: float
    expires: float
    status: int = 0  # 0 while the first request is still being served
    doc: Any = None

    def live(self, now: float) -> bool:
        return now < self.expires and (self.status != 0 or now - self.at < STALE_S)


def claim_id(op: str, client: str, key: str) -> str:
    """The store key of a claim (hex: safe in SQLite and as a NATS KV key)."""
    return hashlib.sha256(f"{op}\0{client}\0{key}".encode()).hexdigest()[:48]


async def once(store: Any, op: str, client: str, key: str, body_sha256: str,
               action: Callable[[], Awaitable[tuple[int, Any]]], *,
               keep_s: float = KEEP_S) -> tuple[int, Any, bool]:
    """Run ``action`` (answering ``(status, document)``) once per (op, client, key).

    Answers ``(status, document, replayed)``. A replay with the same body gets the stored
    answer; another body under the same key is a 409, as is a replay while the original is
    still being served. A :class:`Problem` from ``action`` releases the claim (nothing was
    created), so the request may be sent again with the same key.
    """
    cid = claim_id(op, client, key)
    now = time.time()
    held = await store.claim(cid, Claim(body=body_sha256, at=now, expires=now + keep_s), now)
    if held is not None:
        if held.body != body_sha256:
            raise Problem("client.conflict", "this Idempotency-Key was used with a different body")
        if held.status == 0:
            raise Problem("client.conflict", "a request with this Idempotency-Key is still being served",
                          headers={"Retry-After": "1"})
        return held.status, held.doc, True
    try:
        status, doc = await action()
    except BaseException:
        await store.claim_release(cid)
        raise
    await store.claim_finish(cid, Claim(body=body_sha256, at=now, expires=now + keep_s,
                                        status=status, doc=doc))
    return status, doc, False


async def forward_once(store: Any, client: str, key: str, body_sha256: str) -> None:
    """Claim a service call for forwarding; 409 when (client, key) was forwarded already
    within the replay window (the backend must never see a replay)."""
    now = time.time()
    # status 1: a claim that is never "unfinished", so nobody takes it over
    held = await store.claim(claim_id("forward", client, key),
                             Claim(body=body_sha256, at=now, expires=now + REPLAY_WINDOW_S, status=1), now)
    if held is not None:
        raise Problem("client.conflict",
                      "this call was already forwarded to the service; a new call needs a new Idempotency-Key")
