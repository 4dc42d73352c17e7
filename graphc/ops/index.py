"""Indexing: take (gather along an axis), one_hot, and scatter_add (the gradient of take).

* ``take(x, idx, axis)``: ``out[a, i, b] = x[a, idx[i], b]`` where ``a`` runs
  over the axes before ``axis``, ``i`` over ``idx``'s axes and ``b`` over
  the axes after. Indices may be negative (counted from the end, as numpy);
  out-of-range indices are an error: at build time for constant indices, at
  run time (IndexError) for fed ones that are gathered.
* ``one_hot(idx, depth)``: ``out[i, k] = (idx[i] == k)``; out-of-range or
  negative indices give an all-zero row.
* ``scatter_add(u, idx, axis, dim_size)``: zeros of the shape ``take``'s input
  had, then ``out[a, idx[i], b] += u[a, i, b]``; the adjoint of ``take``.
"""

from __future__ import annotations

import builtins

import numpy as np

from ..dtypes import INDEX_DTYPES, NUMERIC_DTYPES, as_dtype, float32, int32, int64, uint8
from ..ir import TensorType
from ..tensor import as_tensor, node_op
from .examples import ALL, MOVABLE
from .registry import Arg, Example, OpDef, OpTypeError, normalize_axis, register, require_dtypes

__all__ = ["take", "one_hot", "scatter_add"]


# ---------------------------------------------------------------- take

def _infer_take(x, idx, *, axis):
    require_dtypes("take", idx, INDEX_DTYPES, what="indices")
    if x.ndim == 0:
        raise OpTypeError(f"cannot take from a 0-d array {x}")
    if x.shape[axis] == 0 and idx.size:
        raise OpTypeError(f"cannot take from an empty axis {axis} of {x}")
    return TensorType(x.shape[:axis] + idx.shape + x.shape[axis + 1:], x.dtype)


def _check_constant_indices(dim_size: int, idx_node) -> None:
    """Constant indices must lie in ``[-dim_size, dim_size)`` (a fed index is checked at run time)."""
    if idx_node.op != "constant" or not idx_node.value.size:
        return
    v = idx_node.value
    lo, hi = int(v.min()), int(v.max())
    if lo < -dim_size or hi >= dim_size:
        bad = lo if lo < -dim_size else hi
        raise OpTypeError(f"constant index {bad} is out of range for an axis of size {dim_size}"
                          f" (valid: {-dim_size} to {dim_size - 1})")


def take(x, indices, axis=None):
    """numpy's ``take``: elements of ``x`` at integer ``indices`` along ``axis`` (flattened if None)."""
    x = as_tensor(x)
    idx = as_tensor(indices)
    if axis is None:
        if x.ndim != 1:
            x = node_op("reshape", [x], shape=(x.size,))
        axis = 0
    return node_op("take", [x, idx], axis=axis)


def _take_ref(xp, x, idx, axis):
    return xp.take(x, idx, axis=axis)


register(OpDef("take", "index", _infer_take, _take_ref, nin=2, attrs={"axis": 0},
               vjp=lambda g, x, idx, out, axis: (scatter_add(g, idx, axis, x.shape[axis]), None),
               normalize=lambda t, a: {"axis": normalize_axis(a["axis"], builtins.max(t[0].ndim, 1))},
               doc="gather along an axis", api=take,
               check_constants=lambda x, idx, axis: _check_constant_indices(x.shape[axis], idx),
               oracle=lambda x, indices, axis=None: np.take(x, indices, axis=axis),
               examples=tuple(Example((Arg(sx, d), Arg(si, di, -sx[ax] if sx else 0, (sx[ax] - 1) if sx else 0)),
                                      {"axis": ax})
                              for d in MOVABLE for di in INDEX_DTYPES
                              for sx, si, ax in [((5, 3), (4,), 0), ((5, 3), (2, 2), 1), ((4,), (), 0),
                                                 ((2, 3, 4), (5,), -1), ((5, 3), (0,), 0)])))


# ---------------------------------------------------------------- one_hot

def _infer_one_hot(idx, *, depth, dtype):
    require_dtypes("one_hot", idx, INDEX_DTYPES, what="indices")
    if not isinstance(depth, int) or depth < 0:
        raise OpTypeError(f"depth must be a non-negative int, got {depth!r}")
    return TensorType(idx.shape + (depth,), dtype)


def _one_hot_ref(xp, idx, depth, dtype):
    return xp.astype(np.asarray(idx)[..., None] == np.arange(depth), dtype)


def one_hot(indices, depth, dtype=float32):
    """``out[..., k] = 1 if indices[...] == k else 0`` for k < depth (other indices: all zeros)."""
    return node_op("one_hot", [as_tensor(indices)], depth=depth, dtype=as_dtype(dtype))


register(OpDef("one_hot", "index", _infer_one_hot, _one_hot_ref,
               attrs={"depth": None, "dtype": float32},
               normalize=lambda t, a: {"depth": a["depth"], "dtype": as_dtype(a["dtype"])},
               differentiable=False, doc="indicator vectors", api=one_hot,
               oracle=lambda indices, depth, dtype=float32: (np.asarray(indices)[..., None] == np.arange(depth))
               .astype(as_dtype(dtype).np_dtype),
               examples=tuple(Example((Arg(s, di, -1, 5),), {"depth": 4, "dtype": d})
                              for di in INDEX_DTYPES for d in ALL for s in [(3,), (2, 3), (), (0,)])))


# ---------------------------------------------------------------- scatter_add

def _infer_scatter(u, idx, *, axis, dim_size):
    require_dtypes("scatter_add", idx, INDEX_DTYPES, what="indices")
    require_dtypes("scatter_add", u, NUMERIC_DTYPES, what="updates")
    k = idx.ndim
    if u.ndim < axis + k or u.shape[axis:axis + k] != idx.shape:
        raise OpTypeError(f"updates {u} do not match indices {idx} at axis {axis}")
    if not isinstance(dim_size, int) or dim_size < 0:
        raise OpTypeError(f"dim_size must be a non-negative int, got {dim_size!r}")
    return TensorType(u.shape[:axis] + (dim_size,) + u.shape[axis + k:], u.dtype)


def _scatter_ref(xp, u, idx, axis, dim_size):
    k = np.ndim(idx)
    shape = np.shape(u)[:axis] + (dim_size,) + np.shape(u)[axis + k:]
    out = xp.zeros(shape, dtype=u.dtype)
    return xp.add_at(out, (builtins.slice(None),) * axis + (np.asarray(idx),), u)


def scatter_add(updates, indices, axis, dim_size):
    """Zeros with ``dim_size`` along ``axis``, then ``out[.., indices[i], ..] += updates[.., i, ..]``.

    Repeated indices accumulate. This is the adjoint of ``take(x, indices, axis)``.
    """
    u = as_tensor(updates)
    return node_op("scatter_add", [u, as_tensor(indices)], axis=axis, dim_size=dim_size)


def _scatter_oracle(updates, indices, axis, dim_size):
    """A plain loop: independent of numpy's ``add.at``."""
    u = np.moveaxis(updates, list(range(axis, axis + indices.ndim)), list(range(indices.ndim)))
    u = u.reshape((indices.size,) + u.shape[indices.ndim:])
    out = np.zeros((dim_size,) + u.shape[1:], dtype=updates.dtype)
    for i, j in enumerate(indices.reshape(-1)):
        out[j] += u[i]
    return np.moveaxis(out, 0, axis)


register(OpDef("scatter_add", "index", _infer_scatter, _scatter_ref, nin=2,
               vjp=lambda g, u, idx, out, axis, dim_size: (take(g, idx, axis=axis), None),
               attrs={"axis": 0, "dim_size": None},
               # the output has updates.ndim - indices.ndim + 1 axes; axis is one of them
               normalize=lambda t, a: {"axis": normalize_axis(a["axis"], builtins.max(t[0].ndim - t[1].ndim + 1, 1)),
                                       "dim_size": a["dim_size"]},
               doc="accumulate into zeros at indices (adjoint of take)", api=scatter_add, oracle=_scatter_oracle,
               check_constants=lambda u, idx, axis, dim_size: _check_constant_indices(dim_size, idx),
               examples=tuple(Example((Arg(su, d), Arg(si, di, 0 if di == uint8 else -3, 3)), {"axis": ax, "dim_size": 4})
                              for d in NUMERIC_DTYPES for di in (int64, uint8)
                              for su, si, ax in [((6, 3), (6,), 0), ((2, 3, 2), (3, 2), 1), ((5,), (5,), 0),
                                                 ((0, 2), (0,), 0)])))

