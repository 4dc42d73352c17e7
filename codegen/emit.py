"""LLVM IR for a planned graph: one module, one entry point, one function per kernel.

Layout of the module::

    void graphc_run(i8** bufs)          ; the entry point: calls the kernels in order
    void k<i>(i8* bufs, i64 chunk)      ; kernel i on one chunk of its outermost loop

``bufs[0]`` points at the runtime table ``[parallel_for, sgemm, dgemm,
blas_serial, blas_restore]`` (addresses filled in by the runtime of the
process that loads the code, so
compiled objects can be cached on disk), ``bufs[1]`` at an i64 status word
(non-zero: an index was out of range), and ``bufs[slot]`` at each buffer.
A kernel with more than one chunk runs through ``parallel_for`` on the
thread pool; small kernels run inline.

Lowering per kernel kind: elementwise loop nests (dims that every access
steps through uniformly are collapsed into one loop, so contiguous
expressions are one flat vectorizable loop), reductions (reduced axes
innermost with a register accumulator, or, when the last axis is kept,
accumulation into the output row by row so the inner loop vectorizes),
softmax rows (max, sum of exponentials, normalization), BLAS GEMM calls per
batch element, and scatter-add.
"""

from __future__ import annotations

import math
import re
from contextlib import contextmanager
from dataclasses import dataclass

from llvmlite import ir

from graphc.dtypes import DType
from graphc.ir import Node
from graphc.passes.layout import blas_layout, resolve_view, row_major

from . import expr as X
from .abi import ENTRY_NAME, RT_BLAS_RESTORE, RT_BLAS_SERIAL, RT_DGEMM, RT_PARALLEL_FOR, RT_SGEMM
from .loops import accumulate_var, const64, for_range, loop_nest
from .plan import Kernel, Plan
from .scalar import I8, I64, ScalarBuilder, llvm_type, lower_scalar

VOID = ir.VoidType()
I8P = I8.as_pointer()
I8PP = I8P.as_pointer()
KERNEL_TYPE = ir.FunctionType(VOID, [I8P, I64])
GRAIN = 1 << 15  # elements per chunk of a parallel loop
MAX_CHUNKS = 256


def _prod(xs) -> int:
    return int(math.prod(xs)) if xs else 1


@dataclass
class Target:
    """What one kernel function computes: ``node`` (an op of a kernel's body) into buffer ``slot``,
    reading every other value through ``slots`` (buffers and the body's placeholders)."""

    node: Node
    slot: int
    slots: dict
    accumulate: tuple | None = None  # matmul only: (alpha, beta) of C = alpha A B + beta C


@dataclass
class KernelCode:
    """One emitted kernel function: name, chunk count, and what it computes (for dumps)."""

    name: str
    kernel: Kernel
    chunks: int
    summary: str
    padded: bool = False  # has a lane-padded inner loop (see _padded_inner): needs the vectorizer
    part: int = 0  # the module it is emitted into (emit_module's ``parts``)

    @property
    def kind(self) -> str:
        return self.kernel.kind


class KernelContext:
    """Per-function state: builder, buffer pointers, the status accumulator."""

    def __init__(self, module: ir.Module, fn: ir.Function, plan: Plan):
        self.module = module
        self.fn = fn
        self.plan = plan
        self.b = ir.IRBuilder(fn.append_basic_block("entry"))
        self.sb = ScalarBuilder(self.b, module)
        self.bufs = self.b.bitcast(fn.args[0], I8PP, name="bufs")
        self.ptrs: dict[int, ir.Value] = {}
        self.dtype_of_slot = {bs.slot: bs.node.dtype for bs in plan.buffers}
        self.err = None
        self.written: set[int] = set()  # slots this function writes (see ValueEmitter.load)
        self.padded = False  # a lane-padded inner loop was emitted (see _padded_inner)

    @contextmanager
    def at_entry(self):
        """Emit into the entry block (before its branch into the loops), then come back."""
        b = self.b
        saved = b.block
        entry = self.fn.entry_basic_block
        if entry.terminator is not None:
            b.position_before(entry.terminator)
        else:
            b.position_at_end(entry)
        try:
            yield
        finally:
            if saved is entry and entry.terminator is not None:
                b.position_before(entry.terminator)
            else:
                b.position_at_end(saved)

    def ptr(self, slot: int):
        """Typed base pointer of a buffer (loaded once, in the entry block)."""
        if slot not in self.ptrs:
            with self.at_entry():
                raw = self.b.load(self.b.gep(self.bufs, [const64(slot)]))
                t = llvm_type(self.dtype_of_slot[slot], memory=True)
                self.ptrs[slot] = self.b.bitcast(raw, t.as_pointer(), name=f"buf{slot}")
        return self.ptrs[slot]

    def runtime_address(self, entry: int):
        """An address (i64) from the runtime table: BLAS, the thread pool."""
        table = self.b.bitcast(self.b.load(self.b.gep(self.bufs, [const64(0)])), I64.as_pointer())
        return self.b.load(self.b.gep(table, [const64(entry)]))

    def hoisted_value(self, e):
        """A loop-invariant value, computed once in the entry block (LLVM cannot hoist loads
        itself: it cannot prove the output does not overwrite them)."""
        hoisted = self.__dict__.setdefault("_hoisted", {})  # id -> (expression, value)
        if id(e) not in hoisted:  # the entry holds ``e``: its id is not reused while it is here
            with self.at_entry():
                hoisted[id(e)] = (e, ValueEmitter(self, []).value(e))
        return hoisted[id(e)][1]

    def error_flag(self):
        if self.err is None:
            self.err = accumulate_var(self.b, ir.IntType(1), ir.Constant(ir.IntType(1), 0), "err",
                                      init_in_entry=True)
        return self.err

    def finish(self):
        """Publish the status accumulator (if any) and return."""
        b = self.b
        if self.err is not None:
            bad = b.load(self.err)
            with b.if_then(bad):
                status = b.bitcast(b.load(b.gep(self.bufs, [const64(1)])), I64.as_pointer())
                b.store_atomic(const64(1), status, "monotonic", 8)
        b.ret_void()


class ValueEmitter:
    """Emits the LLVM value of an expression at loop indices ``idx`` (memoized per body)."""

    def __init__(self, kc: KernelContext, idx):
        self.kc = kc
        self.b = kc.b
        self.idx = list(idx)
        self.memo: dict[int, ir.Value] = {}

    def affine(self, coeffs, const):
        b = self.b
        acc = const64(const)
        for c, i in zip(coeffs, self.idx):
            if c:
                acc = b.add(acc, b.mul(const64(c), i) if c != 1 else i)
        return acc

    def _clamp(self, off, size):
        b = self.b
        off = b.select(b.icmp_signed("<", off, const64(0)), const64(0), off)
        return b.select(b.icmp_signed(">", off, const64(size - 1)), const64(max(size - 1, 0)), off)

    def load(self, slot, dtype: DType, off):
        b = self.b
        v = b.load(b.gep(self.kc.ptr(slot), [off]))
        if slot not in self.kc.written:
            # nothing writes this buffer while the kernel runs (its own output never shares memory
            # with an input: see plan.assign_arena): LLVM may hoist the load out of inner loops,
            # e.g. a gather's row index, which it otherwise re-reads for every element
            v.set_metadata("invariant.load", self.kc.module.add_metadata([]))
        return b.icmp_unsigned("!=", v, ir.Constant(I8, 0)) if dtype.is_bool else v

    def value(self, e):
        key = id(e)
        if key not in self.memo:
            if self.idx and _invariant(e):
                self.memo[key] = self.kc.hoisted_value(e)
            else:
                self.memo[key] = self._value(e)
        return self.memo[key]

    def _value(self, e):
        b, sb = self.b, self.kc.sb
        if isinstance(e, X.Load):
            off = self.affine(e.strides, e.offset)
            if e.guard is not None:
                off = self._clamp(off, e.guard)
            return self.load(e.slot, e.dtype, off)
        if isinstance(e, X.Gather):
            i, ok = _checked_index(b, self.value(e.index), e.index, e.dim)
            flag = self.kc.error_flag()
            bad = b.not_(ok)
            if e.when is not None:  # read only under a condition (pad, concatenate): an error only then
                bad = b.and_(bad, self.value(e.when))
            b.store(b.or_(b.load(flag), bad), flag)
            i = b.select(ok, i, const64(0))
            off = b.add(self.affine(e.strides, e.offset), b.mul(i, const64(e.stride)))
            if e.guard is not None:
                off = self._clamp(off, e.guard)
            return self.load(e.slot, e.dtype, off)
        if isinstance(e, X.Const):
            return sb.const(e.value, e.dtype)
        if isinstance(e, X.Apply):
            r = _small_int_division(e)
            if r is not None:  # x / c as a multiply and two fmas, exactly (codegen.constdiv)
                x, c = self.value(e.args[0]), self.value(e.args[1])
                rc = sb.const(r, e.dtype)
                q1 = b.fmul(x, rc)
                err = sb.intrinsic("llvm.fma", b.fneg(q1), c, x)
                return sb.intrinsic("llvm.fma", err, rc, q1)
            args = [self.value(a) for a in e.args]
            return lower_scalar(sb, e.op, args, e.in_dtype, e.dtype, dict(e.attrs))
        if isinstance(e, X.Select):
            return b.select(self.value(e.cond), self.value(e.a), self.value(e.b))
        if isinstance(e, X.Index):
            return self.affine(e.coeffs, e.const)
        if isinstance(e, X.InRange):
            i = self.value(e.index)
            return b.and_(b.icmp_signed(">=", i, const64(e.lo)), b.icmp_signed("<", i, const64(e.hi)))
        raise TypeError(f"unknown expression {e!r}")

    def store(self, slot, dtype: DType, off, v):
        b = self.b
        if dtype.is_bool:
            v = b.zext(v, I8)
        b.store(v, b.gep(self.kc.ptr(slot), [off]))


def _small_int_division(e):
    """For ``e = cast(x of uint8 or bool) / c`` with a float constant ``c``: ``1 / c`` if the
    corrected quotient is exact for every x (``codegen.constdiv``), else None."""
    if e.op != "div" or not e.dtype.is_float or not isinstance(e.args[1], X.Const):
        return None
    x = e.args[0]
    if not (isinstance(x, X.Apply) and x.op == "cast" and x.in_dtype.name in ("uint8", "bool")
            and x.dtype == e.dtype == e.in_dtype == e.args[1].dtype):
        return None
    from .constdiv import corrected_reciprocal
    return corrected_reciprocal(float(e.args[1].value), e.dtype.np_dtype.name,
                                2 if x.in_dtype.name == "bool" else 256)


def _checked_index(b, v, e, dim: int):
    """``(i, ok)`` for index value ``v`` (of expression ``e``) into an axis of ``dim``: ``i`` as
    i64 (sign-extended, or zero-extended for an unsigned dtype: uint8), a negative one counted
    from the end as numpy; ``ok`` whether it is in range."""
    if v.type != I64:
        d = getattr(e, "dtype", None)
        v = b.zext(v, I64) if d is not None and d.is_unsigned else b.sext(v, I64)
    i = b.select(b.icmp_signed("<", v, const64(0)), b.add(v, const64(dim)), v)
    return i, b.and_(b.icmp_signed(">=", i, const64(0)), b.icmp_signed("<", i, const64(dim)))


def _invariant(e) -> bool:
    """Whether an expression is the same at every loop index (and has no side effects)."""
    if isinstance(e, X.Load):
        return not any(e.strides)
    if isinstance(e, X.Const):
        return True
    if isinstance(e, X.Index):
        return not any(e.coeffs)
    if isinstance(e, X.InRange):
        return _invariant(e.index)
    if isinstance(e, X.Apply):
        return all(_invariant(a) for a in e.args)
    if isinstance(e, X.Select):
        return _invariant(e.cond) and _invariant(e.a) and _invariant(e.b)
    return False  # Gather: its bounds check reports errors, keep it where it is used


def _chunks(outer: int, total: int) -> int:
    if total < 2 * GRAIN or outer < 2:
        return 1
    return max(1, min(outer, total // GRAIN, MAX_CHUNKS))


def _chunk_bounds(b, chunk, outer: int, chunks: int):
    """[lo, hi) of the outermost loop for this chunk: an even split of ``outer``."""
    if chunks == 1:
        return const64(0), const64(outer)
    lo = b.sdiv(b.mul(chunk, const64(outer)), const64(chunks))
    hi = b.sdiv(b.mul(b.add(chunk, const64(1)), const64(outer)), const64(chunks))
    return lo, hi


# ---------------------------------------------------------------- kernel kinds

# A long innermost loop of an elementwise kernel or a reduction is vectorized (and interleaved)
# but never unrolled afterwards: a 512-long row became 8 unrolled copies of 4 vectors (the W3
# step's bias + relu epilogue: 373 lines of optimized IR, 19 ms of LLVM). Without: W3's module
# compiles in 158 instead of 190 ms, its kernels as fast (non-matmul kernels 36-40 us either
# way). A short one (fewer than NO_UNROLL_MIN_TRIP iterations) is left to LLVM: unrolled whole,
# it lets the loop around it vectorize (sum over axis 0 of an (N, 16) matrix ran 7x slower kept).
INNER_LOOP_HINTS = {"llvm.loop.unroll.disable": None}
NO_UNROLL_MIN_TRIP = 128


def _inner_hints(trip: int):
    """``INNER_LOOP_HINTS`` for an innermost loop of ``trip`` iterations, or None if it is short."""
    return INNER_LOOP_HINTS if trip >= NO_UNROLL_MIN_TRIP else None


# A gather of whole rows (``take`` along axis 0 of a big table) misses the caches once per
# row: the loop over a row's elements fills the out-of-order window, so the next row's first
# miss waits for this row and the misses of 128 random rows run one after another (~0.4 us
# each here). Prefetching every line of the chunk's rows first, in a loop that does nothing
# else, puts all those misses in flight together.
PREFETCH_MIN_TABLE_BYTES = 4 << 20  # tables smaller than this likely sit in the caches
PREFETCH_LINE = 64
PREFETCH_MAX_LINES = 64  # of a longer row, the first 4 KB (the hardware prefetcher streams the rest)


def _row_gathers(e, kc: KernelContext, cshape) -> list:
    """The gathers in ``e`` that read a contiguous row of a big table per outer index: their
    index does not depend on the inner loop (nor on another gather) and their inner stride is
    one element."""
    if len(cshape) != 2 or cshape[0] < 8:
        return []
    sizes = _sizes(kc.plan)

    def inner_free(x) -> bool:  # and no gather inside: a nested gather's bounds check stays in the main loop
        if isinstance(x, X.Load):
            return not x.strides[-1]
        if isinstance(x, X.Index):
            return not x.coeffs[-1]
        if isinstance(x, X.Apply):
            return all(inner_free(a) for a in x.args)
        return isinstance(x, X.Const)

    return [x for x in X.nodes(e) if isinstance(x, X.Gather) and x.strides[-1] == 1 and x.guard is None
            and x.when is None and inner_free(x.index)
            and sizes.get(x.slot, 0) * x.dtype.itemsize >= PREFETCH_MIN_TABLE_BYTES]


def _prefetch_rows(kc: KernelContext, gathers, lo, hi, row_len: int):
    """``llvm.prefetch`` every cache line of each gathered row for outer indices [lo, hi)."""
    b = kc.b
    i32 = ir.IntType(32)
    fn = kc.module.globals.get("llvm.prefetch.p0") or ir.Function(
        kc.module, ir.FunctionType(ir.VoidType(), [ir.PointerType(I8), i32, i32, i32]), name="llvm.prefetch.p0")
    with for_range(b, lo, hi, name="pf") as i:
        ve = ValueEmitter(kc, [i, const64(0)])
        for g in gathers:
            r, ok = _checked_index(b, ve.value(g.index), g.index, g.dim)
            r = b.select(ok, r, const64(0))  # a bad index is reported by the main loop
            off = b.add(ve.affine(g.strides, g.offset), b.mul(r, const64(g.stride)))
            row = b.bitcast(b.gep(kc.ptr(g.slot), [off]), ir.PointerType(I8))
            # one line more than the row's length in lines: a row need not start on a line
            for byte in range(0, min(row_len * g.dtype.itemsize + PREFETCH_LINE - 1,
                                     PREFETCH_MAX_LINES * PREFETCH_LINE), PREFETCH_LINE):
                b.call(fn, [b.gep(row, [const64(byte)]), ir.Constant(i32, 0), ir.Constant(i32, 3),
                            ir.Constant(i32, 1)])


def emit_elementwise(kc: KernelContext, k: Target) -> int:
    node = k.node
    shape = node.shape
    rank = len(shape)
    eb = X.ExprBuilder(k.slots, _sizes(kc.plan), rank)
    e = eb.expr(node, X.Affine.identity(rank))
    out = row_major(shape)
    groups = X.collapse_groups(shape, X.collect_patterns(e, []) + [out])
    e = X.remap(e, groups)
    cshape = [_prod([shape[d] for d in g]) for g in groups]
    cout = [out[g[-1]] for g in groups]
    chunks = _chunks(cshape[0] if cshape else 1, node.type.size)
    b = kc.b
    bounds = [(0, s) for s in cshape]
    if bounds:
        bounds[0] = _chunk_bounds(b, kc.fn.args[1], cshape[0], chunks)
    gathers = _row_gathers(e, kc, cshape)
    if gathers:
        _prefetch_rows(kc, gathers, bounds[0][0], bounds[0][1], cshape[-1])
    _emit_parts(kc, k, e, cshape, cout, bounds, _padded_inner(cshape, node.dtype), _split_dims(e, cshape))
    return chunks


# A value that pads or joins (pad, concatenate, stack) chooses per element between its parts
# with range tests on loop indices; a loop with such selects (and the clamped reads under them)
# does not vectorize: 4-8x slower than the same loop without them. Split the loops at the
# points where the tests change: each part's loop nest gets the expression with the tests
# resolved; a part of the innermost loop shorter than a vector runs on masked lanes (as
# ``_padded_inner``). A short row (at most UNROLL_MAX_INNER) of a cheap expression (at most
# UNROLL_MAX_NODES nodes) is unrolled instead, one select-free store per position, and LLVM
# vectorizes across rows: split into loops of 1-3 elements, stack along the last axis ran 4x
# slower. A costly expression is split even then: unrolled, LLVM vectorizes its 16 stores in
# pairs (a pad of 3 -> 16 under two tanh ran 4x slower).
# (bench/bench_codegen.py "joins"; the measured table is in the notes of issue 5.)
MAX_SPLIT_PARTS = 16  # loop nests per kernel (each costs LLVM time)
UNROLL_MAX_INNER = 16
UNROLL_MAX_NODES = 10


def _split_dims(e, cshape) -> list[int]:
    """The loop dims to split, those with the most parts first (a select left between P parts
    computes all P of them for every element: a concatenate of 16 padded inputs ran 10x slower
    with its rows left unsplit), while the product of their part counts stays within
    ``MAX_SPLIT_PARTS``; an innermost dim to unroll (``_unrolls``) is left out."""
    counts = []
    for dim in reversed(range(len(cshape))):
        if dim == len(cshape) - 1 and _unrolls(e, cshape):
            continue
        n = len(X.split_points(e, dim, cshape[dim])) + 1
        if n > 1:
            counts.append((n, dim))
    dims, parts = [], 1
    for n, dim in sorted(counts, key=lambda c: -c[0]):  # stable: ties keep the innermost first
        if parts * n <= MAX_SPLIT_PARTS:
            dims.append(dim)
            parts *= n
    return dims


def _emit_parts(kc: KernelContext, k: Target, e, cshape, cout, bounds, lanes: int, dims, split=False):
    """The loop nest over ``bounds`` storing ``e``, split along ``dims`` (see ``_split_dims``):
    for each part ``[p, q)`` of ``dims[0]`` where ``e`` changes, the nest of that part with
    ``e`` specialized to it, split along the remaining dims. ``lanes``: run the innermost
    loop on that many masked lanes (0: as it is)."""
    b = kc.b
    points = X.split_points(e, dims[0], cshape[dims[0]]) if dims else []
    if not points:
        if dims:
            return _emit_parts(kc, k, e, cshape, cout, bounds, lanes, dims[1:], split)
        if split and not X.has_conditions(e):
            e = X.unguarded(e)
        return _emit_nest(kc, k, e, cshape, cout, bounds, lanes)
    dim = dims[0]
    inner = dim == len(cshape) - 1
    edges = [0] + points + [cshape[dim]]
    lo_d, hi_d = bounds[dim]
    for p_lo, p_hi in zip(edges, edges[1:]):
        part = X.specialize(e, dim, p_lo, p_hi)
        nest = list(bounds)
        if isinstance(lo_d, int) and isinstance(hi_d, int):
            nest[dim] = (max(lo_d, p_lo), min(hi_d, p_hi))
            if nest[dim][0] >= nest[dim][1]:
                continue
        else:  # the chunked outer loop: this part's share of the chunk (maybe empty)
            lo = b.select(b.icmp_signed(">", lo_d, const64(p_lo)), lo_d, const64(p_lo))
            hi = b.select(b.icmp_signed("<", hi_d, const64(p_hi)), hi_d, const64(p_hi))
            nest[dim] = (lo, hi)
        part_lanes = lanes
        if inner:  # this part's own row: masked lanes if it is a little shorter than a vector
            part_lanes = _lanes_for(nest[dim][1] - nest[dim][0], k.node.dtype) if len(cshape) > 1 else 0
        _emit_parts(kc, k, part, cshape, cout, nest, part_lanes, dims[1:], True)


def _emit_nest(kc: KernelContext, k: Target, e, cshape, cout, bounds, lanes: int):
    """One loop nest over ``bounds`` storing ``e``: a short row with range tests unrolled
    (``_unrolls``), or the innermost loop on ``lanes`` masked lanes, or plain."""
    b = kc.b
    node = k.node
    last = len(cshape) - 1
    if bounds and bounds[-1] == (0, cshape[-1]) and _unrolls(e, cshape):
        with loop_nest(b, bounds[:-1], inner_hints=_inner_hints(_trip(bounds[-2], cshape[-2]))) as idx:
            for j in range(cshape[last]):
                part = X.specialize(e, last, j, j + 1)
                if not X.has_conditions(part):
                    part = X.unguarded(part)
                ve = ValueEmitter(kc, list(idx) + [const64(j)])
                ve.store(k.slot, node.dtype, ve.affine(cout, 0), ve.value(part))
        return
    end = None
    if lanes:  # [lo, hi) runs as [lo, lo + lanes): lanes past hi do nothing (the vectorizer masks them)
        lo, end = bounds[-1]
        bounds = list(bounds[:-1]) + [(lo, lo + lanes)]
        kc.padded = True
    with loop_nest(b, bounds, inner_hints=_inner_hints(_trip(bounds[-1], cshape[-1]) if bounds else 0)) as idx:
        ve = ValueEmitter(kc, idx)
        if end is not None:
            with b.if_then(b.icmp_signed("<", idx[-1], const64(end))):
                ve.store(k.slot, node.dtype, ve.affine(cout, 0), ve.value(e))
        else:
            ve.store(k.slot, node.dtype, ve.affine(cout, 0), ve.value(e))


def _unrolls(e, cshape) -> bool:
    """Whether a whole row of ``e`` is unrolled into one store per position: it is short
    (``UNROLL_MAX_INNER``), still has range tests, and ``e`` is cheap (``UNROLL_MAX_NODES``)."""
    last = len(cshape) - 1
    return (last > 0 and cshape[last] <= UNROLL_MAX_INNER and X.node_count(e) <= UNROLL_MAX_NODES
            and bool(X.split_points(e, last, cshape[last])))


def _trip(bound, size: int) -> int:
    """The trip count of a loop over ``bound`` (``size`` if its ends are only known at run time)."""
    lo, hi = bound
    return hi - lo if isinstance(lo, int) and isinstance(hi, int) else size


def _padded_inner(cshape, dtype: DType) -> int:
    """A short innermost loop (e.g. 10 classes next to a per-row operand, which keeps the two
    dims apart) does not vectorize; run it over one full vector of lanes (64 bytes) with the
    lanes past its end masked off, or return 0 to leave it alone."""
    return _lanes_for(cshape[-1], dtype) if len(cshape) >= 2 else 0


def _lanes_for(n: int, dtype: DType) -> int:
    """The lanes of one 64-byte vector of ``dtype`` if a row of ``n`` is a little shorter than
    that (more than half), else 0 (see ``_padded_inner``)."""
    if dtype.itemsize not in (4, 8):
        return 0
    lanes = 64 // dtype.itemsize
    return lanes if lanes // 2 < n < lanes else 0


_IDENTITY = {"sum": 0, "mean": 0, "prod": 1}


def _extreme_const(d: DType, largest: bool):
    if d.is_float:
        return float("inf") if largest else float("-inf")
    if d.is_bool:
        return 1 if largest else 0
    bits = d.itemsize * 8
    return (1 << (bits - 1)) - 1 if largest else -(1 << (bits - 1))


def _combine(sb: ScalarBuilder, op: str, acc, v, d: DType, reassoc: bool, intrinsic: bool = False):
    b = sb.b
    if op in ("sum", "mean", "prod"):
        if d.is_float:
            r = b.fadd(acc, v) if op != "prod" else b.fmul(acc, v)
            if reassoc:
                r.flags.append("reassoc")
            return r
        return b.add(acc, v) if op != "prod" else b.mul(acc, v)
    if d.is_float and intrinsic:
        # ``intrinsic``: a float max / min carried along the innermost loop (a reduction over a
        # row). llvm.maximum / llvm.minimum give nan if either is nan, as numpy's max, and the loop
        # vectorizer knows them as reductions: a max over rows of 256 floats ran 13x faster
        # (54 -> 4 us for 128 rows) than the compare-and-select chain, which it leaves serial.
        # Where the max is already vectorized across columns (softmax's short rows, reductions
        # keeping the last axis) the chain stays: it is cheaper per vector than llvm.maximum's
        # lowering. A loop of the intrinsic must reach the vectorizer whole: fully unrolled first,
        # it is a serial chain of calls, slower than the selects (see SOFTMAX_MAX_LOOP). Between
        # -0 and +0 the intrinsic picks +0 (max) / -0 (min); numpy's pick depends on its order.
        return sb.intrinsic("llvm.maximum" if op == "max" else "llvm.minimum", acc, v)
    return lower_scalar(sb, "maximum" if op == "max" else "minimum", [acc, v], d, d, {})


def emit_reduce(kc: KernelContext, k: Target) -> int:
    node = k.node
    op = node.op
    x = node.inputs[0]
    axes = node.attrs["axes"] if "axes" in node.attrs else (node.attrs["axis"],)
    kept = [d for d in range(len(x.shape)) if d not in axes]
    red = list(axes)
    b, sb = kc.b, kc.sb
    acc_dtype = node.dtype
    if node.type.size == 0:
        return 0
    outer_idx_strides = row_major([x.shape[d] for d in kept])
    last_kept = x.shape and (len(x.shape) - 1) not in axes
    if op in ("sum", "mean", "max", "min", "prod") and red and last_kept:
        return _emit_reduce_rows(kc, k, x, kept, red)
    order = kept + red
    eb = X.ExprBuilder(k.slots, _sizes(kc.plan), len(order))
    e = eb.expr(x, X.Affine.identity(len(x.shape), order))
    kept_sizes = [x.shape[d] for d in kept]
    red_sizes = [x.shape[d] for d in red]
    chunks = _chunks(kept_sizes[0] if kept_sizes else 1, x.type.size)
    bounds = [(0, s) for s in kept_sizes]
    if bounds:
        bounds[0] = _chunk_bounds(b, kc.fn.args[1], kept_sizes[0], chunks)
    count = _prod(red_sizes)
    with loop_nest(b, bounds, "o") as oidx:
        out_off = X.Index(tuple(outer_idx_strides), 0)

        def inner_pass(body):
            with loop_nest(b, [(0, s) for s in red_sizes], "r") as ridx:
                ve = ValueEmitter(kc, list(oidx) + list(ridx))
                body(ve, ridx)

        if op in ("argmax", "argmin"):
            d = x.dtype
            best = accumulate_var(b, llvm_type(d), sb.const(_extreme_const(d, op == "argmin"), d), "best")
            where = accumulate_var(b, I64, const64(0), "where")

            def arg_body(ve, ridx):
                v = sb.cast(ve.value(e), x.dtype, x.dtype)
                cur = b.load(best)
                if d.is_float:
                    better = b.fcmp_ordered(">" if op == "argmax" else "<", v, cur)
                    better = b.or_(better, b.and_(sb.is_nan(v), b.not_(sb.is_nan(cur))))
                elif d.is_bool:
                    better = b.icmp_unsigned(">" if op == "argmax" else "<", v, cur)
                else:
                    better = b.icmp_signed(">" if op == "argmax" else "<", v, cur)
                b.store(b.select(better, v, cur), best)
                b.store(b.select(better, ridx[0], b.load(where)), where)
            inner_pass(arg_body)
            result = b.load(where)
        elif op == "logsumexp":
            d = x.dtype
            m = accumulate_var(b, llvm_type(d), sb.const(float("-inf"), d), "m")
            inner_pass(lambda ve, r: b.store(_combine(sb, "max", b.load(m), ve.value(e), d, False), m))
            mv = b.load(m)
            finite = b.fcmp_ordered("<", sb.intrinsic("llvm.fabs", mv), ir.Constant(mv.type, float("inf")))
            shift = b.select(finite, mv, ir.Constant(mv.type, 0.0))
            s = accumulate_var(b, llvm_type(d), sb.const(0.0, d), "s")

            def exp_body(ve, r):
                t = b.fadd(b.load(s), sb.math("exp", b.fsub(ve.value(e), shift)))
                t.flags.append("reassoc")
                b.store(t, s)
            inner_pass(exp_body)
            result = b.fadd(sb.math("log", b.load(s)), shift)
        else:
            init = sb.const(_IDENTITY[op], acc_dtype) if op in _IDENTITY else \
                sb.const(_extreme_const(acc_dtype, op == "min"), acc_dtype)
            acc = accumulate_var(b, llvm_type(acc_dtype), init, "acc")
            inner_pass(lambda ve, r: b.store(_combine(sb, op, b.load(acc), sb.cast(ve.value(e), x.dtype, acc_dtype),
                                                      acc_dtype, True, intrinsic=count >= VECTOR_MAX_MIN_ROW), acc))
            result = b.load(acc)
            if op == "mean":
                result = b.fdiv(result, sb.const(float(count), acc_dtype))
        ve = ValueEmitter(kc, list(oidx))
        ve.store(k.slot, node.dtype, ve.value(out_off), result)
    return chunks


def _emit_reduce_rows(kc: KernelContext, k: Target, x: Node, kept, red) -> int:
    """Reduction with the last axis kept: out = identity, then out[kept(i)] ⊕= x[i] in x's order."""
    node, op = k.node, k.node.op
    b, sb = kc.b, kc.sb
    d = node.dtype
    n_out = node.type.size
    init = sb.const(_IDENTITY[op], d) if op in _IDENTITY else sb.const(_extreme_const(d, op == "min"), d)
    with for_range(b, 0, n_out, "init") as i:
        ValueEmitter(kc, [i]).store(k.slot, d, i, init)
    rank = len(x.shape)
    eb = X.ExprBuilder(k.slots, _sizes(kc.plan), rank)
    e = eb.expr(x, X.Affine.identity(rank))
    kept_rm = row_major([x.shape[dd] for dd in kept])
    out_coeffs = [0] * rank
    for j, dd in enumerate(kept):
        out_coeffs[dd] = kept_rm[j]
    with loop_nest(b, [(0, s) for s in x.shape], "x", inner_hints=_inner_hints(x.shape[-1] if x.shape else 0)) as idx:
        ve = ValueEmitter(kc, idx)
        off = ve.affine(out_coeffs, 0)
        cur = ve.load(k.slot, d, off)
        ve.store(k.slot, d, off, _combine(sb, op, cur, sb.cast(ve.value(e), x.dtype, d), d, False))
    if op == "mean":
        count = _prod([x.shape[dd] for dd in red])
        with for_range(b, 0, n_out, "scale") as i:
            ve = ValueEmitter(kc, [i])
            ve.store(k.slot, d, i, b.fdiv(ve.load(k.slot, d, i), sb.const(float(count), d)))
    return 1


def emit_softmax(kc: KernelContext, k: Target) -> int:
    """softmax / log_softmax along ``axis``, row by row (m = max_j x_j):

    * softmax:     e_j = exp(x_j - m),  out_j = e_j / Σ e
    * log_softmax: c = m if m is finite else 0,  out_j = x_j - c - log Σ exp(x_j - c)

    Three passes over a row (max, exponentials, output) and one ``exp`` per
    element: a row of 10 classes unrolls into 10 inlined ``exp``s, so a second
    pass of them (log_softmax used to sum exp(x - m) and exp(x - c) apart)
    doubled the kernel's compile time (~90 ms) for nothing.

    (Tried: a row shorter than a vector on masked lanes, as ``_padded_inner``:
    one vector ``exp`` per row compiles in a third of the time but ran 2.5x
    slower, the max and sum of 16 lanes being serial chains per row.) Short rows
    of a matrix go column by column instead: ``_emit_softmax_by_columns``.
    """
    node = k.node
    x = node.inputs[0]
    axis = node.attrs["axis"]
    shape = x.shape
    others = [d for d in range(len(shape)) if d != axis]
    order = others + [axis]
    n = shape[axis]
    if node.type.size == 0:
        return 0
    if len(others) == 1 and SHORT_SOFTMAX_ROW[0] <= n <= SHORT_SOFTMAX_ROW[1] and \
            _chunks(shape[others[0]], node.type.size) == 1:
        return _emit_softmax_by_columns(kc, k, others[0], axis)
    b, sb = kc.b, kc.sb
    d = node.dtype
    t = llvm_type(d)
    eb = X.ExprBuilder(k.slots, _sizes(kc.plan), len(order))
    e = eb.expr(x, X.Affine.identity(len(shape), order))
    rm = row_major(shape)
    out_coeffs = tuple(rm[dd] for dd in order)
    row_sizes = [shape[dd] for dd in others]
    chunks = _chunks(row_sizes[0] if row_sizes else 1, node.type.size)
    bounds = [(0, s) for s in row_sizes]
    if bounds:
        bounds[0] = _chunk_bounds(b, kc.fn.args[1], row_sizes[0], chunks)
    with loop_nest(b, bounds, "row") as ridx:
        m = accumulate_var(b, t, sb.const(float("-inf"), d), "m")
        s = accumulate_var(b, t, sb.const(0.0, d), "s")
        vector_max = n >= VECTOR_MAX_MIN_ROW  # a vector reduction, see _combine
        with for_range(b, 0, n, "j", SOFTMAX_MAX_LOOP if vector_max else None) as j:
            ve = ValueEmitter(kc, list(ridx) + [j])
            b.store(_combine(sb, "max", b.load(m), ve.value(e), d, False, intrinsic=vector_max), m)
        mv = b.load(m)
        if node.op == "log_softmax":  # as the reference: x - (c + log Σ exp(x - c))
            finite = b.fcmp_ordered("<", sb.intrinsic("llvm.fabs", mv), ir.Constant(t, float("inf")))
            mv = b.select(finite, mv, ir.Constant(t, 0.0))
        with for_range(b, 0, n, "j") as j:
            ve = ValueEmitter(kc, list(ridx) + [j])
            ex = sb.math("exp", b.fsub(ve.value(e), mv))
            if node.op == "softmax":
                ve.store(k.slot, d, ve.affine(out_coeffs, 0), ex)
            acc = b.fadd(b.load(s), ex)
            acc.flags.append("reassoc")
            b.store(acc, s)
        sv = b.load(s)
        if node.op == "softmax":
            inv = b.fdiv(ir.Constant(t, 1.0), sv)
        else:
            logs = sb.math("log", sv)
        with for_range(b, 0, n, "j") as j:
            ve = ValueEmitter(kc, list(ridx) + [j])
            off = ve.affine(out_coeffs, 0)
            if node.op == "softmax":
                ve.store(k.slot, d, off, b.fmul(ve.load(k.slot, d, off), inv))
            else:
                ve.store(k.slot, d, off, b.fsub(b.fsub(ve.value(e), mv), logs))
    return chunks


# Rows this long, in a kernel of one chunk, go column by column (_emit_softmax_by_columns). Not
# shorter: a row of 2-4 unrolls cheaply and runs 2-4x faster read along; not 16: a full vector
# per row; not in chunks: the row loops' run-time bounds cost LLVM more than the unrolled rows.
SHORT_SOFTMAX_ROW = (5, 15)
SOFTMAX_BLOCK_ROWS = 256  # rows per block there (two scratch vectors of this many on the stack)
SOFTMAX_ROW_LOOP = {"llvm.loop.interleave.count": 1, "llvm.loop.unroll.disable": None}
SOFTMAX_COLUMN_LOOP = {"llvm.loop.unroll.disable": None}  # else unrolled n times, row loops and all
# a row's max: not fully unrolled before the vectorizer sees it (a row of 64 became a serial chain
# of 64 llvm.maximum calls, slower than the compare-and-select chain); vectorized, softmax over
# rows of 16-1000 runs 1.9-3.3x faster than with the chain (128x64: 17.7 -> 7.8 us)
SOFTMAX_MAX_LOOP = {"llvm.loop.unroll.disable": None}
# ... for rows of a vector or more (here and in max / min reductions): shorter ones unroll into a
# few selects, and as a loop of the intrinsic they ran slower (4096x4 softmax 10 -> 63 us, 20000x2
# log_softmax 31 -> 436; a max over 4096 rows of 4 or 8, 1.5 -> 1.8 and 4.7 -> 5.3 us)
VECTOR_MAX_MIN_ROW = 16


def _emit_softmax_by_columns(kc: KernelContext, k: Target, row_axis: int, axis: int) -> int:
    """softmax / log_softmax of a matrix with short rows (n in SHORT_SOFTMAX_ROW), as
    ``emit_softmax`` computes it, but column by column over blocks of rows:

        for each block of rows i:      m_i = -inf; s_i = 0
        for j < n: for i in block:     m_i = max(m_i, x_ij)
        (log_softmax: c_i = m_i if finite else 0)
        for j < n: for i in block:     s_i += exp(x_ij - c_i)     (softmax: out_ij = exp(...))
        for i in block:                log_softmax: c_i + log s_i; softmax: 1 / s_i
        for j < n: for i in block:     out_ij = x_ij - (c_i + log s_i)  or  out_ij * (1 / s_i)

    The inner loops run along the rows (one element of each, m and s in scratch arrays):
    LLVM vectorizes them whatever n, with one ``exp`` in the loop body, where a row of 10
    walked along unrolls into 10 inlined ``exp``s (W3's log_softmax compiled in 68 ms).
    """
    node = k.node
    x = node.inputs[0]
    n, rows = x.shape[axis], x.shape[row_axis]
    b, sb = kc.b, kc.sb
    d = node.dtype
    t = llvm_type(d)
    order = [row_axis, axis]
    eb = X.ExprBuilder(k.slots, _sizes(kc.plan), 2)
    e = eb.expr(x, X.Affine.identity(2, order))
    rm = row_major(x.shape)
    out_coeffs = (rm[row_axis], rm[axis])
    chunks = _chunks(rows, node.type.size)
    lo, hi = _chunk_bounds(b, kc.fn.args[1], rows, chunks)
    block = SOFTMAX_BLOCK_ROWS
    scratch = []
    for name in ("m", "s"):
        with b.goto_block(kc.fn.entry_basic_block):
            b.position_before(kc.fn.entry_basic_block.instructions[0])
            slot = b.alloca(ir.ArrayType(t, block), name=name)
            slot.align = 64
        scratch.append(slot)
    m_arr, s_arr = scratch
    nblocks = b.sdiv(b.add(b.sub(hi, lo), const64(block - 1)), const64(block))
    with for_range(b, 0, nblocks, "blk") as blk:
        r0 = b.add(lo, b.mul(blk, const64(block)))
        r1 = b.select(b.icmp_signed("<", b.add(r0, const64(block)), hi), b.add(r0, const64(block)), hi)

        def rows_loop():
            return for_range(b, r0, r1, "r", SOFTMAX_ROW_LOOP)

        def at(arr, r):
            return b.gep(arr, [const64(0), b.sub(r, r0)])

        with rows_loop() as r:
            b.store(sb.const(float("-inf"), d), at(m_arr, r))
            b.store(sb.const(0.0, d), at(s_arr, r))
        with for_range(b, 0, n, "j", SOFTMAX_COLUMN_LOOP) as j, rows_loop() as r:
            ve = ValueEmitter(kc, [r, j])
            b.store(_combine(sb, "max", b.load(at(m_arr, r)), ve.value(e), d, False), at(m_arr, r))
        if node.op == "log_softmax":  # as the reference: x - (c + log sum exp(x - c))
            with rows_loop() as r:
                mv = b.load(at(m_arr, r))
                finite = b.fcmp_ordered("<", sb.intrinsic("llvm.fabs", mv), ir.Constant(t, float("inf")))
                b.store(b.select(finite, mv, ir.Constant(t, 0.0)), at(m_arr, r))
        with for_range(b, 0, n, "j", SOFTMAX_COLUMN_LOOP) as j, rows_loop() as r:
            ve = ValueEmitter(kc, [r, j])
            ex = sb.math("exp", b.fsub(ve.value(e), b.load(at(m_arr, r))))
            if node.op == "softmax":
                ve.store(k.slot, d, ve.affine(out_coeffs, 0), ex)
            acc = b.fadd(b.load(at(s_arr, r)), ex)
            b.store(acc, at(s_arr, r))
        with rows_loop() as r:  # s_i := 1 / s_i (softmax) or c_i + log s_i (log_softmax)
            sv = b.load(at(s_arr, r))
            if node.op == "softmax":
                b.store(b.fdiv(ir.Constant(t, 1.0), sv), at(s_arr, r))
            else:
                b.store(b.fadd(b.load(at(m_arr, r)), sb.math("log", sv)), at(s_arr, r))
        with for_range(b, 0, n, "j", SOFTMAX_COLUMN_LOOP) as j, rows_loop() as r:
            ve = ValueEmitter(kc, [r, j])
            off = ve.affine(out_coeffs, 0)
            sv = b.load(at(s_arr, r))
            if node.op == "softmax":
                ve.store(k.slot, d, off, b.fmul(ve.load(k.slot, d, off), sv))
            else:
                ve.store(k.slot, d, off, b.fsub(ve.value(e), sv))
    return chunks


SPLIT_GEMM_MACS = 1 << 19  # a GEMM of at least this many multiply-adds is split over the pool (W5a: 128x784x10 runs 1.4x faster split)
SPLIT_GEMM_CHUNKS = 2
SPLIT_GEMM_MIN = 32  # rows or columns per chunk, at least


HUGE_GEMM_MACS = 1 << 28  # a module with a GEMM this big leaves BLAS its own threads (see emit_module)


def _gemm_macs(k: Kernel) -> int:
    from graphc.passes.fusion import heavy_node
    node = heavy_node(k.body, k.kind) if k.kind == "matmul" else None
    if node is None or node.op != "matmul":
        return 0
    return node.type.size * node.inputs[0].shape[-1]


def gemm_split(M: int, N: int, K: int, batch) -> str | None:
    """Which dimension of a BLAS GEMM to split into ``SPLIT_GEMM_CHUNKS`` chunks run on graphc's
    thread pool (each chunk one single-threaded BLAS call), or None to make one call.

    The chunks share one operand, which BLAS packs once per chunk: split the dimension whose
    other operand is the smaller (``N`` when ``M*K <= K*N``: A is re-packed).
    """
    if batch or M * N * K < SPLIT_GEMM_MACS:
        return None
    for dim, size in (("n", N), ("m", M)) if M <= N else (("m", M), ("n", N)):
        if size >= SPLIT_GEMM_CHUNKS * SPLIT_GEMM_MIN:
            return dim
    return None


def emit_matmul(kc: KernelContext, k: Target, blas, split_ok: bool = True) -> int:
    """BLAS GEMM (or a loop nest without BLAS or for integers); big GEMMs in chunks.

    Why chunks: numpy's OpenBLAS has its own thread pool, and two pools spinning
    on the same cores slow each other down badly (and OpenBLAS's static work split
    waits for its slowest thread when the machine is shared). So while a compiled
    function that splits GEMMs runs, BLAS is single-threaded (``RT_BLAS_SERIAL``,
    see ``codegen.dispatch``) and graphc's pool runs the chunks, each claimed by
    whichever thread is free.
    """
    node = k.node
    a, bnode = node.inputs
    shape = node.shape
    M, N, K = shape[-2], shape[-1], a.shape[-1]
    batch = shape[:-2]
    b, sb = kc.b, kc.sb
    d = node.dtype
    if M * N == 0 or node.type.size == 0:
        return 0
    va = resolve_view(a, k.slots)
    vb = resolve_view(bnode, k.slots)
    out_rm = row_major(shape)
    alpha, beta = k.accumulate or (1.0, 0.0)
    if K == 0:  # C = beta * C
        with for_range(b, 0, node.type.size, "z") as i:
            ve = ValueEmitter(kc, [i])
            keep = _combine(sb, "prod", ve.load(k.slot, d, i), sb.const(beta, d), d, False) if beta else sb.const(0, d)
            ve.store(k.slot, d, i, keep)
        return 1
    use_blas = d.is_float and blas is not None
    split = gemm_split(M, N, K, batch) if use_blas and split_ok else None
    with loop_nest(b, [(0, s) for s in batch], "batch") as bidx:
        ve = ValueEmitter(kc, list(bidx))
        c_off = ve.affine(out_rm[:-2], 0)
        if use_blas:
            from .blas import emit_gemm
            la, lb = blas_layout(va, a.shape), blas_layout(vb, bnode.shape)
            a_off = ve.affine(va.strides[:-2], va.offset)
            b_off = ve.affine(vb.strides[:-2], vb.offset)
            m, n = const64(M), const64(N)
            if split == "m":  # rows lo:hi of op(A) and C
                lo, hi = _chunk_bounds(b, kc.fn.args[1], M, SPLIT_GEMM_CHUNKS)
                m = b.sub(hi, lo)
                a_off = b.add(a_off, b.mul(lo, const64(1 if la[0] else la[1])))
                c_off = b.add(c_off, b.mul(lo, const64(N)))
            elif split == "n":  # columns lo:hi of op(B) and C
                lo, hi = _chunk_bounds(b, kc.fn.args[1], N, SPLIT_GEMM_CHUNKS)
                n = b.sub(hi, lo)
                b_off = b.add(b_off, b.mul(lo, const64(lb[1] if lb[0] else 1)))
                c_off = b.add(c_off, lo)
            emit_gemm(b, blas.gemm(d.np_dtype), trans_a=la[0], trans_b=lb[0], m=m, n=n, k=K,
                      a=b.gep(kc.ptr(va.slot), [a_off]), lda=la[1], b=b.gep(kc.ptr(vb.slot), [b_off]),
                      ldb=lb[1], c=b.gep(kc.ptr(k.slot), [c_off]), ldc=N, alpha=alpha, beta=beta,
                      address=kc.runtime_address(RT_SGEMM if d.itemsize == 4 else RT_DGEMM))
        else:
            _naive_matmul(kc, k, va, vb, list(bidx), M, N, K, c_off)
    return SPLIT_GEMM_CHUNKS if split else 1


def _naive_matmul(kc, k, va, vb, bidx, M, N, K, c_off):
    """Matmul without BLAS (integers, or no BLAS found): C = beta C, then
    C[i,j] += alpha A[i,p] B[p,j] with j innermost (vectorizes over j)."""
    b, sb = kc.b, kc.sb
    d = k.node.dtype
    alpha, beta = k.accumulate or (1, 0)
    with for_range(b, 0, M * N, "z") as i:
        ve = ValueEmitter(kc, [i])
        off = b.add(c_off, i)
        init = _combine(sb, "prod", ve.load(k.slot, d, off), sb.const(beta, d), d, False) if beta else sb.const(0, d)
        ve.store(k.slot, d, off, init)
    with loop_nest(b, [(0, M), (0, K), (0, N)], "mm") as (i, p, j):
        ve = ValueEmitter(kc, bidx + [i, p, j])
        nb = len(bidx)
        a_off = ve.affine(tuple(va.strides[:-2]) + (va.strides[-2], va.strides[-1], 0), va.offset)
        b_off = ve.affine(tuple(vb.strides[:-2]) + (0, vb.strides[-2], vb.strides[-1]), vb.offset)
        off = b.add(c_off, ve.affine((0,) * nb + (N, 0, 1), 0))
        prod = _combine(sb, "prod", ve.load(va.slot, d, a_off), ve.load(vb.slot, d, b_off), d, False)
        if alpha != 1:
            prod = _combine(sb, "prod", prod, sb.const(alpha, d), d, False)
        ve.store(k.slot, d, off, _combine(sb, "sum", ve.load(k.slot, d, off), prod, d, False))


def emit_scatter_add(kc: KernelContext, k: Target) -> int:
    node = k.node
    u, idx = node.inputs
    axis, dim = node.attrs["axis"], node.attrs["dim_size"]
    b, sb = kc.b, kc.sb
    d = node.dtype
    with for_range(b, 0, node.type.size, "z") as i:
        ValueEmitter(kc, [i]).store(k.slot, d, i, sb.const(0, d))
    if u.type.size == 0:
        return 1
    rank = len(u.shape)
    kdim = len(idx.shape)
    eb = X.ExprBuilder(k.slots, _sizes(kc.plan), rank)
    ue = eb.expr(u, X.Affine.identity(rank))
    ident = X.Affine.identity(rank)
    ie = eb.expr(idx, ident.with_rows([ident.row(dd) for dd in range(axis, axis + kdim)]))
    out_rm = row_major(node.shape)
    coeffs = [0] * rank
    for dd in range(axis):
        coeffs[dd] = out_rm[dd]
    for dd in range(axis + kdim, rank):
        coeffs[dd] = out_rm[dd - kdim + 1]
    with loop_nest(b, [(0, s) for s in u.shape], "u") as uidx:
        ve = ValueEmitter(kc, uidx)
        i, ok = _checked_index(b, ve.value(ie), ie, dim)
        flag = kc.error_flag()
        b.store(b.or_(b.load(flag), b.not_(ok)), flag)
        with b.if_then(ok):
            off = b.add(ve.affine(coeffs, 0), b.mul(i, const64(out_rm[axis])))
            cur = ve.load(k.slot, d, off)
            ve.store(k.slot, d, off, _combine(sb, "sum", cur, ve.value(ue), d, False))
    return 1


def _sizes(plan: Plan) -> dict:
    return {bs.slot: bs.node.type.size for bs in plan.buffers}


# ---------------------------------------------------------------- module

EMITTERS = {"elementwise": emit_elementwise, "reduce": emit_reduce, "softmax": emit_softmax,
            "scatter_add": emit_scatter_add}


def _function(module: ir.Module, plan: Plan, name: str, emit, target: Target) -> tuple[ir.Function, int, bool]:
    """Emit one kernel function; returns it, its chunk count and whether it has a padded loop."""
    fn = ir.Function(module, KERNEL_TYPE, name=name)  # external: the profiler calls kernels one by one
    fn.attributes.add("noinline")  # each kernel is optimized once, not copied into the entry
    kc = KernelContext(module, fn, plan)
    kc.written.add(target.slot)
    chunks = emit(kc, target)
    kc.finish()
    return fn, chunks, kc.padded


_LOOP_HEAD = re.compile(r"\.head(\.\d+)?$")  # codegen.loops.for_range's blocks (llvmlite numbers repeats)


def _compile_cost(fn: ir.Function) -> float:
    """Estimated milliseconds LLVM takes to optimize and compile ``fn`` (O3, on this kind of
    machine), to balance the parts of a module (``emit_module``).

    Fitted to the 28 functions of the W3 training step, each compiled alone: ~6 ms per
    function, 1.2 per loop (none under ``optsize``) and 6 per inlined math call, within 5 ms
    of every one (3.6 to 29 ms; the log_softmax by columns the largest kernel).
    """
    loops = math = 0
    for block in fn.blocks:
        loops += bool(_LOOP_HEAD.search(block.name))
        for i in block.instructions:
            callee = getattr(i, "callee", None)
            math += isinstance(callee, ir.Function) and "alwaysinline" in callee.attributes
    per_loop = 0 if "optsize" in fn.attributes else 1.2
    return 6 + per_loop * loops + 6 * math


def _compile_cost_rank(k: Kernel) -> int:
    """0 for kernels that take LLVM longest (softmax: several loops with ``exp`` and ``log``),
    1 for other loops over many values, 2 for small ones, 3 for matmuls (a BLAS call)."""
    if k.kind == "softmax":
        return 0
    if k.kind == "matmul":
        return 3
    return 1 if max((n.type.size for n in k.body.nodes), default=0) >= 4096 else 2  # compiler.SMALL_KERNEL_ELEMENTS


def emit_module(plan: Plan, blas=None, name: str = "graphc", parts: int = 1,
                small=None) -> tuple[list[ir.Module], list[KernelCode]]:
    """The LLVM modules of a plan and the list of its kernel functions.

    A kernel whose body is a reduction, softmax or matmul followed by an
    elementwise epilogue gets two functions: the heavy loop writes the
    kernel's buffer, then the epilogue rewrites it in place (no intermediate
    buffer).

    ``parts``: how many modules to spread the kernel functions over, to be
    compiled in parallel (``codegen.parallel``). Each function goes to the
    module with the least code so far (``_compile_cost``); the entry point
    ``graphc_run`` is in the first and declares the functions it calls in the
    others. Kernels call nothing but intrinsics, their own inlined math
    functions and the runtime table, so the parts link by those names alone.

    ``small(code, epilogue) -> bool``: which functions get LLVM's ``optsize``
    (the compiler's policy, ``codegen.compiler._is_small``).
    """
    from graphc.passes.fusion import heavy_node
    modules = [ir.Module(name=name if i == 0 else f"{name}.part{i}") for i in range(max(1, parts))]
    load = [0.0] * len(modules)
    load[0] = 3 + len(plan.kernels)  # the entry, emitted last (a call, maybe a chunk loop, per kernel)
    codes: list[KernelCode] = []
    split_gemms: set[str] = set()
    # chunked GEMMs need BLAS single-threaded for the whole call; a huge GEMM (seconds of work,
    # e.g. 2048^3) runs better on BLAS's own threads, which share their packed panels: 0.88x of
    # numpy in chunks vs 0.98x. So a module with one leaves every GEMM to BLAS.
    split_ok = not any(_gemm_macs(k) >= HUGE_GEMM_MACS for k in plan.kernels)

    def place(fname, emit, target, k, summary, epilogue) -> KernelCode:
        part = load.index(min(load))
        fn, chunks, padded = _function(modules[part], plan, fname, emit, target)
        code = KernelCode(fname, k, chunks, summary, padded, part)
        if small is not None and small(code, epilogue):
            fn.attributes.add("optsize")
        load[part] += _compile_cost(fn)
        codes.append(code)
        return code

    order = range(len(plan.kernels))
    if len(modules) > 1:  # the costliest first: each part's load is then known when the small ones come
        order = sorted(order, key=lambda i: _compile_cost_rank(plan.kernels[i]))
    for i in order:
        k = plan.kernels[i]
        slots = k.body_slots(plan.slot_of)
        root = k.body.outputs[0]
        heavy = heavy_node(k.body, k.kind)
        first = heavy if heavy is not None else root
        if k.kind == "matmul":
            emit = lambda kc, t: emit_matmul(kc, t, blas, split_ok)  # noqa: E731
        else:
            emit = EMITTERS[k.kind]
        target = Target(first, k.slot, slots, k.accumulate)
        summary = f"{k.kind} {first.op} {k.node.type}" + (" (in place: C = alpha AB + beta C)" if k.accumulate else "")
        code = place(f"k{i}_{first.op}", emit, target, k, summary, False)
        if k.kind == "matmul" and code.chunks > 1:
            split_gemms.add(code.name)
        if heavy is not None and heavy is not root and k.accumulate is None:
            epi_slots = dict(slots)
            epi_slots[id(heavy)] = k.slot
            place(f"k{i}_epilogue_{root.op}", emit_elementwise, Target(root, k.slot, epi_slots), k,
                  f"epilogue {root.op} {k.node.type}", True)

    position = {id(k): i for i, k in enumerate(plan.kernels)}
    codes.sort(key=lambda c: position[id(c.kernel)])  # stable: an epilogue after its kernel
    module = modules[0]
    entry = ir.Function(module, ir.FunctionType(VOID, [I8PP]), name=ENTRY_NAME)
    b = ir.IRBuilder(entry.append_basic_block("entry"))
    ctx = b.bitcast(entry.args[0], I8P)
    pf_type = ir.FunctionType(VOID, [KERNEL_TYPE.as_pointer(), I8P, I64])
    table = b.bitcast(b.load(b.gep(entry.args[0], [const64(0)])), I64.as_pointer())
    hook_type = ir.FunctionType(VOID, []).as_pointer()
    serial_blas = None
    if split_gemms:  # BLAS single-threaded while this call runs: the pool runs the GEMM chunks
        serial_blas = b.load(b.gep(table, [const64(RT_BLAS_SERIAL)]))  # 0 without a pool (compiler.runtime_table)
        have_serial = b.icmp_unsigned("!=", serial_blas, const64(0))
        with b.if_then(have_serial):
            b.call(b.inttoptr(serial_blas, hook_type), [])
    for code in codes:
        if code.chunks == 0:
            continue
        fn = module.globals.get(code.name) or ir.Function(module, KERNEL_TYPE, name=code.name)  # in another part
        if code.chunks == 1:
            b.call(fn, [ctx, const64(0)])
            continue
        addr = b.load(b.gep(table, [const64(RT_PARALLEL_FOR)]))
        have_pool = b.icmp_unsigned("!=", addr, const64(0))
        if code.name in split_gemms:  # without serial BLAS, chunks run one after the other
            have_pool = b.and_(have_pool, have_serial)
        with b.if_else(have_pool) as (then, otherwise):
            with then:
                b.call(b.inttoptr(addr, pf_type.as_pointer()), [fn, ctx, const64(code.chunks)])
            with otherwise:
                with for_range(b, 0, code.chunks, "chunk") as c:
                    b.call(fn, [ctx, c])
    nbytes = {bs.slot: bs.nbytes for bs in plan.buffers}
    for src, dst in plan.copies:
        n = nbytes[dst]
        if n:
            memcpy = module.declare_intrinsic("llvm.memcpy", [I8P, I8P, I64])
            s = b.load(b.gep(entry.args[0], [const64(src)]))
            t = b.load(b.gep(entry.args[0], [const64(dst)]))
            b.call(memcpy, [t, s, const64(n), ir.Constant(ir.IntType(1), 0)])
    if serial_blas is not None:
        with b.if_then(have_serial):
            b.call(b.inttoptr(b.load(b.gep(table, [const64(RT_BLAS_RESTORE)])), hook_type), [])
    b.ret_void()
    return modules, codes

