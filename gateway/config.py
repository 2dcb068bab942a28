"""Node configuration (``configs/node.toml``)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import msgspec

from gateway.redact import redact_url
from gateway.tomlfile import ConfigError, load_toml


class NodeSection(msgspec.Struct, forbid_unknown_fields=True):
    """``[node]``: where the node listens and which files it serves."""

    catalog: str
    keyring: str
    listen: str = "127.0.0.1:8080"
    instance: str = "SH"
    data_dir: str = "var"
    tls_cert: str | None = None
    tls_key: str | None = None
    client_ca: str | None = None
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    access_log: bool = True
    audit_checkpoints: str | None = None  # signed audit checkpoints (default DATA_DIR/audit-checkpoints.jsonl)
    # Cluster mode: public keys ("ed25519:<base64>") whose signed bundles the node installs,
    # inline and/or one per line in a file (gateway/operatorkey.py).
    operator_keys: list[str] = []
    operator_keys_file: str | None = None


class StoreSection(msgspec.Struct, forbid_unknown_fields=True):
    """``[store]``: the backend and its options."""

    backend: Literal["sqlite", "jetstream"] = "sqlite"
    path: str | None = None
    synchronous: Literal["FULL", "NORMAL", "EXTRA"] = "FULL"
    servers: list[str] = msgspec.field(default_factory=lambda: ["nats://127.0.0.1:4222"])
    replicas: int = 1
    prefix: str = "exg"
    retention_interval_s: float = 300.0  # how often the catalog's retention policies are applied


class LimitsSection(msgspec.Struct, forbid_unknown_fields=True):
    """``[limits]``: request bounds; every key optional."""

    max_body_bytes: int = 8 * 1024 * 1024
    max_batch_records: int = 1000
    max_inflight: int = 1024
    body_timeout_s: float = 5.0
    header_timeout_s: float = 10.0
    max_connections_per_ip: int = 256
    shutdown_timeout_s: float = 15.0
    client_timeout_s: float | None = None  # deprecated and unused: body_timeout_s replaced it


class NodeConfig(msgspec.Struct, forbid_unknown_fields=True):
    """A whole node configuration file."""

    node: NodeSection
    store: StoreSection = msgspec.field(default_factory=StoreSection)
    limits: LimitsSection = msgspec.field(default_factory=LimitsSection)
    source: str = ""

    def resolve(self, path: str) -> Path:
        """A path from the file, relative to the file's own folder."""
        p = Path(path)
        return p if p.is_absolute() else Path(self.source).parent / p

    @property
    def host(self) -> str:
        return self.node.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.node.listen.rpartition(":")[2])


def _check(cfg: NodeConfig, file: Path) -> None:
    if cfg.source:  # set by the loader only; a file must not smuggle it in
        raise ConfigError(file, "source", "unknown key")
    if not re.match(r"^[A-Z0-9-]{1,16}$", cfg.node.instance):
        raise ConfigError(
            file, "node.instance", f"must be upper-case letters/digits, got {cfg.node.instance!r}"
        )
    host, sep, port = cfg.node.listen.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(file, "node.listen", f"must be host:port, got {cfg.node.listen!r}")
    if (cfg.node.tls_cert is None) != (cfg.node.tls_key is None):
        raise ConfigError(file, "node.tls_cert", "tls_cert and tls_key must be set together")
    if cfg.node.client_ca and not cfg.node.tls_cert:
        raise ConfigError(file, "node.client_ca", "mutual TLS needs tls_cert and tls_key")
    from gateway.operatorkey import parse_public

    for i, text in enumerate(cfg.node.operator_keys):
        parse_public(text, file, f"node.operator_keys[{i}]")
    lim = cfg.limits
    bounds = {
        "max_body_bytes": (lim.max_body_bytes, 1024, 1 << 30),
        "max_batch_records": (lim.max_batch_records, 1, 1000),
        "max_inflight": (lim.max_inflight, 1, 1_000_000),
        "body_timeout_s": (lim.body_timeout_s, 0.1, 3600),
        "header_timeout_s": (lim.header_timeout_s, 0.1, 3600),
        "max_connections_per_ip": (lim.max_connections_per_ip, 1, 1_000_000),
        "client_timeout_s": (lim.client_timeout_s, 0.1, 3600),
        "shutdown_timeout_s": (lim.shutdown_timeout_s, 0, 3600),
    }
    for key, (value, lo, hi) in bounds.items():
        if value is not None and not lo <= value <= hi:
            raise ConfigError(file, f"limits.{key}", f"must be between {lo} and {hi}, got {value}")
    st = cfg.store
    if not 1 <= st.retention_interval_s <= 86400:
        raise ConfigError(file, "store.retention_interval_s",
                          f"must be between 1 and 86400, got {st.retention_interval_s}")
    if st.backend == "jetstream":
        try:
            import nats  # noqa: F401 - cluster mode's client: say so here when it is missing
        except ImportError:
            raise ConfigError(file, "store.backend", "jetstream (cluster mode) needs nats-py, "
                              "which is not installed: pip install 'onestop-exchange[cluster]'"
                              ) from None
        if not st.servers:
            raise ConfigError(file, "store.servers", "needs at least one nats:// URL")
        for url in st.servers:
            if not url.startswith(("nats://", "tls://")):
                raise ConfigError(file, "store.servers", f"not a nats:// URL: {redact_url(url)!r}")
        if st.replicas not in (1, 3, 5):
            raise ConfigError(file, "store.replicas", f"must be 1, 3 or 5, got {st.replicas}")


def load_node_config(path: str | Path) -> NodeConfig:
    """Load and check a node configuration file."""
    path = Path(path)
    cfg = load_toml(path, NodeConfig)
    _check(cfg, path)
    cfg.source = str(path)
    return cfg
