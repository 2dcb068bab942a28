"""Admission to ``[limits] max_inflight``: what never waits for a slot, and what holds none.

- The unsigned operational routes (``/healthz``, ``/readyz``, ``/metrics``) are never
  refused for want of a slot: a load balancer or Prometheus must get an answer from a
  node that is full. They are still counted in the in-flight gauge.
- A request gives its slot back while its body is being received: the body is unsigned
  until it has arrived, and a client that sends it slowly (or not at all) must not keep
  the node's capacity. It is bounded by ``[limits] body_timeout_s`` instead, and takes its
  slot again once the body is in (503 when the node filled up meanwhile).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from gateway.errors import Problem
from gateway.wire import read_body

if TYPE_CHECKING:
    from gateway.app import Node

#: Paths answered even when the node is at max_inflight.
UNQUEUED = frozenset({"/healthz", "/readyz", "/metrics"})


def unqueued(request: web.BaseRequest) -> bool:
    """Whether the request is for an operational route that never waits for a slot."""
    raw = request.raw_path
    q = raw.find("?")
    return (raw if q < 0 else raw[:q]) in UNQUEUED


async def read_body_unslotted(node: Node, request: web.BaseRequest) -> bytes:
    """Read the body (``read_body`` with the node's limits) without holding a slot meanwhile."""
    if not request.body_exists:  # nothing to wait for (most reads): nothing to read
        return b""
    limits = node.config.limits
    gauge = node.metrics.body_reads
    node.inflight -= 1
    gauge.inc()
    try:
        body = await read_body(request, limits.max_body_bytes, limits.body_timeout_s)
    finally:
        gauge.dec()
        node.inflight += 1  # the caller's ``finally`` gives it back, whatever happens here
    if node.inflight > node.max_inflight:
        node.metrics.rejected.inc()
        raise Problem("server.unavailable", "node is at max_inflight; retry shortly",
                      headers={"Retry-After": "1"})
    return body
