"""``python -m fastpath info``: which implementation is loaded, and from where.

The benchmark lives beside the product: ``python -m bench fastpath`` (docs/fastpath.md).
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
    parser.add_argument("command", choices=["info", "bench"], help="info | bench (moved)")
    args, rest = parser.parse_known_args(argv[:1])
    if args.command == "bench":  # the fast path imports nothing of the tools beside it
        print("the benchmark moved beside the product: python -m bench fastpath "
              f"{' '.join(argv[1:])}".rstrip(), file=sys.stderr)
        return 2
    if argv[1:]:
        parser.error(f"info takes no options, not {' '.join(argv[1:])!r}")
    return _info()


if __name__ == "__main__":
    raise SystemExit(main())
