"""Codegen benchmarks: W1 (fused elementwise chain), W2 (SGEMM), joins, compile and cache times.

    python bench/bench_codegen.py [--repeat 15] [--skip-peers]

W1: y = sigmoid(x*a + b) * tanh(x) + 0.5*x*x over 16M float32.
W2: C = A @ B for 1024^3 and 2048^3 float32.
Joins: pad / concatenate / stack fused with an elementwise op (us).
Prints medians (ms), ratios against numpy, and against JAX / PyTorch
(torch.compile) / PyTensor (Numba backend) when they are installed, all
measured in this one run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

import graphc as gc

A, B = 1.5, 0.25


def median_ms(fn, repeat: int, warmup: int = 2) -> float:
    """Median wall time of ``fn()`` in ms over ``repeat`` calls, after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts) * 1e3


def w1(n: int, repeat: int, peers: bool) -> list[tuple]:
    rng = np.random.default_rng(0)
    xv = rng.normal(size=n).astype(np.float32)
    x = gc.placeholder((n,), gc.float32, name="x")
    y = gc.sigmoid(x * A + B) * gc.tanh(x) + 0.5 * x * x
    t = time.perf_counter()
    f = gc.compile([x], y)
    compile_ms = (time.perf_counter() - t) * 1e3
    ref = 1 / (1 + np.exp(-(xv * A + B))) * np.tanh(xv) + 0.5 * xv * xv
    assert np.allclose(f(xv), ref, rtol=1e-5, atol=1e-6)
    rows = [("numpy", median_ms(lambda: 1 / (1 + np.exp(-(xv * A + B))) * np.tanh(xv) + 0.5 * xv * xv,
                                max(3, repeat // 3)))]
    rows.append(("graphc", median_ms(lambda: f(xv), repeat)))
    if peers:
        try:
            import jax
            import jax.numpy as jnp
            jf = jax.jit(lambda v: jax.nn.sigmoid(v * A + B) * jnp.tanh(v) + 0.5 * v * v)
            xj = jnp.asarray(xv)
            rows.append(("jax.jit", median_ms(lambda: jf(xj).block_until_ready(), repeat)))
        except ImportError:
            pass
        try:
            import torch
            tf = torch.compile(lambda v: torch.sigmoid(v * A + B) * torch.tanh(v) + 0.5 * v * v)
            xt = torch.from_numpy(xv)
            rows.append(("torch.compile", median_ms(lambda: tf(xt), repeat, warmup=3)))
        except Exception:  # noqa: BLE001 - torch missing or its compiler unavailable
            pass
        try:
            import pytensor
            import pytensor.tensor as pt
            v = pt.vector("v", dtype="float32")
            pf = pytensor.function([v], pt.sigmoid(v * np.float32(A) + np.float32(B)) * pt.tanh(v)
                                   + np.float32(0.5) * v * v, mode="NUMBA")
            rows.append(("pytensor (numba)", median_ms(lambda: pf(xv), repeat)))
        except ImportError:
            pass
    return [("W1 16M sigmoid*tanh chain", name, ms, compile_ms if name == "graphc" else None) for name, ms in rows]


def w2(size: int, repeat: int, peers: bool) -> list[tuple]:
    rng = np.random.default_rng(1)
    av = rng.normal(size=(size, size)).astype(np.float32)
    bv = rng.normal(size=(size, size)).astype(np.float32)
    a = gc.placeholder((size, size), gc.float32, name="a")
    b = gc.placeholder((size, size), gc.float32, name="b")
    f = gc.compile([a, b], a @ b)
    np.testing.assert_allclose(f(av, bv)[:4, :4], (av @ bv)[:4, :4], rtol=1e-3, atol=1e-3)
    flops = 2 * size ** 3
    rows = [("numpy", median_ms(lambda: av @ bv, repeat)), ("graphc", median_ms(lambda: f(av, bv), repeat))]
    if peers:
        try:
            import torch
            at, bt = torch.from_numpy(av), torch.from_numpy(bv)
            rows.append(("torch", median_ms(lambda: at @ bt, repeat)))
        except ImportError:
            pass
        try:
            import pytensor
            import pytensor.tensor as pt
            am, bm = pt.matrix("a", dtype="float32"), pt.matrix("b", dtype="float32")
            pf = pytensor.function([am, bm], am @ bm, mode="NUMBA")
            rows.append(("pytensor (numba)", median_ms(lambda: pf(av, bv), repeat)))
        except ImportError:
            pass
    return [(f"W2 SGEMM {size}^3", name, ms, flops / (ms * 1e-3) / 1e9) for name, ms in rows]


_CACHE_SCRIPT = """
import time, numpy as np
t0 = time.perf_counter()
import graphc as gc
t1 = time.perf_counter()
x = gc.placeholder((1 << 20,), gc.float32, name="x")
w = gc.parameter(np.ones((256, 64), np.float32), name="w")
h = gc.placeholder((128, 256), gc.float32, name="h")
y = gc.sigmoid(x * 1.5 + 0.25) * gc.tanh(x) + 0.5 * x * x
z = gc.log_softmax(gc.relu(h @ w), axis=-1)
f = gc.compile([x, h], [y, z])
f(np.ones(1 << 20, np.float32), np.ones((128, 256), np.float32))
t2 = time.perf_counter()
print(f"{(t1 - t0) * 1e3:.1f} {(t2 - t1) * 1e3:.1f} {int(f.cache_hit)}")
"""


def joins(repeat: int) -> list[tuple]:
    """pad / concatenate / stack fused with an elementwise op, against numpy doing the same (the
    loop split and the unrolled short rows of ``codegen.emit._emit_parts``)."""
    rng = np.random.default_rng(0)

    def arr(*shape):
        return rng.standard_normal(shape).astype(np.float32)
    big_a, big_b, thin_a, thin_b, ten_a, ten_b = arr(256, 392), arr(256, 392), arr(20000, 3), arr(20000, 3), \
        arr(5000, 10), arr(5000, 10)
    cases = [
        ("concat axis 1, 256x392 x2", (big_a, big_b), lambda a, b: gc.relu(gc.concatenate([a, b], axis=1)) * 2,
         lambda a, b: np.maximum(np.concatenate([a, b], axis=1), 0) * 2),
        ("concat axis 0, 256x392 x2", (big_a, big_b), lambda a, b: gc.relu(gc.concatenate([a, b], axis=0)) * 2,
         lambda a, b: np.maximum(np.concatenate([a, b], axis=0), 0) * 2),
        ("pad both axes, 256x392", (big_a,), lambda a: gc.pad(a, ((1, 1), (1, 1))) * 2,
         lambda a: np.pad(a, ((1, 1), (1, 1))) * 2),
        ("stack last axis, 256x392 x2", (big_a, big_b), lambda a, b: gc.stack([a, b], axis=-1) * 2,
         lambda a, b: np.stack([a, b], axis=-1) * 2),
        ("pad rows of 3 to 5, 20000", (thin_a,), lambda a: gc.pad(a, ((0, 0), (1, 1))) * 2,
         lambda a: np.pad(a, ((0, 0), (1, 1))) * 2),
        ("concat rows of 3, 20000 x2", (thin_a, thin_b), lambda a, b: gc.concatenate([a, b], axis=1) * 2,
         lambda a, b: np.concatenate([a, b], axis=1) * 2),
        ("concat axis 0, 5000x10 x2", (ten_a, ten_b), lambda a, b: gc.concatenate([a, b], axis=0) * 2,
         lambda a, b: np.concatenate([a, b], axis=0) * 2),
        ("add (reference), 256x392 x2", (big_a, big_b), lambda a, b: gc.relu(a + b) * 2,
         lambda a, b: np.maximum(a + b, 0) * 2),
    ]
    rows = []
    for name, values, build, ref in cases:
        ins = [gc.placeholder(v.shape, gc.float32) for v in values]
        f = gc.compile(ins, build(*ins))
        np.testing.assert_array_equal(f(*values), ref(*values))
        rows.append((name, "numpy", median_ms(lambda: ref(*values), repeat, warmup=5) * 1e3, None))
        rows.append((name, "graphc", median_ms(lambda: f(*values), repeat, warmup=5) * 1e3, None))
    return rows


def cache_times() -> list[tuple]:
    """Cold compile (empty cache) and warm compile (a second process, same graph) to first call."""
    with tempfile.TemporaryDirectory() as d:
        env = dict(os.environ, GRAPHC_CACHE_DIR=d)
        rows = []
        for label in ("cold (new cache)", "warm (second process)"):
            out = subprocess.run([sys.executable, "-c", _CACHE_SCRIPT], env=env, capture_output=True, text=True,
                                 check=True).stdout.split()
            rows.append(("compile to first call", label, float(out[1]), f"import {out[0]} ms, hit={out[2]}"))
        return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--repeat", type=int, default=15)
    p.add_argument("--n", type=int, default=16 * 1024 * 1024)
    p.add_argument("--skip-peers", action="store_true")
    args = p.parse_args(argv)
    peers = not args.skip_peers
    print(f"graphc codegen benchmarks; threads={os.environ.get('GRAPHC_NUM_THREADS', 'auto')}, "
          f"numpy {np.__version__}")
    rows = w1(args.n, args.repeat, peers)
    for size in (1024, 2048):
        rows += w2(size, max(5, args.repeat // 2), peers)
    base = {}
    print(f"\n{'workload':<28} {'impl':<15} {'median ms':>10} {'vs numpy':>9}  extra")
    for work, name, ms, extra in rows:
        if name == "numpy":
            base[work] = ms
        ratio = base.get(work, ms) / ms
        if isinstance(extra, float) and work.startswith("W2"):
            ex = f"{extra:.1f} GFLOP/s"
        elif extra is not None:
            ex = f"compile {extra:.0f} ms"
        else:
            ex = ""
        print(f"{work:<28} {name:<15} {ms:>10.2f} {ratio:>8.2f}x  {ex}")
    print(f"\n{'joins (fused with an elementwise op)':<28} {'impl':<15} {'median us':>10} {'vs numpy':>9}")
    for work, name, us, _ in joins(max(200, args.repeat)):
        if name == "numpy":
            base[work] = us
        print(f"{work:<28} {name:<15} {us:>10.1f} {base[work] / us:>8.2f}x")
    print()
    for work, label, ms, extra in cache_times():
        print(f"{work:<28} {label:<22} {ms:>8.1f} ms  ({extra})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
