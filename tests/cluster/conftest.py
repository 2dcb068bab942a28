"""Cluster tests use the NATS fixtures of tests/conftest.py (``nats_server``,
``nats_cluster``, ``prefix``) and the node kit in clusterkit.py."""
