"""LLVM initialisation, host target machine, optimisation pipeline and MCJIT.

Small wrapper around ``llvmlite.binding`` used by the code generators:

* :func:`init` -- initialise LLVM once (native target + asm printer).  Old
  llvmlite (< 0.45) also wants ``llvm.initialize()``; newer versions raise if
  it is called, so it is attempted and any error ignored.
* :func:`target_machine` -- cached ``TargetMachine`` for the host: host
  triple, host CPU name and feature string (so AVX-512 is used when present),
  ``opt=3``, default relocation model and the JIT code model.
* :func:`optimize` -- run the *new* pass manager ``default<O3>``-style module
  pipeline with loop and SLP vectorisation enabled.
* :func:`jit` -- parse/verify IR text, optimise it and load it in an MCJIT
  engine; returns ``(engine, lookup)`` where ``lookup(name)`` gives a function
  address (keep the engine alive while the address is used).
* :func:`assembly` -- host assembly text of a module (for inspection/tests).

Works with llvmlite >= 0.44 (LLVM 15+ new pass manager API).
"""

from __future__ import annotations

import functools
import time

_t = time.perf_counter()
import llvmlite.binding as llvm  # noqa: E402 - timed: LLVM's library is most of a first compile's fixed cost

IMPORT_SECONDS = time.perf_counter() - _t  # importing llvmlite.binding (0 if it was imported before)

__all__ = ["init", "target_machine", "parse", "optimize", "jit", "assembly",
           "host_features", "host_description"]


@functools.lru_cache(maxsize=None)
def init() -> None:
    """Initialise LLVM's native target and asm printer (idempotent)."""
    try:  # llvmlite < 0.45 requires it; newer ones raise RuntimeError
        llvm.initialize()
    except Exception:  # pragma: no cover - depends on llvmlite version
        pass
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()


@functools.lru_cache(maxsize=None)
def host_features() -> str:
    """Host CPU feature string, e.g. ``'+avx512f,+fma,...'``."""
    init()
    return llvm.get_host_cpu_features().flatten()


@functools.lru_cache(maxsize=None)
def host_description() -> str:
    """``'<triple> <cpu> <features>'`` of this host (cache keys name the target with it)."""
    init()
    return f"{llvm.get_process_triple()} {llvm.get_host_cpu_name()} {host_features()}"


@functools.lru_cache(maxsize=None)
def target_machine(opt: int = 3) -> "llvm.TargetMachine":
    """Cached host ``TargetMachine`` (host CPU + features, JIT code model).

    Used for optimisation and assembly only: an MCJIT engine takes ownership
    of its target machine, so :func:`jit` gives each engine a fresh one.
    """
    return _new_target_machine(opt)


def _new_target_machine(opt: int = 3) -> "llvm.TargetMachine":
    init()
    target = llvm.Target.from_triple(llvm.get_process_triple())
    return target.create_target_machine(
        cpu=llvm.get_host_cpu_name(), features=host_features(), opt=opt,
        reloc="default", codemodel="jitdefault", jit=True)


def parse(ir_text: str) -> "llvm.ModuleRef":
    """Parse and verify textual IR; sets the host triple and data layout."""
    init()
    mod = llvm.parse_assembly(str(ir_text))
    mod.verify()
    tm = target_machine()
    mod.triple = tm.triple
    mod.data_layout = str(tm.target_data)
    return mod


def _tuning_options(level: int):
    try:  # llvmlite 0.44 accepts size_level, 0.45+ only speed_level
        pto = llvm.create_pipeline_tuning_options(speed_level=level, size_level=0)
    except TypeError:
        pto = llvm.create_pipeline_tuning_options(speed_level=level)
    pto.loop_vectorization = level >= 2
    pto.slp_vectorization = level >= 2
    pto.loop_interleaving = level >= 2
    pto.loop_unrolling = level >= 2
    return pto


def optimize(mod: "llvm.ModuleRef", level: int = 3) -> "llvm.ModuleRef":
    """Optimise ``mod`` in place with the new pass manager; returns it.

    The default module pipeline at ``level`` includes the always-inliner, so
    ``alwaysinline`` math functions are inlined before the loop vectoriser.
    """
    pto = _tuning_options(level)
    pb = llvm.create_pass_builder(target_machine(), pto)
    pb.getModulePassManager().run(mod, pb)
    return mod


def jit(ir_text, level: int = 3):
    """Compile IR text (or an ``llvmlite.ir.Module``) with MCJIT.

    Returns ``(engine, lookup)``; ``lookup(name)`` returns the address of the
    symbol ``name`` (0 if missing).  The engine owns the code: keep it alive.
    """
    mod = optimize(parse(ir_text), level)
    # the engine owns (and frees) its target machine: never pass the cached one
    engine = llvm.create_mcjit_compiler(mod, _new_target_machine())
    engine.finalize_object()
    engine.run_static_constructors()
    return engine, engine.get_function_address


def assembly(module, level: int = 3) -> str:
    """Host assembly for ``module`` (IR text, ``ir.Module`` or ``ModuleRef``).

    Text/``ir.Module`` inputs are parsed and optimised at ``level`` first;
    a ``ModuleRef`` is emitted as is.
    """
    if not isinstance(module, llvm.ModuleRef):
        module = optimize(parse(module), level)
    return target_machine().emit_assembly(module)
