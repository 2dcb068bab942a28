"""Store backends behind one protocol (see :mod:`gateway.stores.base`)."""

from __future__ import annotations

from gateway.config import NodeConfig
from gateway.filemodes import private_dir
from gateway.stores.base import Store


def open_store(config: NodeConfig, *, accept_reset: bool = False) -> Store:
    """Create (not yet open) the store the node configuration names. ``accept_reset``
    (``serve --accept-reset``): a wiped or replaced JetStream found at start is accepted
    and its high-water mark (``DATA_DIR/jetstream-hwm.json``) starts over."""
    st = config.store
    if st.backend == "sqlite":
        from gateway.stores.sqlite import SQLiteStore

        data_dir = private_dir(config.resolve(config.node.data_dir))
        path = config.resolve(st.path) if st.path else data_dir / "exchange.db"
        path.parent.mkdir(parents=True, exist_ok=True)
        return SQLiteStore(path, synchronous=st.synchronous)
    if st.backend == "jetstream":
        from gateway.stores.hwm import FILE_NAME
        from gateway.stores.jetstream import JetStreamStore

        data_dir = private_dir(config.resolve(config.node.data_dir))
        return JetStreamStore(st.servers, replicas=st.replicas, prefix=st.prefix,
                              hwm_path=data_dir / FILE_NAME, accept_reset=accept_reset)
    raise ValueError(f"unknown store backend {st.backend!r}")
