"""Services tests run in-process nodes and backends on loopback (see svckit.py)."""
