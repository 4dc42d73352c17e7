"""Graph -> native code: plan, emit one LLVM module, optimize for the host, JIT.

``compile_graph(graph, updates)`` returns a ``CompiledFunction``. The
runtime table handed to the code at each call holds the addresses of the
thread pool's ``parallel_for`` and of BLAS sgemm/dgemm in this process.
"""

from __future__ import annotations

import time
from typing import Sequence

import numpy as np

from graphc.ir import Graph, Node

from . import llvm_target
from .emit import ENTRY_NAME, RT_DGEMM, RT_PARALLEL_FOR, RT_SGEMM, emit_module
from .plan import plan as make_plan
from .runtime import CompiledFunction, NativeCode

_BLAS = None
_BLAS_LOOKED = False


def blas_info():
    """The process's BLAS (found once), or None: then matmuls use generated loops."""
    global _BLAS, _BLAS_LOOKED
    if not _BLAS_LOOKED:
        from .blas import find_blas
        try:
            _BLAS = find_blas()
        except Exception:  # noqa: BLE001 - any failure to find BLAS means: no BLAS
            _BLAS = None
        _BLAS_LOOKED = True
    return _BLAS


def runtime_table() -> np.ndarray:
    """[parallel_for, sgemm, dgemm] addresses for this process (0 where unavailable)."""
    table = np.zeros(4, np.int64)
    try:
        from .threadpool import get_pool
        pool = get_pool()
        if pool.num_threads > 1:
            table[RT_PARALLEL_FOR] = pool.parallel_for_address
    except Exception:  # noqa: BLE001 - no pool: kernels run their chunks serially
        pass
    info = blas_info()
    if info is not None:
        table[RT_SGEMM] = info.sgemm.address
        table[RT_DGEMM] = info.dgemm.address
    return table


def compile_graph(graph: Graph, updates: Sequence[tuple[Node, Node]] = (), single_output: bool = False,
                  opt_level: int = 3) -> CompiledFunction:
    """Compile ``graph`` (whose last ``len(updates)`` outputs are the updates' new values)."""
    import llvmlite.binding as llvm
    start = time.perf_counter()
    p = make_plan(graph, updates)
    module, kernels = emit_module(p, blas=blas_info(), name=graph.name)
    text = str(module)
    mod = llvm_target.optimize(llvm_target.parse(text), opt_level)
    optimized = str(mod)
    engine = llvm.create_mcjit_compiler(mod, llvm_target._new_target_machine())
    engine.finalize_object()
    addr = engine.get_function_address(ENTRY_NAME)
    tm = llvm_target.target_machine()
    native = NativeCode(engine, addr, text, optimized, lambda: tm.emit_assembly(llvm.parse_assembly(optimized)))
    fn = CompiledFunction(p, native, runtime_table(), output_is_tuple=not single_output, kernels=kernels)
    fn.compile_seconds = time.perf_counter() - start
    return fn
