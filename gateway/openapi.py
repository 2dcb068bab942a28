"""The OpenAPI 3.1 document of wire contract v2, generated from the route declarations
(:mod:`gateway.routes`) and the wire Structs (:mod:`gateway.wiremodel`).

Nothing here is written by hand per route: paths, parameters, request bodies, answers and
the errors each endpoint can give all follow from its declaration, and the schemas come
from ``msgspec.json.schema_components`` (so ``forbid_unknown_fields`` becomes
``additionalProperties: false``, and the id patterns the node enforces are in the schemas).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec

from gateway import wiremodel as w

REF = "#/components/schemas/{name}"
ID_PATTERN = r"^[A-Za-z0-9._:@-]{1,128}$"
SERVICE_PART = r"^[A-Za-z0-9._-]{1,128}$"
_PARAMS: dict[str, list[dict[str, Any]]] = {
    "rid": [{"name": "rid", "schema": {"type": "string", "pattern": r"^[a-z0-9][a-z0-9.-]{0,127}$"}}],
    "key": [{"name": "key", "schema": {"type": "string", "pattern": r"^(?!\.{1,2}$)[^\x00-\x1f\x7f]+$"},
             "description": "the record key, percent-encoded (no control characters; not . or ..)"}],
    "id": [{"name": "id", "schema": {"type": "string", "pattern": ID_PATTERN}}],
    "service": [{"name": n, "schema": {"type": "string", "pattern": SERVICE_PART}}
                for n in ("instance", "class", "code", "subsystem", "service")],
    "tail": [{"name": "path", "schema": {"type": "string", "pattern": r"^(?!\.{1,2}$)[^\x00-\x1f\x7f/\\]+$"},
              "description": "the path at the provider: one or more segments (OpenAPI shows one); no "
                             "control characters, no . or .. segments, no encoded / or \\"}],
}
_ERRORS = {400: "Bad request", 401: "Unauthenticated", 403: "Access denied", 404: "Not found",
           409: "Conflict", 413: "Payload too large", 415: "Unsupported media type",
           422: "Validation failed", 429: "Rate limited", 502: "Upstream failed", 503: "Unavailable",
           504: "Upstream timeout"}
_HEADER = {"type": "string"}


def openapi_document(routes: Iterable[Any]) -> dict[str, Any]:
    """The OpenAPI document served at /openapi.json for these routes."""
    routes = list(routes)
    types = sorted({t for r in routes for e in r.methods.values() for t in (e.body, e.answer) if t}
                   | {w.ProblemDoc, w.WebhookBatch}, key=lambda t: t.__name__)
    _, schemas = msgspec.json.schema_components(types, ref_template=REF)
    paths: dict[str, Any] = {}
    for route in routes:
        path, params = _path(route.path)
        item = paths.setdefault(path, {})
        if params:
            item["parameters"] = params
        seen: dict[int, str] = {}
        for method, ep in route.methods.items():
            if id(ep) in seen:  # one endpoint for several methods (the service proxy)
                item[method.lower()] = item[seen[id(ep)]]
                continue
            seen[id(ep)] = method.lower()
            item[method.lower()] = _operation(route, method, ep)
    return {
        "openapi": "3.1.0",
        "info": {"title": "OneStop Exchange gateway", "version": "2",
                 "description": "Signed push/pull exchange of data resources between agencies. Every /v1 "
                                "request is signed with EXG-HMAC-SHA256, wire contract v2 (see the README)."},
        "components": {
            "schemas": schemas,
            "securitySchemes": {"exgSignature": {
                "type": "apiKey", "in": "header", "name": "Authorization",
                "description": "EXG-HMAC-SHA256 Credential=<key id>, SignedHeaders=<h1;h2;...>, Signature=<hex>, "
                               "with X-Exchange-Client and X-Exchange-Date; Content-Type, Idempotency-Key and "
                               "every other X-Exchange-* header must be named in SignedHeaders"}},
            "responses": {str(code): {"description": title, "content": {"application/problem+json": {
                "schema": {"$ref": REF.format(name="ProblemDoc")}}}} for code, title in _ERRORS.items()},
        },
        "paths": paths,
    }


def _path(template: str) -> tuple[str, list[dict[str, Any]]]:
    """The OpenAPI path and its parameters for a route template."""
    out, params = [], []
    for seg in template.strip("/").split("/"):
        if seg.startswith("{"):
            ptype = seg.strip("{}").rpartition(":")[2]
            for p in _PARAMS[ptype]:
                out.append("{" + p["name"] + "}")
                params.append({"in": "path", "required": True, **p})
        else:
            out.append(seg)
    return "/" + "/".join(out), params


def _operation(route: Any, method: str, ep: Any) -> dict[str, Any]:
    doc = (ep.handler.__doc__ or "").strip().splitlines()
    summary = doc[0].partition(": ")[2] or doc[0] if doc else route.name
    op: dict[str, Any] = {"operationId": f"{route.name}_{method.lower()}", "summary": summary}
    signed = ep.access.value != "anyone"
    params: list[dict[str, Any]] = []
    if signed:
        op["security"] = [{"exgSignature": []}]
        params += [{"name": "X-Exchange-Client", "in": "header", "required": True, "schema": {
                        "type": "string", "pattern": w.SubsystemId.__metadata__[0].pattern}},
                   {"name": "X-Exchange-Date", "in": "header", "required": True, "schema": {
                        "type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$"}}]
    if ep.idempotent:
        params.append({"name": "Idempotency-Key", "in": "header", "required": True,
                       "description": "signed; a replay is answered as the original with Idempotent-Replayed: true",
                       "schema": {"type": "string", "pattern": r"^[A-Za-z0-9._:-]{1,128}$"}})
    if ep.consent:
        params += [{"name": "X-Exchange-UserId", "in": "header", "required": False, "schema": {
                        "type": "string", "pattern": ID_PATTERN},
                    "description": "the citizen (personal resources)"},
                   {"name": "X-Exchange-Purpose", "in": "header", "required": False, "schema": _HEADER,
                    "description": "the consent's purpose, UTF-8 percent-encoded (personal resources)"},
                   {"name": "X-Exchange-Consent", "in": "header", "required": False, "schema": {
                        "type": "string", "pattern": r"^c-[0-9a-f]{32}$"}}]
    params += [{"name": q.name, "in": "query", "required": False, "description": q.doc,
                "schema": {"type": "integer", "minimum": q.lo, "maximum": q.hi}} for q in ep.query]
    if params:
        op["parameters"] = params
    if ep.body is not None:
        op["requestBody"] = {"required": ep.body is not w.CompositeInput, "content": _media(ep.body)}
    responses: dict[str, Any] = {}
    if ep.answer is not None:
        responses[str(ep.ok)] = {"description": "the answer", "content": _media(ep.answer)}
    elif route.name == "service":
        responses["default"] = {"description": "the provider's backend's own answer, passed through"}
    else:
        responses[str(ep.ok)] = {"description": summary}
    for code in _errors(route, method, ep):
        responses[str(code)] = {"$ref": f"#/components/responses/{code}"}
    op["responses"] = responses
    return op


def _errors(route: Any, method: str, ep: Any) -> list[int]:
    if ep.access.value == "anyone":
        return [503] if route.name == "readyz" else []
    codes = {400, 401, 403, 404, 429, 503}
    if ep.body is not None:
        codes |= {413, 415, 422}
    if ep.idempotent or route.name in ("cursor", "subscriptions"):
        codes.add(409)
    if route.name in ("service", "composite"):
        codes |= {502, 504} if route.name == "service" else {422, 502}
    if route.name == "service" and method not in ("GET", "HEAD", "OPTIONS"):
        codes.add(409)  # a call already forwarded
    return sorted(codes)


def _media(typ: type) -> dict[str, Any]:
    schema = {"$ref": REF.format(name=typ.__name__)}
    return {"application/json": {"schema": schema}, "application/msgpack": {"schema": schema}}
