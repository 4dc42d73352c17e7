"""Benchmark: fused  y = sigmoid(x*a + b) * tanh(x) + 0.5*x*x  over float32.

Compares (single thread, medians of several runs):
  * graphc JIT loop using the inline mathlib (gc.sigmoid / gc.tanh, vectorised),
  * the same JIT loop calling libm ``expf``/``tanhf`` (not vectorisable),
  * numpy (one temporary per operation).

Usage:  python bench/bench_mathlib.py [--n 16777216] [--repeat 7]
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import time

import numpy as np
from llvmlite import ir
import llvmlite.binding as llvm

from graphc.codegen import llvm_target
from graphc.codegen.mathlib import F32, I64, get_math_function

A, B = np.float32(0.75), np.float32(-0.25)


def build(use_libm: bool) -> ir.Module:
    """void k(float* x, float* y, i64 n, float a, float b)."""
    m = ir.Module(name="bench")
    ptr = ir.PointerType(F32)
    k = ir.Function(m, ir.FunctionType(ir.VoidType(), [ptr, ptr, I64, F32, F32]), "k")
    x_p, y_p, n, a, b_ = k.args
    x_p.add_attribute("noalias")
    y_p.add_attribute("noalias")
    if use_libm:
        expf = ir.Function(m, ir.FunctionType(F32, [F32]), "expf")
        tanhf = ir.Function(m, ir.FunctionType(F32, [F32]), "tanhf")
    else:
        sig = get_math_function(m, "sigmoid", F32)
        tanh = get_math_function(m, "tanh", F32)
    entry, loop, done = (k.append_basic_block(s) for s in ("entry", "loop", "done"))
    bld = ir.IRBuilder(entry)
    bld.cbranch(bld.icmp_signed(">", n, ir.Constant(I64, 0)), loop, done)
    bld.position_at_end(loop)
    i = bld.phi(I64)
    i.add_incoming(ir.Constant(I64, 0), entry)
    x = bld.load(bld.gep(x_p, [i], inbounds=True, source_etype=F32), typ=F32)
    t = bld.fadd(bld.fmul(x, a), b_)
    one = ir.Constant(F32, 1.0)
    if use_libm:
        s = bld.fdiv(one, bld.fadd(one, bld.call(expf, [bld.fneg(t)])))
        th = bld.call(tanhf, [x])
    else:
        s = bld.call(sig, [t])
        th = bld.call(tanh, [x])
    y = bld.fadd(bld.fmul(s, th), bld.fmul(bld.fmul(ir.Constant(F32, 0.5), x), x))
    bld.store(y, bld.gep(y_p, [i], inbounds=True, source_etype=F32))
    i1 = bld.add(i, ir.Constant(I64, 1))
    i.add_incoming(i1, loop)
    bld.cbranch(bld.icmp_signed("<", i1, n), loop, done)
    bld.position_at_end(done)
    bld.ret_void()
    return m


def compile_kernel(use_libm: bool):
    if use_libm:  # point the JIT at this process's libm symbols
        llvm_target.init()
        libm = ctypes.CDLL(ctypes.util.find_library("m"))
        for sym in ("expf", "tanhf"):
            llvm.add_symbol(sym, ctypes.cast(getattr(libm, sym), ctypes.c_void_p).value)
    engine, lookup = llvm_target.jit(build(use_libm))
    proto = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                             ctypes.c_float, ctypes.c_float)
    f = proto(lookup("k"))

    def run(x, y):
        f(x.ctypes.data, y.ctypes.data, x.size, A, B)
        return y
    return engine, run


def numpy_version(x):
    return 1 / (1 + np.exp(-(x * A + B))) * np.tanh(x) + np.float32(0.5) * x * x


def median_ms(fn, repeat):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(times)), float(np.min(times))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1 << 24)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--no-libm", action="store_true", help="skip the libm variant")
    args = ap.parse_args()

    rng = np.random.default_rng(0)
    x = rng.standard_normal(args.n).astype(np.float32) * np.float32(4)
    y = np.empty_like(x)
    ref = numpy_version(x.astype(np.float64)).astype(np.float32)

    rows = []
    engines = []   # the engines own the machine code: keep them alive
    engine, inline_run = compile_kernel(False)
    engines.append(engine)
    inline_run(x, y)
    err_inline = float(np.max(np.abs(y - ref)))
    rows.append(("graphc JIT, inline mathlib",) + median_ms(lambda: inline_run(x, y), args.repeat))
    try:
        if args.no_libm:
            raise RuntimeError("--no-libm")
        engine, libm_run = compile_kernel(True)
        engines.append(engine)
        libm_run(x, y)
        rows.append(("graphc JIT, libm expf/tanhf",)
                    + median_ms(lambda: libm_run(x, y), args.repeat))
    except Exception as exc:  # pragma: no cover - symbol resolution issues
        print(f"(libm variant skipped: {exc})")
    rows.append(("numpy",) + median_ms(lambda: numpy_version(x), args.repeat))

    base = rows[-1][1]
    print(f"y = sigmoid(x*a+b)*tanh(x) + 0.5*x*x, n = {args.n:,} float32, "
          f"single thread, {args.repeat} runs")
    print(f"{'variant':32s} {'median ms':>10s} {'min ms':>9s} {'numpy/variant':>14s}")
    for name, med, mn in rows:
        print(f"{name:32s} {med:10.2f} {mn:9.2f} {base / med:13.1f}x")
    print(f"max |inline - float64 reference| = {err_inline:.3g}")


if __name__ == "__main__":
    main()
