"""Operational endpoints (unsigned): liveness, readiness, metrics, OpenAPI, the node's keys."""

from __future__ import annotations

from gateway.exchange import Answer, Backends, Exchange
from gateway.redact import redact
from gateway.wire import JSON, json_encode
from gateway.wiremodel import Health, NodeKey, NodeKeys, Readiness

_OK = Answer(200, json_encode(Health(status="ok")), content_type=JSON)


async def healthz(x: Exchange) -> Answer:
    """Liveness: the process answers."""
    return _OK


async def readyz(x: Exchange) -> Answer:
    """Readiness: store reachable and catalog loaded; 503 with a ``reason`` otherwise."""
    b = x.backends
    checks = {"catalog": len(x.catalog.resources) > 0, "store": False, "draining": b.status.draining}
    if b.status.ready and not b.status.draining:
        try:
            checks["store"] = await b.store.ping()
        except Exception:  # noqa: BLE001 - any failure means not ready
            checks["store"] = False
    refused = b.governance.refused  # e.g. another cluster's citizen key
    if refused:
        checks["governance"] = False
    ok = checks["catalog"] and checks["store"] and not b.status.draining and not refused
    doc = Readiness(status="ready" if ok else "not ready", checks=checks,
                    reason=None if ok else redact(_reason(b, checks)))
    return Answer(200 if ok else 503, json_encode(doc), content_type=JSON)


def _reason(b: Backends, checks: dict[str, bool]) -> str:
    """Why the node is not ready, for operators (never a credential)."""
    if b.status.draining:
        return "the node is draining (shutting down)"
    if not b.status.ready:
        return "the node is starting"
    if not checks["catalog"]:
        return "the catalog has no resources"
    if b.governance.refused:
        return b.governance.refused
    why = getattr(b.store, "unready_reason", None)
    return (why() if callable(why) else None) or "the store did not answer"


async def metrics(x: Exchange) -> Answer:
    """Prometheus text exposition."""
    b = x.backends
    if b.audit is not None:
        b.metrics.audit_queue.set(b.audit.queue.qsize())
    return Answer(200, b.metrics.render(), content_type=b.metrics.content_type)


async def openapi(x: Exchange) -> Answer:
    """OpenAPI 3.1 of the wire contract (built from the route declarations)."""
    return Answer(200, x.backends.openapi, content_type=JSON)


async def node_keys(x: Exchange) -> Answer:
    """GET /v1/node-keys (unsigned): the public key this node signs webhook deliveries with.

    In cluster mode every node has its own key; a delivery's ``keyid`` says which node's
    ``/v1/node-keys`` lists it. After a rotation the retired key is listed too (with
    ``until``) while its overlap lasts."""
    return Answer(200, NodeKeys(keys=[NodeKey(**d) for d in x.backends.node_key.public_docs()]))
