"""JIT-compiled LLVM code calling sgemm/dgemm through raw BLAS pointers.

Each test JIT-compiles small llvmlite functions that call the GEMM pointer
found by ``graphc.codegen.blas`` (``inttoptr`` + call, no Python in between)
for ``A @ B``, ``A.T @ B``, ``A @ B.T`` and ``A.T @ B.T`` on row-major
float32/float64 arrays, including strided views (leading dimensions larger
than the logical width), and compares against numpy.
"""

import ctypes
import ctypes.util
import os
import warnings

import numpy as np
import pytest
from llvmlite import ir
import llvmlite.binding as llvm

from graphc.codegen import blas

# ---------------------------------------------------------------- private JIT


def _init_llvm():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:  # required on llvmlite < 0.45, deprecated/raising afterwards
            llvm.initialize()
        except Exception:
            pass
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()


_init_llvm()
_TM = llvm.Target.from_default_triple().create_target_machine(opt=2)
_KEEP = []  # keep engines alive for the whole session


def _jit(module):
    mod = llvm.parse_assembly(str(module))
    mod.verify()
    ee = llvm.create_mcjit_compiler(mod, _TM)
    ee.finalize_object()
    _KEEP.append(ee)
    return ee


I64 = ir.IntType(64)
I8P = ir.IntType(8).as_pointer()
_CF = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                       *([ctypes.c_int64] * 6))
_COMBOS = [(False, False), (True, False), (False, True), (True, True)]


def _build(info, alpha=1.0, beta=0.0, repeat=1):
    """{(dtype, ta, tb): ctypes fn(a, b, c, m, n, k, lda, ldb, ldc)}."""
    module = ir.Module(name="gemm_test")
    module.triple = llvm.get_process_triple()
    names = {}
    for dtype in ("float32", "float64"):
        fn_info = info.gemm(dtype)
        for ta, tb in _COMBOS:
            fnty = ir.FunctionType(ir.VoidType(), [I8P, I8P, I8P] + [I64] * 6)
            name = f"gemm_{dtype}_{int(ta)}{int(tb)}"
            f = ir.Function(module, fnty, name)
            a, b, c, m, n, k, lda, ldb, ldc = f.args
            bld = ir.IRBuilder(f.append_basic_block("entry"))
            if repeat == 1:
                blas.emit_gemm(bld, fn_info, trans_a=ta, trans_b=tb, m=m, n=n, k=k,
                               a=a, lda=lda, b=b, ldb=ldb, c=c, ldc=ldc,
                               alpha=alpha, beta=beta)
                bld.ret_void()
            else:  # call inside a loop: Fortran stack slots must not grow
                loop = f.append_basic_block("loop")
                done = f.append_basic_block("done")
                bld.branch(loop)
                bld.position_at_end(loop)
                i = bld.phi(I64)
                i.add_incoming(ir.Constant(I64, 0), f.entry_basic_block)
                blas.emit_gemm(bld, fn_info, trans_a=ta, trans_b=tb, m=m, n=n, k=k,
                               a=a, lda=lda, b=b, ldb=ldb, c=c, ldc=ldc,
                               alpha=alpha, beta=beta)
                i2 = bld.add(i, ir.Constant(I64, 1))
                i.add_incoming(i2, loop)
                bld.cbranch(bld.icmp_signed("<", i2, ir.Constant(I64, repeat)), loop, done)
                bld.position_at_end(done)
                bld.ret_void()
            names[(dtype, ta, tb)] = name
    ee = _jit(module)
    return {key: _CF(ee.get_function_address(name)) for key, name in names.items()}


# ---------------------------------------------------------------- sources


def _sources():
    out = []
    for src in blas.SOURCES:
        info = blas.find_blas([src])
        if info is not None:
            out.append(pytest.param(info, id=f"{src}-{info.interface}{info.int_bits}"))
    # Fortran path of libraries that also export CBLAS (system OpenBLAS or
    # reference BLAS, numpy's own scipy_sgemm_64_), when present.
    np_info = blas.find_blas(["numpy"])
    for path, source in [(np_info.library if np_info else None, "numpy"),
                         (ctypes.util.find_library("openblas"), "system"),
                         (ctypes.util.find_library("blas"), "system")]:
        if not path:
            continue
        info = blas._gemms_from_library(path, source, interfaces=("fortran",))
        if info is not None:
            out.append(pytest.param(info, id=f"{os.path.basename(path)}-fortran{info.int_bits}"))
    return out


SOURCES = _sources()
_FN_CACHE = {}


def _fns(info, **kw):
    key = (info.library, info.interface, tuple(sorted(kw.items())))
    if key not in _FN_CACHE:
        _FN_CACHE[key] = _build(info, **kw)
    return _FN_CACHE[key]


def _stored(rng, rows, cols, dtype, pad):
    """A rows x cols row-major view with row stride cols + pad."""
    big = rng.standard_normal((rows + 1, cols + pad)).astype(dtype)
    return big[:rows, :cols]


def _run(fn, A_st, B_st, C, ta, tb):
    m, n = C.shape
    k = A_st.shape[0] if ta else A_st.shape[1]
    it = C.itemsize
    fn(A_st.ctypes.data, B_st.ctypes.data, C.ctypes.data, m, n, k,
       A_st.strides[0] // it, B_st.strides[0] // it, C.strides[0] // it)


SHAPES = [(1, 1, 1), (1, 7, 5), (6, 1, 3), (4, 5, 1), (3, 8, 17), (64, 33, 129),
          (128, 128, 128), (257, 130, 70)]


def test_numpy_source_found():
    info = blas.find_blas(["numpy"])
    assert info is not None, "numpy's bundled BLAS should always be found"
    assert info.sgemm.address and info.dgemm.address
    assert info.int_bits in (32, 64)
    assert blas.get_blas() is not None


@pytest.mark.parametrize("info", SOURCES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("ta,tb", _COMBOS)
@pytest.mark.parametrize("pad", [0, 3])
def test_gemm_matches_numpy(info, dtype, ta, tb, pad):
    fn = _fns(info)[(dtype, ta, tb)]
    rng = np.random.default_rng(0)
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == "float32" else dict(rtol=1e-10, atol=1e-10)
    for m, n, k in SHAPES:
        A_st = _stored(rng, *((k, m) if ta else (m, k)), dtype, pad)
        B_st = _stored(rng, *((n, k) if tb else (k, n)), dtype, pad)
        Cbig = np.full((m, n + pad), 7.0, dtype=dtype)
        C = Cbig[:, :n]
        _run(fn, A_st, B_st, C, ta, tb)
        A = A_st.T if ta else A_st
        B = B_st.T if tb else B_st
        np.testing.assert_allclose(C, A @ B, **tol, err_msg=f"{(m, n, k)}")
        assert np.all(Cbig[:, n:] == 7.0), "wrote outside the C view"


@pytest.mark.parametrize("info", SOURCES)
def test_alpha_beta_and_loop(info):
    """beta=1 accumulates; the call inside a JIT loop runs 3 times."""
    fns = _fns(info, alpha=0.5, beta=1.0, repeat=3)
    rng = np.random.default_rng(1)
    for dtype in ("float32", "float64"):
        A = rng.standard_normal((5, 9)).astype(dtype)
        B = rng.standard_normal((9, 4)).astype(dtype)
        C0 = rng.standard_normal((5, 4)).astype(dtype)
        C = C0.copy()
        _run(fns[(dtype, False, False)], A, B, C, False, False)
        np.testing.assert_allclose(C, C0 + 1.5 * (A @ B), rtol=1e-4, atol=1e-4)
        # A^T @ B^T with transposed storage
        At, Bt = np.ascontiguousarray(A.T), np.ascontiguousarray(B.T)
        C = C0.copy()
        _run(fns[(dtype, True, True)], At, Bt, C, True, True)
        np.testing.assert_allclose(C, C0 + 1.5 * (A @ B), rtol=1e-4, atol=1e-4)


def test_dtype_lookup_and_errors(monkeypatch):
    info = blas.get_blas()
    assert info.gemm(np.float32) is info.sgemm
    assert info.gemm("float64") is info.dgemm
    with pytest.raises(TypeError):
        info.gemm(np.int32)
    monkeypatch.setenv("GRAPHC_BLAS", "none")
    assert blas.find_blas() is None
    with pytest.raises(blas.BlasNotFoundError):
        blas.get_blas()
    monkeypatch.setenv("GRAPHC_BLAS", "bogus")
    with pytest.raises(ValueError):
        blas.find_blas()


def test_thread_count_roundtrip():
    info = blas.get_blas()
    if not info.can_set_threads or info.get_num_threads() is None:
        pytest.skip("BLAS has no thread control")
    old = info.get_num_threads()
    try:
        info.set_num_threads(1)
        assert info.get_num_threads() == 1
    finally:
        info.set_num_threads(old)
    assert info.get_num_threads() == old


def test_static_leading_dimension_check():
    """Compile-time shapes with impossible leading dimensions are rejected."""
    info = blas.get_blas()
    module = ir.Module(name="bad")
    f = ir.Function(module, ir.FunctionType(ir.VoidType(), [I8P] * 3), "f")
    bld = ir.IRBuilder(f.append_basic_block("entry"))
    a, b, c = f.args
    with pytest.raises(ValueError, match="lda"):
        blas.emit_gemm(bld, info.sgemm, trans_a=False, trans_b=False, m=4, n=5, k=6,
                       a=a, lda=5, b=b, ldb=5, c=c, ldc=5)
    with pytest.raises(ValueError, match="ldb"):
        blas.emit_gemm(bld, info.sgemm, trans_a=False, trans_b=True, m=4, n=5, k=6,
                       a=a, lda=6, b=b, ldb=5, c=c, ldc=5)
    # transposed A is stored k x m: lda >= m
    blas.emit_gemm(bld, info.sgemm, trans_a=True, trans_b=False, m=4, n=5, k=6,
                   a=a, lda=np.int64(4), b=b, ldb=5, c=c, ldc=5)
