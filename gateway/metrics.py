"""Prometheus metrics of one node. Labels are bounded: route kinds, never resource ids."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

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
        # Read at scrape time from the node (watch): what the alert rules in deploy/ look at.
        self.store_up = Gauge("exchange_store_up", "1 when the store can serve (readiness), else 0",
                              registry=r)
        self.audit_capacity = Gauge("exchange_audit_queue_capacity",
                                    "Audit entries the queue holds before requests are refused", registry=r)
        self.data_free = Gauge("exchange_data_dir_free_bytes", "Free bytes on the data_dir's file system",
                               registry=r)
        self.data_size = Gauge("exchange_data_dir_size_bytes", "Size of the data_dir's file system",
                               registry=r)
        self.nats_connected = Gauge("exchange_nats_connected",
                                    "1 when the node's NATS connection is up (cluster mode), else 0",
                                    registry=r)
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

    def watch(self, store: Any, audit: Any, data_dir: str | Path) -> None:
        """Read the store's readiness, the audit queue and the data_dir's disk at scrape time."""

        def up() -> float:
            reason = getattr(store, "unready_reason", None)
            if reason is not None:
                return 0.0 if reason() else 1.0
            return 1.0 if getattr(store, "_state", "open") == "open" else 0.0

        def disk(field: str) -> float:
            try:
                return float(getattr(shutil.disk_usage(data_dir), field))
            except OSError:
                return float("nan")

        self.store_up.set_function(up)
        self.data_free.set_function(lambda: disk("free"))
        self.data_size.set_function(lambda: disk("total"))
        if audit is not None:
            self.audit_capacity.set(audit.queue.maxsize)
        if hasattr(store, "connected"):
            self.nats_connected.set_function(lambda: 1.0 if store.connected else 0.0)
        else:
            self.nats_connected.set(1.0)  # no NATS to lose (the embedded store)

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return generate_latest(self.registry)
