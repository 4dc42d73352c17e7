"""Kernel planning: which values get buffers, and how every read becomes an index map.

A graph becomes a list of kernels, one per *materialized* node, each a loop
nest that computes its node from buffers. Everything else is inlined into
the loops that read it:

* views (broadcast_to, transpose, slice, expand_dims, squeeze, reshape of a
  contiguous value) are index maps: a read through them is one load at an
  affine address ``offset + Σ_e stride_e · i_e`` of the loop indices;
* elementwise ops, where, cast, pad, concatenate, stack, take and one_hot
  become scalar expressions evaluated per element (fusion);
* a value used by two or more ops, an output, and the result of a
  reduction, softmax, matmul or scatter_add get a buffer.

Kernel kinds: ``elementwise`` (an expression per output element),
``reduce``, ``softmax``, ``matmul`` (BLAS, operands given by stride and
transposition flags, never copied when the strides allow), ``scatter_add``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from graphc.ir import Graph, Node

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


@dataclass
class BufferSpec:
    """One buffer of the compiled function."""

    slot: int
    kind: str  # input | param | const | output | temp
    node: Node
    name: str = ""
    offset: int = 0  # byte offset in the arena (temps)

    @property
    def nbytes(self) -> int:
        return self.node.type.nbytes


@dataclass
class Kernel:
    node: Node
    kind: str
    slot: int  # where the result goes


@dataclass
class Plan:
    graph: Graph
    buffers: list[BufferSpec]
    kernels: list[Kernel]
    slot_of: dict  # id(node) -> slot of its buffer (materialized nodes and leaves)
    output_slots: list[int]
    arena_bytes: int
    copies: list[tuple[int, int]] = field(default_factory=list)  # (src slot, dst slot) after all kernels


FIRST_SLOT = 2  # slot 0: runtime table, slot 1: status word


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


def plan(graph: Graph, updates: Sequence[tuple[Node, Node]] = ()) -> Plan:
    """Choose materialized nodes, assign buffer slots, list the kernels in order.

    ``graph.inputs`` are the inputs; parameters and constants are buffers the
    compiled function owns. The last ``len(updates)`` graph outputs are the
    new values of parameters (``updates[i] = (parameter, value)``): they are
    computed into scratch buffers and copied over the parameters after every
    kernel has run; the other outputs get output buffers.
    """
    users = graph.users()
    n_out = len(graph.outputs) - len(updates)
    outputs = list(graph.outputs[:n_out])
    update_values = [v for _, v in updates]
    out_ids = {id(o) for o in outputs} | {id(v) for v in update_values if not v.is_leaf}
    mat: set[int] = set()
    for n in graph.nodes:
        if n.is_leaf:
            continue
        if id(n) in out_ids or kernel_kind(n) != "elementwise":
            mat.add(id(n))
        elif n.op not in VIEW_OPS and len(users[id(n)]) > 1:
            mat.add(id(n))

    leaf_slots = {id(n): i for i, n in enumerate(n for n in graph.nodes if n.is_leaf)}

    def slots_now():
        s = dict(leaf_slots)
        for i, n in enumerate(graph.nodes):
            if id(n) in mat:
                s[id(n)] = -1 - i
        return s

    # constraints that need buffers (iterate: materializing one can change another's view)
    changed = True
    while changed:
        changed = False
        s = slots_now()
        for n in graph.nodes:
            need = []
            if n.op == "reshape" and id(n) not in mat:
                x = n.inputs[0]
                if resolve_view(x, s) is None and x.op in VIEW_OPS:
                    need.append(x)  # reshape of a strided view: copy the view first
            if n.op == "matmul":
                for x in n.inputs:
                    v = resolve_view(x, s)
                    if x.dtype.is_float and (v is None or blas_layout(v, x.shape) is None):
                        need.append(x)
            if n.op == "take":
                x = n.inputs[0]
                if resolve_view(x, s) is None:
                    need.append(x)
            if n.op in SOFTMAX_OPS and resolve_view(n.inputs[0], s) is None:
                need.append(n.inputs[0])
            for x in need:
                if not x.is_leaf and id(x) not in mat:
                    mat.add(id(x))
                    changed = True
            # reshape whose input is computed and not materialized: materialize the input
            if n.op == "reshape" and not n.inputs[0].is_leaf and n.inputs[0].op not in VIEW_OPS \
                    and id(n.inputs[0]) not in mat:
                mat.add(id(n.inputs[0]))
                changed = True

    buffers: list[BufferSpec] = []
    slot_of: dict[int, int] = {}
    slot = FIRST_SLOT
    for n in graph.inputs:
        buffers.append(BufferSpec(slot, "input", n, n.name))
        slot_of[id(n)] = slot
        slot += 1
    for n in graph.nodes:
        if n.op in ("parameter", "constant"):
            buffers.append(BufferSpec(slot, "param" if n.op == "parameter" else "const", n, n.name or ""))
            slot_of[id(n)] = slot
            slot += 1
    output_slots = []
    kernels: list[Kernel] = []
    copies: list[tuple[int, int]] = []
    out_slot_of: dict[int, int] = {}
    for k, o in enumerate(outputs):
        if id(o) in out_slot_of:  # the same value twice: returned as a copy by the runtime
            output_slots.append(out_slot_of[id(o)])
            continue
        buffers.append(BufferSpec(slot, "output", o, f"out{k}"))
        out_slot_of[id(o)] = slot
        output_slots.append(slot)
        if o.is_leaf:
            copies.append((slot_of[id(o)], slot))  # an output that is an input/param/const: copied
        else:
            slot_of[id(o)] = slot
        slot += 1
    arena = 0
    for n in graph.nodes:
        if id(n) in mat and id(n) not in slot_of:
            buffers.append(BufferSpec(slot, "temp", n, offset=arena))
            arena += (n.type.nbytes + 63) // 64 * 64
            slot_of[id(n)] = slot
            slot += 1
    for n in graph.nodes:
        if id(n) in mat:
            kernels.append(Kernel(n, kernel_kind(n), slot_of[id(n)]))
    for param, value in updates:
        copies.append((slot_of[id(value)], slot_of[id(param)]))
    return Plan(graph, buffers, kernels, slot_of, output_slots, arena, copies)


def describe(p: Plan) -> str:
    """One line per kernel: kind, node, shape (for dumps and tests)."""
    lines = []
    for k in p.kernels:
        lines.append(f"k{len(lines)}: {k.kind:<12} {k.node.op:<12} {k.node.type}  -> slot {k.slot}")
    return "\n".join(lines)

