"""``python -m fastpath``: which implementation is loaded, and the benchmark.

Commands:
  info     print the implementation in use (cython or python) and where it comes from
  bench    run the benchmark (same as ``python -m fastpath.bench``; see ``bench --help``)
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import fastpath


def _info() -> int:
    print(f"implementation: {fastpath.IMPLEMENTATION}")
    print(f"GATEWAY_NO_EXTENSIONS forces the twins: {'yes' if fastpath.NO_EXTENSIONS else 'no'}")
    for name in ("cython", "python"):
        try:
            impl = fastpath.implementation(name)
        except ImportError as exc:
            print(f"{name}: not available ({exc})")
            continue
        module = sys.modules[impl.RouteTable.__module__]
        print(f"{name}: available ({module.__file__})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="python -m fastpath",
        description="OneStop Exchange fast path (Cython modules with pure-Python twins).",
    )
    parser.add_argument("command", choices=["info", "bench"], help="info | bench [bench options]")
    args, rest = parser.parse_known_args(argv[:1])
    if args.command == "bench":
        from fastpath.bench import main as bench_main

        return bench_main(argv[1:])
    if argv[1:]:
        parser.error(f"info takes no options, not {' '.join(argv[1:])!r}")
    return _info()


if __name__ == "__main__":
    raise SystemExit(main())
