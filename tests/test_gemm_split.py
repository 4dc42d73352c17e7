"""Big GEMMs run in chunks on graphc's pool with BLAS single-threaded meanwhile (codegen/emit.py
``emit_matmul``, codegen/dispatch.py ``graphc_blas_serial``): values, layouts, in-place updates,
and the BLAS thread count given back."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import graphc as gc
from graphc.codegen import emit
from graphc.codegen.compiler import blas_info

pytestmark = pytest.mark.skipif(blas_info() is None, reason="no BLAS found in this process")


def split_kernels(fn):
    return [k for k in fn.kernels if k.kind == "matmul" and k.chunks > 1]


@pytest.mark.parametrize("M, K, N", [(128, 96, 256), (256, 96, 128), (300, 70, 97), (64, 512, 64)])
@pytest.mark.parametrize("ta, tb", [(False, False), (True, False), (False, True), (True, True)])
def test_split_gemm_matches_numpy(M, K, N, ta, tb):
    rng = np.random.default_rng(M + N)
    a_shape = (K, M) if ta else (M, K)
    b_shape = (N, K) if tb else (K, N)
    a = gc.placeholder(a_shape, gc.float32, "a")
    b = gc.placeholder(b_shape, gc.float32, "b")
    f = gc.compile([a, b], (a.T if ta else a) @ (b.T if tb else b))
    assert emit.gemm_split(M, N, K, ()) is not None
    assert len(split_kernels(f)) == 1
    av = rng.standard_normal(a_shape).astype(np.float32)
    bv = rng.standard_normal(b_shape).astype(np.float32)
    want = (av.T if ta else av).astype(np.float64) @ (bv.T if tb else bv).astype(np.float64)
    np.testing.assert_allclose(f(av, bv), want, rtol=1e-4, atol=1e-3)


def test_small_gemms_are_one_call():
    assert emit.gemm_split(16, 16, 16, ()) is None
    assert emit.gemm_split(128, 128, 128, (4,)) is None  # batched: one call per batch element


def test_in_place_sgd_update_through_split_gemm():
    rng = np.random.default_rng(0)
    x = gc.placeholder((128, 300), gc.float32, "x")
    g = gc.placeholder((128, 200), gc.float32, "g")
    w0 = rng.standard_normal((300, 200)).astype(np.float32)
    w = gc.parameter(w0.copy(), name="w")
    step = gc.compile([x, g], gc.sum(g), updates=[(w, w - 0.5 * (x.T @ g))])
    assert split_kernels(step)
    xv = rng.standard_normal((128, 300)).astype(np.float32)
    gv = rng.standard_normal((128, 200)).astype(np.float32)
    step(xv, gv)
    np.testing.assert_allclose(w.value, w0 - 0.5 * (xv.T.astype(np.float64) @ gv), rtol=1e-4, atol=1e-3)


def test_blas_thread_count_is_given_back():
    info = blas_info()
    if not info.can_set_threads:
        pytest.skip("this BLAS cannot set its thread count")
    before = info.get_num_threads()
    a = gc.placeholder((256, 256), gc.float32, "a")
    f1 = gc.compile([a], a @ a)
    f2 = gc.compile([a], (a @ a) * 2.0)
    assert split_kernels(f1) and split_kernels(f2)
    v = np.ones((256, 256), np.float32)

    def work(f):
        for _ in range(200):
            f(v)
    threads = [threading.Thread(target=work, args=(f,)) for f in (f1, f2, f1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert info.get_num_threads() == before
    np.testing.assert_array_equal(f2(v), 512.0)


def test_profile_times_every_kernel_and_gives_blas_threads_back():
    info = blas_info()
    before = info.get_num_threads() if info.can_set_threads else None
    a = gc.placeholder((256, 256), gc.float32, "a")
    f = gc.compile([a], gc.relu(a @ a) + 1.0)
    rows = f.profile(np.ones((256, 256), np.float32), repeat=3)
    assert [r[0] for r in rows] == [k.name for k in f.kernels]
    assert all(us > 0 for _, chunks, us in rows if chunks)
    assert any(chunks == emit.SPLIT_GEMM_CHUNKS for name, chunks, _ in rows if "matmul" in name)
    if before is not None:
        assert info.get_num_threads() == before


@pytest.mark.parametrize("ta", [False, True])
def test_split_gemm_of_sliced_operands(ta):
    """Operands that are slices of bigger arrays: BLAS gets the big array's row stride."""
    rng = np.random.default_rng(7)
    big_a = gc.placeholder((400, 300) if ta else (300, 400), gc.float32, "a")
    b = gc.placeholder((350, 200), gc.float32, "b")
    a_view = big_a[10:360, 50:250].T if ta else big_a[50:250, 10:360]   # op(A): 200 x 350
    f = gc.compile([big_a, b], a_view @ b)
    assert split_kernels(f)
    av = rng.standard_normal(big_a.shape).astype(np.float32)
    bv = rng.standard_normal((350, 200)).astype(np.float32)
    op_a = av[10:360, 50:250].T if ta else av[50:250, 10:360]
    np.testing.assert_allclose(f(av, bv), op_a.astype(np.float64) @ bv, rtol=1e-4, atol=1e-3)


def test_module_with_a_huge_gemm_leaves_blas_its_threads():
    a = gc.placeholder((1024, 1024), gc.float32, "a")
    b = gc.placeholder((1024, 256), gc.float32, "b")
    f = gc.compile([a, b], [a @ a, a @ b])  # 2^30 multiply-adds: BLAS threads for every GEMM
    assert not split_kernels(f)
    half = gc.placeholder((512, 1024), gc.float32, "half")
    g = gc.compile([half, b], half @ b)  # 2^27: chunks
    assert emit._gemm_macs(g.plan.kernels[0]) == 512 * 1024 * 256 < emit.HUGE_GEMM_MACS
    assert split_kernels(g)
    av = np.ones((1024, 1024), np.float32)
    bv = np.ones((1024, 256), np.float32)
    out = f(av, bv)
    np.testing.assert_array_equal(out[0], 1024.0)
    np.testing.assert_array_equal(out[1], 1024.0)


def test_forked_child_gets_blas_threads_back():
    import os
    from graphc.codegen import dispatch
    info = blas_info()
    if not hasattr(os, "fork") or not info.can_set_threads:
        pytest.skip("needs fork and a BLAS thread control")
    a = gc.placeholder((256, 256), gc.float32, "a")
    f = gc.compile([a], a @ a)
    assert split_kernels(f)
    before = info.get_num_threads()
    words = dispatch._STATE["blas_words"]
    serial = dispatch._native()[0].get_function_address("graphc_blas_serial")
    import ctypes
    ctypes.CFUNCTYPE(None)(serial)()  # as if a thread were inside a call at fork time
    try:
        assert info.get_num_threads() == 1 or before == 1
        pid = os.fork()
        if pid == 0:
            ok = info.get_num_threads() == before and words["gc_blas_active"].value == 0
            ok = ok and bool(np.array_equal(f(np.ones((256, 256), np.float32)), np.full((256, 256), 256.0)))
            os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
        assert os.WEXITSTATUS(status) == 0
    finally:
        restore = dispatch._native()[0].get_function_address("graphc_blas_restore")
        ctypes.CFUNCTYPE(None)(restore)()
    assert info.get_num_threads() == before
