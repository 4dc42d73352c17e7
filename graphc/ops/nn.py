"""Neural-network ops with stable evaluation: softmax and log_softmax along an axis.

* ``softmax(x)_i = exp(x_i - m) / Σ_j exp(x_j - m)`` with ``m = max_j x_j``;
* ``log_softmax(x)_i = x_i - m - log Σ_j exp(x_j - m)``.

Both are single ops (not composites) so that their derivative rules can be
the stable closed forms and codegen can fuse each into one or two passes.
"""

from __future__ import annotations

import numpy as np

from ..dtypes import FLOAT_DTYPES, float64
from ..tensor import as_tensor, node_op
from .elementwise import _np, cast
from .examples import NUMERIC
from .registry import Arg, Example, OpDef, OpTypeError, normalize_axis, register, require_dtypes

__all__ = ["softmax", "log_softmax"]


def _normalizing(name, ref, oracle, doc, vjp):
    def infer(x, *, axis):
        require_dtypes(name, x, FLOAT_DTYPES)
        if x.ndim == 0:
            raise OpTypeError(f"needs an array of rank >= 1, got {x}")
        return x

    def api(x, axis=-1):
        x = as_tensor(x)
        if not x.dtype.is_float:
            x = cast(x, float64)
        return node_op(name, [x], axis=axis)

    api.__name__ = name
    api.__doc__ = doc
    register(OpDef(name, "nn", infer, ref, attrs={"axis": -1}, vjp=vjp,
                   normalize=lambda t, a: {"axis": normalize_axis(a["axis"], max(t[0].ndim, 1))},
                   doc=doc, api=api, oracle=_np(oracle),
                   examples=tuple(Example((Arg(s, d, -5, 5),), kw) for d in NUMERIC for s, kw in
                                  [((2, 5), {}), ((3, 4), {"axis": 0}), ((2, 3, 4), {"axis": 1}),
                                   ((4,), {}), ((0, 3), {}), ((2, 1), {})])))
    return api


def _softmax_oracle(x, axis=-1):
    x = np.asarray(x, dtype=np.float64 if x.dtype.kind != "f" else x.dtype)
    e = np.exp(x)
    return e / e.sum(axis=axis, keepdims=True)


def _log_softmax_oracle(x, axis=-1):
    x = np.asarray(x, dtype=np.float64 if x.dtype.kind != "f" else x.dtype)
    return x - np.log(np.exp(x).sum(axis=axis, keepdims=True))


def _softmax_vjp(g, x, out, axis):
    """s = softmax(x):  x̄ = s ⊙ (ḡ - Σ_j ḡ_j s_j)."""
    from .reduce import sum
    return (out * (g - sum(g * out, axis=axis, keepdims=True)),)


def _log_softmax_vjp(g, x, out, axis):
    """l = log_softmax(x):  x̄ = ḡ - e^l Σ_j ḡ_j  (e^l = softmax(x) <= 1: no overflow)."""
    from .elementwise import exp
    from .reduce import sum
    return (g - exp(out) * sum(g, axis=axis, keepdims=True),)


softmax = _normalizing("softmax", lambda xp, x, axis: xp.softmax(x, axis), _softmax_oracle,
                       "exp(x - max x) / Σ exp(x - max x) along axis", _softmax_vjp)
log_softmax = _normalizing("log_softmax", lambda xp, x, axis: xp.log_softmax(x, axis), _log_softmax_oracle,
                           "x - logsumexp(x) along axis, without overflow", _log_softmax_vjp)
