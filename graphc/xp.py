"""Array namespaces: one reference implementation runs on numbers and on symbols.

Each op's ``ref(xp, *arrays, **attrs)`` is written once against a namespace
``xp``. Two namespaces implement it:

* ``numpy_ns``: numpy arrays; the interpreter, constant folding and tests
  use it. Its special functions are numerically stable (sigmoid, softplus,
  logsumexp, softmax never overflow).
* ``sympy_ns``: numpy *object* arrays whose elements are sympy expressions;
  the symbolic derivative checks use it. Its special functions are the plain
  textbook formulas (``sigmoid = 1/(1+exp(-x))``), so that sympy can
  differentiate and simplify them; comparisons build relations and ``where``
  builds ``Piecewise``.

Arithmetic operators (``+ - * /``), indexing, reshaping, transposition,
``sum``, ``prod`` and ``matmul`` work the same on both kinds of array.
"""

from __future__ import annotations

import math

import numpy as np


class NumpyNamespace:
    """Reference math on numpy arrays; stable formulations of the special functions."""

    name = "numpy"
    symbolic = False
    pi = math.pi

    # elementwise, same names as numpy
    negative = staticmethod(np.negative)
    abs = staticmethod(np.abs)
    sign = staticmethod(np.sign)
    exp = staticmethod(np.exp)
    log = staticmethod(np.log)
    log1p = staticmethod(np.log1p)
    expm1 = staticmethod(np.expm1)
    sqrt = staticmethod(np.sqrt)
    sin = staticmethod(np.sin)
    cos = staticmethod(np.cos)
    tanh = staticmethod(np.tanh)
    floor = staticmethod(np.floor)
    ceil = staticmethod(np.ceil)
    power = staticmethod(np.power)
    maximum = staticmethod(np.maximum)
    minimum = staticmethod(np.minimum)
    where = staticmethod(np.where)
    equal = staticmethod(np.equal)
    not_equal = staticmethod(np.not_equal)
    less = staticmethod(np.less)
    less_equal = staticmethod(np.less_equal)
    greater = staticmethod(np.greater)
    greater_equal = staticmethod(np.greater_equal)
    logical_and = staticmethod(np.logical_and)
    logical_or = staticmethod(np.logical_or)
    logical_not = staticmethod(np.logical_not)

    # structure
    reshape = staticmethod(np.reshape)
    transpose = staticmethod(np.transpose)
    broadcast_to = staticmethod(np.broadcast_to)
    expand_dims = staticmethod(np.expand_dims)
    squeeze = staticmethod(np.squeeze)
    concatenate = staticmethod(np.concatenate)
    stack = staticmethod(np.stack)
    take = staticmethod(np.take)
    matmul = staticmethod(np.matmul)
    zeros = staticmethod(np.zeros)
    full = staticmethod(np.full)
    arange = staticmethod(np.arange)

    @staticmethod
    def pad(x, pad_width, value):
        if np.ndim(x) == 0:
            return np.array(x, copy=True)
        return np.pad(x, pad_width, mode="constant", constant_values=value)

    @staticmethod
    def add_at(out, index, values):
        np.add.at(out, index, values)
        return out

    # reductions
    @staticmethod
    def sum(x, axis, keepdims):
        return np.sum(x, axis=axis, keepdims=keepdims)

    @staticmethod
    def prod(x, axis, keepdims):
        return np.prod(x, axis=axis, keepdims=keepdims)

    @staticmethod
    def max(x, axis, keepdims):
        return np.max(x, axis=axis, keepdims=keepdims)

    @staticmethod
    def min(x, axis, keepdims):
        return np.min(x, axis=axis, keepdims=keepdims)

    @staticmethod
    def argmax(x, axis, keepdims):
        return np.argmax(x, axis=axis, keepdims=keepdims)

    @staticmethod
    def argmin(x, axis, keepdims):
        return np.argmin(x, axis=axis, keepdims=keepdims)

    @staticmethod
    def astype(x, dtype):
        return np.asarray(x).astype(dtype.np_dtype, copy=False)

    # special functions, stable by construction
    @staticmethod
    def sigmoid(x):
        """1/(1+exp(-x)) as ``e/(1+e)`` with ``e = exp(-|x|)`` for x<0: no overflow."""
        e = np.exp(-np.abs(x))
        return np.where(x >= 0, 1 / (1 + e), e / (1 + e))

    @staticmethod
    def softplus(x):
        """log(1+exp(x)) = max(x,0) + log1p(exp(-|x|))."""
        return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))

    @staticmethod
    def logsumexp(x, axis, keepdims):
        """log(sum(exp(x))) = m + log(sum(exp(x - m))), m = max(x) (0 where max is infinite)."""
        if x.size == 0:
            return np.log(np.sum(np.exp(x), axis=axis, keepdims=keepdims))
        m = np.max(x, axis=axis, keepdims=True)
        m = np.where(np.isfinite(m), m, 0).astype(x.dtype)
        out = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
        return out if keepdims else np.squeeze(out, axis=axis)

    @classmethod
    def softmax(cls, x, axis):
        """exp(x - max) / sum(exp(x - max))."""
        if x.shape[axis] == 0:
            return x.copy()
        e = np.exp(x - np.max(x, axis=axis, keepdims=True))
        return e / np.sum(e, axis=axis, keepdims=True)

    @classmethod
    def log_softmax(cls, x, axis):
        """x - logsumexp(x)."""
        if x.shape[axis] == 0:
            return x.copy()
        return x - cls.logsumexp(x, axis, True)


def _elementwise(fn, nin=1):
    """Lift a scalar sympy function to object arrays (scalars stay scalars)."""
    ufunc = np.frompyfunc(fn, nin, 1)

    def apply(*args):
        out = ufunc(*args)
        return out if isinstance(out, np.ndarray) else np.asarray(out, dtype=object)
    return apply


def _sympy():
    import sympy
    return sympy


class SympyNamespace:
    """Reference math on object arrays of sympy expressions (for symbolic proofs)."""

    name = "sympy"
    symbolic = True

    def __init__(self):
        sp = _sympy()
        self.sp = sp
        self.pi = sp.pi
        self.negative = _elementwise(lambda a: -a)
        self.abs = _elementwise(sp.Abs)
        self.sign = _elementwise(sp.sign)
        self.exp = _elementwise(sp.exp)
        self.log = _elementwise(sp.log)
        self.log1p = _elementwise(lambda a: sp.log(1 + a))
        self.expm1 = _elementwise(lambda a: sp.exp(a) - 1)
        self.sqrt = _elementwise(sp.sqrt)
        self.sin = _elementwise(sp.sin)
        self.cos = _elementwise(sp.cos)
        self.tanh = _elementwise(sp.tanh)
        self.floor = _elementwise(sp.floor)
        self.ceil = _elementwise(sp.ceiling)
        self.power = _elementwise(lambda a, b: a ** b, 2)
        self.maximum = _elementwise(sp.Max, 2)
        self.minimum = _elementwise(sp.Min, 2)
        self.equal = _elementwise(sp.Eq, 2)
        self.not_equal = _elementwise(sp.Ne, 2)
        self.less = _elementwise(sp.Lt, 2)
        self.less_equal = _elementwise(sp.Le, 2)
        self.greater = _elementwise(sp.Gt, 2)
        self.greater_equal = _elementwise(sp.Ge, 2)
        self.logical_and = _elementwise(sp.And, 2)
        self.logical_or = _elementwise(sp.Or, 2)
        self.logical_not = _elementwise(sp.Not)
        self.where = _elementwise(
            lambda c, a, b: (a if c else b) if isinstance(c, (bool, np.bool_)) or c in (sp.true, sp.false)
            else sp.Piecewise((a, c), (b, True)), 3)
        self.sigmoid = _elementwise(lambda a: 1 / (1 + sp.exp(-a)))
        self.softplus = _elementwise(lambda a: sp.log(1 + sp.exp(a)))

    reshape = staticmethod(np.reshape)
    transpose = staticmethod(np.transpose)
    broadcast_to = staticmethod(np.broadcast_to)
    expand_dims = staticmethod(np.expand_dims)
    squeeze = staticmethod(np.squeeze)
    concatenate = staticmethod(np.concatenate)
    stack = staticmethod(np.stack)
    take = staticmethod(np.take)
    arange = staticmethod(np.arange)

    @staticmethod
    def matmul(a, b):
        return np.matmul(np.asarray(a, dtype=object), np.asarray(b, dtype=object))

    @staticmethod
    def zeros(shape, dtype=None):
        return np.zeros(shape, dtype=object) * 0  # Python int 0 elements

    @staticmethod
    def full(shape, value, dtype=None):
        out = np.empty(shape, dtype=object)
        out.fill(value)
        return out

    @staticmethod
    def pad(x, pad_width, value):
        return np.pad(np.asarray(x, dtype=object), pad_width, mode="constant",
                      constant_values=_sympy().sympify(value))

    @staticmethod
    def add_at(out, index, values):
        np.add.at(out, index, values)
        return out

    def astype(self, x, dtype):
        """Truth values become 1/0 (``Piecewise`` for undecided relations); numbers stay exact."""
        x = np.asarray(x, dtype=object)
        if dtype.is_bool:
            return x
        sp = self.sp

        def one(v):
            if isinstance(v, (bool, np.bool_)) or v in (sp.true, sp.false):
                return sp.Integer(1) if bool(v) else sp.Integer(0)
            if isinstance(v, (sp.core.relational.Relational, sp.logic.boolalg.BooleanFunction)):
                return sp.Piecewise((1, v), (0, True))
            return v
        return np.frompyfunc(one, 1, 1)(x) if x.size else x

    @staticmethod
    def sum(x, axis, keepdims):
        return np.asarray(np.sum(np.asarray(x, dtype=object), axis=axis, keepdims=keepdims), dtype=object)

    @staticmethod
    def prod(x, axis, keepdims):
        return np.asarray(np.prod(np.asarray(x, dtype=object), axis=axis, keepdims=keepdims), dtype=object)

    def _fold(self, fn, x, axis, keepdims):
        """Reduce with a binary sympy function (Max/Min) one axis at a time."""
        x = np.asarray(x, dtype=object)
        axes = range(x.ndim) if axis is None else (axis if isinstance(axis, tuple) else (axis,))
        ufunc = np.frompyfunc(fn, 2, 1)
        out = x
        for ax in sorted(axes, reverse=True):
            out = ufunc.reduce(out, axis=ax, keepdims=True) if out.shape[ax] else None
            if out is None:
                raise ValueError("symbolic max/min of an empty axis")
        if not keepdims:
            out = np.squeeze(out, axis=tuple(axes))
        return np.asarray(out, dtype=object)

    def max(self, x, axis, keepdims):
        return self._fold(self.sp.Max, x, axis, keepdims)

    def min(self, x, axis, keepdims):
        return self._fold(self.sp.Min, x, axis, keepdims)

    def argmax(self, x, axis, keepdims):
        raise NotImplementedError("argmax has no symbolic form (its derivative is zero)")

    argmin = argmax

    def logsumexp(self, x, axis, keepdims):
        return self.log(self.sum(self.exp(x), axis, keepdims))

    def softmax(self, x, axis):
        e = self.exp(x)
        return e / self.sum(e, axis, True)

    def log_softmax(self, x, axis):
        return x - self.logsumexp(x, axis, True)


numpy_ns = NumpyNamespace()
_sympy_ns = None


def sympy_namespace() -> SympyNamespace:
    """The shared symbolic namespace (sympy is imported on first use)."""
    global _sympy_ns
    if _sympy_ns is None:
        _sympy_ns = SympyNamespace()
    return _sympy_ns
