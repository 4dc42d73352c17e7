"""Reductions over axes, with keepdims: sum, mean, prod, max, min, argmax, argmin, logsumexp.

IR attributes: ``axes`` (a sorted tuple of distinct non-negative axes) and
``keepdims``; ``argmax``/``argmin`` reduce one ``axis``. Result dtypes follow
numpy: ``sum``/``prod`` of bool and int32 give int64, ``mean`` of integers
is computed in float64, ``argmax``/``argmin`` give int64.
"""

from __future__ import annotations

import numpy as np

from ..dtypes import ALL_DTYPES, FLOAT_DTYPES, NUMERIC_DTYPES, float64, int64
from ..ir import TensorType
from ..tensor import as_tensor, node_op
from .elementwise import _np, cast
from .examples import ALL, reduce_examples
from .registry import (Arg, Example, OpDef, OpTypeError, normalize_axes, normalize_axis, register,
                       require_dtypes)

__all__ = ["sum", "mean", "prod", "max", "min", "argmax", "argmin", "logsumexp"]


def reduced_shape(shape: tuple, axes: tuple, keepdims: bool) -> tuple:
    """The shape after reducing ``axes``: those dims become 1 (keepdims) or disappear."""
    if keepdims:
        return tuple(1 if i in axes else s for i, s in enumerate(shape))
    return tuple(s for i, s in enumerate(shape) if i not in axes)


def _normalize_axes(types, attrs):
    return {**attrs, "axes": normalize_axes(attrs["axes"], types[0].ndim), "keepdims": bool(attrs["keepdims"])}


def _reduction(name, ref, *, dtypes, out_dtype=None, needs_elements=False, float_compute=False,
               oracle=None, examples_dtypes=None, doc="", differentiable=True, low=-3.0, high=3.0, vjp=None):
    """Register an ``axes``/``keepdims`` reduction; returns its numpy-style API function.

    ``out_dtype(dtype)`` maps the input dtype to the result's; ``needs_elements``:
    reducing an empty axis is an error (max, min); ``float_compute``: integers
    are reduced in float64 (mean).
    """
    def infer(x, *, axes, keepdims):
        require_dtypes(name, x, dtypes)
        if needs_elements and any(x.shape[a] == 0 for a in axes):
            raise OpTypeError(f"cannot reduce an empty axis of {x} (no identity); axes={axes}")
        dt = out_dtype(x.dtype) if out_dtype else x.dtype
        return TensorType(reduced_shape(x.shape, axes, keepdims), dt)

    def api(x, axis=None, keepdims=False):
        x = as_tensor(x)
        if float_compute and not x.dtype.is_float:
            x = cast(x, float64)
        return node_op(name, [x], axes=axis, keepdims=keepdims)

    api.__name__ = name
    api.__doc__ = doc
    ex = reduce_examples(examples_dtypes or dtypes, low, high, empty_ok=not needs_elements)
    register(OpDef(name, "reduce", infer, ref, attrs={"axes": None, "keepdims": False},
                   normalize=_normalize_axes, doc=doc, api=api, oracle=oracle, examples=ex,
                   differentiable=differentiable, vjp=vjp))
    return api


def _count(shape, axes):
    return int(np.prod([shape[a] for a in axes], dtype=np.int64))


def _widen(d):
    """numpy's accumulator dtype for sum/prod: bool and int32 widen to int64."""
    return d if d.is_float else int64


def expand_reduced(t, shape: tuple, axes: tuple, keepdims: bool):
    """Undo a reduction's shape: ``t`` (the reduced value) broadcast back to ``shape``."""
    from .shape import broadcast_to, reshape
    if not keepdims:
        t = reshape(t, reduced_shape(shape, axes, True))
    return broadcast_to(t, shape)


def _sum_vjp(g, x, out, axes, keepdims):
    """∂/∂x_i Σ x = 1: the cotangent is broadcast back."""
    return (expand_reduced(g, x.shape, axes, keepdims),)


def _mean_vjp(g, x, out, axes, keepdims):
    return (expand_reduced(g, x.shape, axes, keepdims) / _count(x.shape, axes),)


def _prod_vjp(g, x, out, axes, keepdims):
    """∂/∂x_i Π x = Π_{j≠i} x_j, exact with zeros: with no zero it is P/x_i; with one zero it
    is the product of the others at the zero and 0 elsewhere; with two or more it is 0."""
    from .elementwise import cast, equal, logical_and, where
    zero = equal(x, 0)
    nonzero = where(zero, 1, x)
    p = expand_reduced(prod(nonzero, axis=axes, keepdims=True), x.shape, axes, True)
    zeros = expand_reduced(sum(cast(zero, x.dtype), axis=axes, keepdims=True), x.shape, axes, True)
    d = where(equal(zeros, 0), p / nonzero, where(logical_and(equal(zeros, 1), zero), p, 0))
    return (expand_reduced(g, x.shape, axes, keepdims) * d,)


def _extreme_vjp(g, x, out, axes, keepdims):
    """The cotangent goes to the extreme elements, shared evenly among ties."""
    from .elementwise import cast, equal
    hit = cast(equal(x, expand_reduced(out, x.shape, axes, keepdims)), x.dtype)
    count = expand_reduced(sum(hit, axis=axes, keepdims=True), x.shape, axes, True)
    return (expand_reduced(g, x.shape, axes, keepdims) * hit / count,)


def _logsumexp_vjp(g, x, out, axes, keepdims):
    """∂/∂x_i log Σ e^x = e^(x_i - lse): a softmax, stable since x_i - lse <= 0."""
    from .elementwise import exp
    return (expand_reduced(g, x.shape, axes, keepdims) * exp(x - expand_reduced(out, x.shape, axes, keepdims)),)


sum = _reduction("sum", lambda xp, x, axes, keepdims: xp.sum(x, axes, keepdims), dtypes=ALL_DTYPES,
                 out_dtype=_widen, oracle=_np(lambda x, axis=None, keepdims=False: np.sum(x, axis=axis, keepdims=keepdims)),
                 doc="Σ x over axes", vjp=_sum_vjp)
prod = _reduction("prod", lambda xp, x, axes, keepdims: xp.prod(x, axes, keepdims), dtypes=ALL_DTYPES,
                  out_dtype=_widen, low=0.5, high=1.5,
                  oracle=_np(lambda x, axis=None, keepdims=False: np.prod(x, axis=axis, keepdims=keepdims)),
                  doc="Π x over axes", vjp=_prod_vjp)
mean = _reduction("mean", lambda xp, x, axes, keepdims: xp.sum(x, axes, keepdims) / _count(x.shape, axes),
                  dtypes=FLOAT_DTYPES, float_compute=True, examples_dtypes=NUMERIC_DTYPES,
                  oracle=_np(lambda x, axis=None, keepdims=False: np.mean(x, axis=axis, keepdims=keepdims)),
                  doc="Σ x / n over axes (nan for an empty reduction)", vjp=_mean_vjp)
max = _reduction("max", lambda xp, x, axes, keepdims: xp.max(x, axes, keepdims), dtypes=ALL_DTYPES,
                 needs_elements=True,
                 oracle=_np(lambda x, axis=None, keepdims=False: np.max(x, axis=axis, keepdims=keepdims)),
                 doc="max over axes (nan if any is nan)", vjp=_extreme_vjp)
min = _reduction("min", lambda xp, x, axes, keepdims: xp.min(x, axes, keepdims), dtypes=ALL_DTYPES,
                 needs_elements=True,
                 oracle=_np(lambda x, axis=None, keepdims=False: np.min(x, axis=axis, keepdims=keepdims)),
                 doc="min over axes (nan if any is nan)", vjp=_extreme_vjp)
logsumexp = _reduction(
    "logsumexp", lambda xp, x, axes, keepdims: xp.logsumexp(x, axes, keepdims), dtypes=FLOAT_DTYPES,
    float_compute=True, examples_dtypes=NUMERIC_DTYPES,
    oracle=_np(lambda x, axis=None, keepdims=False: np.log(np.sum(np.exp(x), axis=axis, keepdims=keepdims))),
    doc="log Σ exp(x) over axes, computed as m + log Σ exp(x - m) with m = max x (no overflow)",
    vjp=_logsumexp_vjp)


# ---------------------------------------------------------------- argmax / argmin

def _arg_reduction(name, fn):
    def infer(x, *, axis, keepdims):
        require_dtypes(name, x, ALL_DTYPES)
        if x.ndim == 0:
            raise OpTypeError(f"needs an array of rank >= 1, got {x}")
        if x.shape[axis] == 0:
            raise OpTypeError(f"cannot take {name} of an empty axis of {x}")
        shape = reduced_shape(x.shape, (axis,), keepdims)
        return TensorType(shape, int64)

    def normalize(types, attrs):
        return {**attrs, "axis": normalize_axis(attrs["axis"], types[0].ndim) if types[0].ndim else 0,
                "keepdims": bool(attrs["keepdims"])}

    def api(x, axis=None, keepdims=False):
        """Index of the first extreme value along ``axis`` (flattened if None), as int64."""
        x = as_tensor(x)
        if axis is None:
            flat = node_op("reshape", [x], shape=(x.size,)) if x.ndim != 1 else x
            out = node_op(name, [flat], axis=0, keepdims=False)
            if keepdims:
                out = node_op("reshape", [out], shape=(1,) * x.ndim)
            return out
        return node_op(name, [x], axis=axis, keepdims=keepdims)

    api.__name__ = name
    ex = tuple(Example((Arg(s, d, -3, 3),), kw) for d in ALL for s, kw in
               [((2, 3), {"axis": 1}), ((2, 3), {}), ((2, 3, 4), {"axis": -2, "keepdims": True}),
                ((5,), {"axis": 0}), ((2, 3), {"keepdims": True}), ((0, 3), {"axis": 1})])
    register(OpDef(name, "reduce", infer, lambda xp, x, axis, keepdims: getattr(xp, name)(x, axis, keepdims),
                   attrs={"axis": 0, "keepdims": False}, normalize=normalize, differentiable=False,
                   doc=f"index of the {'largest' if name == 'argmax' else 'smallest'} element along axis",
                   api=api, oracle=lambda x, axis=None, keepdims=False: fn(x, axis=axis, keepdims=keepdims),
                   examples=ex))
    return api


argmax = _arg_reduction("argmax", np.argmax)
argmin = _arg_reduction("argmin", np.argmin)
