"""Accuracy and vectorisation tests for graphc.codegen.mathlib.

Each math function is JIT-compiled inside a loop kernel
``void k(T* x, [T* w,] T* y, i64 n)`` and compared with numpy over
* random bit patterns (every exponent, subnormals, both signs),
* dense uniform sweeps of the interesting range of each function,
* a list of special values (0, -0, +-inf, nan, subnormals, overflow and
  underflow edges, ...), where inf/nan/zero results must match exactly.

Errors are measured in ulps through the integer representation.  The
required bound is 4 ulp vs numpy (f32 and f64); sigmoid/softplus have no
numpy ufunc, their reference is the stable formula evaluated in higher
precision (f64 for f32, long double for f64) and rounded.
"""

from __future__ import annotations

import ctypes

import numpy as np
import pytest
from llvmlite import ir

from graphc.codegen import llvm_target
from graphc.codegen.mathlib import (ARITY, F32, F64, I64, MATH_FUNCTIONS,
                                    SINCOS_ACCURATE_RANGE, get_math_function)

DTYPES = (np.float32, np.float64)
MAX_ULP = 4
N_BITS = {np.float32: 4_000_000, np.float64: 1_000_000}  # random bit patterns
N_SWEEP = {np.float32: 1_000_000, np.float64: 500_000}   # per dense sweep

EXTENDED_LD = np.finfo(np.longdouble).nmant >= 63


# --------------------------------------------------------------------------
# kernels
# --------------------------------------------------------------------------

def build_kernel_module(name: str, t) -> ir.Module:
    """``void k(T* x, [T* w,] T* y, i64 n) { y[i] = name(x[i] [, w[i]]) }``."""
    m = ir.Module(name=f"mathlib_{name}")
    fn = get_math_function(m, name, t)
    nargs = ARITY[name]
    ptr = ir.PointerType(t)
    k = ir.Function(m, ir.FunctionType(ir.VoidType(), [ptr] * (nargs + 1) + [I64]), "k")
    for a in k.args[:-1]:
        a.add_attribute("noalias")
    entry, loop, done = (k.append_basic_block(s) for s in ("entry", "loop", "done"))
    b = ir.IRBuilder(entry)
    n = k.args[-1]
    b.cbranch(b.icmp_signed(">", n, ir.Constant(I64, 0)), loop, done)
    b.position_at_end(loop)
    i = b.phi(I64)
    i.add_incoming(ir.Constant(I64, 0), entry)
    args = [b.load(b.gep(p, [i], inbounds=True, source_etype=t), typ=t)
            for p in k.args[:nargs]]
    b.store(b.call(fn, args), b.gep(k.args[nargs], [i], inbounds=True, source_etype=t))
    i_next = b.add(i, ir.Constant(I64, 1))
    i.add_incoming(i_next, loop)
    b.cbranch(b.icmp_signed("<", i_next, n), loop, done)
    b.position_at_end(done)
    b.ret_void()
    return m


_KERNELS: dict = {}


def kernel(name: str, dtype):
    """Compiled kernel as a numpy-level function (cached)."""
    dtype = np.dtype(dtype)
    key = (name, dtype)
    if key not in _KERNELS:
        t = F32 if dtype == np.float32 else F64
        engine, lookup = llvm_target.jit(build_kernel_module(name, t))
        nargs = ARITY[name]
        proto = ctypes.CFUNCTYPE(None, *([ctypes.c_void_p] * (nargs + 1)), ctypes.c_int64)
        _KERNELS[key] = (engine, proto(lookup("k")))
    _, cfunc = _KERNELS[key]

    def call(*xs):
        xs = [np.ascontiguousarray(x, dtype=dtype) for x in xs]
        y = np.empty_like(xs[0])
        cfunc(*[x.ctypes.data for x in xs], y.ctypes.data, y.size)
        return y
    return call


# --------------------------------------------------------------------------
# references and ulp distance
# --------------------------------------------------------------------------

def ulp_dist(a, b):
    """|ulp distance| between same-dtype arrays; nan==nan, nan vs number = inf."""
    a = np.asarray(a)
    b = np.asarray(b)
    ut = np.uint32 if a.dtype == np.float32 else np.uint64
    top = ut(1 << (a.dtype.itemsize * 8 - 1))

    def key(v):  # monotone map float -> unsigned int (-0 and +0 adjacent)
        u = v.view(ut)
        return np.where((u & top) != 0, ~u, u | top)
    ka, kb = key(a), key(b)
    d = (np.maximum(ka, kb) - np.minimum(ka, kb)).astype(np.float64)
    na, nb = np.isnan(a), np.isnan(b)
    d[na & nb] = 0
    d[na ^ nb] = np.inf
    return d


def _sigmoid(x):
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def _softplus(x):
    return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))


NUMPY = {
    "exp": np.exp, "log": np.log, "log1p": np.log1p, "expm1": np.expm1,
    "tanh": np.tanh, "sin": np.sin, "cos": np.cos, "pow": np.power,
    "sqrt": np.sqrt, "floor": np.floor, "ceil": np.ceil, "fabs": np.fabs,
}
PRECISE_ONLY = {"sigmoid": _sigmoid, "softplus": _softplus}


def wide_dtype(dtype):
    return np.float64 if dtype == np.float32 else np.longdouble


def reference(name, dtype, *xs):
    """numpy's result in ``dtype`` (sigmoid/softplus: higher precision)."""
    if name in PRECISE_ONLY:
        w = wide_dtype(dtype)
        return PRECISE_ONLY[name](*[x.astype(w) for x in xs]).astype(dtype)
    return NUMPY[name](*xs)


def precise(name, dtype, *xs):
    w = wide_dtype(dtype)
    f = PRECISE_ONLY.get(name) or NUMPY[name]
    return f(*[x.astype(w) for x in xs]).astype(dtype)


# --------------------------------------------------------------------------
# inputs
# --------------------------------------------------------------------------

def random_bits(rng, dtype, n):
    ut = np.uint32 if dtype == np.float32 else np.uint64
    return rng.integers(0, np.iinfo(ut).max, size=n, dtype=ut, endpoint=True).view(dtype)


def special_values(dtype):
    fi = np.finfo(dtype)
    tiny, sub_min = fi.smallest_normal, fi.smallest_subnormal
    vals = [0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -1.0, 0.5, -0.5, 2.0, -2.0, 3.0,
            -3.0, 10.0, -10.0, 1e-3, -1e-3, tiny, -tiny, sub_min, -sub_min,
            tiny - sub_min, -(tiny - sub_min), fi.max, -fi.max, fi.eps, -fi.eps,
            1e4, -1e4, 1e5, -1e5, 1e-30, -1e-30, 20.0, -20.0, 40.0, 100.0, -100.0,
            np.pi / 2, np.pi, 1.5 * np.pi, -np.pi, 1e30, -1e30, 1e-40, -1e-40]
    with np.errstate(all="ignore"):
        lmax = np.log(fi.max)
        edges = [lmax, np.log(sub_min), np.log(sub_min / 2), np.log(tiny), -np.log(sub_min),
                 np.arctanh(1 - fi.epsneg), 0.5 * np.log(2), -0.5 * np.log(2)]
    v = np.array(vals + edges + [-e for e in edges], dtype=dtype)
    with np.errstate(all="ignore"):
        around = [np.nextafter(v, dtype(np.inf)), np.nextafter(v, dtype(-np.inf))]
    if dtype == np.float64:
        v = np.concatenate([v, np.array([709.78, 709.79, -745.13, -745.14, 1e300, -1e300,
                                         1e-300, 1e-310, -1e-310], dtype=dtype)])
    else:
        v = np.concatenate([v, np.array([88.72283, 88.72284, 88.7229, 89.0, -87.33,
                                         -103.27, -103.28, -103.97, -103.98, -104.0,
                                         -110.0, 1e-45, -1e-45], dtype=dtype)])
    return np.concatenate([v] + around).astype(dtype)


SWEEPS = {  # dense uniform ranges, in addition to random bits and specials
    "exp": [(-110, 90), (-2, 2), (-750, 720)],
    "expm1": [(-20, 90), (-1, 1), (-1e-6, 1e-6)],
    "log": [(0, 4), (0.5, 2), (0, 1e-36)],
    "log1p": [(-1, 4), (-1e-3, 1e-3), (-1, -0.9)],
    "tanh": [(-10, 10), (-1, 1), (-1e-3, 1e-3)],
    "sigmoid": [(-110, 110), (-5, 5), (-750, 750)],
    "softplus": [(-110, 110), (-5, 5), (-1e4, 1e4)],
    "sin": [(-10, 10), (-1e4, 1e4), (-1e8, 1e8)],
    "cos": [(-10, 10), (-1e4, 1e4), (-1e8, 1e8)],
    "sqrt": [(0, 10)], "floor": [(-10, 10)], "ceil": [(-10, 10)], "fabs": [(-10, 10)],
}


def unary_inputs(name, dtype, seed):
    rng = np.random.default_rng(seed)
    parts = [random_bits(rng, dtype, N_BITS[dtype]), special_values(dtype)]
    for lo, hi in SWEEPS[name]:
        parts.append(rng.uniform(lo, hi, N_SWEEP[dtype]).astype(dtype))
    if name == "log":   # every subnormal binade
        ut = np.uint32 if dtype == np.float32 else np.uint64
        mant = 23 if dtype == np.float32 else 52
        parts.append(rng.integers(1, 1 << mant, size=100_000, dtype=ut).view(dtype))
    x = np.concatenate(parts)
    if name in ("sin", "cos"):   # no Payne-Hanek: accuracy claimed below the range
        lim = SINCOS_ACCURATE_RANGE["f32" if dtype == np.float32 else "f64"]
        x = x[~(np.abs(x) >= lim)]
    return (x,)


def pow_inputs(dtype, seed):
    rng = np.random.default_rng(seed)
    n, m = N_BITS[dtype] // 2, N_SWEEP[dtype]
    xs = [random_bits(rng, dtype, n), rng.uniform(0, 4, m), rng.uniform(0, 1e3, m),
          # x near 1 with large |y|: needs an accurate log (results up to ~max)
          1 + rng.uniform(-1e-3, 1e-3, m),
          # negative bases with integer exponents
          -rng.uniform(0, 3, m)]
    ys = [random_bits(rng, dtype, n), rng.uniform(-40, 40, m), rng.uniform(-100, 100, m),
          rng.uniform(-7e5, 7e5, m), np.round(rng.uniform(-60, 60, m))]
    s = special_values(dtype)
    sx, sy = np.meshgrid(s, s)
    xs += [sx.ravel()]
    ys += [sy.ravel()]
    with np.errstate(all="ignore"):
        return (np.concatenate(xs).astype(dtype), np.concatenate(ys).astype(dtype))


# --------------------------------------------------------------------------
# tests
# --------------------------------------------------------------------------

EXACT = ("sqrt", "floor", "ceil", "fabs")


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("name", MATH_FUNCTIONS)
def test_accuracy(name, dtype):
    seed = MATH_FUNCTIONS.index(name) + (100 if dtype == np.float64 else 0)
    xs = pow_inputs(dtype, seed) if name == "pow" else unary_inputs(name, dtype, seed)
    got = kernel(name, dtype)(*xs)
    with np.errstate(all="ignore"):
        ref = reference(name, dtype, *xs)
    d = ulp_dist(got, ref)
    worst = int(np.argmax(d))
    detail = (f"{name} {np.dtype(dtype).name}: max {d[worst]} ulp at "
              f"{[x[worst] for x in xs]}: got {got[worst]!r}, numpy {ref[worst]!r}")
    assert d[worst] <= (0 if name in EXACT else MAX_ULP), detail
    # inf, nan and zeros (with their sign) must be exact
    exact = ~np.isfinite(ref) | (ref == 0)
    assert np.all(d[exact] == 0), (
        f"{name}: special results differ at "
        f"{[x[exact][d[exact] > 0][:5] for x in xs]}: {got[exact][d[exact] > 0][:5]}")


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("name", [n for n in MATH_FUNCTIONS if n not in EXACT])
def test_accuracy_vs_high_precision(name, dtype):
    """Tighter check against a higher-precision reference (<= 2 ulp)."""
    if dtype == np.float64 and not EXTENDED_LD:
        pytest.skip("long double is not an extended type here")
    rng = np.random.default_rng(7)
    n = 300_000 if dtype == np.float32 else 100_000
    if name == "pow":
        xs = (rng.uniform(0, 8, n).astype(dtype), rng.uniform(-30, 30, n).astype(dtype))
    else:
        lo, hi = SWEEPS[name][0]
        xs = (np.concatenate([rng.uniform(lo, hi, n), rng.uniform(-3, 3, n)]).astype(dtype),)
    got = kernel(name, dtype)(*xs)
    with np.errstate(all="ignore"):
        ref = precise(name, dtype, *xs)
    d = ulp_dist(got, ref)
    assert d.max() <= 2, f"{name}: {d.max()} ulp at {[x[np.argmax(d)] for x in xs]}"


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_sincos_beyond_range_bounded(dtype):
    lim = SINCOS_ACCURATE_RANGE["f32" if dtype == np.float32 else "f64"]
    rng = np.random.default_rng(3)
    x = random_bits(rng, dtype, 100_000)
    x = x[np.abs(x) >= lim]
    for name in ("sin", "cos"):
        y = kernel(name, dtype)(x)
        fin = np.isfinite(x)
        assert np.all(np.abs(y[fin]) <= 1)
        assert np.all(np.isnan(y[~fin]))


def _pow_specials(dtype):
    t = dtype
    inf, nan = np.inf, np.nan
    cases = [  # (x, y, expected) per C99 Annex F
        (2, 0, 1), (nan, 0, 1), (nan, -0.0, 1), (1, nan, 1), (1, inf, 1), (1, -inf, 1),
        (-1, inf, 1), (-1, -inf, 1), (-2, 0.5, nan), (-8, 1 / 3, nan), (-2, 3, -8),
        (-2, 2, 4), (-2, -1, -0.5), (0.0, -1, inf), (-0.0, -1, -inf), (-0.0, -2, inf),
        (-0.0, -0.5, inf), (0.0, 3, 0.0), (-0.0, 3, -0.0), (-0.0, 2, 0.0), (-0.0, 0.5, 0.0),
        (0.5, inf, 0), (0.5, -inf, inf), (2, inf, inf), (2, -inf, 0), (-inf, 3, -inf),
        (-inf, 2, inf), (-inf, -3, -0.0), (-inf, -2, 0.0), (-inf, 0.5, inf), (inf, -1, 0),
        (inf, 0.5, inf), (nan, 1, nan), (2, nan, nan), (10, 1e6, inf), (10, -1e6, 0),
        (-10, 1e6, inf), (-10, 1e6 + 1, -inf), (-0.5, -1e6 - 1, -inf), (-0.5, 1e6 + 1, -0.0),
    ]
    x, y, e = (np.array(c, dtype=t) for c in zip(*cases))
    return x, y, e


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_pow_c99_special_cases(dtype):
    x, y, e = _pow_specials(dtype)
    got = kernel("pow", dtype)(x, y)
    bad = ulp_dist(got, e) != 0
    assert not bad.any(), list(zip(x[bad], y[bad], got[bad], e[bad]))


def test_math_function_is_cached_and_internal():
    m = ir.Module()
    f1 = get_math_function(m, "exp", F32)
    f2 = get_math_function(m, "exp", "f32")
    assert f1 is f2 and f1.name == "gc.exp.f32"
    assert f1.linkage == "internal" and "alwaysinline" in f1.attributes
    assert get_math_function(m, "exp", F64).name == "gc.exp.f64"
    with pytest.raises(KeyError):
        get_math_function(m, "erf", F32)


def _calls(asm: str):
    return [line.strip() for line in asm.splitlines()
            if line.strip().startswith(("call", "jmp")) and ("@" in line or "*" in line)]


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_all_inline_and_vectorize(dtype):
    """No libm (or other) calls remain; with AVX-512 every loop uses zmm."""
    t = F32 if dtype == np.float32 else F64
    avx512 = "+avx512f" in llvm_target.host_features()
    for name in MATH_FUNCTIONS:
        asm = llvm_target.assembly(build_kernel_module(name, t))
        assert not _calls(asm), (name, _calls(asm))
        assert not avx512 or "zmm" in asm, f"{name} did not vectorize"


@pytest.mark.skipif("+avx512f" not in llvm_target.host_features(),
                    reason="host has no AVX-512F")
def test_exp_f32_loop_vectorizes_to_zmm():
    asm = llvm_target.assembly(build_kernel_module("exp", F32))
    lines = asm.splitlines()
    assert any("zmm" in line for line in lines), "no AVX-512 vector code"
    assert any(("vfmadd" in line and "zmm" in line) for line in lines)
    assert not _calls(asm)


@pytest.mark.parametrize("name,lo,hi", [("tanh", -10.5, 10.5), ("sigmoid", -110.0, 110.0),
                                        ("exp", -110.0, 90.0)])
def test_f32_dense_bit_patterns(name, lo, hi):
    """Every 257th float32 bit pattern of the function's non-trivial range
    (millions of inputs, all binades) within 2 ulp of the correctly
    rounded result (references in float64)."""
    ut = np.uint32
    pos = np.arange(0, int(np.float32(hi).view(ut)) + 1, 257, dtype=ut)
    neg = np.arange(0, int(np.float32(-lo).view(ut)) + 1, 257, dtype=ut) | ut(0x80000000)
    x = np.concatenate([pos, neg]).view(np.float32)
    got = kernel(name, np.float32)(x)
    with np.errstate(all="ignore"):
        ref = precise(name, np.float32, x)
    d = ulp_dist(got, ref)
    i = int(np.argmax(d))
    assert d[i] <= 2, f"{name}: {d[i]} ulp at {x[i]!r}: got {got[i]!r}, exact {ref[i]!r}"
