"""The runtime of a compiled function: checks, buffers, ONE native call.

``CompiledFunction(*arrays)``:

1. checks the number of arrays, and each one's shape and dtype (an error
   names the input); arrays that are not C-contiguous (transposed views,
   negative strides) or not aligned are copied to contiguous ones
   (documented: the only copy the runtime makes); Python scalars and lists
   are converted with the input's dtype when that is exact;
2. allocates the outputs and one scratch arena for the intermediate buffers.
   Fresh pages cost page faults (about 8 ms per 64 MB here), so an output
   array of the previous call is reused when nothing outside the runtime
   refers to it any more (its reference count says so; a view keeps its base
   alive);
3. makes one native call of the module's entry point (the GIL is released
   during it unless the function is tiny);
4. raises IndexError if a take/scatter index was out of range (the native
   code checked every index and never touched memory out of bounds);
5. returns the outputs; parameter updates have been applied in place.

Steps 1-5 themselves run in native code (``codegen.dispatch``): a call costs
about 0.3 µs on top of the kernels, instead of ~20 µs of Python. Whatever
that path does not accept at a glance (a list, a strided view, a wrong shape,
a re-bound parameter) goes to the Python checks here, which raise the
descriptive error or convert and call again. The Python-only path (``_run``)
remains for profiling, for interpreters whose object layout the dispatcher
does not know, and with ``GRAPHC_PYTHON_CALLS=1``.

NaN values follow IEEE (they propagate; nothing is checked by default). In
NaN check mode (``fn.check_nan = True`` or ``GRAPHC_CHECK_NAN=1``) a call
whose outputs or updated parameters contain a NaN undoes its parameter
updates and raises ``FloatingPointError`` naming the first op that produced
a NaN and the user's line.

Calls of one compiled function from several threads run one at a time (a
lock per function: the parameters, the buffer table and the scratch arena
are shared state); calls of different functions run concurrently.

Two things are the caller's to keep: inputs must not share memory with the
function's parameters (a kernel may read an input that is never written
while it runs: pass a copy), and a parameter's array is re-checked only when
it is re-bound (``node.value = new_array``), so marking it read-only in place
after the first call goes unnoticed.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
import weakref
from dataclasses import dataclass, field

import numpy as np

from graphc.errors import InputError
from graphc.ir import VALUE_EPOCH

from .plan import Plan

ENTRY_TYPE = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
_CHECK_NAN = os.environ.get("GRAPHC_CHECK_NAN", "0") not in ("", "0")
_LIVE_TABLES: "weakref.WeakSet[CompiledFunction]" = weakref.WeakSet()


def _unlock_after_fork():
    """A forked child has only the forking thread: a call lock held by another thread stays held
    forever there. Release them all."""
    from . import dispatch
    for fn in list(_LIVE_TABLES):
        fn._table[dispatch.LOCK] = 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_unlock_after_fork)


RELEASE_GIL_BYTES = 1 << 18  # functions touching less memory keep the GIL during their (tiny) native call
_EMPTY = np.zeros(8, np.uint8)  # the address handed to the code for a size-0 array


def _addr(a: np.ndarray) -> int:
    return a.__array_interface__["data"][0]


def _exact(a: np.ndarray, t) -> np.ndarray:
    """``a`` as an array the native path accepts without a second look: exactly ``numpy.ndarray``,
    numpy's own dtype object (an equal dtype from a pickle, ``'q'`` or with metadata is swapped in
    by a view: no copy), C-contiguous and aligned (copied if not)."""
    want = np.dtype(t.dtype.np_dtype.type)
    if not (a.flags.c_contiguous and a.flags.aligned):
        a = np.array(a, dtype=want, order="C", copy=True)
    if type(a) is not np.ndarray or a.dtype is not want:
        a = np.asarray(a).view(want)
    return a


def _checked_fixed(node, writable: bool) -> np.ndarray:
    """A parameter's or constant's current array, checked against its type."""
    arr = node.value
    t = node.type
    if not isinstance(arr, np.ndarray) or arr.shape != t.shape or arr.dtype != t.dtype.np_dtype \
            or not arr.flags.c_contiguous or not arr.flags.aligned:
        desc = f"an array of {arr.dtype}{list(arr.shape)}" if isinstance(arr, np.ndarray) else type(arr).__name__
        raise ValueError(f"{node.op} {node.name!r} was replaced by {desc}"
                         f"; it must stay a C-contiguous {t} (assign into it with arr[...] = ...)")
    if writable and node.op == "parameter" and not arr.flags.writeable:
        raise ValueError(f"parameter {node.name!r} is read-only; the compiled step updates it in place")
    return arr


def _new_arena(nbytes: int) -> np.ndarray:
    try:
        return np.empty(nbytes + 64, np.uint8)
    except (MemoryError, ValueError) as e:
        raise MemoryError(f"cannot allocate {nbytes} bytes of scratch memory: {e}") from None


@dataclass
class NativeCode:
    """Loaded machine code: the engine that owns it, the entry point's address, and its stages.

    The IR texts and assembly are derived again on first request (``lazy_details``):
    they are seldom read, and costly to print or to keep.
    """

    engine: object
    entry_address: int
    llvm_ir: str = ""
    optimized_ir: str = ""
    assembly_fn: object = None  # () -> str, produced on demand
    kernels: list = field(default_factory=list)
    lazy_details: object = None

    def _details(self):
        if self.lazy_details is not None:
            self.llvm_ir, self.optimized_ir, self.assembly_fn, self.kernels = self.lazy_details()
            self.lazy_details = None

    def stage(self, name: str):
        self._details()
        return getattr(self, name)

    def assembly(self) -> str:
        self._details()
        return self.assembly_fn() if self.assembly_fn else ""


@dataclass(eq=False)  # identity: a compiled function is a live object, not a value
class CompiledFunction:
    """A graph compiled to native code: call it with numpy arrays (see the module doc)."""

    plan: Plan
    native: NativeCode
    runtime_table: np.ndarray
    output_is_tuple: bool = True
    compile_seconds: float = 0.0
    # seconds per phase of compile_seconds: "llvm load" (llvmlite's library, a process's first
    # compile), "key", "passes" (pipeline and plan), "emit" (LLVM IR), "llvm" (optimization and
    # code generation, in parallel where it is), "load" (linking, runtime table)
    compile_times: dict = field(default_factory=dict)
    cache_hit: bool = False
    cache_key: str = ""

    def __post_init__(self):
        p = self.plan
        self._entry = ENTRY_TYPE(self.native.entry_address)
        self._lock = threading.Lock()
        self._inputs = [b for b in p.buffers if b.kind == "input"]
        self._outputs = [b for b in p.buffers if b.kind == "output"]
        self._temps = [b for b in p.buffers if b.kind == "temp"]
        self._n_slots = max((b.slot for b in p.buffers), default=1) + 1
        # parameters are shared, live state: the compiled code reads and updates each
        # parameter node's own array (``Tensor.value``), so every compiled function, the
        # interpreter and checkpoints see the same current values
        self._fixed = [(b.slot, b.node) for b in p.buffers if b.kind in ("param", "const")]
        self._params = [b for b in p.buffers if b.kind == "param"]
        self._has_updates = bool(p.updated)
        self.input_names = [b.name for b in self._inputs]
        self._recycled: dict[int, np.ndarray] = {}  # output slot -> last array (reused if unreferenced)
        self._local = threading.local()  # per-thread scratch arena
        self._arena = None  # the native path's arena (its calls hold the function's lock)
        self._native_call = None if os.environ.get("GRAPHC_PYTHON_CALLS") else self._make_native_call()

    # ---------------------------------------------------------------- calling
    def _check(self, args) -> list[np.ndarray]:
        if len(args) != len(self._inputs):
            raise InputError(f"compiled function takes {len(self._inputs)} inputs "
                             f"{self.input_names}, got {len(args)}")
        arrays = []
        for k, (b, a) in enumerate(zip(self._inputs, args)):
            t = b.node.type
            want = t.dtype.np_dtype
            label = f"input {k} ({b.name!r}, expected {t})"
            if not isinstance(a, np.ndarray):
                try:
                    conv = np.asarray(a)
                except Exception as e:  # noqa: BLE001 - anything numpy cannot read
                    raise InputError(f"{label}: cannot convert {type(a).__name__}: {e}") from None
                if conv.dtype == object or not np.can_cast(conv.dtype, want, casting="same_kind"):
                    raise InputError(f"{label}: cannot convert {type(a).__name__} of {conv.dtype} to {t.dtype.name}")
                a = conv.astype(want)
            if a.dtype != want:
                raise InputError(f"{label}: got dtype {a.dtype}")
            if a.shape != t.shape:
                raise InputError(f"{label}: got shape {a.shape}")
            if not a.flags.c_contiguous:
                a = np.ascontiguousarray(a)  # the documented copy
            arrays.append(a)
        return arrays

    check_nan: bool = False  # see nan_check(); also on with GRAPHC_CHECK_NAN=1

    def __call__(self, *args):
        if not (self.check_nan or _CHECK_NAN):
            if self._native_call is not None:
                return self._native_call(*args)
            return self._run(self._check(args))
        return self._run_checking_nan(self._check(args))

    # ---------------------------------------------------------------- the native call path
    def _make_native_call(self):
        """The builtin that checks, allocates and calls natively (``codegen.dispatch``), or None
        where it cannot be used (then ``_run`` is the call path)."""
        from . import dispatch as d
        slots = list(self.plan.output_slots)
        if not slots or len(set(slots)) != len(slots):
            return None  # an output listed twice is returned as copies: the Python path does that
        by_slot = {b.slot: b for b in self._outputs}
        outs = [by_slot[s] for s in slots]
        n_in, n_out = len(self._inputs), len(outs)
        dims_at = d.HEADER + d.IN_FIELDS * n_in + d.OUT_FIELDS * n_out
        table = np.zeros(dims_at + sum(len(b.node.type.shape) for b in self._inputs), np.int64)
        bufs = np.zeros(self._n_slots, np.int64)
        keep: list = [bufs, self.native, self.runtime_table, np.empty, (), VALUE_EPOCH]  # all the table points at
        table[[d.BUFS, d.ENTRY, d.NDARRAY, d.N_IN, d.N_OUT]] = [
            bufs.ctypes.data, self.native.entry_address, id(np.ndarray), n_in, n_out]
        table[d.SINGLE] = int(not self.output_is_tuple and n_out == 1)
        slow, fail = self._slow_call, self._raise_index_error
        keep += [slow, fail]
        table[[d.SLOW, d.RAISE, d.EMPTY_TUPLE, d.EMPTY_FN]] = [id(slow), id(fail), id(()), id(np.empty)]
        table[d.EPOCH_ADDR] = VALUE_EPOCH.ctypes.data
        table[d.EPOCH_SEEN] = -1  # the first call takes the slow path, which fills in the parameters
        table[d.RELEASE_GIL] = int(self.plan.peak_bytes >= RELEASE_GIL_BYTES)
        for k, b in enumerate(self._inputs):
            t = b.node.type
            want = np.dtype(t.dtype.np_dtype.type)  # numpy's builtin dtype object (a singleton)
            rec = d.HEADER + d.IN_FIELDS * k
            table[rec:rec + d.IN_FIELDS] = [b.slot, id(want), len(t.shape), dims_at]
            table[dims_at:dims_at + len(t.shape)] = t.shape
            dims_at += len(t.shape)
        for j, b in enumerate(outs):
            t = b.node.type
            shape_dtype = (t.shape, np.dtype(t.dtype.np_dtype.type))
            keep.append(shape_dtype)
            rec = d.HEADER + d.IN_FIELDS * n_in + d.OUT_FIELDS * j
            table[rec:rec + 2] = [b.slot, id(shape_dtype)]
        bufs[0] = _addr(self.runtime_table)
        bufs[1] = table.ctypes.data + 8 * d.STATUS
        self._table, self._bufs, self._held = table, bufs, []  # _held: the parameter arrays, the arena
        self._out_specs = outs
        self._slow_lock = threading.RLock()
        _LIVE_TABLES.add(self)
        return d.make_builtin((table, [None] * n_out, keep, self._held))

    def _slow_call(self, *args):
        """The native path's fallback: the descriptive errors and conversions of ``_check``, the
        parameters' current arrays (a re-bound parameter is picked up here), fresh outputs; then
        the call itself in ONE native call that takes the function's lock, writes the addresses,
        runs and unlocks (``dispatch.locked_call``): no Python runs under that lock."""
        from . import dispatch
        arrays = [_exact(a, b.node.type) for a, b in zip(self._check(args), self._inputs)]
        epoch = int(VALUE_EPOCH[0])  # read before the parameters: a re-bind after it is seen next call
        fixed = [_checked_fixed(node, self._has_updates) for _, node in self._fixed]
        if self._temps and self._arena is None:
            self._arena = _new_arena(self.plan.arena_bytes)
        outs = [np.empty(b.node.type.shape, b.node.type.dtype.np_dtype) for b in self._out_specs]
        slots, addrs = zip(*self._addresses(fixed, self._arena, arrays, self._out_specs, outs))
        held = fixed + [self._arena]
        with self._slow_lock:  # re-entrant: a finalizer in this thread may call again
            # the table refers to these arrays by address: keep them alive, and the previous ones
            # until the call below has replaced their addresses
            self._held.extend(held)
            status = dispatch.locked_call(self._table, np.array(slots, np.int64), np.array(addrs, np.int64), epoch)
            self._held[:] = held
        if status:
            self._raise_index_error()
        if not self.output_is_tuple and len(outs) == 1:
            return outs[0]
        return outs

    def _addresses(self, fixed, arena, arrays, out_buffers, outs):
        """``(slot, address)`` of every buffer of one call: the parameters' and constants' arrays
        ``fixed``, the arena's temporaries, the inputs, the outputs (size 0: a valid dummy)."""
        def at(a):
            return _addr(a) if a.size else _addr(_EMPTY)
        pairs = [(slot, at(a)) for (slot, _), a in zip(self._fixed, fixed)]
        if self._temps:
            base = (_addr(arena) + 63) // 64 * 64
            pairs += [(b.slot, base + b.offset) for b in self._temps]
        pairs += [(b.slot, at(a)) for b, a in zip(self._inputs, arrays)]
        pairs += [(b.slot, at(o)) for b, o in zip(out_buffers, outs)]
        return pairs

    def _raise_index_error(self):
        raise IndexError("an index given to take/gather or scatter_add was out of range "
                         "(no memory outside the arrays was read or written)")

    def _run_checking_nan(self, arrays):
        """NaN check mode: if an output or updated parameter has a NaN, undo the parameter updates
        and raise FloatingPointError naming the first op that produced a NaN (found by the
        interpreter on the same inputs) and the user's line."""
        before = {name: arr.copy() for name, arr in self.parameters().items()}
        result = self._native_call(*arrays) if self._native_call is not None else self._run(arrays)
        outs = result if isinstance(result, list) else [result]
        bad = [o for o in outs if isinstance(o, np.ndarray) and o.dtype.kind == "f" and np.isnan(o).any()]
        bad += [name for name in self.plan.updated if np.isnan(self.parameters()[name]).any()]
        if not bad:
            return result
        for name, arr in self.parameters().items():
            arr[...] = before[name]
        from graphc.interpreter import first_nan
        found = first_nan(self.plan.graph_before_passes or self.plan.graph, arrays, before)
        msg = found[1] if found else "a NaN appeared in the compiled code but not in the interpreter"
        raise FloatingPointError(f"NaN check: {msg}; parameter updates of this call were undone")

    def _run(self, arrays, kernel_hook=None):
        """Set up the buffers and run: the entry point, or ``kernel_hook(ptrs)`` instead (profiling)."""
        ptrs = (ctypes.c_void_p * self._n_slots)()
        ptrs[0] = _addr(self.runtime_table)
        status = np.zeros(1, np.int64)
        ptrs[1] = _addr(status)
        fixed = [_checked_fixed(node, self._has_updates and kernel_hook is None) for _, node in self._fixed]
        outs = [self._output(b) for b in self._outputs]
        arena = getattr(self._local, "arena", None)
        if arena is None and self._temps:
            arena = self._local.arena = _new_arena(self.plan.arena_bytes)
        for slot, address in self._addresses(fixed, arena, arrays, self._outputs, outs):
            ptrs[slot] = address
        if kernel_hook is not None:
            kernel_hook(ptrs)
            return None
        if self._has_updates:
            with self._lock:
                self._entry(ctypes.addressof(ptrs))
        else:
            self._entry(ctypes.addressof(ptrs))
        if status[0]:
            self._raise_index_error()
        by_slot = {b.slot: o for b, o in zip(self._outputs, outs)}
        result, seen = [], set()
        for s in self.plan.output_slots:
            o = by_slot[s]
            result.append(o.copy() if s in seen else o)
            seen.add(s)
        if not self.output_is_tuple and len(result) == 1:
            return result[0]
        return result

    def _output(self, b) -> np.ndarray:
        """A fresh output array, or last call's if nobody else holds it any more."""
        old = self._recycled.get(b.slot)
        # references: the dict, `old`, getrefcount's argument
        if old is not None and sys.getrefcount(old) <= 3:
            return old
        t = b.node.type
        try:
            o = np.empty(t.shape, t.dtype.np_dtype)
        except (MemoryError, ValueError) as e:
            raise MemoryError(f"cannot allocate output {b.name} ({t}): {e}") from None
        if t.nbytes >= (1 << 20):  # only big outputs are worth keeping
            self._recycled[b.slot] = o
        return o

    def profile(self, *args, repeat: int = 50) -> list[tuple[str, int, float]]:
        """Median time of each kernel function, called one by one on these inputs.

        Returns ``(kernel name, chunks, microseconds)`` rows in execution order.
        Parameters are not updated (the final copies are not run), so the inputs
        and state stay the same across repeats.
        """
        import statistics
        import time
        kernels = self.kernels
        engine = self.native.engine
        table = self.runtime_table
        task_type = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int64)
        rows = []

        def hook(ptrs):
            ctx = ctypes.addressof(ptrs)
            for code in kernels:
                if code.chunks == 0:
                    rows.append((code.name, 0, 0.0))
                    continue
                addr = engine.get_function_address(code.name)
                fn = task_type(addr)
                times = []
                for _ in range(repeat):
                    t = time.perf_counter()
                    if code.chunks > 1 and table[0]:
                        from .threadpool import get_pool
                        get_pool().parallel_for(addr, ctx, code.chunks)
                    else:
                        for c in range(code.chunks):
                            fn(ctx, c)
                    times.append(time.perf_counter() - t)
                rows.append((code.name, code.chunks, statistics.median(times) * 1e6))
        # as the entry point does: BLAS single-threaded while GEMMs run in chunks on the pool
        from .abi import RT_BLAS_RESTORE, RT_BLAS_SERIAL
        hooks = [ctypes.CFUNCTYPE(None)(int(table[i])) if table[i] else None for i in (RT_BLAS_SERIAL, RT_BLAS_RESTORE)]
        if hooks[0] is not None:
            hooks[0]()
        try:
            self._run(self._check(args), kernel_hook=hook)
        finally:
            if hooks[1] is not None:
                hooks[1]()
        return rows

    # ---------------------------------------------------------------- inspection
    @property
    def graph(self):
        return self.plan.graph

    @property
    def kernels(self) -> list:
        """The emitted kernels (name, kind, node, chunk count)."""
        return self.native.stage("kernels")

    @property
    def llvm_ir(self) -> str:
        return self.native.stage("llvm_ir")

    @property
    def optimized_llvm_ir(self) -> str:
        return self.native.stage("optimized_ir")

    @property
    def assembly(self) -> str:
        return self.native.assembly()

    @property
    def state(self) -> dict[str, np.ndarray]:
        return self.parameters()

    def parameters(self) -> dict[str, np.ndarray]:
        """The parameters' current values by name: the live arrays (``Tensor.value``) each call
        reads and updates in place."""
        return {b.name: b.node.value for b in self._params}
