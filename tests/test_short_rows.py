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
