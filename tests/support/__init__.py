"""What every area's tests share (areas keep their own kits for the rest: tests/gateway/gwkit.py,
tests/services/svckit.py, tests/cluster/clusterkit.py).

- :class:`NodeProcess`: one gateway node (``python -m gateway serve``) in a subprocess.
- :func:`write_keyring`: a keyring file (mode 0600) with fresh keys.
- :func:`wait_until`: await a condition (sync or async predicate) instead of sleeping.
- :func:`free_port`, :func:`wait_for`: from :mod:`harness`, the benches' harness.
- NATS: :class:`NatsServer` (from :mod:`devkit.nats`) and the fixtures ``nats_server``,
  ``nats_url``, ``nats_cluster`` and ``prefix`` of ``tests/conftest.py``.
"""

from __future__ import annotations

from devkit.nats import NatsServer, find_binary, start_cluster
from harness import free_port, wait_for
from support.keys import catalog_subsystems, write_keyring
from support.nodes import SAMPLE_CATALOG, NodeProcess
from support.waiting import wait_until

__all__ = [
    "SAMPLE_CATALOG",
    "NatsServer",
    "NodeProcess",
    "catalog_subsystems",
    "find_binary",
    "free_port",
    "start_cluster",
    "wait_for",
    "wait_until",
    "write_keyring",
]
