"""Bare servers the bench compares the gateway against.

``hello``: aiohttp + uvloop answering ``GET /hello`` with a short text (the ceiling of
any aiohttp route). ``push``: aiohttp + msgspec decoding a ``{"records": [...]}`` batch
posted to ``/v1/resources/{rid}/records`` and dropping it (the ceiling of a push).

Run one with ``python -m bench.baseline hello|push --listen 127.0.0.1:PORT``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

import msgspec
from aiohttp import web


class _Record(msgspec.Struct, forbid_unknown_fields=True):
    key: str
    data: dict[str, Any]


class _Batch(msgspec.Struct, forbid_unknown_fields=True):
    records: list[_Record]


_DECODER = msgspec.json.Decoder(_Batch)
_ENCODER = msgspec.json.Encoder()


async def _hello(request: web.Request) -> web.Response:
    return web.Response(text="Hello, world")


async def _healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def _push(request: web.Request) -> web.Response:
    body = await request.read()
    try:
        batch = _DECODER.decode(body)
    except msgspec.ValidationError as exc:
        return web.Response(status=422, text=str(exc))
    except msgspec.DecodeError as exc:
        return web.Response(status=400, text=str(exc))
    return web.Response(
        body=_ENCODER.encode({"count": len(batch.records)}), content_type="application/json"
    )


def make_app(kind: str) -> web.Application:
    """The application of one bare server (``hello`` or ``push``)."""
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_get("/healthz", _healthz)
    if kind == "hello":
        app.router.add_get("/hello", _hello)
    elif kind == "push":
        app.router.add_post("/v1/resources/{rid}/records", _push)
    else:
        raise ValueError(f"unknown baseline server {kind!r}")
    return app


def main(argv: list[str] | None = None) -> int:
    """Serve one bare server until killed."""
    parser = argparse.ArgumentParser(prog="python -m bench.baseline", description=__doc__)
    parser.add_argument("kind", choices=["hello", "push"])
    parser.add_argument(
        "--listen", default="127.0.0.1:8081", help="host:port (default %(default)s)"
    )
    args = parser.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    if not host or not port.isdigit():
        parser.error(f"--listen must be host:port, got {args.listen!r}")
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        pass
    web.run_app(make_app(args.kind), host=host, port=int(port), access_log=None, print=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
