"""Scalar expressions over loop indices: what one iteration of a fused loop computes.

A kernel's loop nest has loop indices ``i_0 .. i_{R-1}``. The value of a
graph node at the element the loop is at is an expression tree:

* ``Load``: ``buffer[slot][offset + Σ_e strides_e · i_e]`` (views are folded
  into offset and strides); ``guard`` clamps the address into the buffer
  (for values read only under a condition: pad, concatenate, stack);
* ``Gather``: a load whose address also has ``stride · idx`` for a
  data-dependent index ``idx`` (take), bounds-checked;
* ``Const``, ``Apply`` (an elementwise op from the scalar table),
  ``Select``, ``Index`` (an affine function of the loop indices, i64) and
  ``InRange`` (``lo <= Index < hi``).

``ExprBuilder.expr(node, imap)`` builds the tree of ``node`` read through the
affine index map ``imap`` (node index d = ``consts[d] + Σ_e coeffs[d][e] i_e``),
inlining every node that has no buffer.
"""

from __future__ import annotations

from dataclasses import dataclass

from graphc.dtypes import DType, bool_, int64
from graphc.ir import Node

from graphc.passes.layout import VIEW_OPS, View, resolve_view


@dataclass(frozen=True, eq=False)
class Load:
    slot: int
    dtype: DType
    offset: int
    strides: tuple
    guard: int | None = None  # buffer size in elements when the address must be clamped


@dataclass(frozen=True, eq=False)
class Gather:
    slot: int
    dtype: DType
    offset: int
    strides: tuple
    stride: int  # of the gathered axis
    index: object  # expression giving the index (integer)
    dim: int  # size of the gathered axis (bounds check)
    guard: int | None = None
    when: object = None  # the condition under which this value is used (only then is a bad index an error)


@dataclass(frozen=True, eq=False)
class Const:
    value: object
    dtype: DType


@dataclass(frozen=True, eq=False)
class Apply:
    op: str
    args: tuple
    in_dtype: DType
    dtype: DType
    attrs: tuple = ()


@dataclass(frozen=True, eq=False)
class Select:
    cond: object
    a: object
    b: object
    dtype: DType


@dataclass(frozen=True, eq=False)
class Index:
    coeffs: tuple
    const: int
    dtype: DType = int64


@dataclass(frozen=True, eq=False)
class InRange:
    index: Index
    lo: int
    hi: int
    dtype: DType = bool_


@dataclass(frozen=True)
class Affine:
    """Index map from loop indices to a node's indices: ``consts[d] + Σ_e coeffs[d][e] · i_e``."""

    consts: tuple
    coeffs: tuple  # one row per node dim, one entry per loop index

    @staticmethod
    def identity(ndim: int, order=None) -> "Affine":
        """Node dim ``order[e]`` is loop dim ``e`` (default: the same order)."""
        order = list(range(ndim)) if order is None else list(order)
        rows = [[0] * ndim for _ in range(ndim)]
        for e, d in enumerate(order):
            rows[d][e] = 1
        return Affine((0,) * ndim, tuple(tuple(r) for r in rows))

    def row(self, d):
        return self.coeffs[d], self.consts[d]

    def with_rows(self, rows, rank=None) -> "Affine":
        """A map with the given ``(coeffs, const)`` rows (``rank`` is only documentation)."""
        return Affine(tuple(c for _, c in rows), tuple(tuple(r) for r, _ in rows))


def _zero_row(rank):
    return (0,) * rank, 0


def _apply_view(v: View, imap: Affine, rank: int):
    offset = v.offset + sum(s * c for s, c in zip(v.strides, imap.consts))
    strides = tuple(sum(s * row[e] for s, row in zip(v.strides, imap.coeffs)) for e in range(rank))
    return offset, strides


class ExprBuilder:
    """Builds expression trees for one kernel, sharing common subexpressions."""

    def __init__(self, slot_of: dict, sizes: dict, rank: int):
        self.slot_of = slot_of
        self.sizes = sizes  # slot -> number of elements (for guards)
        self.rank = rank
        self.memo: dict = {}

    def expr(self, node: Node, imap: Affine, guard: bool = False, root: bool = False):
        key = (id(node), imap, guard, root)
        if key not in self.memo:
            self.memo[key] = self._expr(node, imap, guard, root)
        return self.memo[key]

    def _load(self, v: View, dtype, imap, guard):
        offset, strides = _apply_view(v, imap, self.rank)
        return Load(v.slot, dtype, offset, strides, self.sizes[v.slot] if guard else None)

    def _expr(self, node: Node, imap: Affine, guard: bool, root: bool):
        slots = self.slot_of
        if root:
            slots = dict(slots)
            slots.pop(id(node), None)
        v = resolve_view(node, slots)
        if v is not None:
            return self._load(v, node.dtype, imap, guard)
        op, a, ins = node.op, node.attrs, node.inputs
        if op == "constant" and node.type.shape == ():  # an immediate inside a kernel body
            return Const(node.value.item(), node.dtype)
        if op in VIEW_OPS:
            inner = view_input_map(node, imap, self.rank)
            if inner is None:
                raise NotImplementedError(f"reshape {ins[0].type} -> {node.type} of a computed value "
                                          "must be planned with a buffer")
            return self.expr(ins[0], inner, guard)
        if op == "pad":
            return self._pad(node, imap, guard)
        if op in ("concatenate", "stack"):
            return self._join(node, imap, guard)
        if op == "take":
            return self._take(node, imap, guard)
        if op == "one_hot":
            k = Index(*imap.row(len(node.shape) - 1))
            idx = self.expr(ins[0], _drop_rows(imap, [len(node.shape) - 1]), guard)
            idx = Apply("cast", (idx,), ins[0].dtype, int64)
            hit = Apply("eq", (idx, k), int64, bool_)
            return Apply("cast", (hit,), bool_, node.dtype)
        args = tuple(self.expr(i, imap, guard) for i in ins)
        in_dtype = ins[1].dtype if op == "where" else ins[0].dtype
        return Apply(op, args, in_dtype, node.dtype, tuple(sorted(a.items())))

    @staticmethod
    def _under(guard, cond):
        """The condition for values read under ``cond`` inside a region already under ``guard``."""
        if not guard:
            return cond
        return Apply("logical_and", (guard, cond), bool_, bool_)

    def _pad(self, node, imap, guard):
        x = node.inputs[0]
        rows, cond = [], None
        for d, ((lo, hi), size) in enumerate(zip(node.attrs["pad_width"], x.shape)):
            coeffs, c = imap.row(d)
            rows.append((coeffs, c - lo))
            if lo or hi:
                test = InRange(Index(coeffs, c), lo, lo + size)
                cond = test if cond is None else Apply("logical_and", (cond, test), bool_, bool_)
        inner = imap.with_rows(rows, self.rank)
        val = self.expr(x, inner, guard=self._under(guard, cond) if cond is not None else guard)
        if cond is None:
            return val
        return Select(cond, val, Const(node.attrs["value"], node.dtype), node.dtype)

    def _join(self, node, imap, guard):
        axis = node.attrs["axis"]
        coeffs, c = imap.row(axis)
        out = None
        start = 0
        for k, x in enumerate(node.inputs):
            if node.op == "concatenate":
                n = x.shape[axis]
                rows = [imap.row(d) for d in range(len(node.shape))]
                rows[axis] = (coeffs, c - start)
                test = InRange(Index(coeffs, c), start, start + n)
                start += n
            else:
                rows = [imap.row(d) for d in range(len(node.shape)) if d != axis]
                test = InRange(Index(coeffs, c), k, k + 1)
            val = self.expr(x, imap.with_rows(rows, self.rank), guard=self._under(guard, test))
            out = val if out is None else Select(test, val, out, node.dtype)
        return out

    def _take(self, node, imap, guard):
        x, idx = node.inputs
        axis = node.attrs["axis"]
        k = len(idx.shape)
        v = resolve_view(x, self.slot_of)
        if v is None:
            raise NotImplementedError("take from a computed value must be planned with a buffer")
        n = len(node.shape)
        idx_map = imap.with_rows([imap.row(d) for d in range(axis, axis + k)], self.rank)
        index = self.expr(idx, idx_map, guard)
        x_rows = [imap.row(d) for d in range(axis)] + [_zero_row(self.rank)] + \
                 [imap.row(d) for d in range(axis + k, n)]
        offset, strides = _apply_view(v, imap.with_rows(x_rows, self.rank), self.rank)
        return Gather(v.slot, x.dtype, offset, strides, v.strides[axis], index, x.shape[axis],
                      self.sizes[v.slot] if guard else None, guard if guard else None)


def _drop_rows(imap: Affine, drop) -> Affine:
    return imap.with_rows([imap.row(d) for d in range(len(imap.consts)) if d not in drop])


def view_input_map(node: Node, imap: Affine, rank: int) -> Affine | None:
    """The index map of a view's input, given the view's own; None for a non-affine reshape."""
    x = node.inputs[0]
    a = node.attrs
    n_out = len(node.shape)
    rows = [imap.row(d) for d in range(n_out)]
    if node.op == "transpose":
        new = [None] * n_out
        for j, p in enumerate(a["perm"]):
            new[p] = rows[j]
        return imap.with_rows(new, rank)
    if node.op == "broadcast_to":
        lead = n_out - len(x.shape)
        return imap.with_rows([_zero_row(rank) if xs == 1 else rows[d + lead]
                               for d, xs in enumerate(x.shape)], rank)
    if node.op == "slice":
        new = []
        for (coeffs, c), s, st in zip(rows, a["starts"], a["steps"]):
            new.append((tuple(st * q for q in coeffs), s + st * c))
        return imap.with_rows(new, rank)
    if node.op == "expand_dims":
        return imap.with_rows([r for d, r in enumerate(rows) if d not in a["axes"]], rank)
    if node.op == "squeeze":
        new = list(rows)
        for ax in a["axes"]:
            new.insert(ax, _zero_row(rank))
        return imap.with_rows(new, rank)
    if node.op == "reshape":
        # affine only when the reshape just adds or removes size-1 dims
        src = [s for s in x.shape if s != 1]
        dst = [s for s in node.shape if s != 1]
        if src != dst:
            return None
        kept = [r for r, s in zip(rows, node.shape) if s != 1]
        it = iter(kept)
        return imap.with_rows([_zero_row(rank) if s == 1 else next(it) for s in x.shape], rank)
    return None


def collect_patterns(e, out: list, seen=None):
    """Every affine access (strides / coefficients) in an expression, for loop collapsing."""
    seen = set() if seen is None else seen
    if id(e) in seen:
        return out
    seen.add(id(e))
    if isinstance(e, (Load, Gather)):
        out.append(e.strides)
        if isinstance(e, Gather):
            collect_patterns(e.index, out, seen)
            if e.when is not None:
                collect_patterns(e.when, out, seen)
    elif isinstance(e, Index):
        out.append(e.coeffs)
    elif isinstance(e, InRange):
        collect_patterns(e.index, out, seen)
    elif isinstance(e, Apply):
        for x in e.args:
            collect_patterns(x, out, seen)
    elif isinstance(e, Select):
        for x in (e.cond, e.a, e.b):
            collect_patterns(x, out, seen)
    return out


def collapse_groups(shape, patterns) -> list[list[int]]:
    """Groups of adjacent loop dims that can run as one (every access steps uniformly across them)."""
    groups = [[0]] if shape else []
    for d in range(1, len(shape)):
        prev = groups[-1][-1]
        if all(p[prev] == p[d] * shape[d] for p in patterns):
            groups[-1].append(d)
        else:
            groups.append([d])
    return groups


def remap(e, groups, memo=None):
    """The expression with strides over collapsed loop dims (a group's stride is its last dim's)."""
    memo = {} if memo is None else memo
    if id(e) in memo:
        return memo[id(e)]
    last = [g[-1] for g in groups]
    if isinstance(e, Load):
        r = Load(e.slot, e.dtype, e.offset, tuple(e.strides[d] for d in last), e.guard)
    elif isinstance(e, Gather):
        r = Gather(e.slot, e.dtype, e.offset, tuple(e.strides[d] for d in last), e.stride,
                   remap(e.index, groups, memo), e.dim, e.guard,
                   remap(e.when, groups, memo) if e.when is not None else None)
    elif isinstance(e, Index):
        r = Index(tuple(e.coeffs[d] for d in last), e.const)
    elif isinstance(e, InRange):
        r = InRange(remap(e.index, groups, memo), e.lo, e.hi)
    elif isinstance(e, Apply):
        r = Apply(e.op, tuple(remap(x, groups, memo) for x in e.args), e.in_dtype, e.dtype, e.attrs)
    elif isinstance(e, Select):
        r = Select(remap(e.cond, groups, memo), remap(e.a, groups, memo), remap(e.b, groups, memo), e.dtype)
    else:
        r = e
    memo[id(e)] = r
    return r


# ---------------------------------------------------------------- loop splitting

def children(e):
    """The subexpressions of ``e`` (arguments, select branches, a gather's index and condition)."""
    for f in ("args", "cond", "a", "b", "index", "when"):
        v = getattr(e, f, None)
        for y in (v if isinstance(v, tuple) else (v,)):
            if y is not None and not isinstance(y, (int, str)):
                yield y


def _one_dim(index: Index, dim: int):
    """``(a, c)`` if ``index`` is ``a * i[dim] + c`` with ``a != 0`` (no other loop index), else None."""
    a = index.coeffs[dim] if dim < len(index.coeffs) else 0
    if not a or any(k for d, k in enumerate(index.coeffs) if d != dim):
        return None
    return a, index.const


def nodes(e):
    """The distinct subexpressions of ``e``, ``e`` first (each once, however often it is shared)."""
    seen, stack = set(), [e]
    while stack:
        x = stack.pop()
        if id(x) not in seen:
            seen.add(id(x))
            yield x
            stack.extend(reversed(list(children(x))))  # pre-order: the first child next


def node_count(e) -> int:
    """The distinct subexpressions of ``e`` (a measure of the code it emits)."""
    return sum(1 for _ in nodes(e))


def split_points(e, dim: int, size: int) -> list[int]:
    """Where the conditions of ``e`` (pad borders, concatenate / stack parts) that depend on loop
    index ``dim`` alone change along that dim: sorted points in ``(0, size)``.

    ``lo <= a*i + c < hi`` holds for ``ceil((lo-c)/a) <= i < ceil((hi-c)/a)`` when ``a > 0``,
    and for ``floor((hi-c)/a) + 1 <= i < floor((lo-c)/a) + 1`` when ``a < 0``."""
    points = set()
    for x in nodes(e):
        ac = _one_dim(x.index, dim) if isinstance(x, InRange) else None
        if ac is not None:
            a, c = ac
            for bound in (x.lo, x.hi):
                n = bound - c
                points.add(-(-n // a) if a > 0 else n // a + 1)
    return sorted(p for p in points if 0 < p < size)


def specialize(e, dim: int, lo: int, hi: int, memo=None):
    """``e`` for loop index ``dim`` in ``[lo, hi)`` only: conditions on that index alone that
    hold (or fail) over the whole range become constants and their selects disappear."""
    memo = {} if memo is None else memo
    if id(e) in memo:
        return memo[id(e)]
    r = e
    if isinstance(e, InRange):
        ac = _one_dim(e.index, dim)
        if ac is not None:
            a, c = ac
            vmin, vmax = min(a * lo, a * (hi - 1)) + c, max(a * lo, a * (hi - 1)) + c
            if e.lo <= vmin and vmax < e.hi:
                r = Const(True, bool_)
            elif vmax < e.lo or vmin >= e.hi:
                r = Const(False, bool_)
    elif isinstance(e, Select):
        cond = specialize(e.cond, dim, lo, hi, memo)
        if isinstance(cond, Const):
            r = specialize(e.a if cond.value else e.b, dim, lo, hi, memo)
        else:
            r = Select(cond, specialize(e.a, dim, lo, hi, memo), specialize(e.b, dim, lo, hi, memo), e.dtype)
    elif isinstance(e, Apply):
        args = tuple(specialize(x, dim, lo, hi, memo) for x in e.args)
        r = Apply(e.op, args, e.in_dtype, e.dtype, e.attrs)
        if e.op == "logical_and" and any(isinstance(x, Const) for x in args):
            rest = [x for x in args if not (isinstance(x, Const) and x.value)]
            if any(isinstance(x, Const) and not x.value for x in args):
                r = Const(False, bool_)
            elif not rest:
                r = Const(True, bool_)
            elif len(rest) == 1:
                r = rest[0]
    elif isinstance(e, Gather):
        when = specialize(e.when, dim, lo, hi, memo) if e.when is not None else None
        r = Gather(e.slot, e.dtype, e.offset, e.strides, e.stride, specialize(e.index, dim, lo, hi, memo),
                   e.dim, e.guard, when)
    memo[id(e)] = r
    return r


def has_conditions(e) -> bool:
    """Whether ``e`` still chooses between values by position (a select or a range test)."""
    return any(isinstance(x, (Select, InRange)) for x in nodes(e))


def unguarded(e, memo=None):
    """``e`` with no clamped addresses: for an expression with no conditions left, every read
    it makes is one the program makes, so its address is in bounds."""
    memo = {} if memo is None else memo
    if id(e) in memo:
        return memo[id(e)]
    if isinstance(e, Load):
        r = Load(e.slot, e.dtype, e.offset, e.strides) if e.guard is not None else e
    elif isinstance(e, Gather):
        r = Gather(e.slot, e.dtype, e.offset, e.strides, e.stride, unguarded(e.index, memo), e.dim)
    elif isinstance(e, Apply):
        r = Apply(e.op, tuple(unguarded(x, memo) for x in e.args), e.in_dtype, e.dtype, e.attrs)
    else:
        r = e
    memo[id(e)] = r
    return r
