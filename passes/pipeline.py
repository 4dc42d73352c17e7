"""The pass pipeline that ``compile`` runs: a plain tuple of ``Graph -> Graph`` functions.

    PIPELINE = (simplify, cse, fold_constants, dce, fuse)

``run_pipeline(graph)`` applies them in order and verifies the graph after
each one; with a ``graphc.dump.Dumper`` it records every stage (the printed
graph and a diff to the previous stage), and with ``GRAPHC_DEBUG`` >= 1 it
logs each pass's time (>= 2: each stage's graph; see ``graphc.debug``).
"""

from __future__ import annotations

import time
from typing import Callable, Sequence

from graphc.errors import GraphVerificationError
from graphc.ir import Graph

from .cse import cse
from .dce import dce
from .fold import fold_constants
from .fusion import fuse
from .simplify import simplify

PIPELINE = (simplify, cse, fold_constants, dce, fuse)

# short names used in dump files and logs (default: the function's __name__)
STAGE_NAMES = {"fold_constants": "fold"}


def stage_name(p: Callable) -> str:
    """The name of a pass in dumps and logs: ``simplify``, ``cse``, ``fold``, ``dce``, ``fuse``."""
    name = getattr(p, "__name__", type(p).__name__)
    return STAGE_NAMES.get(name, name)


def run_pipeline(graph: Graph, passes: Sequence[Callable[[Graph], Graph]] = PIPELINE, dump=None) -> Graph:
    """Run ``passes`` in order on ``graph``; verify after each; return the last graph.

    ``dump``: a ``graphc.dump.Dumper`` (or None). The input graph is written first
    (forward and backward parts) unless the dumper already has it, then one
    numbered stage per pass.
    """
    from graphc import debug
    level = debug.debug_level()
    if dump is not None and not dump.has_input:
        dump.write_input(graph)
    g = graph
    times = []
    for p in passes:
        name = stage_name(p)
        start = time.perf_counter()
        out = p(g)
        seconds = time.perf_counter() - start
        if not isinstance(out, Graph):
            raise TypeError(f"pass {name} returned {type(out).__name__}, not a Graph")
        if out is g:
            raise AssertionError(f"pass {name} returned its input graph; passes return a new Graph")
        try:
            out.verify()
        except GraphVerificationError as e:
            raise GraphVerificationError(f"after pass {name}: {e}") from e
        g = out
        times.append((name, seconds))
        if dump is not None:
            dump.write_stage(name, g)
        if level >= 2:
            debug.log(2, f"--- after {name} ({seconds * 1e3:.2f} ms)\n{g}")
    if level >= 1:
        n_ops = len(g.ops)
        debug.log(1, f"graphc: passes on {graph.name!r} ({len(graph.ops)} ops -> {n_ops}): "
                  + ", ".join(f"{n} {s * 1e3:.2f} ms" for n, s in times))
    return g


__all__ = ["PIPELINE", "run_pipeline", "stage_name", "STAGE_NAMES"]
