"""Operational endpoints (unsigned): liveness, readiness, metrics, OpenAPI."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from gateway.openapi import openapi_document
from gateway.redact import redact
from gateway.wire import json_encode

if TYPE_CHECKING:
    from gateway.app import Call


async def healthz(call: Call) -> web.Response:
    """Liveness: the process answers."""
    return web.Response(body=b'{"status":"ok"}', content_type="application/json")


async def readyz(call: Call) -> web.Response:
    """Readiness: store reachable and catalog loaded; 503 with a ``reason`` otherwise."""
    node = call.node
    checks = {"catalog": len(call.state.catalog.resources) > 0, "store": False,
              "draining": node.draining}
    if node.ready and not node.draining:
        try:
            checks["store"] = await node.store.ping()
        except Exception:  # noqa: BLE001 - any failure means not ready
            checks["store"] = False
    refused = getattr(node.governance, "refused", None)  # e.g. another cluster's citizen key
    if refused:
        checks["governance"] = False
    ok = checks["catalog"] and checks["store"] and not node.draining and not refused
    doc: dict[str, object] = {"status": "ready" if ok else "not ready", "checks": checks}
    if not ok:
        doc["reason"] = redact(_reason(call, checks))
    return web.Response(status=200 if ok else 503, content_type="application/json",
                        body=json_encode(doc))


def _reason(call: Call, checks: dict[str, bool]) -> str:
    """Why the node is not ready, for operators (never a credential)."""
    node = call.node
    if node.draining:
        return "the node is draining (shutting down)"
    if not node.ready:
        return "the node is starting"
    if not checks["catalog"]:
        return "the catalog has no resources"
    refused = getattr(node.governance, "refused", None)
    if refused:
        return refused
    why = getattr(node.store, "unready_reason", None)
    return (why() if callable(why) else None) or "the store did not answer"


async def metrics(call: Call) -> web.Response:
    """Prometheus text exposition."""
    m = call.node.metrics
    if call.node.audit is not None:
        m.audit_queue.set(call.node.audit.queue.qsize())
    resp = web.Response(body=m.render())
    resp.headers["Content-Type"] = m.content_type
    return resp


_openapi_cache: bytes | None = None


async def openapi(call: Call) -> web.Response:
    """OpenAPI 3.1 of the wire contract."""
    global _openapi_cache
    if _openapi_cache is None:
        _openapi_cache = json_encode(openapi_document())
    return web.Response(body=_openapi_cache, content_type="application/json")
