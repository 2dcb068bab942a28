"""Governance: audit storage, citizens' consents, quotas and webhook delivery."""

from __future__ import annotations

from gateway.config import NodeConfig
from gateway.governance.store import GovernanceStore


def open_governance(config: NodeConfig) -> GovernanceStore:
    """The governance store for the node's backend (not yet open).

    ``sqlite``: ``DATA_DIR/governance.db``. ``jetstream``: streams and KV buckets on the
    same NATS servers as the record store.
    """
    if config.store.backend == "jetstream":  # (imported here, like the stores: nats-py only when used)
        from gateway.governance.jetstream import JetStreamGovernance

        st = config.store
        return JetStreamGovernance(st.servers, replicas=st.replicas, prefix=st.prefix)
    from gateway.governance.sqlite import SQLiteGovernance

    return SQLiteGovernance(config.resolve(config.node.data_dir) / "governance.db")


__all__ = ["GovernanceStore", "open_governance"]
