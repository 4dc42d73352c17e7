"""uint8 / bool casts divided by a constant: a multiply and two fmas instead of a divide, bit for
bit the IEEE quotient for every possible input (codegen/constdiv.py)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

import graphc as gc
from graphc.codegen.constdiv import corrected_reciprocal, round_to

CONSTANTS = [255.0, 3.0, 7.0, 10.0, 0.1, -6.5, 1e-30, 1e30, 3e38, 2.0 ** -140, 1.0]
CONSTANTS += [float(v) for v in np.random.default_rng(7).uniform(-1000, 1000, 6)]


def _bits(a):
    return a.view(f"u{a.itemsize}")


@pytest.mark.parametrize("dtype", [gc.float32, gc.float64])
@pytest.mark.parametrize("c", CONSTANTS)
def test_every_uint8_and_bool_divided_by_a_constant_is_the_ieee_quotient(dtype, c):
    d = dtype.np_dtype
    v8 = np.arange(256, dtype=np.uint8).reshape(16, 16)
    vb = np.array([[False, True]] * 4)
    for v in (v8, vb):
        x = gc.placeholder(v.shape, gc.uint8 if v.dtype == np.uint8 else gc.bool_, "x")
        f = gc.compile([x], x.astype(dtype) / c)
        with np.errstate(all="ignore"):
            want = v.astype(d) / d.type(c)
        assert np.array_equal(_bits(f(v)), _bits(want)), (c, dtype)
        fast = corrected_reciprocal(float(d.type(c)), d.name, 256 if v.dtype == np.uint8 else 2) is not None
        assert ("fdiv" not in f.optimized_llvm_ir) == fast


def test_the_pixel_normalization_takes_the_fast_path():
    for dtype in ("float32", "float64"):
        assert corrected_reciprocal(255.0, dtype, 256) is not None
    for bad in (0.0, float("inf"), float("nan")):
        assert corrected_reciprocal(bad, "float32", 256) is None
    assert corrected_reciprocal(3e38, "float32", 256) is None  # 1/c is subnormal in float32


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_round_to_matches_ieee_products_and_quotients(dtype):
    """The exact rounding of a rational agrees with the hardware's correctly rounded * and /,
    normal and subnormal results, ties included (products of halves)."""
    rng = np.random.default_rng(3)
    tiny = np.finfo(dtype).tiny
    a = (rng.standard_normal(400) * rng.choice([1, 1e-20, 1e20], 400)).astype(dtype)
    b = (rng.standard_normal(400) * rng.choice([1, tiny * 1e6, 1e-3], 400)).astype(dtype)
    a[:20] = dtype(1.5) + np.arange(20, dtype=dtype) * np.finfo(dtype).eps
    b[:20] = dtype(0.5)
    a[20:120] = (rng.uniform(0.1, 10, 100) * tiny * 4).astype(dtype)  # results in the subnormals
    b[20:120] = rng.uniform(0.001, 1, 100).astype(dtype)
    with np.errstate(all="ignore"):
        assert ((np.abs(a * b) < tiny) & (a * b != 0)).sum() > 5
        for x, y in zip(a, b):
            if np.isfinite(x * y):  # round_to does not overflow to inf (its callers stay far below)
                assert round_to(Fraction(float(x)) * Fraction(float(y)), dtype) == Fraction(float(x * y)), (x, y)
            if y != 0 and np.isfinite(x / y):
                assert round_to(Fraction(float(x)) / Fraction(float(y)), dtype) == Fraction(float(x / y)), (x, y)
