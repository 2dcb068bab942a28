"""Load-test kit of OneStop Exchange.

Locust users that sign through :mod:`gateway.signing`, load shapes, an open-model
(fixed arrival rate) pacer, an SLO gate, the ``bench`` harness and the
simulated-vs-measured comparison. ``python -m loadtest --help`` lists the commands.
"""

from loadtest.errors import LoadTestError

__all__ = ["LoadTestError"]
