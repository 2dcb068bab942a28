"""Development tools beside the product (not installed with the package).

- :mod:`devkit.synth`: deterministic Shanghai-scale catalogs and keyrings for scale tests
  and benchmarks (``python -m gateway catalog synth`` runs it from a checkout).
- :mod:`devkit.nats`: local nats-server processes with JetStream (tests, benches, dev).
- :mod:`devkit.demo`: demo agency backends for the sample catalog's services
  (``python -m devkit.demo``).
- ``devkit/cluster.sh``: three NATS servers and three nodes on loopback (``make cluster``).

The product (``gateway``, ``fastpath``) never imports this package; see docs/development.md.
"""
