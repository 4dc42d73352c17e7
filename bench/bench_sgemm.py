"""Benchmark: float32 matmul, numpy vs a JIT-compiled call through the BLAS pointer.

Usage: ``python bench/bench_sgemm.py [--repeats N] [--sizes 1024,2048] [--source numpy]``

For each size n (C[n,n] = A[n,n] @ B[n,n], 2*n^3 flops) it times
``numpy.matmul(A, B, out=C)`` and an llvmlite-JIT'd function that calls the
sgemm found by ``graphc.codegen.blas`` via ``inttoptr`` (the same code path
graphc's generated kernels use), interleaving the two so clock/thermal drift
hits both equally, and prints medians, GFLOP/s and ours/numpy.  Also times
``A.T @ B`` (numpy materializes nothing either: it passes the trans flag too).
The call into the JIT function goes through ctypes (about 1 us, negligible at
these sizes).  Not a test: numbers depend on the machine and its load.
"""

import argparse
import ctypes
import os
import sys
import time
import warnings

import numpy as np
from llvmlite import ir
import llvmlite.binding as llvm

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from graphc.codegen import blas  # noqa: E402


def _jit_gemm(fn_info, trans_a, trans_b):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            llvm.initialize()
        except Exception:
            pass
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    i64 = ir.IntType(64)
    i8p = ir.IntType(8).as_pointer()
    module = ir.Module(name="bench_gemm")
    module.triple = llvm.get_process_triple()
    f = ir.Function(module, ir.FunctionType(ir.VoidType(), [i8p] * 3 + [i64] * 6), "gemm")
    a, b, c, m, n, k, lda, ldb, ldc = f.args
    bld = ir.IRBuilder(f.append_basic_block("entry"))
    blas.emit_gemm(bld, fn_info, trans_a=trans_a, trans_b=trans_b, m=m, n=n, k=k,
                   a=a, lda=lda, b=b, ldb=ldb, c=c, ldc=ldc)
    bld.ret_void()
    mod = llvm.parse_assembly(str(module))
    mod.verify()
    tm = llvm.Target.from_default_triple().create_target_machine(opt=2)
    ee = llvm.create_mcjit_compiler(mod, tm)
    ee.finalize_object()
    cf = ctypes.CFUNCTYPE(None, *([ctypes.c_void_p] * 3), *([ctypes.c_int64] * 6))(
        ee.get_function_address("gemm"))
    cf._engine = ee  # keep alive
    return cf


def _median_times(fns, repeats):
    """Round-robin timing; returns (medians, minimums) in seconds."""
    times = [[] for _ in fns]
    for f in fns:  # warm-up (thread pool start, page faults)
        f()
        f()
    for _ in range(repeats):
        for i, f in enumerate(fns):
            t0 = time.perf_counter()
            f()
            times[i].append(time.perf_counter() - t0)
    return [float(np.median(t)) for t in times], [float(np.min(t)) for t in times]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1024,2048")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--source", default=None, help="numpy|scipy|system (default: auto)")
    args = ap.parse_args(argv)

    info = blas.get_blas([args.source] if args.source else None)
    print(f"BLAS: source={info.source} symbol={info.sgemm.symbol} "
          f"interface={info.interface} int{info.int_bits}")
    print(f"      {info.library}")
    if info.config:
        print(f"      {info.config}")
    print(f"      threads={info.get_num_threads()}  numpy {np.__version__}")
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        rng = np.random.default_rng(0)
        A = rng.standard_normal((n, n), dtype=np.float32)
        B = rng.standard_normal((n, n), dtype=np.float32)
        C_np = np.empty((n, n), np.float32)
        C_jit = np.empty((n, n), np.float32)
        flops = 2.0 * n ** 3
        for label, ta in (("A@B", False), ("A.T@B", True)):
            gemm = _jit_gemm(info.sgemm, ta, False)
            An = A.T if ta else A
            pa, pb, pc = A.ctypes.data, B.ctypes.data, C_jit.ctypes.data

            def run_np():
                np.matmul(An, B, out=C_np)

            def run_jit():
                gemm(pa, pb, pc, n, n, n, n, n, n)

            run_jit()
            np.matmul(An, B, out=C_np)
            err = float(np.max(np.abs(C_jit - C_np)) / (np.max(np.abs(C_np)) + 1e-30))
            reps = max(3, args.repeats if n <= 1024 else args.repeats // 2)
            (t_np, t_jit), (b_np, b_jit) = _median_times([run_np, run_jit], reps)
            rows.append((f"{n}^3 {label}", reps, t_np, t_jit, flops / t_np / 1e9,
                         flops / t_jit / 1e9, err, b_np / b_jit))

    print("medians; ratio = jit GF/s / numpy GF/s; 'best' = ratio of the fastest runs")
    hdr = (f"{'case':<14}{'reps':>5}{'numpy ms':>11}{'jit ms':>10}"
           f"{'numpy GF/s':>12}{'jit GF/s':>10}{'ratio':>7}{'best':>7}{'rel err':>10}")
    print(hdr)
    print("-" * len(hdr))
    for case, reps, t_np, t_jit, g_np, g_jit, err, best in rows:
        print(f"{case:<14}{reps:>5}{t_np * 1e3:>11.2f}{t_jit * 1e3:>10.2f}"
              f"{g_np:>12.1f}{g_jit:>10.1f}{g_jit / g_np:>7.3f}{best:>7.3f}{err:>10.1e}")


if __name__ == "__main__":
    main()
