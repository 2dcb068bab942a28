"""Demo agency backends for the sample catalog's services (README examples), on one port.

    python -m devkit.demo --listen 127.0.0.1:9101

Paths (each service's backend URL in configs/catalog/shanghai.toml points at a prefix):
``/psb/identity/verifications`` (POST {id_number, name} -> {match}),
``/hrss/employment/registrations`` (POST -> {registration_id}; GET .../{id}),
``/sicenter/pension/enrolments`` and ``/medinsurance/enrolments`` (POST -> {enrolment_id}),
and ``/healthz`` for the active health checks. State is in memory; for demos and tests only.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from typing import Any

from aiohttp import web


def _id(prefix: str, *parts: Any) -> str:
    return prefix + hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:12]


async def _json(request: web.Request) -> dict[str, Any]:
    try:
        doc = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise web.HTTPBadRequest(text='{"error":"body must be JSON"}', content_type="application/json") from None
    if not isinstance(doc, dict):
        raise web.HTTPBadRequest(text='{"error":"body must be a JSON object"}', content_type="application/json")
    return doc


def _need(doc: dict[str, Any], *names: str) -> None:
    missing = [n for n in names if not doc.get(n)]
    if missing:
        raise web.HTTPUnprocessableEntity(text=json.dumps({"error": f"missing {', '.join(missing)}"}),
                                          content_type="application/json")


def make_app() -> web.Application:
    """The demo agencies as one aiohttp application."""
    registrations: dict[str, dict[str, Any]] = {}

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def verify(request: web.Request) -> web.Response:
        doc = await _json(request)
        _need(doc, "id_number", "name")
        ok = len(str(doc["id_number"])) == 18
        return web.json_response({"match": ok, "id_number": doc["id_number"],
                                  "caller": request.headers.get("X-Exchange-Client")})

    async def register(request: web.Request) -> web.Response:
        doc = await _json(request)
        _need(doc, "id_number", "name")
        rid = _id("REG-", doc["id_number"])
        registrations[rid] = {"registration_id": rid, "id_number": doc["id_number"], "name": doc["name"],
                              "kind": doc.get("kind", "flexible"),
                              "request_id": request.headers.get("X-Exchange-Request-Id")}
        return web.json_response(registrations[rid], status=201)

    async def get_registration(request: web.Request) -> web.Response:
        rec = registrations.get(request.match_info["rid"])
        if rec is None:
            return web.json_response({"error": "no such registration"}, status=404)
        return web.json_response(rec)

    def enrol(prefix: str):  # noqa: ANN202
        async def handler(request: web.Request) -> web.Response:
            doc = await _json(request)
            _need(doc, "id_number", "registration")
            return web.json_response({"enrolment_id": _id(prefix, doc["id_number"], doc["registration"]),
                                      "registration": doc["registration"]}, status=201)
        return handler

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    for prefix in ("/psb/identity", "/hrss/employment", "/sicenter/pension", "/medinsurance"):
        app.router.add_get(prefix + "/healthz", healthz)
    app.router.add_post("/psb/identity/verifications", verify)
    app.router.add_post("/hrss/employment/registrations", register)
    app.router.add_get("/hrss/employment/registrations/{rid}", get_registration)
    app.router.add_post("/sicenter/pension/enrolments", enrol("PEN-"))
    app.router.add_post("/medinsurance/enrolments", enrol("MED-"))
    return app


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m devkit.demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--listen", default="127.0.0.1:9101", help="host:port (default 127.0.0.1:9101)")
    args = p.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    if not host or not port.isdigit():
        p.error(f"--listen must be host:port, got {args.listen!r}")
    web.run_app(make_app(), host=host, port=int(port), access_log=None, print=None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
