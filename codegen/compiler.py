"""Graph -> native code: plan, emit one LLVM module, optimize for the host, JIT; cached.

``compile_graph(graph, updates)`` returns a ``CompiledFunction``. The
runtime table handed to the code at each call holds the addresses of the
thread pool's ``parallel_for`` and of BLAS sgemm/dgemm in this process, so
the machine code is the same in every process and can be cached on disk
(``codegen.cache``).
"""

from __future__ import annotations

import gc as pygc
import hashlib
import time
from contextlib import contextmanager
from typing import Sequence

import numpy as np

from graphc.ir import Graph, Node
from graphc.printer import format_graph

from . import cache, llvm_target
from .abi import ENTRY_NAME, RT_BLAS_RESTORE, RT_BLAS_SERIAL, RT_DGEMM, RT_PARALLEL_FOR, RT_SGEMM, RUNTIME_TABLE_SIZE
from .plan import Plan
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
    """[parallel_for, sgemm, dgemm, blas_serial, blas_restore] addresses for this process
    (0 where unavailable; see ``codegen.abi``)."""
    table = np.zeros(RUNTIME_TABLE_SIZE, np.int64)
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
        if table[RT_PARALLEL_FOR]:  # GEMM chunks run in parallel only with the pool: else BLAS keeps its threads
            from .dispatch import blas_hooks
            table[RT_BLAS_SERIAL], table[RT_BLAS_RESTORE] = blas_hooks(info)
    return table


def _target_description() -> str:
    return llvm_target.host_description()


def graph_key(graph: Graph, update_params, opt_level: int) -> str:
    """The cache key of a compilation (see ``codegen.cache``)."""
    info = blas_info()
    blas = f"{info.interface}-{info.int_bits}" if info is not None else "no-blas"
    extra = f"opt={opt_level} blas={blas} updates=" + ",".join(p.name for p in update_params)
    # passes may inline constant values into the code: they are part of the key (the printed
    # graph elides large constants)
    values = hashlib.sha256()
    for n in graph.constants:
        values.update(str(n.type).encode())
        values.update(np.ascontiguousarray(n.value).tobytes())
    extra += f" constants={values.hexdigest()}"
    return cache.make_key(format_graph(graph, locations=False), extra, _target_description())


# A kernel whose values have fewer elements than this runs in microseconds: unrolling and
# interleaving its loops cannot pay for their compile time (see _is_small).
SMALL_KERNEL_ELEMENTS = 4096
# matmul: the work is M*N*K in one BLAS call; softmax: rows of 10 logits lose their unrolled,
# SLP-vectorized code under optsize (3 -> 7.6 us per call, x thousands of training steps)
_NEVER_SMALL_KINDS = {"matmul", "softmax"}


def _emit(p: Plan, name: str, parts: int = 1):
    """The plan's LLVM modules (small kernels marked, see _is_small) and its kernels."""
    from .emit import emit_module  # not needed to load cached code
    return emit_module(p, blas=blas_info(), name=name, parts=parts, small=_is_small)


def _is_small(code, epilogue: bool) -> bool:
    """Whether a kernel function gets LLVM's ``optsize`` attribute.

    The O3 pipeline then still vectorizes its loops but neither unrolls nor
    interleaves them, so instruction selection has far less code to go through.
    Measured on the W3 training step (13 such functions on 128x10 or 512 values):
    the module compiles in half the time; those kernels ran 5 us slower per step
    in total, most of it log_softmax over rows of 10, which is therefore never
    marked (``_NEVER_SMALL_KINDS``). A lane-padded loop (``codegen.emit._padded_inner``)
    vectorizes only at full optimization.
    """
    return _function_elements(code.kernel, epilogue) < SMALL_KERNEL_ELEMENTS and not code.padded


def _function_elements(k, epilogue: bool) -> float:
    """The elements a kernel function works on.

    A kernel's first function runs its body: the most elements of any value in it
    (inputs included); matmuls count as infinite (their work is M*N*K, and with BLAS
    they are one call). A second function of the same kernel is its elementwise
    epilogue (see ``emit_module``), over the kernel's output only.
    """
    if epilogue:
        return k.node.type.size
    if k.kind in _NEVER_SMALL_KINDS:
        return float("inf")
    return max((n.type.size for n in k.body.nodes), default=0)


def _optimized(text: str, opt_level: int):
    return llvm_target.optimize(llvm_target.parse(text), opt_level)


def _compile_part(module, opt_level: int) -> bytes:
    """The object file of an ``ir.Module`` (printed, parsed, optimized, compiled)."""
    return cache.compile_object(_optimized(str(module), opt_level))


_LLVM_LOAD_COUNTED = False  # whether a compile's times included importing llvmlite.binding yet


class _Phases(dict):
    """Seconds per phase of a compile: ``with phases("name"): ...`` adds the block's time."""

    @contextmanager
    def __call__(self, name: str):
        t = time.perf_counter()
        try:
            yield
        finally:
            self[name] = self.get(name, 0.0) + time.perf_counter() - t


def _build(p: Plan, name: str, opt_level: int, times: _Phases | None = None) -> tuple[NativeCode, bytes]:
    """Emit, optimize, compile and load; returns the code and its objects (for the disk cache).

    A big program is emitted as ``parallel.PARTS`` modules, compiled by this
    process and a forked worker (``codegen.parallel``); the engine links the
    objects. The runtime modules this process has not built yet (thread pool,
    dispatcher: ``_runtime_jobs``) are compiled in the same queue, last, so that
    whichever process is free first makes them.
    """
    times = times if times is not None else _Phases()
    with times("emit"):
        from . import parallel
        from .emit import _compile_cost
        parts = parallel.PARTS if parallel.available(len(p.kernels)) else 1
        modules, kernels = _emit(p, name, parts)
        if parts > 1:
            cost = [sum(_compile_cost(f) for f in m.functions if f.blocks) for m in modules]
            order = sorted(range(parts), key=lambda i: -cost[i])  # the costliest first
            runtime = _runtime_jobs()
    with times("llvm"):
        if parts > 1:
            done = parallel.run_shared([lambda m=modules[i]: _compile_part(m, opt_level) for i in order] +
                                       [job for _, job in runtime])
            for (key, _), obj in zip(runtime, done[parts:]):
                cache.prefetched(key, obj)
            objects = [None] * parts
            for i, obj in zip(order, done):
                objects[i] = obj
        else:
            objects = [_compile_part(modules[0], opt_level)]
    with times("load"):
        engine = cache.load_objects(objects)
    if engine is None:
        raise RuntimeError(f"graphc: the machine code of {name!r} does not load (LLVM could not link it)")
    native = NativeCode(engine, engine.get_function_address(ENTRY_NAME), kernels=kernels)
    native.lazy_details = _stages(p, name, opt_level, parts)
    return native, parallel.pack(objects)


def _runtime_jobs() -> list:
    """``cache.recipe_job``s of the runtime modules not built in this process nor cached yet."""
    from . import dispatch, threadpool
    jobs = []
    for make in (threadpool.pool_object_job, dispatch.object_job):
        try:
            job = make()
        except Exception:  # noqa: BLE001 - built later, as without this, where it fails again
            job = None
        if job is not None:
            key, compile_it = job
            jobs.append((key, lambda c=compile_it: _or_nothing(c)))
    return jobs


def _or_nothing(compile_it) -> bytes:
    """``compile_it()``, or no object if it fails: the module is then built where first used, as
    without prefetching (where a failure is handled: the pool runs serially, calls go through
    Python), instead of failing the program's compile."""
    try:
        return compile_it()
    except Exception:  # noqa: BLE001 - see the docstring
        return b""


@contextmanager
def _gc_paused():
    """No cyclic garbage collection while compiling: emission makes ~10^4 short-lived objects
    in reference cycles (llvmlite's IR), which set off full collections over the whole heap
    (10-20 ms of a W3 compile); they are collected after, with the next collection."""
    enabled = pygc.isenabled()
    pygc.disable()
    try:
        yield
    finally:
        if enabled:
            pygc.enable()


def _stages(p: Plan, name: str, opt_level: int, parts: int):
    """``() -> (IR, optimized IR, assembly function, kernels)``, derived again on request.

    Emission is deterministic, so the texts are those of the compiled code; keeping
    a compile's modules alive instead costs memory and ~40 ms at interpreter exit.
    """
    def details():
        modules, kernels = _emit(p, name, parts)
        texts = [str(m) for m in modules]
        optimized = _joined([str(_optimized(t, opt_level)) for t in texts])
        return _joined(texts), optimized, _assembly_of(optimized), kernels
    return details


_PART_MARK = "; ---- graphc: next module "


def _joined(texts: list[str]) -> str:
    """Module texts as one (compiled in parallel, linked by the engine), each headed by a mark line."""
    if len(texts) == 1:
        return texts[0]
    return "\n".join(f"{_PART_MARK}({i + 1} of {len(texts)}, linked by name) ----\n{t}"
                     for i, t in enumerate(texts))


def _split(text: str) -> list[str]:
    """The module texts of ``_joined``'s output."""
    if not text.startswith(_PART_MARK):
        return [text]
    return [chunk.split("\n", 1)[1] for chunk in text.split("\n" + _PART_MARK)]


def _assembly_of(optimized_ir):
    """``() -> assembly text`` of optimized modules, given their IR text (``_joined``) or ``() -> text``."""
    def asm() -> str:
        import llvmlite.binding as llvm
        text = optimized_ir() if callable(optimized_ir) else optimized_ir
        return "\n".join(llvm_target.target_machine().emit_assembly(llvm.parse_assembly(t)) for t in _split(text))
    return asm


def _load(payload: bytes, p: Plan, name: str, opt_level: int) -> NativeCode | None:
    """Machine code from cached object files; IR and kernels are re-derived on demand."""
    from . import parallel
    objects = parallel.unpack(payload)
    engine = cache.load_objects(objects) if objects else None
    addr = engine.get_function_address(ENTRY_NAME) if engine is not None else 0
    if not addr:
        return None
    native = NativeCode(engine, addr)
    native.lazy_details = _stages(p, name, opt_level, len(objects))
    return native


def compile_graph(graph: Graph, update_params: Sequence[Node] = (), single_output: bool = False,
                  opt_level: int = 3, dump=None) -> CompiledFunction:
    """Compile ``graph``, whose last ``len(update_params)`` outputs are those parameters' new values.

    The graph goes through the pass pipeline (``graphc.passes.pipeline``: simplify,
    CSE, constant folding, DCE, fusion into kernels); then planning, emission,
    optimization and JIT. ``dump``: a folder for the stage dumps (or
    ``$GRAPHC_DUMP``, see ``graphc.dump``).
    """
    from graphc.dump import Dumper, after_compile, dump_requested
    from graphc.passes.pipeline import run_pipeline
    start = time.perf_counter()
    times = _Phases()
    folder = dump_requested(dump, graph.name)
    dumper = Dumper(folder) if folder else None
    with _gc_paused():
        with times("llvm load"):  # llvmlite's library, on a process's first compile
            _target_description()
        global _LLVM_LOAD_COUNTED
        if not _LLVM_LOAD_COUNTED:  # its import came with this module's, just before
            _LLVM_LOAD_COUNTED = True
            times["llvm load"] += llvm_target.IMPORT_SECONDS
            start -= llvm_target.IMPORT_SECONDS
        with times("key"):
            key = graph_key(graph, update_params, opt_level)
        with times("passes"):
            fused = run_pipeline(graph, dump=dumper)
            p = make_plan(fused, update_params)
        p.graph_before_passes = graph
        native = cache.memory_get(key)
        hit = native is not None
        if native is None:
            with times("load"):
                obj = cache.disk_get(key)
                if obj is not None:
                    native = _load(obj, p, graph.name, opt_level)
                    hit = native is not None
            if native is None:
                native, obj = _build(p, graph.name, opt_level, times)
                if obj:
                    cache.disk_put(key, obj)
            cache.memory_put(key, native)
        with times("load"):
            fn = CompiledFunction(p, native, runtime_table(), output_is_tuple=not single_output)
    from . import parallel
    parallel.reap_exited()  # the worker of this compile, gone by now (see parallel._reap)
    fn.compile_seconds = time.perf_counter() - start
    fn.compile_times = dict(times)
    fn.cache_hit = hit
    fn.cache_key = key
    after_compile(fn, dumper)
    return fn
