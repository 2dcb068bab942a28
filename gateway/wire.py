"""Wire helpers: reading bounded bodies, parsing query values, encoding responses."""

from __future__ import annotations

import time
from typing import Any, TypeVar

import msgspec
from aiohttp import web

from gateway.errors import Problem
from gateway.nesting import too_deep

JSON = "application/json"
MSGPACK = "application/msgpack"
PROBLEM = "application/problem+json"

T = TypeVar("T")

json_encode = msgspec.json.Encoder().encode
msgpack_encode = msgspec.msgpack.Encoder().encode


def media_type(content_type: str) -> str:
    """The bare media type of a Content-Type header value, lower-cased."""
    return content_type.partition(";")[0].strip().lower()


def body_format(request: web.BaseRequest) -> bool:
    """True for msgpack, False for JSON; 415 for anything else."""
    ct = media_type(request.headers.get("Content-Type", ""))
    if ct in (JSON, "") or ct.endswith("+json"):
        return False
    if ct in (MSGPACK, "application/x-msgpack", "application/vnd.msgpack"):
        return True
    raise Problem("client.unsupported_media_type",
                  f"Content-Type {ct!r} is not supported; send application/json or application/msgpack")


def prefers_msgpack(accept: str) -> bool:
    """Whether an Accept value ranks msgpack above JSON (q-values honoured; ties go to JSON)."""
    if "msgpack" not in accept:
        return False
    best = {"msgpack": 0.0, "json": 0.0}
    for part in accept.split(","):
        media, _, params = part.partition(";")
        media = media.strip().lower()
        kind = ("msgpack" if media.endswith("msgpack")
                else "json" if media in (JSON, "application/*", "*/*") or media.endswith("+json")
                else None)
        if kind is None:
            continue
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        best[kind] = max(best[kind], q)
    return best["msgpack"] > 0 and best["msgpack"] > best["json"]


def wants_msgpack(request: web.BaseRequest) -> bool:
    """Whether the caller asked for msgpack in Accept."""
    return prefers_msgpack(request.headers.get("Accept", ""))


async def read_body(request: web.BaseRequest, limit: int, timeout: float) -> bytes:
    """Read the whole body, refusing more than ``limit`` bytes (413) or a body not received
    within ``timeout`` seconds (400; ``[limits] body_timeout_s``, the connection is then closed)."""
    coding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if coding not in ("identity", ""):
        raise Problem("client.unsupported_media_type",
                      f"Content-Encoding {coding[:40]!r} is not supported; send the body uncompressed")
    length = request.content_length
    if length is not None and length > limit:
        raise Problem("client.payload_too_large", f"body of {length} bytes exceeds the limit of {limit}")
    if not request.body_exists:
        return b""
    chunks: list[bytes] = []
    size = 0
    deadline = time.monotonic() + timeout
    content = request.content
    while True:
        remaining = deadline - time.monotonic()
        try:
            if remaining <= 0:
                raise TimeoutError
            async with _timeout(remaining):
                chunk = await content.readany()
        except TimeoutError:
            _abandon(request)
            raise Problem("client.bad_request",
                          f"request body not received within {timeout:g} s (limits.body_timeout_s)") from None
        if not chunk:
            break
        size += len(chunk)
        if size > limit:
            raise Problem("client.payload_too_large", f"body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _abandon(request: web.BaseRequest) -> None:
    """Close the connection after the answer, without aiohttp's lingering read of the rest
    of a body that a stalled client is not sending."""
    request.protocol.close()  # no keep-alive: the rest of the stream is not a request
    request.content.feed_eof()  # nothing left to linger for


def _timeout(seconds: float) -> Any:
    import asyncio

    return asyncio.timeout(seconds)


def int_param(query: Any, name: str, default: int | None, lo: int, hi: int) -> int | None:
    """A decimal integer query value in [lo, hi]; 400 naming the parameter otherwise."""
    values = query.getall(name, None)
    if values is None:
        return default
    if len(values) != 1:
        raise Problem("client.bad_request", f"query parameter {name!r} given more than once")
    v = values[0]
    if not (v.isascii() and v.isdigit()) or len(v) > 19:
        raise Problem("client.bad_request", f"query parameter {name!r} must be a decimal integer, got {v[:40]!r}")
    n = int(v)
    if not lo <= n <= hi:
        raise Problem("client.bad_request", f"query parameter {name!r} must be between {lo} and {hi}, got {n}")
    return n


def respond(request: web.BaseRequest, status: int, doc: Any, headers: dict[str, str] | None = None) -> web.Response:
    """Encode ``doc`` as msgpack when asked for, JSON otherwise."""
    if wants_msgpack(request):
        return web.Response(status=status, body=msgpack_encode(doc), content_type=MSGPACK, headers=headers)
    return web.Response(status=status, body=json_encode(doc), content_type=JSON, headers=headers)


_ts_cache: dict[int, str] = {}


def iso_ms(ts_ms: int) -> str:
    """RFC 3339 UTC with milliseconds: ``2026-11-26T17:40:35.123Z``."""
    sec, ms = divmod(ts_ms, 1000)
    base = _ts_cache.get(sec)
    if base is None:
        if len(_ts_cache) > 4096:
            _ts_cache.clear()
        base = _ts_cache[sec] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
    return f"{base}.{ms:03d}Z"


_decoders: dict[Any, tuple[Any, Any]] = {}


def decode_body(request: web.BaseRequest, body: bytes, typ: type[T], what: str) -> T:
    """Decode a request body as ``typ``, JSON or msgpack by its Content-Type: 422 naming the
    field when it does not fit, 400 when it is not JSON/msgpack at all (or nested too deep)."""
    decoders = _decoders.get(typ)
    if decoders is None:
        decoders = _decoders[typ] = (msgspec.json.Decoder(typ), msgspec.msgpack.Decoder(typ))
    try:
        return decoders[body_format(request)].decode(body)
    except msgspec.ValidationError as exc:
        raise Problem("client.validation_failed", f"invalid {what}: {exc}") from None
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise Problem("client.bad_request", f"malformed {what} body: {exc}") from None
    except RecursionError:
        raise too_deep(f"the {what}") from None
