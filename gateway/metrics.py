"""Prometheus metrics of one node. Labels are bounded: route kinds, never resource ids."""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)


class Metrics:
    """The node's metric families, in a registry of their own."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "exchange_requests", "HTTP requests by route kind, method and status",
            ["route", "method", "status"], registry=r,
        )
        self.latency = Histogram(
            "exchange_request_duration_seconds", "Request latency by route kind",
            ["route"], buckets=LATENCY_BUCKETS, registry=r,
        )
        self.inflight = Gauge("exchange_inflight_requests", "Requests being handled", registry=r)
        self.rejected = Counter(
            "exchange_overload_rejections", "Requests refused with 503 because max_inflight was reached",
            registry=r,
        )
        self.body_reads = Gauge(
            "exchange_body_reads", "Requests whose body is being received (they hold no max_inflight slot)",
            registry=r,
        )
        refused = Counter(
            "exchange_connections_refused", "Connections closed by the node's connection guards",
            ["reason"], registry=r,
        )
        self.refused_per_address = refused.labels("per_address")  # over max_connections_per_ip
        self.refused_header_timeout = refused.labels("header_timeout")  # head not complete in time
        self.records_pushed = Counter("exchange_records_pushed", "Records appended", registry=r)
        self.records_pulled = Counter("exchange_records_pulled", "Records returned by pulls", registry=r)
        self.store_commit = Histogram(
            "exchange_store_append_seconds", "Time from append call to durable acknowledgement",
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.batch_size = Histogram(
            "exchange_push_batch_records", "Records per pushed batch",
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000), registry=r,
        )
        self.audit_queue = Gauge("exchange_audit_queue_depth", "Audit entries waiting to be written", registry=r)
        self.catalog_resources = Gauge("exchange_catalog_resources", "Resources in the loaded catalog", registry=r)
        self._req_children: dict[tuple[str, str, int], object] = {}
        self._lat_children: dict[str, object] = {}

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one finished request (label children cached: the set is bounded)."""
        k = (route, method, status)
        c = self._req_children.get(k)
        if c is None:
            c = self._req_children[k] = self.requests.labels(route, method, str(status))
        c.inc()  # type: ignore[attr-defined]
        h = self._lat_children.get(route)
        if h is None:
            h = self._lat_children[route] = self.latency.labels(route)
        h.observe(seconds)  # type: ignore[attr-defined]

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return generate_latest(self.registry)
