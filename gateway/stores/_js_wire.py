"""Wire-level helpers of the JetStream store: subject tokens, digests, API answers and the
names of the streams and buckets a prefix uses."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import re
from typing import TypeVar

import msgspec
import nats.errors
import nats.js.errors

T = TypeVar("T")

#: nats-py errors that mean "the server cannot be reached right now".
_UNREACHABLE: tuple[type[BaseException], ...] = (
    nats.errors.TimeoutError,
    nats.errors.NoRespondersError,
    nats.errors.ConnectionClosedError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.ConnectionDrainingError,
    nats.errors.OutboundBufferLimitError,
    nats.errors.StaleConnectionError,
    nats.errors.UnexpectedEOF,
    nats.js.errors.NoStreamResponseError,
    nats.js.errors.ServiceUnavailableError,
    asyncio.TimeoutError,
    ConnectionError,
)



class _ApiError(msgspec.Struct):
    code: int = 0
    err_code: int = 0
    description: str = ""


class _PubAck(msgspec.Struct):
    stream: str = ""
    seq: int = 0
    duplicate: bool = False
    error: _ApiError | None = None


_ack_dec = msgspec.json.Decoder(_PubAck)


def _ack_stream_seq(reply: str) -> int:
    """The stream sequence in a consumer message's ack subject (both 2.9 and 2.10+ forms:
    ``$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>...`` / ``$JS.ACK.<domain>.<hash>.<stream>...``)."""
    tokens = reply.split(".")
    return int(tokens[7] if len(tokens) >= 12 else tokens[5])


class _WrongLast(Exception):
    """A KV write's expected revision was not the key's last (someone wrote first)."""


_enc = msgspec.json.encode


def names(prefix: str) -> dict[str, str]:
    """The streams and buckets a store with this prefix uses (for tools and tests)."""
    return {
        "records": f"{prefix}_REC",
        "keys": f"{prefix}_KEYS",
        "idempotency": f"{prefix}_idem",
        "cursors": f"{prefix}_cursors",
        "config": f"{prefix}_config",
        "retention": f"{prefix}_retention",
        "meta": f"{prefix}_meta",
    }


_TOKENS = re.compile(r"^[a-z0-9][a-z0-9-]*(?:\.[a-z0-9][a-z0-9-]*)*$")


@functools.lru_cache(maxsize=65536)
def _token(resource: str) -> str:
    """The resource's part of a subject: its id when that forms valid subject tokens,
    else ``_x.<hex of the id>`` (ids never start with ``_``, so the two cannot collide)."""
    if len(resource) <= 200 and _TOKENS.match(resource):
        return resource
    return "_x." + resource.encode("utf-8", "surrogatepass").hex()


def _digest(*parts: str) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode("utf-8", "surrogatepass"))
        h.update(b"\0")
    return h.hexdigest()[:40]
