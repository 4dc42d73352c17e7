"""Algebraic simplification: local rewrites, applied until nothing changes.

A *splat* is a value whose elements are all equal: a constant with that
property, or a view (``broadcast_to``, ``reshape``, ``transpose``,
``expand_dims``, ``squeeze``, ``slice``) of one. Its canonical form is
``broadcast_to(c)`` of a 0-d constant ``c`` (an immediate inside a fused
kernel, never a big array). Below, ``1``, ``0``, ``-1`` and ``true`` stand
for splats of that value, ``x ≥ 0`` for a value known to be non-negative
or NaN (the result of exp, abs, square, sigmoid, softplus, softmax, sqrt,
relu, a cast from bool, or a constant without negative elements).

Rules that hold bit for bit under IEEE 754 (including NaN, ±inf and -0.0),
always applied::

    x * 1, 1 * x, x / 1, x - (+0), x + (-0.0)      ->  x
    x / -1, -0.0 - x                               ->  -x
    -(-x), not(not x)                              ->  x
    x + (-y), (-y) + x                             ->  x - y     (and x - (-y) -> x + y)
    x + x, x * x                                   ->  x * 2, square(x)
    (-x) * (-y), (-x) / (-y)                       ->  x * y, x / y
    where(c, x, x), maximum(x, x), minimum(x, x)   ->  x
    where(true, a, b), where(false, a, b)          ->  a, b
    where(not c, a, b)                             ->  where(c, b, a)
    transpose(x, identity), reshape(x, x.shape), broadcast_to(x, x.shape),
    expand_dims/squeeze that do not change the shape, cast(x, x.dtype)  ->  x
    transpose(transpose(x, p), q)                  ->  transpose(x, p∘q)  (or x)
    reshape/expand_dims/squeeze of a reshape/expand_dims/squeeze  ->  x if the shape is
            x's again, else one reshape when either of the two is a reshape
    broadcast_to(broadcast_to(x, s), t)            ->  broadcast_to(x, t)
    cast(cast(x, a), b) with x -> a lossless       ->  cast(x, b)  (or x)
            (lossless: bool -> any, i32 -> i64/f64, f32 -> f64)
    a constant with all elements equal             ->  broadcast_to(0-d constant)
    any view of a splat                            ->  broadcast_to(its 0-d constant)
    max/min/prod over axes of size 1 only, or over no axis  ->  squeeze(x) (cast to the
            reduction's dtype: prod widens bool and i32 to i64); sum and mean too, but
            for floats see signed zeros below
    max/min(broadcast_to(x, s), axes)              ->  max/min over x's own dims (the
            broadcast dims among ``axes`` are dropped from the broadcast)
    sum(broadcast_to(x, s), axes), n = product of the broadcast dims reduced:
            n == 0  ->  zeros;  ints/bools  ->  n * sum over x's own dims (exact, with
            the same wrap-around)

Integer-only rules (always exact for integers, applied to floats only with
``assume_finite=True``, because ``inf - inf`` and ``0 * inf`` are NaN and
``-2.0 * 0`` is ``-0.0``)::

    x - x  ->  0          x * 0, 0 * x  ->  0

Rules that change the sign of a zero result (``-0.0 + 0.0`` is ``+0.0``)
and nothing else: applied unless ``keep_signed_zeros=True``. XLA's and
most DL compilers' simplifiers make the same choice; the values compare
equal, only ``1/x``, ``copysign`` or ``atan2`` could tell them apart::

    x + 0, 0 + x, x - (-0.0)  ->  x          0 - x  ->  -x
    float sum/mean over axes of size 1 only  ->  squeeze(x)   (a sum starts from +0.0)
    exp(log x) with x ≥ 0 from sqrt or relu (sqrt(-0.0) is -0.0)

Rules that are exact in real arithmetic and change float results only by
rounding (the rewritten form is the more accurate one) or where the
original over/underflows: applied by default, turned off by
``exact_rounding=True``::

    log(exp x)  ->  x          (exp(x) overflows for x > 88.7 in f32, 709.8 in f64,
                                and underflows to 0 below about -103 / -745: there the
                                original gives +inf / -inf, the rewrite the exact x)
    exp(log x)  ->  x  for x ≥ 0  (x < 0 would give NaN: not rewritten)
    mean(broadcast_to(x, s), axes)  ->  mean over x's own dims (n > 0)
    sum(broadcast_to(x, s), axes) on floats  ->  n * sum over x's own dims (n > 0):
                                one rounding instead of up to n - 1
                                (these two also need signed zeros not kept)

"x" twice in a rule means two nodes computing the same value: the same node,
or the same op, attributes and type over such inputs (equal constants; two
placeholders or parameters are never the same).

Every rewritten node keeps the location and origin of the node it replaces;
the input graph is not modified. The pass repeats until a whole sweep
changes nothing.
"""

from __future__ import annotations

import math
import weakref

import numpy as np

from graphc.dtypes import bool_, float32, float64, int32, int64, uint8
from graphc.ir import Graph, Node, TensorType

from .dce import make_like, rebuild

VIEW_OPS = frozenset({"broadcast_to", "reshape", "transpose", "expand_dims", "squeeze", "slice"})
RESHAPE_LIKE = frozenset({"reshape", "expand_dims", "squeeze"})
REDUCTIONS = frozenset({"sum", "mean", "max", "min", "prod"})
# (from, to) dtype conversions that keep every value exactly
LOSSLESS = frozenset({(bool_, int32), (bool_, int64), (bool_, float32), (bool_, float64),
                      (int32, int64), (int32, float64), (float32, float64),
                      (bool_, uint8), (uint8, int32), (uint8, int64), (uint8, float32), (uint8, float64)})
NONNEG_OPS = frozenset({"exp", "abs", "square", "sigmoid", "softplus", "softmax"})
NONNEG_BUT_NEG_ZERO_OPS = frozenset({"sqrt", "relu"})  # can give -0.0
MAX_SWEEPS = 16


# ---------------------------------------------------------------- splats (shared with fold)

def uniform_value(arr: np.ndarray) -> np.ndarray | None:
    """The one element (a 0-d array) if ``arr`` is non-empty and all its elements are bitwise equal."""
    if arr.size == 0:
        return None
    flat = np.ascontiguousarray(arr).reshape(-1)
    first = flat[:1]
    if arr.size > 1:
        raw = flat.view(np.uint8).reshape(flat.size, -1)
        if not (raw == first.view(np.uint8)).all():
            return None
    return first.reshape(())


def splat_source(node: Node) -> Node | None:
    """The 0-d constant a splat is a view of (``c``, ``broadcast_to(c)``, ``reshape(c)``...), or None."""
    while node.op in VIEW_OPS and node.type.size > 0:
        node = node.inputs[0]
    if node.op == "constant" and node.type.shape == ():
        return node
    return None


_UNIFORM: "weakref.WeakKeyDictionary[Node, tuple]" = weakref.WeakKeyDictionary()


def constant_value(node: Node) -> np.ndarray | None:
    """The common value (0-d array) of a splat: a uniform constant or a view of one; else None."""
    if node.type.size == 0:
        return None
    while node.op in VIEW_OPS:
        node = node.inputs[0]
    if node.op != "constant":
        return None
    hit = _UNIFORM.get(node)
    if hit is None:
        hit = (uniform_value(node.value),)
        _UNIFORM[node] = hit
    return hit[0]


def make_constant(value, t: TensorType, like: Node) -> Node:
    """A constant node of type ``t`` holding ``value`` (C-contiguous, read-only), with the
    location and origin of ``like``."""
    arr = np.array(np.broadcast_to(np.asarray(value, dtype=t.dtype.np_dtype), t.shape), order="C", copy=True)
    arr.flags.writeable = False
    c = Node("constant", (), {}, TensorType(t.shape, t.dtype), loc=like.loc, value=arr)
    c.origin = like.origin
    return c


def splat(value, t: TensorType, like: Node, source: Node | None = None) -> Node:
    """``broadcast_to(c, t.shape)`` of a 0-d constant ``c`` (``source`` if given, else new), or ``c``
    itself when ``t`` is 0-d."""
    c = source if source is not None else make_constant(value, TensorType((), t.dtype), like)
    if t.shape == ():
        return c
    return make_like("broadcast_to", [c], {"shape": t.shape}, like)


# ---------------------------------------------------------------- the rules

class _Simplifier:
    def __init__(self, keep_signed_zeros: bool, assume_finite: bool, exact_rounding: bool):
        self.keep_signed_zeros = keep_signed_zeros
        self.assume_finite = assume_finite
        self.exact_rounding = exact_rounding
        self.changed = False
        self._same: dict[tuple[int, int], tuple] = {}

    # ----- driving
    def local(self, n: Node) -> Node:
        """Apply rules at ``n`` (whose inputs are simplified) until none applies."""
        for _ in range(64):
            r = self.rule(n)
            if r is None or r is n:
                return n
            if r.type != n.type:
                raise AssertionError(f"simplify: a rule turned {n.op}:{n.type} into {r.op}:{r.type}")
            self.changed = True
            n = r
        return n

    def make(self, op: str, inputs, attrs, like: Node) -> Node:
        """A new node, itself simplified (its inputs already are)."""
        return self.local(make_like(op, inputs, attrs, like))

    # ----- facts
    @staticmethod
    def value(n: Node):
        return constant_value(n)

    def is_value(self, n: Node, v) -> bool:
        c = constant_value(n)
        return c is not None and bool(c == v)

    def same(self, a: Node, b: Node, depth: int = 0) -> bool:
        """Do ``a`` and ``b`` compute the same value? (The same node, or the same op, attributes
        and type over inputs that are the same; equal constants; never two different
        placeholders or parameters.) Looks at most 12 levels deep."""
        if a is b:
            return True
        if depth > 12 or a.op != b.op or a.type != b.type or len(a.inputs) != len(b.inputs) \
                or a.op in ("placeholder", "parameter"):
            return False
        key = (id(a), id(b))
        hit = self._same.get(key)
        if hit is not None:
            return hit[0]
        if a.op == "constant":
            ok = a.type.size <= 4096 and a.value.tobytes() == b.value.tobytes()
        else:
            from .cse import node_key
            ok = node_key(a, ()) == node_key(b, ()) and \
                all(self.same(x, y, depth + 1) for x, y in zip(a.inputs, b.inputs))
        self._same[key] = (ok, a, b)  # holding a and b keeps their ids from being reused
        return ok

    def is_pos_zero(self, n: Node) -> bool:
        c = constant_value(n)
        return c is not None and bool(c == 0) and not bool(np.signbit(c))

    def is_neg_zero(self, n: Node) -> bool:
        c = constant_value(n)
        return c is not None and bool(c == 0) and bool(np.signbit(c))

    def exact_ints(self, t: TensorType) -> bool:
        """May the integer-only rules be used on values of type ``t``?"""
        return not t.dtype.is_float or (self.assume_finite and not self.keep_signed_zeros)

    def nonneg(self, n: Node) -> bool:
        """Known to be >= 0 or NaN (a zero possibly -0.0 only if signed zeros are not kept)."""
        while n.op in VIEW_OPS:
            n = n.inputs[0]
        if n.op in NONNEG_OPS:
            return True
        if n.op in NONNEG_BUT_NEG_ZERO_OPS:
            return not self.keep_signed_zeros
        if n.op == "cast" and n.inputs[0].dtype == bool_:
            return True
        if n.op == "constant":
            v = n.value
            return bool(np.all(np.isnan(v) | ~np.signbit(v))) if v.dtype.kind == "f" else bool(np.all(v >= 0))
        return False

    def zeros(self, n: Node) -> Node:
        return splat(0, n.type, n)

    # ----- one node
    def rule(self, n: Node) -> Node | None:
        op = n.op
        ins = n.inputs
        if op == "constant":
            if n.type.ndim > 0 and n.type.size > 0:
                v = constant_value(n)
                if v is not None:
                    return splat(v, n.type, n)
            return None
        if op in VIEW_OPS:
            return self.view_rule(n)
        handler = getattr(self, "rule_" + op, None)
        if handler is not None:
            return handler(n, *ins)
        if op in REDUCTIONS:
            return self.reduce_rule(n)
        return None

    # elementwise arithmetic
    def rule_mul(self, n, a, b):
        for x, c in ((a, b), (b, a)):
            if self.is_value(c, 1):
                return x
        for c in (a, b):
            if self.is_value(c, 0) and self.exact_ints(n.type):
                return self.zeros(n)
        if a.op == "neg" and b.op == "neg":
            return self.make("mul", [a.inputs[0], b.inputs[0]], {}, n)
        if self.same(a, b):
            return self.make("square", [a], {}, n)
        return None

    def rule_div(self, n, a, b):
        if self.is_value(b, 1):
            return a
        if self.is_value(b, -1):
            return self.make("neg", [a], {}, n)
        if a.op == "neg" and b.op == "neg":
            return self.make("div", [a.inputs[0], b.inputs[0]], {}, n)
        return None

    def _drops_zero(self, c: Node, t: TensorType) -> bool:
        """Is ``x + c`` equal to ``x`` (c a zero splat)?"""
        if not t.dtype.is_float:
            return self.is_value(c, 0)
        return self.is_neg_zero(c) or (self.is_pos_zero(c) and not self.keep_signed_zeros)

    def rule_add(self, n, a, b):
        if self._drops_zero(b, n.type):
            return a
        if self._drops_zero(a, n.type):
            return b
        if b.op == "neg":
            return self.make("sub", [a, b.inputs[0]], {}, n)
        if a.op == "neg":
            return self.make("sub", [b, a.inputs[0]], {}, n)
        if self.same(a, b):
            return self.make("mul", [a, splat(2, n.type, n)], {}, n)
        return None

    def rule_sub(self, n, a, b):
        t = n.type
        # x - (+0) = x + (-0) is exact; x - (-0) = x + (+0) only up to the sign of a zero
        if (t.dtype.is_float and (self.is_pos_zero(b) or (self.is_neg_zero(b) and not self.keep_signed_zeros))) \
                or (not t.dtype.is_float and self.is_value(b, 0)):
            return a
        if (t.dtype.is_float and (self.is_neg_zero(a) or (self.is_pos_zero(a) and not self.keep_signed_zeros))) \
                or (not t.dtype.is_float and self.is_value(a, 0)):
            return self.make("neg", [b], {}, n)
        if self.exact_ints(t) and self.same(a, b):
            return self.zeros(n)
        if b.op == "neg":
            return self.make("add", [a, b.inputs[0]], {}, n)
        return None

    def rule_maximum(self, n, a, b):
        return a if self.same(a, b) else None

    rule_minimum = rule_maximum

    def rule_neg(self, n, x):
        if x.op == "neg":
            return x.inputs[0]
        return None

    def rule_logical_not(self, n, x):
        if x.op == "logical_not":
            return x.inputs[0]
        return None

    def rule_log(self, n, x):
        if x.op == "exp" and not self.exact_rounding:
            return x.inputs[0]
        return None

    def rule_exp(self, n, x):
        if x.op == "log" and not self.exact_rounding and self.nonneg(x.inputs[0]):
            return x.inputs[0]
        return None

    def rule_where(self, n, c, a, b):
        if self.same(a, b):
            return a
        v = constant_value(c)
        if v is not None:
            return a if bool(v) else b
        if c.op == "logical_not":
            return self.make("where", [c.inputs[0], b, a], {}, n)
        return None

    def rule_cast(self, n, x):
        dtype = n.attrs["dtype"]
        if x.dtype == dtype:
            return x
        if x.op == "cast":
            inner = x.inputs[0]
            if (inner.dtype, x.dtype) in LOSSLESS or inner.dtype == x.dtype:
                if inner.dtype == dtype:
                    return inner
                return self.make("cast", [inner], {"dtype": dtype}, n)
        return None

    # views
    def view_rule(self, n: Node) -> Node | None:
        op, x = n.op, n.inputs[0]
        if n.shape == x.shape and op != "transpose" and op != "slice":
            return x  # reshape/broadcast/expand/squeeze to the same shape
        if op == "slice" and n.shape == x.shape and all(s == 0 for s in n.attrs["starts"]) \
                and all(c == 1 for c in n.attrs["steps"]):
            return x
        # a view of a splat is a splat
        if n.type.size > 0:
            src = splat_source(x)
            if src is not None and not (op == "broadcast_to" and x is src):
                return splat(None, n.type, n, source=src)
        if op == "transpose":
            perm = n.attrs["perm"]
            if x.op == "transpose":
                inner = x.attrs["perm"]
                perm = tuple(inner[p] for p in perm)
                x = x.inputs[0]
                if perm == tuple(range(len(perm))):
                    return x
                return self.make("transpose", [x], {"perm": perm}, n)
            if perm == tuple(range(len(perm))):
                return x
            return None
        if op in RESHAPE_LIKE and x.op in RESHAPE_LIKE:
            if n.shape == x.inputs[0].shape:
                return x.inputs[0]
            # (expand_dims∘squeeze pairs stay views: a reshape of a strided value needs a copy)
            if op == "reshape" or x.op == "reshape":
                return self.make("reshape", [x.inputs[0]], {"shape": n.shape}, n)
            return None
        if op == "broadcast_to" and x.op == "broadcast_to":
            return self.make("broadcast_to", [x.inputs[0]], {"shape": n.shape}, n)
        return None

    # reductions
    def _unreduced(self, x: Node, n: Node) -> Node:
        """``x``, whose reduced axes all have size 1, as the reduction ``n``'s value: cast to its
        dtype, the axes squeezed out unless kept (a squeeze is a view of any layout)."""
        if x.dtype != n.dtype:
            x = self.make("cast", [x], {"dtype": n.dtype}, n)
        if x.shape != n.shape:
            x = self.make("squeeze", [x], {"axes": n.attrs["axes"]}, n)
        return x

    def reduce_rule(self, n: Node) -> Node | None:
        op = n.op
        x = n.inputs[0]
        axes = n.attrs["axes"]
        keepdims = n.attrs["keepdims"]
        if all(x.shape[a] == 1 for a in axes):  # also: no axis at all
            # a float sum starts from +0.0: sum([-0.0]) is +0.0
            if not (op in ("sum", "mean") and x.dtype.is_float and self.keep_signed_zeros):
                return self._unreduced(x, n)
            return None
        if x.op != "broadcast_to" or op == "prod":
            return None
        src = x.inputs[0]
        s = x.shape
        lead = len(s) - src.type.ndim
        bdims = [a for a in axes if s[a] != 1 and (a < lead or src.shape[a - lead] == 1)]
        if not bdims:
            return None
        count = math.prod(s[a] for a in bdims)
        if op == "sum" and count == 0:
            return self.zeros(n)
        if count == 0:
            return None  # mean of nothing is NaN; max/min of nothing is not a valid graph
        if op in ("mean", "sum") and n.dtype.is_float and (self.exact_rounding or self.keep_signed_zeros):
            return None  # rounding differs, and a float sum of -0.0s is +0.0
        s1 = tuple(1 if a in bdims else d for a, d in enumerate(s))
        t = self.make("broadcast_to", [src], {"shape": s1}, x)
        u = self.make(op, [t], {"axes": axes, "keepdims": keepdims}, n)
        if op == "sum" and count != 1:
            u = self.make("mul", [u, splat(count, u.type, n)], {}, n)
        return u


def simplify(graph: Graph, *, keep_signed_zeros: bool = False, assume_finite: bool = False,
             exact_rounding: bool = False) -> Graph:
    """The graph with the rewrites of the module docstring applied until none applies.

    ``keep_signed_zeros``: skip the rules that may turn a -0.0 result into +0.0 (or back).
    ``assume_finite``: also apply ``x - x -> 0`` and ``x * 0 -> 0`` to floats (wrong for
    inf and NaN). ``exact_rounding``: skip the rules that change float results by rounding
    or remove an overflow (log∘exp, exp∘log, sum/mean of a broadcast).
    """
    g = graph
    for _ in range(MAX_SWEEPS):
        s = _Simplifier(keep_signed_zeros, assume_finite, exact_rounding)
        g = rebuild(g, s.local)
        if not s.changed:
            break
    return g


__all__ = ["simplify", "splat", "splat_source", "constant_value", "uniform_value", "make_constant", "VIEW_OPS"]
