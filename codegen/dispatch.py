"""The native call path: Python calls a compiled function through ONE builtin in well under 1 µs.

A compiled step is one native call, but preparing that call in Python (check
every input's type, dtype, shape and layout, take each array's data address,
allocate the outputs, call through ctypes) costs about 20 µs: far more than a
small training step itself (logistic regression on a batch of 16 runs in
0.4 µs). So the calling convention itself is compiled: ``graphc_dispatch`` is
a CPython ``METH_FASTCALL`` function written in LLVM IR, generic over all
compiled functions (one copy per process, cached on disk like the thread
pool). A ``CompiledFunction`` gets a builtin bound to its own table::

    PyObject *graphc_dispatch(PyObject *self, PyObject *const *args, Py_ssize_t nargs)

``self`` is a tuple ``(table, outputs, ...)``: ``table`` an int64 array
(layout below), ``outputs`` a list holding last call's output arrays, and
the rest only keeps alive what the table points to. A call:

1. *checks* ``nargs`` and, for every input: exact type ``numpy.ndarray``, the
   expected dtype object (numpy's builtin dtypes are singletons), rank,
   every dimension, C-contiguous and aligned flags; and that no parameter
   was re-bound since the table was filled (a global epoch that
   ``Node.value`` assignments bump). Anything else (a list, a strided view,
   a wrong shape, ...) goes to the *slow path*: the Python
   ``CompiledFunction._slow_call``, which raises the descriptive error or
   converts the input (the documented copy), takes the parameters' current
   arrays, and makes the call itself through ``graphc_locked_call`` (the
   addresses, the call and the status under the lock, in one native call);
2. *outputs*: last call's output array is reused when the list holds its
   only reference (nobody else can see it change); else a new one comes from
   ``numpy.empty(shape, dtype)``. Reused arrays are claimed (reference taken)
   before anything can run other Python code;
3. *locks* the function (a spin-then-``sched_yield`` lock in the table, taken
   with the GIL released when it is busy), so the buffer table, the scratch
   arena and the parameters are used by one call at a time;
4. fills the buffer table with the input and output data addresses and makes
   the one call of ``graphc_run``, releasing the GIL around it unless the
   function is tiny (``RELEASE_GIL``);
5. unlocks; if the status word is set (an index out of range, checked by the
   native code before any access) calls the Python ``raise`` callable;
   returns the output (or a list of outputs).

Object layouts used (checked against this process at start-up by
:func:`layout_ok`; on any mismatch, e.g. a free-threaded or debug CPython,
the Python path is used): ``ob_refcnt`` at 0, ``ob_type`` at 8; a tuple's
items inline at 24; a list's item pointer at 24; numpy's ``PyArrayObject``
``data`` at 16, ``nd`` (int) at 24, ``dimensions`` at 32, ``descr`` at 56,
``flags`` (int) at 64 — the public ``PyArrayObject_fields`` of numpy 1.x and
2.x. Reference counts change only through ``Py_IncRef``/``Py_DecRef``.

The same module holds ``graphc_locked_call`` (the slow path's call: buffer
addresses, the call and the status under the lock, in one native call) and
``graphc_blas_serial``/``graphc_blas_restore``
(BLAS single-threaded while GEMMs run in chunks on graphc's pool; see
``codegen.emit.emit_matmul``).
"""

from __future__ import annotations

import ctypes
import os
import sys
import sysconfig
import threading

import numpy as np
from llvmlite import ir

from .loops import for_range

# ---- table layout (int64 words) ---------------------------------------------------------
BUFS, ENTRY, NDARRAY, N_IN, N_OUT, SINGLE, SLOW, RAISE, EMPTY_TUPLE, EPOCH_ADDR, EPOCH_SEEN, \
    STATUS, LOCK, RELEASE_GIL, EMPTY_FN = range(15)
HEADER = 16
IN_FIELDS = 4    # per input: slot, dtype object, rank, index of its first dimension in the table
OUT_FIELDS = 2   # per output: slot, address of its (shape, dtype) tuple for numpy.empty
# numpy flags
C_CONTIGUOUS, ALIGNED = 0x1, 0x100

API = ("Py_IncRef", "Py_DecRef", "PyObject_Call", "PyTuple_New", "PyTuple_SetItem", "PyList_New",
       "PyList_SetItem", "PyEval_SaveThread", "PyEval_RestoreThread")

_I8, _I32, _I64 = ir.IntType(8), ir.IntType(32), ir.IntType(64)
_P = _I8.as_pointer()
_PP = _P.as_pointer()
_I64P = _I64.as_pointer()


def layout_ok() -> bool:
    """True if this process's CPython and numpy objects have the layouts the dispatcher reads."""
    if sysconfig.get_config_var("Py_GIL_DISABLED") or hasattr(sys, "gettotalrefcount"):
        return False
    if ctypes.sizeof(ctypes.c_void_p) != 8 or not hasattr(ctypes, "pythonapi"):
        return False
    try:
        for name in API:
            getattr(ctypes.pythonapi, name)
        word = lambda addr: ctypes.c_int64.from_address(addr).value  # noqa: E731
        a = np.zeros((3, 5), np.float32)[:, :4]
        probe = (a, [a])
        ok = (word(id(probe) + 24) == id(a)
              and word(word(id(probe[1]) + 24)) == id(a)
              and word(id(a) + 8) == id(np.ndarray)
              and word(id(a) + 16) == a.__array_interface__["data"][0]
              and ctypes.c_int.from_address(id(a) + 24).value == 2
              and word(word(id(a) + 32) + 8) == 4
              and word(id(a) + 56) == id(a.dtype)
              and ctypes.c_int.from_address(id(a) + 64).value & C_CONTIGUOUS == 0
              and ctypes.c_int.from_address(id(np.zeros(2)) + 64).value & (C_CONTIGUOUS | ALIGNED)
              == C_CONTIGUOUS | ALIGNED)
        return bool(ok)
    except Exception:  # noqa: BLE001 - any surprise: use the Python path
        return False


# ---- the IR ---------------------------------------------------------------------------------

class _Builder:
    """Small helpers over an ``ir.IRBuilder`` for the dispatcher's word-level code."""

    def __init__(self, fn: ir.Function, module: ir.Module):
        self.fn, self.m = fn, module
        self.b = ir.IRBuilder(fn.append_basic_block("entry"))

    def block(self, name):
        return self.fn.append_basic_block(name)

    def const(self, v):
        return ir.Constant(_I64, v)

    def word(self, base, index):
        """``((i64*)base)[index]`` for an i8* or i64* base."""
        b = self.b
        p = base if base.type == _I64P else b.bitcast(base, _I64P)
        return b.load(b.gep(p, [index if isinstance(index, ir.Value) else self.const(index)]))

    def word_ptr(self, base, index):
        b = self.b
        p = base if base.type == _I64P else b.bitcast(base, _I64P)
        return b.gep(p, [index if isinstance(index, ir.Value) else self.const(index)])

    def int32_at(self, obj, offset):
        b = self.b
        p = b.bitcast(b.gep(obj, [self.const(offset)]), _I32.as_pointer())
        return b.load(p)

    def field(self, obj, offset):
        """The 8-byte field at ``offset`` of object ``obj`` (i8*), as i64."""
        b = self.b
        return b.load(b.bitcast(b.gep(obj, [self.const(offset)]), _I64P))

    def as_ptr(self, v):
        return self.b.inttoptr(v, _P)

    def declare(self, name, ret, args):
        fn = self.m.globals.get(name)
        return fn if fn is not None else ir.Function(self.m, ir.FunctionType(ret, args), name)

    def api(self, name, *args):
        sig = {"Py_IncRef": (ir.VoidType(), [_P]), "Py_DecRef": (ir.VoidType(), [_P]),
               "PyObject_Call": (_P, [_P, _P, _P]), "PyTuple_New": (_P, [_I64]),
               "PyTuple_SetItem": (_I32, [_P, _I64, _P]), "PyList_New": (_P, [_I64]),
               "PyList_SetItem": (_I32, [_P, _I64, _P]), "PyEval_SaveThread": (_P, []),
               "PyEval_RestoreThread": (ir.VoidType(), [_P]), "sched_yield": (_I32, [])}[name]
        return self.b.call(self.declare(name, *sig), list(args))

    def try_lock(self, lock):
        """One attempt at the spin lock word ``lock``: an i1, true if taken."""
        return self.b.extract_value(self.b.cmpxchg(lock, self.const(0), self.const(1), "acquire", "monotonic"), 1)

    def spin_lock(self, lock):
        """Take the lock, yielding the CPU between attempts (the GIL is not touched)."""
        b = self.b
        spin, locked, wait = self.block("spin"), self.block("locked"), self.block("wait")
        b.branch(spin)
        b.position_at_end(spin)
        b.cbranch(self.try_lock(lock), locked, wait)
        b.position_at_end(wait)
        self.api("sched_yield")
        b.branch(spin)
        b.position_at_end(locked)

    def unlock(self, lock):
        self.b.store_atomic(self.const(0), lock, "release", 8)

    def is_null(self, p):
        return self.b.icmp_unsigned("==", self.b.ptrtoint(p, _I64), self.const(0))


def build_module() -> ir.Module:
    """The dispatcher module: ``graphc_dispatch`` (see the module docstring)."""
    m = ir.Module(name="graphc_dispatch")
    fnty = ir.FunctionType(_P, [_P, _PP, _I64])
    fn = ir.Function(m, fnty, "graphc_dispatch")
    self_obj, args, nargs = fn.args
    g = _Builder(fn, m)
    b = g.b
    null = ir.Constant(_P, None)

    # self = (table, outputs, ...): table's data, the outputs list's item array
    table_obj = g.as_ptr(g.field(self_obj, 24))
    outs_list = g.as_ptr(g.field(self_obj, 32))
    t = b.inttoptr(g.field(table_obj, 16), _I64P)
    out_items = b.inttoptr(g.field(outs_list, 24), _PP)
    n_in, n_out = g.word(t, N_IN), g.word(t, N_OUT)
    slow = g.block("slow")

    # 1. checks
    ok_count = g.block("count_ok")
    b.cbranch(b.icmp_signed("==", nargs, n_in), ok_count, slow)
    b.position_at_end(ok_count)
    epoch_ok = b.icmp_signed("==", b.load(b.inttoptr(g.word(t, EPOCH_ADDR), _I64P)), g.word(t, EPOCH_SEEN))
    inputs = g.block("inputs")
    b.cbranch(epoch_ok, inputs, slow)
    b.position_at_end(inputs)
    ndarray = g.word(t, NDARRAY)
    with for_range(b, 0, n_in, "in") as i:
        rec = b.add(g.const(HEADER), b.mul(i, g.const(IN_FIELDS)))
        a = b.load(b.gep(args, [i]))
        type_ok = g.block("type_ok")
        b.cbranch(b.icmp_signed("==", g.field(a, 8), ndarray), type_ok, slow)
        b.position_at_end(type_ok)
        rank = g.word(t, b.add(rec, g.const(2)))
        good = b.and_(b.icmp_signed("==", g.field(a, 56), g.word(t, b.add(rec, g.const(1)))),
                      b.icmp_signed("==", b.sext(g.int32_at(a, 24), _I64), rank))
        flags = g.int32_at(a, 64)
        want = ir.Constant(_I32, C_CONTIGUOUS | ALIGNED)
        good = b.and_(good, b.icmp_signed("==", b.and_(flags, want), want))
        dims_ok = g.block("dims")
        b.cbranch(good, dims_ok, slow)
        b.position_at_end(dims_ok)
        dims = b.inttoptr(g.field(a, 32), _I64P)
        first = g.word(t, b.add(rec, g.const(3)))
        with for_range(b, 0, rank, "dim") as d:
            dnext = g.block("dim.next")
            b.cbranch(b.icmp_signed("==", g.word(dims, d), g.word(t, b.add(first, d))), dnext, slow)
            b.position_at_end(dnext)

    # 2. outputs: reuse last call's array if only the list holds it, else numpy.empty(shape, dtype)
    outs = b.alloca(_P, n_out, name="outs")
    out_rec0 = b.add(g.const(HEADER), b.mul(n_in, g.const(IN_FIELDS)))
    failed = g.block("alloc_failed")
    with for_range(b, 0, n_out, "out") as j:
        old = b.load(b.gep(out_items, [j]))
        refcnt = b.load(b.bitcast(old, _I64P))
        reuse, fresh, onext = g.block("reuse"), g.block("fresh"), g.block("out.next")
        b.cbranch(b.icmp_signed("==", refcnt, g.const(1)), reuse, fresh)
        b.position_at_end(reuse)
        g.api("Py_IncRef", old)
        b.store(old, b.gep(outs, [j]))
        b.branch(onext)
        b.position_at_end(fresh)
        orec = b.add(out_rec0, b.mul(j, g.const(OUT_FIELDS)))
        new = g.api("PyObject_Call", g.as_ptr(g.word(t, EMPTY_FN)),
                    g.as_ptr(g.word(t, b.add(orec, g.const(1)))), null)
        stored = g.block("alloc_ok")
        b.cbranch(g.is_null(new), failed, stored)
        b.position_at_end(stored)
        b.store(new, b.gep(outs, [j]))
        b.branch(onext)
        b.position_at_end(onext)
    outs_done = b.block

    b.position_at_end(failed)  # release what was claimed so far, propagate the MemoryError
    _release_outputs(g, outs, j)
    b.ret(null)

    # 3. lock (the GIL is released while waiting), then re-check the epoch: Python ran above
    b.position_at_end(outs_done)
    lock = g.word_ptr(t, LOCK)
    locked, wait = g.block("locked"), g.block("wait")
    b.cbranch(g.try_lock(lock), locked, wait)
    b.position_at_end(wait)
    ts = g.api("PyEval_SaveThread")
    g.spin_lock(lock)
    g.api("PyEval_RestoreThread", ts)
    b.branch(locked)

    b.position_at_end(locked)
    still = b.icmp_signed("==", b.load(b.inttoptr(g.word(t, EPOCH_ADDR), _I64P)), g.word(t, EPOCH_SEEN))
    fill, stale = g.block("fill"), g.block("stale")
    b.cbranch(still, fill, stale)
    b.position_at_end(stale)  # a parameter was re-bound meanwhile: unlock, give back, slow path
    g.unlock(lock)
    _release_outputs(g, outs, n_out)
    b.branch(slow)

    # 4. fill the buffer table and run
    b.position_at_end(fill)
    bufs = b.inttoptr(g.word(t, BUFS), _I64P)
    with for_range(b, 0, n_in, "fill.in") as k:
        slot = g.word(t, b.add(g.const(HEADER), b.mul(k, g.const(IN_FIELDS))))
        b.store(g.field(b.load(b.gep(args, [k])), 16), b.gep(bufs, [slot]))
    with for_range(b, 0, n_out, "fill.out") as q:
        oslot = g.word(t, b.add(out_rec0, b.mul(q, g.const(OUT_FIELDS))))
        b.store(g.field(b.load(b.gep(outs, [q])), 16), b.gep(bufs, [oslot]))
    status = g.word_ptr(t, STATUS)
    b.store(g.const(0), status)
    run = b.inttoptr(g.word(t, ENTRY), ir.FunctionType(ir.VoidType(), [_P]).as_pointer())
    release = b.icmp_signed("!=", g.word(t, RELEASE_GIL), g.const(0))
    with b.if_else(release) as (then, other):
        with then:
            ts2 = g.api("PyEval_SaveThread")
            b.call(run, [b.bitcast(bufs, _P)])
            g.api("PyEval_RestoreThread", ts2)
        with other:
            b.call(run, [b.bitcast(bufs, _P)])
    st = b.load(status)
    g.unlock(lock)

    # 5. keep this call's outputs for reuse (the list takes a reference; the old one is dropped)
    with for_range(b, 0, n_out, "keep") as s:
        cur = b.load(b.gep(outs, [s]))
        slot_p = b.gep(out_items, [s])
        prev = b.load(slot_p)
        with b.if_then(b.icmp_unsigned("!=", prev, cur)):
            g.api("Py_IncRef", cur)
            b.store(cur, slot_p)
            g.api("Py_DecRef", prev)

    bad, good_st = g.block("status_bad"), g.block("status_ok")
    b.cbranch(b.icmp_signed("!=", st, g.const(0)), bad, good_st)
    b.position_at_end(bad)
    _release_outputs(g, outs, n_out)
    b.ret(g.api("PyObject_Call", g.as_ptr(g.word(t, RAISE)), g.as_ptr(g.word(t, EMPTY_TUPLE)), null))

    b.position_at_end(good_st)
    one, many = g.block("single"), g.block("list")
    b.cbranch(b.icmp_signed("!=", g.word(t, SINGLE), g.const(0)), one, many)
    b.position_at_end(one)
    b.ret(b.load(outs))
    b.position_at_end(many)
    lst = g.api("PyList_New", n_out)
    list_fail, list_ok = g.block("list_failed"), g.block("list_ok")
    b.cbranch(g.is_null(lst), list_fail, list_ok)
    b.position_at_end(list_fail)
    _release_outputs(g, outs, n_out)
    b.ret(null)
    b.position_at_end(list_ok)
    with for_range(b, 0, n_out, "ret") as r:
        g.api("PyList_SetItem", lst, r, b.load(b.gep(outs, [r])))  # steals our reference
    b.ret(lst)

    # slow path: slow(*args) in Python
    b.position_at_end(slow)
    tup = g.api("PyTuple_New", nargs)
    tup_ok, tup_fail = g.block("tuple_ok"), g.block("tuple_failed")
    b.cbranch(g.is_null(tup), tup_fail, tup_ok)
    b.position_at_end(tup_fail)
    b.ret(null)
    b.position_at_end(tup_ok)
    with for_range(b, 0, nargs, "pack") as u:
        item = b.load(b.gep(args, [u]))
        g.api("Py_IncRef", item)
        g.api("PyTuple_SetItem", tup, u, item)
    res = g.api("PyObject_Call", g.as_ptr(g.word(t, SLOW)), tup, null)
    g.api("Py_DecRef", tup)
    b.ret(res)
    _build_locked_call(m)
    _build_blas_hooks(m)
    return m


def _build_locked_call(m: ir.Module):
    """``i64 graphc_locked_call(i64* table, i64* slots, i64* addrs, i64 n, i64 epoch)``: the slow
    path's call. Under the function's lock: ``bufs[slots[i]] = addrs[i]`` for every i (the
    parameters, the arena, the inputs and outputs the Python side prepared), ``EPOCH_SEEN =
    epoch``, the one call of the entry point; returns the status word. Called through ctypes,
    which releases the GIL for the whole of it: no Python runs while the lock is held, so neither
    an exception, a signal nor a finalizer can leave the lock taken or wait for it under itself.
    """
    fnty = ir.FunctionType(_I64, [_I64P, _I64P, _I64P, _I64, _I64])
    fn = ir.Function(m, fnty, "graphc_locked_call")
    t, slots, addrs, n, epoch = fn.args
    g = _Builder(fn, m)
    b = g.b
    lock = g.word_ptr(t, LOCK)
    g.spin_lock(lock)
    bufs = b.inttoptr(g.word(t, BUFS), _I64P)
    with for_range(b, 0, n, "fill") as i:
        b.store(b.load(b.gep(addrs, [i])), b.gep(bufs, [b.load(b.gep(slots, [i]))]))
    b.store(epoch, g.word_ptr(t, EPOCH_SEEN))
    status = g.word_ptr(t, STATUS)
    b.store(g.const(0), status)
    run = b.inttoptr(g.word(t, ENTRY), ir.FunctionType(ir.VoidType(), [_P]).as_pointer())
    b.call(run, [b.bitcast(bufs, _P)])
    st = b.load(status)
    g.unlock(lock)
    b.ret(st)


def _build_blas_hooks(m: ir.Module):
    """``graphc_blas_serial()`` / ``graphc_blas_restore()``: BLAS single-threaded while any
    compiled call that splits GEMMs over graphc's pool runs (``codegen.emit.emit_matmul``).

    A count of such calls, under a spin lock: the first one in saves the BLAS thread count and
    sets 1; the last one out restores it. ``gc_blas_set``/``gc_blas_get`` hold the addresses of
    the BLAS's ``set_num_threads(int)``/``get_num_threads()``, written by :func:`blas_hooks`.
    (Meanwhile numpy's own BLAS calls in other threads run single-threaded too: correct,
    only not parallel.)
    """
    def g(name):
        v = ir.GlobalVariable(m, _I64, name)
        v.initializer = ir.Constant(_I64, 0)
        v.align = 64
        return v
    set_addr, get_addr, active, saved, lock = (g(n) for n in (
        "gc_blas_set", "gc_blas_get", "gc_blas_active", "gc_blas_saved", "gc_blas_lock"))
    for entering in (True, False):
        fn = ir.Function(m, ir.FunctionType(ir.VoidType(), []),
                         "graphc_blas_serial" if entering else "graphc_blas_restore")
        bld = _Builder(fn, m)
        b = bld.b
        bld.spin_lock(lock)
        set_fn = b.inttoptr(b.load(set_addr), ir.FunctionType(ir.VoidType(), [_I32]).as_pointer())
        n = b.load(active)
        if entering:
            with b.if_then(b.icmp_signed("==", n, bld.const(0))):
                get_fn = b.inttoptr(b.load(get_addr), ir.FunctionType(_I32, []).as_pointer())
                before = b.call(get_fn, [])
                b.store(b.sext(before, _I64), saved)
                with b.if_then(b.icmp_signed("!=", before, ir.Constant(_I32, 1))):
                    b.call(set_fn, [ir.Constant(_I32, 1)])
            b.store(b.add(n, bld.const(1)), active)
        else:
            left = b.sub(n, bld.const(1))
            b.store(left, active)
            old = b.load(saved)
            with b.if_then(b.and_(b.icmp_signed("==", left, bld.const(0)), b.icmp_signed("!=", old, bld.const(1)))):
                b.call(set_fn, [b.trunc(old, _I32)])
        bld.unlock(lock)
        b.ret_void()


def blas_hooks(info) -> tuple[int, int]:
    """Addresses of ``graphc_blas_serial``/``graphc_blas_restore`` for this process's BLAS
    ``info`` (``codegen.blas.BlasInfo``), or (0, 0) if its thread count cannot be set."""
    native = _native()
    if native is None or info is None or not info.set_num_threads_address or not info.get_num_threads_address:
        return 0, 0
    engine = native[0]
    ctypes.c_int64.from_address(engine.get_global_value_address("gc_blas_set")).value = \
        info.set_num_threads_address
    ctypes.c_int64.from_address(engine.get_global_value_address("gc_blas_get")).value = \
        info.get_num_threads_address
    _STATE["blas_words"] = {name: ctypes.c_int64.from_address(engine.get_global_value_address(name))
                            for name in ("gc_blas_active", "gc_blas_saved", "gc_blas_lock")}
    _STATE["blas_info"] = info
    return (engine.get_function_address("graphc_blas_serial"),
            engine.get_function_address("graphc_blas_restore"))


def _blas_after_fork():
    """A forked child has only the forking thread: calls that other threads were running in the
    parent never end there. Give BLAS its thread count back and reset the count and lock."""
    words = _STATE.get("blas_words")
    if not words:
        return
    if words["gc_blas_active"].value:
        try:
            _STATE["blas_info"].set_num_threads(int(words["gc_blas_saved"].value))
        except Exception:  # noqa: BLE001 - a BLAS without the control: nothing to give back
            pass
    words["gc_blas_active"].value = 0
    words["gc_blas_lock"].value = 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_blas_after_fork)


def _release_outputs(g: _Builder, outs, n):
    """Drop our references to ``outs[0:n]``."""
    with for_range(g.b, 0, n, "release") as i:
        g.api("Py_DecRef", g.b.load(g.b.gep(outs, [i])))


# ---- the builtin ------------------------------------------------------------------------------

class _MethodDef(ctypes.Structure):
    _fields_ = [("ml_name", ctypes.c_char_p), ("ml_meth", ctypes.c_void_p), ("ml_flags", ctypes.c_int),
                ("ml_doc", ctypes.c_char_p)]


METH_FASTCALL = 0x0080
_STATE: dict = {}


_BUILD_LOCK = threading.Lock()


def _native():
    """(engine, PyMethodDef, locked_call) of this process's dispatcher, built once; None if
    unavailable."""
    if "native" in _STATE:
        return _STATE["native"]
    with _BUILD_LOCK:
        if "native" not in _STATE:
            try:
                _STATE["native"] = _build_native()
            except Exception:  # noqa: BLE001 - no dispatcher: the Python call path is used
                _STATE["native"] = None
    return _STATE["native"]


_DISPATCH_CODE = dict(recipe="graphc_dispatch", label="dispatch", level=0, codegen_level=0)


def object_job():
    """``cache.recipe_job`` of the dispatcher's module before it is built (a parallel compile
    makes its object alongside the program's, see ``codegen.compiler``); None once built, when
    its object is cached, or where it is not used."""
    if "native" in _STATE or not layout_ok():
        return None
    from . import cache
    return cache.recipe_job(build=lambda: str(build_module()), **_DISPATCH_CODE)


def _build_native():
    if not layout_ok():
        return None
    import llvmlite.binding as llvm

    from . import cache, llvm_target
    llvm_target.init()
    for name in API:  # resolve the C API through this process's own symbols
        llvm.add_symbol(name, ctypes.cast(getattr(ctypes.pythonapi, name), ctypes.c_void_p).value)
    # the module has no inputs but this file (every cache key includes the compiler's source):
    # a disk hit needs no IR at all; no IR optimization: word-level code, the W4 step is as fast
    # (0.66 us) and the cold build 46 instead of 60 ms; FastISel (codegen level 0) as well: 8
    # instead of 28 ms, W4 the same 0.41-0.54 us. (Built on a helper thread
    # while the compiler runs its passes it cost more than it saved: llvmlite runs one LLVM call
    # at a time process-wide, and the GIL is shared; 568 vs 479 ms cold, 63 vs 59 ms warm.)
    engine = cache.jit_recipe(build=lambda: str(build_module()), **_DISPATCH_CODE)
    addr = engine.get_function_address("graphc_dispatch")
    if not addr:
        return None
    mdef = _MethodDef(b"graphc_dispatch", addr, METH_FASTCALL, None)
    call_type = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                                 ctypes.c_int64, ctypes.c_int64)
    native = engine, mdef, call_type(engine.get_function_address("graphc_locked_call"))
    # Immortal, like the thread pool's engine: every builtin made by ``make_builtin`` points at
    # ``mdef`` (its ``m_ml``) and at the engine's code, and may outlive this module's globals.
    # At interpreter exit the module dicts are cleared before the cycle collector frees the
    # compiled functions still in cycles, and ``meth_dealloc`` then read the freed PyMethodDef
    # (a segfault at exit in some test-suite runs, more often under load).
    ctypes.pythonapi.Py_IncRef(ctypes.py_object(native))
    return native


def locked_call(table: np.ndarray, slots: np.ndarray, addrs: np.ndarray, epoch: int) -> int:
    """``graphc_locked_call`` (see ``_build_locked_call``) on int64 arrays; returns the status."""
    return _native()[2](table.ctypes.data, slots.ctypes.data, addrs.ctypes.data, len(slots), epoch)


_new_builtin = None


def make_builtin(self_tuple: tuple):
    """A builtin function calling ``graphc_dispatch(self_tuple, args, nargs)``; None if unavailable."""
    global _new_builtin
    native = _native()
    if native is None:
        return None
    if _new_builtin is None:
        f = ctypes.pythonapi.PyCFunction_NewEx
        f.restype = ctypes.py_object
        f.argtypes = [ctypes.c_void_p, ctypes.py_object, ctypes.c_void_p]
        _new_builtin = f
    return _new_builtin(ctypes.addressof(native[1]), self_tuple, None)
