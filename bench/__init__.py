"""The benchmarks, beside the product (not installed with the package).

Every bench is a command that prints a table and writes JSON, built on :mod:`harness`
(free ports, CPU pinning, server processes, wrk): ``python -m bench --help`` lists them.
The product (``gateway``, ``fastpath``) never imports this package; see docs/development.md.
"""
