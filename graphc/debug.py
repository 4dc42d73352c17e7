"""Debug output: ONE environment variable, ``GRAPHC_DEBUG``, with levels.

=====  ==================================================================
level  what graphc prints (to stderr)
=====  ==================================================================
0      nothing (the default; also when the variable is unset or empty)
1      one summary per compile: time of each pass, op count before and
       after, the kernels (kind, what they compute, shape, chunks), buffer
       memory, compile time and whether the code came from the cache
2      level 1, and the graph after every pass (the same text as the dump
       files, one printer for every stage)
3      level 2, and the LLVM IR of every compile (as emitted, and optimized)
=====  ==================================================================

A value that is not an integer (``GRAPHC_DEBUG=yes``) means 1. The level is
read at each use, so ``os.environ["GRAPHC_DEBUG"] = "2"`` takes effect at
the next compile.

Files rather than text on stderr: ``GRAPHC_DUMP=folder`` (or
``gc.compile(..., dump="folder")``) writes every stage of every compile to
numbered files (see ``graphc.dump``); ``graphc dump script.py`` and
``graphc stats script.py`` do it from the command line.

API: ``debug_level() -> int``, ``enabled(level) -> bool``, ``log(level, text)``.
"""

from __future__ import annotations

import os
import sys

ENV = "GRAPHC_DEBUG"


def debug_level() -> int:
    """The current level from ``$GRAPHC_DEBUG`` (0 when unset; non-integers mean 1)."""
    raw = os.environ.get(ENV, "").strip()
    if not raw:
        return 0
    try:
        return max(0, int(raw))
    except ValueError:
        return 0 if raw.lower() in ("off", "no", "false", "none") else 1


def enabled(level: int) -> bool:
    """Is output of this level on?"""
    return debug_level() >= level


def log(level: int, text: str) -> None:
    """Print ``text`` to stderr if ``GRAPHC_DEBUG`` >= ``level``."""
    if debug_level() >= level:
        print(text, file=sys.stderr, flush=True)


__all__ = ["debug_level", "enabled", "log", "ENV"]
