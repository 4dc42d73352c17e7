"""Raw sgemm/dgemm function pointers for LLVM-JIT code (no Python in the call path).

graphc lowers ``MatMul`` (and the matmuls in backward graphs) to a direct call
from JIT-compiled code into an optimized BLAS.  llvmlite cannot link against a
shared library by name, so this module finds the *address* of a GEMM routine
that is already (or can be) loaded into the process; codegen bakes that
address into the IR as ``inttoptr`` and calls it with the C calling
convention.  :func:`emit_gemm` emits that call for row-major operands,
including transposed operands (handled with the BLAS ``trans`` flags, never
copied) and strided views (leading dimensions).

Sources, in the order tried (override with ``GRAPHC_BLAS``, see below)
-----------------------------------------------------------------------

1. ``numpy`` -- the BLAS numpy itself uses.  numpy >= 2 wheels bundle
   scipy-openblas, an ILP64 OpenBLAS whose exported symbols are renamed so it
   cannot clash with other BLAS copies: ``scipy_cblas_sgemm64_``,
   ``scipy_sgemm_64_``, ``scipy_openblas_set_num_threads64_`` ...  (numpy
   1.26 wheels: ``libopenblas64_p-r0-*.so`` with ``cblas_sgemm64_`` etc.;
   conda/distro numpy link a system ``libcblas``/``libopenblas``/MKL).  We
   locate the library among the shared objects that ``import numpy`` has
   already mapped into the process (``/proc/self/maps`` on Linux, the dyld
   image list on macOS) and, failing that, by globbing numpy's wheel library
   folders (``site-packages/numpy.libs``, ``numpy/.dylibs``).  It is then
   ``ctypes.CDLL``-opened *again* -- ``dlopen`` of an already-loaded object
   just bumps its refcount and returns the same handle -- and the symbol's
   address is read with ``ctypes``.  Preferred because numpy is a hard
   dependency (always present), it is already loaded (no second OpenBLAS
   with a second thread pool competing for the cores), it uses 64-bit
   integers (no 2**31 element limits), and it is by construction exactly the
   code ``numpy.matmul`` runs, so graphc matches numpy's GEMM speed.
2. ``scipy`` -- ``scipy.linalg.cython_blas.__pyx_capi__['sgemm']`` is a
   ``PyCapsule`` holding a C pointer to scipy's Fortran-interface wrapper
   (this is what numba does).  Only if scipy is importable (it is not a
   graphc dependency).  Fortran interface, always 32-bit ``int`` (LP64), and
   it loads scipy's own OpenBLAS copy with its own thread pool.
3. ``system`` -- ``ctypes.util.find_library`` for openblas, mkl_rt,
   flexiblas, blis, cblas, blas (and Accelerate on macOS); ``cblas_?gemm``
   preferred, Fortran ``?gemm_`` otherwise.  Integer width is 32 unless the
   symbol has a ``64_`` suffix or OpenBLAS reports ``USE64BITINT``.

``GRAPHC_BLAS`` may be a comma-separated subset/order of
``numpy,scipy,system`` or ``none`` (disable BLAS: :func:`find_blas` returns
``None`` and codegen must use its own matmul loops).

Calling conventions
-------------------
* CBLAS: ``void cblas_sgemm(int order, int transA, int transB, I M, I N, I K,
  float alpha, const float *A, I lda, const float *B, I ldb, float beta,
  float *C, I ldc)`` where the enums are C ``int`` (32-bit) and ``I`` is the
  library's integer (32 or 64-bit).  graphc always passes
  ``order = CblasRowMajor``.
* Fortran: every argument by pointer, column-major:
  ``sgemm_(char *ta, char *tb, I *m, I *n, I *k, float *alpha, float *A,
  I *lda, float *B, I *ldb, float *beta, float *C, I *ldc[, size_t lta,
  size_t ltb])``.  A row-major ``C = op(A) @ op(B)`` is the column-major
  ``C^T = op(B)^T @ op(A)^T``, i.e. the same buffers with A/B (and M/N)
  swapped.  gfortran-compiled libraries expect the two hidden character
  lengths; passing them is harmless for C implementations (OpenBLAS) because
  on every supported ABI the caller owns the argument area.

Threads
-------
OpenBLAS runs its own thread pool (numpy's: ``MAX_THREADS=64``, one thread
per core by default).  graphc runs its own pool too (``threadpool.py``); a
GEMM issued *inside* a graphc parallel loop should run single-threaded and a
GEMM issued from the main thread may use all cores.  :class:`BlasInfo`
exposes ``set_num_threads`` / ``get_num_threads`` (and the raw addresses so
JIT code can call them) when the library has them.  NOTE: for the ``numpy``
source this is the very pool numpy uses -- changing it changes numpy too.
``set_num_threads_local_address`` (OpenBLAS >= 0.3.27,
``openblas_set_num_threads_local``) is exposed for completeness only:
despite its name it is process-wide in OpenBLAS's pthreads builds
(verified with numpy 2.4's OpenBLAS 0.3.31: a worker thread calling it
with 1 makes the main thread's ``get_num_threads()`` return 1), so it
cannot give graphc workers a private thread count.  (OpenBLAS >= 0.3.28 can also hand its parallel work to a
foreign pool via ``openblas_set_threads_callback_function``; it is *not*
used: it is process-wide and OpenBLAS's GEMM jobs wait on each other, so
they must all run concurrently -- a pool that may run jobs serially, like
graphc's when busy, would deadlock.)
"""

from __future__ import annotations

import ctypes
import glob
import numbers
import os
import re
import sys
import threading
from dataclasses import dataclass, field
from typing import Optional

__all__ = [
    "BlasNotFoundError",
    "GemmFunction",
    "BlasInfo",
    "find_blas",
    "get_blas",
    "emit_gemm",
    "CBLAS_ROW_MAJOR",
    "CBLAS_COL_MAJOR",
    "CBLAS_NO_TRANS",
    "CBLAS_TRANS",
    "SOURCES",
]

# CBLAS enum values (cblas.h); passed as 32-bit C ints.
CBLAS_ROW_MAJOR = 101
CBLAS_COL_MAJOR = 102
CBLAS_NO_TRANS = 111
CBLAS_TRANS = 112

SOURCES = ("numpy", "scipy", "system")

_DTYPE_PREFIX = {"float32": "s", "float64": "d"}


class BlasNotFoundError(RuntimeError):
    """No usable sgemm/dgemm could be located (see the module docstring)."""


@dataclass(frozen=True)
class GemmFunction:
    """One GEMM entry point callable from JIT code.

    ``address`` is the raw C function address.  ``interface`` is ``"cblas"``
    (arguments by value, row-major supported natively) or ``"fortran"``
    (all arguments by pointer, column-major).  ``int_bits`` is the width of
    the BLAS integer type for dimensions and leading dimensions (32 or 64):
    getting this wrong corrupts the call, so always emit calls through
    :func:`emit_gemm`.  ``fortran_hidden_lengths`` says whether the two
    trailing ``size_t`` character-length arguments are passed.
    """

    dtype: str  # "float32" | "float64"
    address: int
    symbol: str
    interface: str  # "cblas" | "fortran"
    int_bits: int  # 32 | 64
    source: str  # "numpy" | "scipy" | "system"
    library: str  # path of the shared object, or the Python module
    fortran_hidden_lengths: bool = False


@dataclass(frozen=True)
class BlasInfo:
    """The BLAS graphc will call: sgemm + dgemm and optional thread control."""

    source: str
    library: str
    sgemm: GemmFunction
    dgemm: GemmFunction
    # ``void f(int)`` / ``int f(void)`` (OpenBLAS, MKL, FlexiBLAS) or None.
    set_num_threads_address: Optional[int] = None
    get_num_threads_address: Optional[int] = None
    # ``int openblas_set_num_threads_local(int)`` (OpenBLAS >= 0.3.27),
    # returns the previous value.  Process-wide in pthreads builds despite
    # the name (see the module docstring).
    set_num_threads_local_address: Optional[int] = None
    config: Optional[str] = None  # e.g. openblas_get_config() output
    _handle: object = field(default=None, repr=False, compare=False)

    @property
    def interface(self) -> str:
        return self.sgemm.interface

    @property
    def int_bits(self) -> int:
        return self.sgemm.int_bits

    def gemm(self, dtype) -> GemmFunction:
        """The GEMM for ``dtype`` (anything numpy.dtype accepts)."""
        name = _dtype_name(dtype)
        if name == "float32":
            return self.sgemm
        if name == "float64":
            return self.dgemm
        raise TypeError(f"no BLAS GEMM for dtype {name}")

    @property
    def can_set_threads(self) -> bool:
        return self.set_num_threads_address is not None

    def set_num_threads(self, n: int) -> None:
        """Set the BLAS library's (process-global) thread count."""
        if self.set_num_threads_address is None:
            raise NotImplementedError(
                f"BLAS from {self.source} ({self.library}) has no thread-count control")
        ctypes.CFUNCTYPE(None, ctypes.c_int)(self.set_num_threads_address)(int(n))

    def get_num_threads(self) -> Optional[int]:
        """The BLAS library's thread count, or None if it cannot tell."""
        if self.get_num_threads_address is None:
            return None
        return int(ctypes.CFUNCTYPE(ctypes.c_int)(self.get_num_threads_address)())


def _dtype_name(dtype) -> str:
    try:
        import numpy as np

        return np.dtype(dtype).name
    except TypeError:
        return str(dtype)


# --------------------------------------------------------------------------
# symbol tables
# --------------------------------------------------------------------------

# (template, interface, int_bits or None = "ask the library") in preference order.
_GEMM_SYMBOLS = (
    ("scipy_cblas_{p}gemm64_", "cblas", 64),  # numpy>=2 scipy-openblas64
    ("cblas_{p}gemm64_", "cblas", 64),  # openblas64_ (numpy 1.26, Debian)
    ("scipy_cblas_{p}gemm", "cblas", None),  # scipy-openblas32
    ("cblas_{p}gemm", "cblas", None),
    ("scipy_{p}gemm_64_", "fortran", 64),
    ("{p}gemm_64_", "fortran", 64),
    ("scipy_{p}gemm_", "fortran", None),
    ("{p}gemm_", "fortran", None),
)
_SET_THREADS = (
    "scipy_openblas_set_num_threads64_",
    "openblas_set_num_threads64_",
    "scipy_openblas_set_num_threads",
    "openblas_set_num_threads",
    "MKL_Set_Num_Threads",
    "flexiblas_set_num_threads",
)
_GET_THREADS = (
    "scipy_openblas_get_num_threads64_",
    "openblas_get_num_threads64_",
    "scipy_openblas_get_num_threads",
    "openblas_get_num_threads",
    "MKL_Get_Max_Threads",
    "flexiblas_get_num_threads",
)
_SET_THREADS_LOCAL = (
    "scipy_openblas_set_num_threads_local64_",
    "openblas_set_num_threads_local64_",
    "scipy_openblas_set_num_threads_local",
    "openblas_set_num_threads_local",
)
_GET_CONFIG = (
    "scipy_openblas_get_config64_",
    "openblas_get_config64_",
    "scipy_openblas_get_config",
    "openblas_get_config",
)

_BLAS_NAME_RE = re.compile(r"(openblas|blas|mkl_rt|flexiblas|blis|accelerate)", re.I)


def _addr(lib, name) -> Optional[int]:
    try:
        return ctypes.cast(getattr(lib, name), ctypes.c_void_p).value
    except AttributeError:
        return None


def _first(lib, names):
    for n in names:
        a = _addr(lib, n)
        if a:
            return n, a
    return None, None


def _library_config(lib) -> Optional[str]:
    _, a = _first(lib, _GET_CONFIG)
    if not a:
        return None
    s = ctypes.CFUNCTYPE(ctypes.c_char_p)(a)()
    return s.decode("ascii", "replace") if s else None


def _gemms_from_library(path: str, source: str,
                        interfaces=("cblas", "fortran")) -> Optional[BlasInfo]:
    """Open ``path`` and look for a matching sgemm/dgemm pair.

    ``interfaces`` restricts/orders the calling conventions accepted (tests use
    it to exercise the Fortran path of a library that also has CBLAS).
    """
    try:
        lib = ctypes.CDLL(path)
    except OSError:
        return None
    config = _library_config(lib)
    ilp64_hint = bool(config and "USE64BITINT" in config) or bool(
        re.search(r"(ilp64|openblas64|blas64)", os.path.basename(path), re.I))
    table = [row for i in interfaces for row in _GEMM_SYMBOLS if row[1] == i]
    for template, interface, bits in table:
        found = {}
        for dtype, p in _DTYPE_PREFIX.items():
            name = template.format(p=p)
            a = _addr(lib, name)
            if not a:
                break
            found[dtype] = (name, a)
        if len(found) != 2:
            continue
        if bits is None:
            bits = 64 if ilp64_hint else 32
        hidden = interface == "fortran"
        fns = {
            dt: GemmFunction(dt, a, name, interface, bits, source, path, hidden)
            for dt, (name, a) in found.items()
        }
        return BlasInfo(
            source=source,
            library=path,
            sgemm=fns["float32"],
            dgemm=fns["float64"],
            set_num_threads_address=_first(lib, _SET_THREADS)[1],
            get_num_threads_address=_first(lib, _GET_THREADS)[1],
            set_num_threads_local_address=_first(lib, _SET_THREADS_LOCAL)[1],
            config=config,
            _handle=lib,
        )
    return None


def _loaded_libraries() -> list:
    """Paths of the shared objects mapped into this process (best effort)."""
    paths = []
    if sys.platform.startswith("linux"):
        try:
            with open("/proc/self/maps") as f:
                for line in f:
                    parts = line.split(None, 5)
                    if len(parts) == 6 and parts[5].startswith("/"):
                        p = parts[5].strip()
                        if p not in paths:
                            paths.append(p)
        except OSError:
            pass
    elif sys.platform == "darwin":
        try:
            dyld = ctypes.CDLL(None)
            dyld._dyld_image_count.restype = ctypes.c_uint32
            dyld._dyld_get_image_name.restype = ctypes.c_char_p
            dyld._dyld_get_image_name.argtypes = [ctypes.c_uint32]
            for i in range(dyld._dyld_image_count()):
                n = dyld._dyld_get_image_name(i)
                if n:
                    paths.append(n.decode())
        except (OSError, AttributeError):
            pass
    return paths


def _from_numpy() -> Optional[BlasInfo]:
    import numpy as np  # maps numpy's BLAS into the process

    # Make sure the extension module that links BLAS is loaded.
    try:
        import numpy.linalg  # noqa: F401
    except ImportError:  # pragma: no cover
        pass
    np_dir = os.path.dirname(os.path.abspath(np.__file__))
    site = os.path.dirname(np_dir)
    wheel_dirs = [os.path.join(site, "numpy.libs"), os.path.join(np_dir, ".dylibs"),
                  os.path.join(np_dir, "_core"), np_dir]
    candidates = []
    loaded = [p for p in _loaded_libraries() if _BLAS_NAME_RE.search(os.path.basename(p))]
    # libraries inside numpy's own folders first, then any other loaded BLAS
    loaded.sort(key=lambda p: 0 if any(p.startswith(d) for d in wheel_dirs[:2]) else 1)
    candidates += loaded
    for d in wheel_dirs[:2]:
        for pat in ("*openblas*", "*blas*"):
            for p in sorted(glob.glob(os.path.join(d, pat))):
                if p not in candidates and not p.endswith((".a", ".lib")):
                    candidates.append(p)
    for p in candidates:
        info = _gemms_from_library(p, "numpy")
        if info is not None:
            return info
    return None


def _capsule_pointer(capsule) -> int:
    get_name = ctypes.pythonapi.PyCapsule_GetName
    get_name.restype = ctypes.c_char_p
    get_name.argtypes = [ctypes.py_object]
    get_ptr = ctypes.pythonapi.PyCapsule_GetPointer
    get_ptr.restype = ctypes.c_void_p
    get_ptr.argtypes = [ctypes.py_object, ctypes.c_char_p]
    return get_ptr(capsule, get_name(capsule))


def _from_scipy() -> Optional[BlasInfo]:
    try:
        from scipy.linalg import cython_blas
    except Exception:  # not installed, or broken
        return None
    capi = getattr(cython_blas, "__pyx_capi__", {})
    if "sgemm" not in capi or "dgemm" not in capi:
        return None
    fns = {}
    for dt, p in _DTYPE_PREFIX.items():
        a = _capsule_pointer(capi[p + "gemm"])
        if not a:
            return None
        # scipy's cython_blas is declared with C ``int`` (LP64) and is a C
        # wrapper, so no hidden Fortran string lengths.
        fns[dt] = GemmFunction(dt, a, f"scipy.linalg.cython_blas.{p}gemm", "fortran", 32,
                               "scipy", "scipy.linalg.cython_blas", False)
    # thread control: scipy's own OpenBLAS copy, if we can find it mapped
    set_a = get_a = local_a = None
    config = None
    handle = cython_blas
    for p in _loaded_libraries():
        if "scipy" in p and "openblas" in os.path.basename(p).lower() and "numpy" not in p:
            try:
                lib = ctypes.CDLL(p)
            except OSError:
                continue
            set_a = _first(lib, _SET_THREADS)[1]
            get_a = _first(lib, _GET_THREADS)[1]
            local_a = _first(lib, _SET_THREADS_LOCAL)[1]
            config = _library_config(lib)
            handle = (cython_blas, lib)
            break
    return BlasInfo("scipy", "scipy.linalg.cython_blas", fns["float32"], fns["float64"],
                    set_a, get_a, local_a, config, handle)


def _from_system() -> Optional[BlasInfo]:
    import ctypes.util  # imports subprocess (~5 ms): only when numpy's own BLAS was not found
    names = ["openblas", "openblas64_", "mkl_rt", "flexiblas", "blis", "cblas", "blas"]
    if sys.platform == "darwin":
        names.append("Accelerate")
    seen = set()
    for n in names:
        p = ctypes.util.find_library(n)
        if not p or p in seen:
            continue
        seen.add(p)
        info = _gemms_from_library(p, "system")
        if info is not None:
            return info
    return None


_FINDERS = {"numpy": _from_numpy, "scipy": _from_scipy, "system": _from_system}
_cache: dict = {}
_cache_lock = threading.Lock()


def _order_from_env() -> tuple:
    env = os.environ.get("GRAPHC_BLAS", "").strip().lower()
    if not env:
        return SOURCES
    if env in ("none", "off", "0"):
        return ()
    order = tuple(s.strip() for s in env.split(",") if s.strip())
    bad = [s for s in order if s not in _FINDERS]
    if bad:
        raise ValueError(f"GRAPHC_BLAS: unknown BLAS source(s) {bad}; use {SOURCES} or 'none'")
    return order


def find_blas(sources=None) -> Optional[BlasInfo]:
    """Locate sgemm/dgemm; ``None`` if no source works (codegen falls back).

    ``sources`` is an ordered iterable of names from :data:`SOURCES`
    (default: ``GRAPHC_BLAS`` or ``numpy, scipy, system``).  Results are
    cached per source order; the libraries found stay loaded for the life of
    the process (their addresses are baked into compiled code).
    """
    order = _order_from_env() if sources is None else tuple(sources)
    with _cache_lock:
        if order in _cache:
            return _cache[order]
        result = None
        for s in order:
            if s not in _FINDERS:
                raise ValueError(f"unknown BLAS source {s!r}; use one of {SOURCES}")
            try:
                result = _FINDERS[s]()
            except Exception:  # a broken optional source must not break codegen
                result = None
            if result is not None:
                break
        _cache[order] = result
        return result


def get_blas(sources=None) -> BlasInfo:
    """Like :func:`find_blas` but raise :class:`BlasNotFoundError` if none."""
    info = find_blas(sources)
    if info is None:
        order = _order_from_env() if sources is None else tuple(sources)
        raise BlasNotFoundError(
            "no BLAS sgemm/dgemm found (tried: %s). graphc looks for numpy's bundled "
            "OpenBLAS, scipy.linalg.cython_blas and a system libopenblas/libblas; "
            "set GRAPHC_BLAS=none to use graphc's own matmul loops." % (", ".join(order) or "nothing"))
    return info


# --------------------------------------------------------------------------
# IR emission
# --------------------------------------------------------------------------


def _as_int(builder, v, ty):
    from llvmlite import ir

    if isinstance(v, numbers.Integral):
        v = int(v)
        if v.bit_length() >= ty.width:
            raise OverflowError(f"{v} does not fit the {ty.width}-bit BLAS integer")
        return ir.Constant(ty, v)
    if v.type.width == ty.width:
        return v
    if v.type.width > ty.width:
        return builder.trunc(v, ty)
    return builder.sext(v, ty)


def _as_float(v, ty):
    from llvmlite import ir

    if isinstance(v, numbers.Real):
        return ir.Constant(ty, float(v))
    return v


def _as_ptr(builder, v, pty):
    if v.type == pty and str(v.type) == str(pty):
        return v
    return builder.bitcast(v, pty)


def _entry_alloca(builder, ty, name=""):
    with builder.goto_entry_block():
        return builder.alloca(ty, name=name)


def _check_static(trans_a, trans_b, m, n, k, lda, ldb, ldc):
    """Reject impossible leading dimensions when they are known at compile
    time (BLAS would only print an xerbla message and skip the call)."""
    vals = (m, n, k, lda, ldb, ldc)
    if not all(isinstance(v, numbers.Integral) for v in vals):
        return
    m, n, k, lda, ldb, ldc = (int(v) for v in vals)
    if min(m, n, k) < 0:
        raise ValueError(f"negative GEMM dimension m={m} n={n} k={k}")
    need = {"lda": (lda, m if trans_a else k), "ldb": (ldb, k if trans_b else n),
            "ldc": (ldc, n)}
    for name, (ld, width) in need.items():
        if ld < max(1, width):
            raise ValueError(f"{name}={ld} < max(1, {width}) for row-major GEMM "
                             f"(m={m}, n={n}, k={k}, trans_a={trans_a}, trans_b={trans_b})")


def emit_gemm(builder, fn: GemmFunction, *, trans_a: bool, trans_b: bool,
              m, n, k, a, lda, b, ldb, c, ldc, alpha=1.0, beta=0.0, address=None):
    """Emit ``C = alpha * op(A) @ op(B) + beta * C`` (row-major) as a direct call.

    ``op(X)`` is ``X.T`` when ``trans_X``.  Shapes: ``op(A)`` is ``m x k``,
    ``op(B)`` is ``k x n``, ``C`` is ``m x n``.  Every matrix is row-major
    with unit column stride and row stride ``ld*`` (in elements): for a
    non-transposed A, ``lda >= k``; for a transposed A (stored ``k x m``),
    ``lda >= m``; likewise for B, and ``ldc >= n``.  A strided view of a
    bigger array (``X[:, :k]``) is passed by its base pointer and the big
    array's row stride; a transpose is passed as the untransposed storage
    plus ``trans_*=True`` -- nothing is copied.

    ``m, n, k, ld*`` are Python ints or llvmlite integer values of any
    width (converted to the BLAS integer width: keep them < 2**31 for a
    32-bit BLAS); ``alpha``/``beta`` Python numbers or values of the GEMM's
    float type; ``a, b, c`` pointer values (bitcast as needed).  Fortran
    interfaces need stack slots for the by-pointer arguments; they are
    allocated in the function's entry block so the call may sit in a loop.

    ``address`` (optional): an i64 LLVM value holding the GEMM's address at
    run time (e.g. loaded from a runtime table), so the machine code does
    not depend on where this process mapped the BLAS and can be cached;
    default: ``fn.address`` baked in as a constant.  ``fn`` must still
    describe the library that will be called (interface, integer width).
    Compile-time (Python int) shapes are checked: an impossible leading
    dimension raises ``ValueError`` (BLAS would print an error and skip).
    """
    from llvmlite import ir

    # ``address``: an i64 LLVM value holding the function's address at run time (so the
    # machine code does not depend on this process's address of the BLAS); default: fn.address
    target = address if address is not None else ir.Constant(ir.IntType(64), fn.address)
    _check_static(trans_a, trans_b, m, n, k, lda, ldb, ldc)
    fty = ir.FloatType() if fn.dtype == "float32" else ir.DoubleType()
    fptr = fty.as_pointer()
    ity = ir.IntType(fn.int_bits)
    i32 = ir.IntType(32)
    a = _as_ptr(builder, a, fptr)
    b = _as_ptr(builder, b, fptr)
    c = _as_ptr(builder, c, fptr)
    alpha = _as_float(alpha, fty)
    beta = _as_float(beta, fty)
    m, n, k, lda, ldb, ldc = (_as_int(builder, v, ity) for v in (m, n, k, lda, ldb, ldc))

    if fn.interface == "cblas":
        argtys = [i32, i32, i32, ity, ity, ity, fty, fptr, ity, fptr, ity, fty, fptr, ity]
        fnty = ir.FunctionType(ir.VoidType(), argtys)
        callee = builder.inttoptr(target, fnty.as_pointer(),
                                  name=fn.symbol)
        ta = ir.Constant(i32, CBLAS_TRANS if trans_a else CBLAS_NO_TRANS)
        tb = ir.Constant(i32, CBLAS_TRANS if trans_b else CBLAS_NO_TRANS)
        return builder.call(callee, [ir.Constant(i32, CBLAS_ROW_MAJOR), ta, tb, m, n, k,
                                     alpha, a, lda, b, ldb, beta, c, ldc])

    if fn.interface != "fortran":
        raise ValueError(f"unknown BLAS interface {fn.interface!r}")
    # Column-major view: C^T (n x m) = op(B)^T (n x k) @ op(A)^T (k x m);
    # B's row-major storage is the column-major B^T, so op stays the same.
    i8 = ir.IntType(8)
    i8p = i8.as_pointer()
    ip = ity.as_pointer()
    argtys = [i8p, i8p, ip, ip, ip, fptr, fptr, ip, fptr, ip, fptr, fptr, ip]
    if fn.fortran_hidden_lengths:
        argtys += [ir.IntType(64), ir.IntType(64)]
    fnty = ir.FunctionType(ir.VoidType(), argtys)
    callee = builder.inttoptr(target, fnty.as_pointer(),
                              name=fn.symbol.replace(".", "_"))

    def slot(ty, val, name):
        p = _entry_alloca(builder, ty, name)
        builder.store(val, p)
        return p

    ta = slot(i8, ir.Constant(i8, ord("T" if trans_b else "N")), "gemm.ta")
    tb = slot(i8, ir.Constant(i8, ord("T" if trans_a else "N")), "gemm.tb")
    args = [ta, tb, slot(ity, n, "gemm.m"), slot(ity, m, "gemm.n"), slot(ity, k, "gemm.k"),
            slot(fty, alpha, "gemm.alpha"), b, slot(ity, ldb, "gemm.lda"), a,
            slot(ity, lda, "gemm.ldb"), slot(fty, beta, "gemm.beta"), c,
            slot(ity, ldc, "gemm.ldc")]
    if fn.fortran_hidden_lengths:
        args += [ir.Constant(ir.IntType(64), 1)] * 2
    return builder.call(callee, args)
