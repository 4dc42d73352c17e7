"""Gathering rows of a big table: every line of the chunk's rows is prefetched before the copy.

(Why: see ``codegen.emit.PREFETCH_MIN_TABLE_BYTES``; the effect is measured in
bench/bench_train.py, the shuffled W5b loop.) Here: the prefetch loop is
emitted where it should be and nowhere else, and results, negative indices and
the out-of-range error are as without it.
"""

from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc.codegen.emit import PREFETCH_MIN_TABLE_BYTES


def _gather(rows: int, cols: int, dtype, batch: int = 64, scale: bool = False):
    table = gc.placeholder((rows, cols), dtype, "table")
    idx = gc.placeholder((batch,), gc.int64, "idx")
    out = gc.take(table, idx, axis=0)
    if scale:
        out = out.astype(gc.float32) / 255
    return gc.compile([table, idx], out), table


def _prefetches(f) -> int:
    return f.llvm_ir.count('call void @"llvm.prefetch.p0"')


@pytest.mark.parametrize("dtype,cols", [(gc.float32, 784), (gc.uint8, 784), (gc.float64, 3)])
def test_rows_of_a_big_table_are_prefetched_and_values_unchanged(dtype, cols):
    rows = PREFETCH_MIN_TABLE_BYTES // (cols * dtype.itemsize) + 1
    rng = np.random.default_rng(0)
    data = (rng.integers(0, 256, (rows, cols)) if dtype == gc.uint8 else rng.standard_normal((rows, cols)))
    data = data.astype(dtype.np_dtype)
    f, _ = _gather(rows, cols, dtype, scale=dtype == gc.uint8)
    assert _prefetches(f) >= 1
    idx = rng.integers(-rows, rows, 64)
    want = data[idx].astype(np.float32) / np.float32(255) if dtype == gc.uint8 else data[idx]
    np.testing.assert_array_equal(f(data, idx), want)
    bad = idx.copy()
    bad[17] = rows + 5
    with pytest.raises(IndexError, match="take/gather or scatter_add was out of range"):
        f(data, bad)


def test_a_small_table_or_a_short_batch_is_not_prefetched():
    f, _ = _gather(100, 784, gc.float32)  # 313 KB: in the caches
    assert _prefetches(f) == 0
    rows = PREFETCH_MIN_TABLE_BYTES // (784 * 4) + 1
    f, _ = _gather(rows, 784, gc.float32, batch=4)
    assert _prefetches(f) == 0


def test_long_rows_prefetch_their_first_lines_only():
    from graphc.codegen.emit import PREFETCH_MAX_LINES
    rows = PREFETCH_MIN_TABLE_BYTES // (10000 * 4) + 1
    f, _ = _gather(rows, 10000, gc.float32, batch=16)
    assert _prefetches(f) == PREFETCH_MAX_LINES


@pytest.mark.parametrize("index_dtype", [gc.int32, gc.int64])
def test_several_chunks_int32_indices_and_negative_out_of_range(index_dtype):
    rows = PREFETCH_MIN_TABLE_BYTES // (784 * 4) + 1
    data = np.random.default_rng(1).standard_normal((rows, 784)).astype(np.float32)
    table = gc.placeholder(data.shape, gc.float32, "table")
    idx = gc.placeholder((512,), index_dtype, "idx")  # 400k elements: several chunks on the pool
    f = gc.compile([table, idx], gc.take(table, idx, axis=0))
    assert _prefetches(f) >= 1 and f.kernels[0].chunks > 1
    i = np.random.default_rng(2).integers(-rows, rows, 512).astype(index_dtype.np_dtype)
    np.testing.assert_array_equal(f(data, i), data[i])
    i[300] = -rows - 1
    with pytest.raises(IndexError, match="take/gather or scatter_add was out of range"):
        f(data, i)


def test_a_gather_indexed_by_a_gather_is_not_prefetched():
    """Its inner index's bounds check belongs to the main loop (which may run no iteration)."""
    rows = PREFETCH_MIN_TABLE_BYTES // (784 * 4) + 1
    table = gc.placeholder((rows, 784), gc.float32, "table")
    perm = gc.placeholder((rows,), gc.int64, "perm")
    idx = gc.placeholder((64,), gc.int64, "idx")
    f = gc.compile([table, perm, idx], gc.take(table, gc.take(perm, idx), axis=0))
    assert _prefetches(f) == 0
