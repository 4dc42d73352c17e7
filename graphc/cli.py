"""The ``graphc`` command line.

    graphc verify [OP ...] [--numeric-only]   prove every derivative rule (table; exit 1 on failure)
"""

from __future__ import annotations

import argparse
import sys


def _verify(args) -> int:
    from .verify import verify_all
    results = verify_all(args.ops or None, symbolic=not args.numeric_only)
    return 0 if results and all(r.ok for r in results) else 1


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="graphc", description="graphc: a static-graph compiler for deep learning")
    sub = parser.add_subparsers(dest="command", required=True)
    v = sub.add_parser("verify", help="check every op's derivative rule symbolically (sympy) and numerically")
    v.add_argument("ops", nargs="*", help="ops to check (default: all differentiable ops)")
    v.add_argument("--numeric-only", action="store_true", help="skip the sympy proofs")
    v.set_defaults(func=_verify)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
