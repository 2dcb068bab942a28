"""``python -m bench NAME [OPTIONS]``: run one benchmark (``NAME --help`` for its options).

gateway    the node against bare aiohttp on pinned cores -> bench.json
           (the same as ``python -m loadtest bench``; needs wrk)
fastpath   compiled fast path vs its Python twins and aiohttp's router
stores     the SQLite store alone: durable appends, paged and keyed reads
cluster    a node on NATS JetStream vs one on SQLite, 1 and 2 workers (needs nats-server, wrk)
services   service proxy vs direct backend, keyed reads with audit on vs off (needs wrk)
simulator  the full capacity model vs bare SimPy (the same as ``python -m simulator bench``)
ops        space given back by retention and the time of a backup, both stores
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

BENCHES = ("gateway", "fastpath", "stores", "cluster", "services", "simulator", "ops")


def _entry(name: str) -> Callable[[list[str]], int]:
    """The bench's ``main``, imported only when asked for (each needs other extras)."""
    if name == "gateway":
        from bench.gateway import main
    elif name == "fastpath":
        from bench.fastpath import main
    elif name == "stores":
        from bench.stores import main
    elif name == "cluster":
        from bench.cluster import main
    elif name == "services":
        from bench.services import main
    elif name == "ops":
        from bench.ops import main
    else:
        from bench.simulator import main
    return main


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch to ``bench.NAME.main``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: python -m bench {{{','.join(BENCHES)}}} [OPTIONS]\n\n{__doc__}")
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in BENCHES:
        print(f"python -m bench: unknown bench {name!r}; choose from {', '.join(BENCHES)}",
              file=sys.stderr)
        return 2
    return _entry(name)(rest)


if __name__ == "__main__":
    raise SystemExit(main())
