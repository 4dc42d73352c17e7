"""Benchmark the native thread pool (graphc.codegen.threadpool).

Usage: ``python bench/bench_threadpool.py [--n 16777216] [--repeats 21]``

1. Speedup: a 16M-element float32 elementwise loop, JIT-compiled (O2,
   vectorized), run single-threaded (one direct call of the task over the
   whole range) vs split into chunks with ``gc_parallel_for`` on all pool
   threads.  Two kernels: ``axpb`` (y = 2.5*x + 1, memory-bound) and
   ``poly`` (degree-16 Horner polynomial, compute-bound).  numpy shown for
   reference.
2. Overhead of one empty ``gc_parallel_for`` call (chunks that do nothing),
   measured inside JIT code (a loop of 100k calls, so no ctypes in the
   timing): "hot" = back-to-back calls (workers spinning; with empty chunks
   the caller usually finishes them before a worker joins); "forced handoff"
   = chunks that wait until all threads have started one (a full round
   trip through every worker); "cold" = one call
   after the workers went to sleep on the futex (measured through ctypes,
   minus the cost of a ctypes call to an empty JIT function).
Not a test: numbers depend on the machine and its load.
"""

import argparse
import ctypes
import os
import sys
import time

import numpy as np
from llvmlite import ir
import llvmlite.binding as llvm

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from graphc.codegen import threadpool as tp  # noqa: E402
from graphc.codegen.loops import for_range  # noqa: E402

I32 = ir.IntType(32)
I64 = ir.IntType(64)
F32 = ir.FloatType()
I8P = ir.IntType(8).as_pointer()
# ctx: {float* x, float* y, i64 total, i64 chunk}
CTX = ir.LiteralStructType([F32.as_pointer(), F32.as_pointer(), I64, I64])


class Ctx(ctypes.Structure):
    _fields_ = [("x", ctypes.c_void_p), ("y", ctypes.c_void_p),
                ("total", ctypes.c_int64), ("chunk", ctypes.c_int64)]


def _field(b, st, k):
    return b.load(b.gep(st, [ir.Constant(I32, 0), ir.Constant(I32, k)]))


def build(pool):
    m = ir.Module(name="bench_tp")
    m.triple = llvm.get_process_triple()

    def elementwise(name, body_fn):
        f = ir.Function(m, tp.TASK_TYPE, name)
        ctx, c = f.args
        b = ir.IRBuilder(f.append_basic_block("entry"))
        st = b.bitcast(ctx, CTX.as_pointer())
        x, y, total, chunk = (_field(b, st, k) for k in range(4))
        start = b.mul(c, chunk)
        end = b.add(start, chunk)
        end = b.select(b.icmp_signed("<", end, total), end, total)
        with for_range(b, start, end) as i:
            v = b.load(b.gep(x, [i]))
            b.store(body_fn(b, v), b.gep(y, [i]))
        b.ret_void()
        return f

    def axpb(b, v):
        return b.fadd(b.fmul(v, ir.Constant(F32, 2.5)), ir.Constant(F32, 1.0))

    def poly(b, v):
        acc = ir.Constant(F32, 0.5)
        for k in range(16):
            acc = b.fadd(b.fmul(acc, v), ir.Constant(F32, 1.0 / (k + 2)))
        return acc

    tasks = {"axpb": elementwise("axpb", axpb), "poly": elementwise("poly", poly)}
    for name, f in tasks.items():
        # serial_<k>(ctx): task(ctx, 0) with chunk = total
        s = ir.Function(m, ir.FunctionType(ir.VoidType(), [I8P]), f"serial_{name}")
        b = ir.IRBuilder(s.append_basic_block("entry"))
        b.call(f, [s.args[0], ir.Constant(I64, 0)])
        b.ret_void()
        # par_<k>(ctx, n_chunks)
        p = ir.Function(m, ir.FunctionType(ir.VoidType(), [I8P, I64]), f"par_{name}")
        b = ir.IRBuilder(p.append_basic_block("entry"))
        tp.emit_parallel_for(b, f, p.args[0], p.args[1], pool=pool)
        b.ret_void()

    # empty task and a driver looping `reps` parallel calls inside JIT code
    empty = ir.Function(m, tp.TASK_TYPE, "empty_task")
    ir.IRBuilder(empty.append_basic_block("entry")).ret_void()
    d = ir.Function(m, ir.FunctionType(ir.VoidType(), [I64, I64]), "overhead")
    reps, nch = d.args
    b = ir.IRBuilder(d.append_basic_block("entry"))
    with for_range(b, 0, reps):
        tp.emit_parallel_for(b, empty, ir.Constant(I8P, None), nch, pool=pool)
    b.ret_void()
    # handoff: every chunk increments a counter, then waits until all
    # n_chunks have started -> each call needs every thread to take part
    # (forced round trip through the pool).  ctx = {i64 counter, i64 n}.
    hctx_t = ir.LiteralStructType([I64, I64])
    h = ir.Function(m, tp.TASK_TYPE, "handoff_task")
    entry = h.append_basic_block("entry")
    spin = h.append_basic_block("spin")
    out = h.append_basic_block("out")
    b = ir.IRBuilder(entry)
    st = b.bitcast(h.args[0], hctx_t.as_pointer())
    cnt = b.gep(st, [ir.Constant(I32, 0), ir.Constant(I32, 0)])
    total = b.load(b.gep(st, [ir.Constant(I32, 0), ir.Constant(I32, 1)]))
    b.atomic_rmw("add", cnt, ir.Constant(I64, 1), "acq_rel")
    b.branch(spin)
    b.position_at_end(spin)
    v = b.load_atomic(cnt, "acquire", 8)
    b.cbranch(b.icmp_signed("<", v, total), spin, out)
    b.position_at_end(out)
    b.ret_void()
    d = ir.Function(m, ir.FunctionType(ir.VoidType(), [I64, I64]), "handoff")
    reps, nch = d.args
    b = ir.IRBuilder(d.append_basic_block("entry"))
    hc = b.alloca(hctx_t)
    b.store(nch, b.gep(hc, [ir.Constant(I32, 0), ir.Constant(I32, 1)]))
    with for_range(b, 0, reps):
        b.store(ir.Constant(I64, 0), b.gep(hc, [ir.Constant(I32, 0), ir.Constant(I32, 0)]))
        tp.emit_parallel_for(b, h, hc, nch, pool=pool)
    b.ret_void()

    noop = ir.Function(m, ir.FunctionType(ir.VoidType(), [I64, I64]), "noop")
    ir.IRBuilder(noop.append_basic_block("entry")).ret_void()

    ee = tp._compile(m)
    addr = ee.get_function_address
    fns = {"_engine": ee}
    for name in tasks:
        fns[f"serial_{name}"] = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(addr(f"serial_{name}"))
        fns[f"par_{name}"] = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int64)(
            addr(f"par_{name}"))
    for name in ("overhead", "noop", "handoff"):
        fns[name] = ctypes.CFUNCTYPE(None, ctypes.c_int64, ctypes.c_int64)(addr(name))
    return fns


def median_time(f, repeats):
    f()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def interleaved(fns, repeats):
    """Run the functions round-robin (so background load hits all of them
    alike); returns (medians, minimums) in seconds."""
    for f in fns:
        f()
    ts = [[] for _ in fns]
    for _ in range(repeats):
        for i, f in enumerate(fns):
            t0 = time.perf_counter()
            f()
            ts[i].append(time.perf_counter() - t0)
    return [float(np.median(t)) for t in ts], [float(np.min(t)) for t in ts]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=16 * 1024 * 1024)
    ap.add_argument("--repeats", type=int, default=21)
    args = ap.parse_args(argv)

    pool = tp.get_pool()
    pool.start()
    nt = pool.num_threads
    print(f"pool: {nt} threads ({pool.num_workers_running} workers + caller), "
          f"futex={pool.uses_futex}, spin {pool.spin_us:.0f} us "
          f"({pool.spin_iters_per_us:.1f} spin iters/us)")
    fns = build(pool)

    coeffs = [0.5] + [1.0 / (k + 2) for k in range(16)]
    sizes = [args.n] + ([1 << 20] if args.n > (1 << 20) else [])
    n_chunks = 8 * nt
    print(f"\nelementwise float32 loops, {n_chunks} chunks, median of {args.repeats}")
    hdr = (f"{'kernel':<8}{'elements':>10}{'numpy ms':>10}{'1 thread ms':>13}"
           f"{f'{nt} threads ms':>15}{'speedup':>9}")
    print(hdr)
    print("-" * len(hdr))
    for n in sizes:
        x = np.random.default_rng(0).random(n, dtype=np.float32)
        y = np.empty_like(x)
        tmp = np.empty_like(x)
        chunk = -(-n // n_chunks)
        ctx = Ctx(x.ctypes.data, y.ctypes.data, n, n)  # serial: one chunk = all
        ctx_p = Ctx(x.ctypes.data, y.ctypes.data, n, chunk)
        a, ap_ = ctypes.addressof(ctx), ctypes.addressof(ctx_p)
        reps = args.repeats if n >= (1 << 22) else args.repeats * 10

        def np_axpb():
            np.multiply(x, np.float32(2.5), out=tmp)
            tmp.__iadd__(np.float32(1))

        def np_poly():
            tmp.fill(coeffs[0])
            for c in coeffs[1:]:
                tmp.__imul__(x)
                tmp.__iadd__(np.float32(c))

        for name, np_fn in (("axpb", np_axpb), ("poly", np_poly)):
            s_fn, p_fn = fns[f"serial_{name}"], fns[f"par_{name}"]
            s_fn(a)
            y_serial = y.copy()
            y.fill(0)
            p_fn(ap_, n_chunks)
            assert np.array_equal(y, y_serial), "parallel result differs from serial"
            (t_np, t1, tn), (b_np, b1, bn) = interleaved(
                [np_fn, lambda: s_fn(a), lambda: p_fn(ap_, n_chunks)], reps)
            print(f"{name:<8}{n:>10}{t_np * 1e3:>10.3f}{t1 * 1e3:>13.3f}{tn * 1e3:>15.3f}"
                  f"{t1 / tn:>9.2f}x   (best of {reps}: {b1 / bn:.2f}x)")

    print("\nempty gc_parallel_for overhead (per call)")
    reps = 100_000
    ov = fns["overhead"]
    for label, nch in (("hot, n_chunks=threads", nt), ("hot, n_chunks=64", 64)):
        t = median_time(lambda: ov(reps, nch), 5) / reps
        print(f"  {label:<28}{t * 1e6:8.3f} us")
    if nt > 1:
        hf = fns["handoff"]
        t = median_time(lambda: hf(reps // 10, nt), 5) / (reps // 10)
        print(f"  {'hot, forced handoff (all)':<28}{t * 1e6:8.3f} us"
              "   (every thread must run a chunk)")
    t = median_time(lambda: ov(reps, 1), 5) / reps
    print(f"  {'n_chunks=1 (inline path)':<28}{t * 1e6:8.3f} us")
    # cold: workers asleep on the futex (sleep >> spin time between calls)
    noop = fns["noop"]
    t_noop = median_time(lambda: noop(1, nt), 201)
    cold = []
    for _ in range(101):
        time.sleep(0.002)
        t0 = time.perf_counter()
        ov(1, nt)
        cold.append(time.perf_counter() - t0)
    print(f"  {'cold (workers asleep)':<28}{(np.median(cold) - t_noop) * 1e6:8.3f} us"
          f"   (ctypes call itself {t_noop * 1e6:.2f} us, subtracted)")
    # serial pool for comparison
    pool.set_num_threads(1)
    t = median_time(lambda: ov(reps, nt), 5) / reps
    print(f"  {'pool with 1 thread (serial)':<28}{t * 1e6:8.3f} us")
    pool.set_num_threads(nt)


if __name__ == "__main__":
    main()
