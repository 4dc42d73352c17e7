"""Linear algebra: matmul (batched) and transpose (any permutation).

IR ``matmul`` takes ``a: [*batch, M, K]`` and ``b: [*batch, K, N]`` of the
same rank (>= 2), equal batch dims and equal dtype, and gives
``[*batch, M, N]`` with ``out[..., i, j] = Σ_k a[..., i, k] b[..., k, j]``.
The API applies numpy's rules first: 1-D operands gain and then lose a
unit axis, batch dims broadcast (explicit ``broadcast_to`` nodes, free index
maps for codegen), dtypes promote.
"""

from __future__ import annotations

import numpy as np

from ..dtypes import NUMERIC_DTYPES, float32, int32, uint8
from ..errors import GraphError
from ..ir import TensorType
from ..tensor import as_tensor, node_op
from .elementwise import _broadcast, _np, promote
from .examples import NUMERIC
from .registry import Arg, Example, OpDef, OpTypeError, register, require_dtypes, same_types

__all__ = ["matmul", "transpose", "dot"]


def _infer_matmul(a, b):
    require_dtypes("matmul", a, NUMERIC_DTYPES)
    same_types([TensorType((), a.dtype), TensorType((), b.dtype)])
    if a.ndim < 2 or a.ndim != b.ndim:
        raise OpTypeError(f"IR matmul takes two operands of equal rank >= 2, got {a} and {b}")
    if a.shape[:-2] != b.shape[:-2]:
        raise OpTypeError(f"batch dims differ: {a} and {b}")
    if a.shape[-1] != b.shape[-2]:
        raise OpTypeError(f"contraction dims differ: {a} @ {b} ({a.shape[-1]} != {b.shape[-2]})")
    return TensorType(a.shape[:-1] + b.shape[-1:], a.dtype)


def _matmul_flops(a, b, out):
    """2·M·N·K per batch element: one multiply and one add per term."""
    return 2 * out.size * a.shape[-1]


def matmul(a, b):
    """numpy's ``a @ b``: matrix product, batched over leading dims, 1-D operands as vectors."""
    ta, tb = as_tensor(a), as_tensor(b)
    if ta.ndim == 0 or tb.ndim == 0:
        raise GraphError("matmul", "operands must have at least 1 dimension (use multiply for scalars)",
                         operands=[ta.type, tb.type])
    ta, tb = promote("matmul", [ta, tb], allowed=NUMERIC_DTYPES)
    squeeze = []
    if ta.ndim == 1:
        ta = node_op("reshape", [ta], shape=(1, ta.shape[0]))
        squeeze.append(-2)
    if tb.ndim == 1:
        tb = node_op("reshape", [tb], shape=(tb.shape[0], 1))
        squeeze.append(-1)
    if ta.shape[-1] != tb.shape[-2]:
        raise GraphError("matmul", f"contraction dims differ ({ta.shape[-1]} != {tb.shape[-2]})",
                         operands=[as_tensor(a).type, as_tensor(b).type])
    try:
        batch = tuple(np.broadcast_shapes(ta.shape[:-2], tb.shape[:-2]))
    except ValueError:
        raise GraphError("matmul", "batch dims do not broadcast",
                         operands=[as_tensor(a).type, as_tensor(b).type]) from None
    ta = _broadcast(ta, batch + ta.shape[-2:])
    tb = _broadcast(tb, batch + tb.shape[-2:])
    out = node_op("matmul", [ta, tb])
    if squeeze:
        shape = list(out.shape)
        for ax in sorted(squeeze):
            del shape[ax]
        out = node_op("reshape", [out], shape=tuple(shape))
    return out


def dot(a, b):
    """Alias of ``matmul`` for 1-D and 2-D operands (numpy's ``dot`` there)."""
    return matmul(a, b)


_MATMUL_SHAPES = [((2, 3), (3, 4)), ((3,), (3, 4)), ((2, 3), (3,)), ((3,), (3,)), ((5, 2, 3), (3, 4)),
                  ((5, 2, 3), (5, 3, 4)), ((1, 2, 3), (4, 3, 2)), ((2, 0), (0, 3)), ((0, 3), (3, 2)),
                  ((1, 1), (1, 1))]
def _swap_last(t):
    perm = tuple(range(t.ndim - 2)) + (t.ndim - 1, t.ndim - 2)
    return transpose(t, perm)


def _matmul_vjp(g, a, b, out):
    """C = A B:  Ā = C̄ Bᵀ,  B̄ = Aᵀ C̄ (per batch element)."""
    return matmul(g, _swap_last(b)), matmul(_swap_last(a), g)


register(OpDef("matmul", "matmul", _infer_matmul, lambda xp, a, b: xp.matmul(a, b), nin=2,
               flops=_matmul_flops, vjp=_matmul_vjp, doc="batched matrix product", api=matmul, oracle=_np(np.matmul),
               examples=tuple(Example((Arg(sa, d, -2, 2), Arg(sb, d, -2, 2))) for d in NUMERIC
                              for sa, sb in _MATMUL_SHAPES)
               + (Example((Arg((2, 3), int32), Arg((3, 2), float32))),)))


# ---------------------------------------------------------------- transpose

def _normalize_perm(types, attrs):
    ndim = types[0].ndim
    perm = attrs["perm"]
    if perm is None:
        perm = tuple(reversed(range(ndim)))
    try:
        perm = tuple(int(p) % ndim if ndim and -ndim <= int(p) < ndim else int(p) for p in perm)
    except (TypeError, ValueError):
        raise OpTypeError(f"perm must be a sequence of ints, got {perm!r}") from None
    if sorted(perm) != list(range(ndim)):
        raise OpTypeError(f"perm {tuple(attrs['perm'])} is not a permutation of the {ndim} axes")
    return {"perm": perm}


def _infer_transpose(x, *, perm):
    return TensorType(tuple(x.shape[p] for p in perm), x.dtype)


def transpose(x, axes=None):
    """Permute axes: ``out.shape[i] = x.shape[axes[i]]``; reverses them by default (numpy's ``.T``)."""
    return node_op("transpose", [as_tensor(x)], perm=axes)


register(OpDef("transpose", "shape", _infer_transpose, lambda xp, x, perm: xp.transpose(x, perm),
               attrs={"perm": None}, normalize=_normalize_perm, doc="permute axes", api=transpose,
               vjp=lambda g, x, out, perm: (transpose(g, tuple(int(i) for i in np.argsort(perm))),),
               oracle=lambda x, axes=None: np.transpose(x, axes),
               examples=tuple(Example((Arg(s, d),), kw) for d in NUMERIC[:1] + NUMERIC[2:3] + (uint8,)
                              for s, kw in [((2, 3), {}), ((2, 3, 4), {"axes": (1, 2, 0)}),
                                            ((2, 3, 4), {"axes": (-1, 0, 1)}), ((), {}), ((0, 3), {}),
                                            ((1, 4, 1), {"axes": (2, 0, 1)})])))
