"""Elementwise kernels whose innermost dimension is shorter than a vector (e.g. [batch, 10
classes] with a per-row operand) run over one padded vector of lanes per row, the lanes past the
row masked off (codegen/emit.py ``_padded_inner``): values, and that they do vectorize."""

from __future__ import annotations

import re

import numpy as np
import pytest

import graphc as gc
from graphc.codegen import emit


@pytest.mark.parametrize("dtype, cols", [(gc.float32, c) for c in (9, 10, 15)] + [(gc.float64, c) for c in (5, 7)])
def test_short_rows_with_a_per_row_operand(dtype, cols):
    rng = np.random.default_rng(cols)
    npd = dtype.np_dtype
    a = gc.placeholder((37, cols), dtype, "a")
    s = gc.placeholder((37, 1), dtype, "s")
    f = gc.compile([a, s], gc.exp(a) * s - a)
    assert any(k.padded for k in f.kernels)
    av = rng.standard_normal((37, cols)).astype(npd)
    sv = rng.standard_normal((37, 1)).astype(npd)
    tol = dict(rtol=1e-5, atol=1e-6) if npd == np.float32 else dict(rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(f(av, sv), np.exp(av) * sv - av, **tol)


def test_short_rows_vectorize():
    a = gc.placeholder((128, 10), gc.float32, "a")
    s = gc.placeholder((128, 1), gc.float32, "s")
    f = gc.compile([a, s], gc.exp(a) * s)
    assert re.search(r"<16 x float>", f.optimized_llvm_ir)


def test_rows_that_fill_a_vector_or_are_tiny_are_left_alone():
    assert emit._padded_inner([128, 16], gc.float32) == 0
    assert emit._padded_inner([128, 4], gc.float32) == 0   # mostly padding: not worth it
    assert emit._padded_inner([128, 10], gc.float32) == 16
    assert emit._padded_inner([128, 6], gc.float64) == 8
    assert emit._padded_inner([1280], gc.float32) == 0


def _softmax_ref(op, x, axis):
    m = np.max(x, axis=axis, keepdims=True)
    c = np.where(np.isfinite(m), m, 0)
    e = np.exp(x - c)
    s = e.sum(axis=axis, keepdims=True)
    return e / s if op == "softmax" else x - (c + np.log(s))


@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
@pytest.mark.parametrize("rows, n, axis", [(1, 2, 1), (37, 10, 1), (300, 5, 1), (300, 15, 1), (513, 16, 1), (10, 37, 0),
                                           (5, 17, 1), (40, 3, 0), (7000, 10, 1), (600, 12, 0)])
@pytest.mark.parametrize("dtype", [gc.float32, gc.float64])
def test_softmax_by_columns_and_by_rows(op, rows, n, axis, dtype):
    """Rows of SHORT_SOFTMAX_ROW length in a kernel of one chunk go column by column over blocks
    of rows (here also more rows than a block, a prologue fused in, either axis); other rows
    (shorter, longer, or a kernel in chunks) row by row: both as numpy."""
    rng = np.random.default_rng(rows * n)
    npd = dtype.np_dtype
    shape = (rows, n) if axis == 1 else (n, rows)
    a = gc.placeholder(shape, dtype, "a")
    f = gc.compile([a], getattr(gc, op)(a * 2.0 + 1.0, axis=axis))
    av = rng.standard_normal(shape).astype(npd)
    tol = dict(rtol=2e-5, atol=2e-6) if npd == np.float32 else dict(rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(f(av), _softmax_ref(op, av * 2 + 1, axis), **tol)
    lo, hi = emit.SHORT_SOFTMAX_ROW
    by_columns = lo <= n <= hi and rows * n < 2 * emit.GRAIN  # one chunk
    assert (f"[{emit.SOFTMAX_BLOCK_ROWS} x" in f.llvm_ir) == by_columns  # its scratch arrays


@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
def test_softmax_by_columns_with_infinities(op):
    """Rows of -inf, or holding +inf or NaN: as the reference implementation (the interpreter)."""
    x = np.array([[-np.inf] * 10, [np.inf] + [0.0] * 9, [np.nan] + [1.0] * 9, [-np.inf] + [2.0] * 9,
                  list(range(10))], np.float32)
    a = gc.placeholder(x.shape, gc.float32, "a")
    y = getattr(gc, op)(a, axis=1)
    with np.errstate(all="ignore"):
        want = gc.evaluate(y, {a: x})
        got = gc.compile([a], y)(x)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, equal_nan=True)
    assert np.isfinite(got[3:]).sum() >= 18  # the finite rows stay finite


def test_softmax_by_columns_vectorizes_without_unrolling():
    """One vector ``exp`` in the optimized kernel, however many columns: nothing unrolled."""
    a = gc.placeholder((128, 10), gc.float32, "a")
    f = gc.compile([a], gc.log_softmax(a, axis=1))
    ir_text = f.optimized_llvm_ir
    kernel = ir_text[ir_text.index("log_softmax("):]
    kernel = kernel[:kernel.index("\n}\n")]
    assert "<16 x float>" in kernel
    assert 1 <= kernel.count("0x3FF7154760000000") <= 2  # exp's log2(e): vector loop (+ a scalar remainder)
