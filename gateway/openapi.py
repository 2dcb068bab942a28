"""OpenAPI 3.1 description of wire contract v2 (DESIGN.md, "Signing, v2")."""

from __future__ import annotations

from typing import Any

SIGNED = [{"exgSignature": []}]
PROBLEM_REF = {"$ref": "#/components/responses/Problem"}
IDEMPOTENCY_KEY = {"name": "Idempotency-Key", "in": "header", "required": True,
                   "description": "signed (named in SignedHeaders); a replay is answered as the original "
                                  "with Idempotent-Replayed: true",
                   "schema": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,128}$"}}
RID = {"name": "rid", "in": "path", "required": True, "schema": {"type": "string", "pattern": "^[a-z0-9][a-z0-9.-]*$"}}


def _errors(*codes: int) -> dict[str, Any]:
    return {str(c): PROBLEM_REF for c in codes}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema},
                        "application/msgpack": {"schema": schema}}}


RECORD = {"type": "object", "required": ["offset", "key", "ts", "data"], "properties": {
    "offset": {"type": "integer"}, "key": {"type": "string"},
    "ts": {"type": "string", "format": "date-time"}, "data": {"type": "object"}}}


def openapi_document() -> dict[str, Any]:
    """The OpenAPI document served at /openapi.json."""
    q = lambda name, lo, hi, desc: {"name": name, "in": "query", "required": False,  # noqa: E731
                                    "description": desc,
                                    "schema": {"type": "integer", "minimum": lo, "maximum": hi}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "OneStop Exchange gateway", "version": "1",
                 "description": "Signed push/pull exchange of data resources between agencies. "
                                "Every /v1 request is signed with EXG-HMAC-SHA256, wire contract v2 (see README)."},
        "components": {
            "securitySchemes": {"exgSignature": {
                "type": "apiKey", "in": "header", "name": "Authorization",
                "description": "EXG-HMAC-SHA256 Credential=<key id>, SignedHeaders=<h1;h2;...>, "
                               "Signature=<hex>, with X-Exchange-Client and X-Exchange-Date headers; "
                               "Content-Type, Idempotency-Key and every other X-Exchange-* header "
                               "must be named in SignedHeaders"}},
            "responses": {"Problem": {"description": "RFC 9457 problem", "content": {
                "application/problem+json": {"schema": {"type": "object", "required": [
                    "type", "title", "status", "detail", "code", "request_id"], "properties": {
                    "type": {"type": "string"}, "title": {"type": "string"},
                    "status": {"type": "integer"}, "detail": {"type": "string"},
                    "code": {"type": "string"}, "request_id": {"type": "string"},
                    "errors": {"type": "array", "items": {"type": "object", "properties": {
                        "index": {"type": ["integer", "null"]}, "field": {"type": "string"},
                        "message": {"type": "string"}}}}}}}}}},
        },
        "paths": {
            "/v1/resources/{rid}/records": {
                "parameters": [RID],
                "post": {"summary": "Push a batch (owner only); answered once durable",
                         "security": SIGNED,
                         "parameters": [IDEMPOTENCY_KEY],
                         "requestBody": {"required": True, **_json({"type": "object", "required": ["records"],
                                         "properties": {"records": {"type": "array", "minItems": 1, "items": {
                                             "type": "object", "required": ["key", "data"],
                                             "properties": {"key": {"type": "string"}, "data": {"type": "object"}}}}}})},
                         "responses": {"200": {"description": "appended", **_json({"type": "object", "properties": {
                             "first": {"type": "integer"}, "last": {"type": "integer"},
                             "count": {"type": "integer"}, "replayed": {"type": "boolean"}}})},
                             **_errors(400, 401, 403, 404, 409, 413, 415, 422, 429, 503)}},
                "get": {"summary": "Pull records after an offset, long-polling up to `wait` s",
                        "security": SIGNED,
                        "parameters": [q("after", 0, 2**62, "default: the caller's committed cursor"),
                                       q("limit", 1, 1000, "default 100"), q("wait", 0, 30, "default 0")],
                        "responses": {"200": {"description": "records", **_json({"type": "object", "properties": {
                            "records": {"type": "array", "items": RECORD}, "next": {"type": "integer"}}})},
                            **_errors(400, 401, 403, 404, 503)}},
            },
            "/v1/resources/{rid}/records/{key}": {
                "parameters": [RID, {"name": "key", "in": "path", "required": True, "schema": {"type": "string"}}],
                "get": {"summary": "Latest record for a key, projected to the caller's fields",
                        "security": SIGNED,
                        "responses": {"200": {"description": "record", **_json(RECORD)},
                                      **_errors(400, 401, 403, 404, 503)}}},
            "/v1/resources/{rid}/cursor": {
                "parameters": [RID],
                "put": {"summary": "Commit the caller's cursor", "security": SIGNED,
                        "requestBody": {"required": True, **_json({"type": "object", "required": ["offset"], "properties": {
                            "offset": {"type": "integer", "minimum": 0}, "force": {"type": "boolean"}}})},
                        "responses": {"200": {"description": "committed"}, **_errors(400, 401, 403, 404, 409)}}},
            "/v1/catalog": {"get": {"summary": "Resources visible to the caller", "security": SIGNED,
                                    "responses": {"200": {"description": "catalog"}, **_errors(401)}}},
            "/v1/catalog/{rid}": {"parameters": [RID], "get": {
                "summary": "One catalog entry with the caller's visible_fields", "security": SIGNED,
                "responses": {"200": {"description": "entry"}, **_errors(401, 403, 404)}}},
            **_governance_paths(),
            "/healthz": {"get": {"summary": "Liveness", "responses": {"200": {"description": "alive"}}}},
            "/readyz": {"get": {"summary": "Readiness (store reachable, catalog loaded)",
                                "responses": {"200": {"description": "ready"}, "503": {"description": "not ready"}}}},
            "/metrics": {"get": {"summary": "Prometheus text", "responses": {"200": {"description": "metrics"}}}},
            "/openapi.json": {"get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI"}}}},
            "/v1/node-keys": {"get": {
                "summary": "The Ed25519 public key this node signs webhook deliveries with (unsigned)",
                "responses": {"200": {"description": "keys", "content": {"application/json": {"schema": {
                    "type": "object", "required": ["keys"], "properties": {"keys": {"type": "array", "items": {
                        "type": "object", "required": ["id", "alg", "public_key"], "properties": {
                            "id": {"type": "string", "pattern": "^[0-9a-f]{16}$"},
                            "alg": {"const": "Ed25519"},
                            "public_key": {"type": "string", "description": "base64url of the raw 32 bytes"}}}}}}}}}}}},
        },
    }


def _governance_paths() -> dict[str, Any]:
    """Services, composites, consents, access log and webhook subscriptions (docs/services.md)."""
    def op(summary: str, ok: str, *codes: int, body: dict[str, Any] | None = None) -> dict[str, Any]:
        doc: dict[str, Any] = {"summary": summary, "security": SIGNED,
                               "responses": {ok: {"description": summary}, **_errors(401, 429, *codes)}}
        if body is not None:  # every POST here creates state: a signed Idempotency-Key
            doc["requestBody"] = {"required": True, **_json(body)}
            doc["parameters"] = [IDEMPOTENCY_KEY]
            doc["responses"].update(_errors(400, 409))
        return doc

    pid = lambda name: {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}  # noqa: E731
    svc = [pid(n) for n in ("instance", "class", "code", "subsystem", "service")]
    proxy = {"summary": "Proxy to the provider's backend; its answer passes through untouched",
             "security": SIGNED,
             "responses": {"default": {"description": "the backend's answer"}, **_errors(400, 401, 403, 404, 429,
                                                                                          502, 503, 504)}}
    consent = {"type": "object", "required": ["user_id", "consumer", "resources", "purpose", "expires"],
               "properties": {"user_id": {"type": "string"}, "consumer": {"type": "string"},
                              "resources": {"type": "array", "items": {"type": "string"}},
                              "purpose": {"type": "string"}, "expires": {"type": "string"}}}
    sub = {"type": "object", "required": ["url"], "properties": {
        "url": {"type": "string", "format": "uri"}, "batch": {"type": "integer", "minimum": 1, "maximum": 1000},
        "after": {"type": "integer", "minimum": 0}}}
    return {
        "/v1/services": {"get": op("Services and composites the caller may call", "200")},
        "/v1/services/{instance}/{class}/{code}/{subsystem}/{service}/{path}": {
            "parameters": [*svc, {"name": "path", "in": "path", "required": True,
                                  "schema": {"type": "string"}, "description": "the rest of the path"}],
            **{m: proxy for m in ("get", "post", "put", "patch", "delete", "head", "options")}},
        "/v1/composites/{id}": {"parameters": [pid("id")], "post": op(
            "Run a composite service; 502 with every step's result when a step failed", "200",
            403, 404, 502, body={"type": "object", "properties": {"input": {"type": "object"}}})},
        "/v1/consents": {"post": op("Record a citizen's consent (portals)", "201", 403, 422, body=consent)},
        "/v1/consents/{id}": {"parameters": [pid("id")],
                              "get": op("A consent (portals, its consumer)", "200", 403, 404),
                              "delete": op("Revoke a consent (portals)", "200", 403, 404)},
        "/v1/citizens/{user_id}/access-log": {"parameters": [pid("user_id")], "get": op(
            "Who read which of the citizen's data, when and why (portals)", "200", 400, 403)},
        "/v1/resources/{rid}/subscriptions": {"parameters": [RID],
                                              "post": op("Register a webhook for new records", "201",
                                                         403, 404, 409, 422, body=sub),
                                              "get": op("The caller's subscriptions to the resource", "200")},
        "/v1/subscriptions": {"get": op("The caller's subscriptions", "200")},
        "/v1/subscriptions/{id}": {"parameters": [pid("id")],
                                   "get": op("A subscription: state, cursor, attempts", "200", 403, 404),
                                   "delete": op("Stop deliveries", "200", 403, 404)},
    }
