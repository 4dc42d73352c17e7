"""Where values live: strided views over buffers, and which reads need no copy.

Shared by the fusion pass (which decides what gets a buffer) and codegen
(which turns every read into an address). A value that has a buffer is read
at ``offset + Σ_d strides[d] · index[d]``; the view ops (broadcast_to,
transpose, slice, expand_dims, squeeze, and reshape of a contiguous value)
only change offset and strides, so they cost nothing at run time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from graphc.ir import Node

VIEW_OPS = frozenset({"broadcast_to", "transpose", "slice", "expand_dims", "squeeze", "reshape"})
EXPR_OPS = frozenset({"pad", "concatenate", "stack", "take", "one_hot"})
REDUCE_OPS = frozenset({"sum", "mean", "max", "min", "prod", "logsumexp", "argmax", "argmin"})
SOFTMAX_OPS = frozenset({"softmax", "log_softmax"})


def kernel_kind(node: Node) -> str:
    """The loop-nest form that computes ``node`` when it is materialized."""
    if node.op in REDUCE_OPS:
        return "reduce"
    if node.op in SOFTMAX_OPS:
        return "softmax"
    if node.op == "matmul":
        return "matmul"
    if node.op == "scatter_add":
        return "scatter_add"
    return "elementwise"


def row_major(shape: Sequence[int]) -> tuple:
    """Element strides of a contiguous array of ``shape``."""
    strides, acc = [], 1
    for s in reversed(shape):
        strides.append(acc)
        acc *= max(int(s), 1)
    return tuple(reversed(strides))


@dataclass(frozen=True)
class View:
    """Where a value lives: buffer ``slot``, element ``offset`` and ``strides`` per dim of the value."""

    slot: int
    offset: int
    strides: tuple


def resolve_view(node: Node, slot_of: dict) -> View | None:
    """The view of ``node`` if it is a buffer or a chain of views over one; else None."""
    if id(node) in slot_of:
        return View(slot_of[id(node)], 0, row_major(node.shape))
    if node.op not in VIEW_OPS:
        return None
    src = resolve_view(node.inputs[0], slot_of)
    if src is None:
        return None
    x = node.inputs[0]
    a = node.attrs
    if node.op == "transpose":
        return View(src.slot, src.offset, tuple(src.strides[p] for p in a["perm"]))
    if node.op == "broadcast_to":
        lead = len(node.shape) - len(x.shape)
        strides = [0] * lead + [0 if (xs == 1 and os != 1) else st
                                for xs, os, st in zip(x.shape, node.shape[lead:], src.strides)]
        return View(src.slot, src.offset, tuple(strides))
    if node.op == "slice":
        off = src.offset + sum(st * s for st, s in zip(src.strides, a["starts"]))
        return View(src.slot, off, tuple(st * c for st, c in zip(src.strides, a["steps"])))
    if node.op == "expand_dims":
        strides = list(src.strides)
        for ax in a["axes"]:
            strides.insert(ax, 0)
        return View(src.slot, src.offset, tuple(strides))
    if node.op == "squeeze":
        return View(src.slot, src.offset, tuple(st for i, st in enumerate(src.strides) if i not in a["axes"]))
    if node.op == "reshape":
        if _is_contiguous(src, x.shape):
            return View(src.slot, src.offset, row_major(node.shape))
        return None
    return None


def _is_contiguous(v: View, shape) -> bool:
    return all(st == rm or s == 1 for st, rm, s in zip(v.strides, row_major(shape), shape))


def blas_layout(v: View, shape) -> tuple | None:
    """(transposed, leading dim) of the matrices of a view, if BLAS can read them in place."""
    rows, cols = shape[-2], shape[-1]
    rs, cs = v.strides[-2], v.strides[-1]
    if cols == 1:
        cs = 1
    if rows == 1:
        rs = max(cols, 1) if cs == 1 else rs
    if cs == 1 and rs >= max(cols, 1):
        return False, rs
    if rows == 1 and cs >= 1:
        return True, cs  # a 1 x n matrix with stride: read as its transpose
    if rs == 1 and cs >= max(rows, 1):
        return True, cs
    return None
