"""Buffers and kernels of a fused graph: the memory layout a compiled function runs in.

The fusion pass (``graphc.passes.fusion``) has already grouped the graph
into ``fused`` nodes, one per kernel. This module gives every input,
parameter, constant, output and kernel result a buffer slot, lays the
intermediate results out in one scratch arena, and lists the kernels in
order. Parameter updates become copies after the last kernel.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from graphc.ir import Graph, Node
from graphc.passes.layout import (EXPR_OPS, REDUCE_OPS, SOFTMAX_OPS, VIEW_OPS, View, blas_layout,  # noqa: F401
                                  kernel_kind, resolve_view, row_major)

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
    """One ``fused`` node to lower: its kind, body, and the slot its result goes to."""

    node: Node
    kind: str
    slot: int

    @property
    def body(self) -> Graph:
        return self.node.attrs["body"]

    def body_slots(self, slot_of: dict) -> dict:
        """Slots of the graph's buffers plus the body's placeholders (aliases of the kernel's inputs)."""
        m = dict(slot_of)
        for ph, outer in zip(self.body.inputs, self.node.inputs):
            m[id(ph)] = slot_of[id(outer)]
        return m


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


def plan(graph: Graph, update_params: Sequence[Node] = ()) -> Plan:
    """Slots, arena offsets and kernel order for a fused graph.

    ``graph.inputs`` are the inputs; parameters and constants are buffers the
    compiled function owns. The last ``len(update_params)`` outputs are the
    new values of those parameters: computed into scratch buffers and copied
    over the parameters after every kernel has run. The other outputs get
    output buffers (an output that is a leaf is copied into its own).
    """
    from graphc.passes.fusion import fuse
    if any(not n.is_leaf and n.op != "fused" for n in graph.nodes):
        graph = fuse(graph)
    n_out = len(graph.outputs) - len(update_params)
    outputs = list(graph.outputs[:n_out])
    update_values = list(graph.outputs[n_out:])
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
    output_slots: list[int] = []
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
    kernels: list[Kernel] = []
    for n in graph.nodes:
        if n.op != "fused":
            continue
        if id(n) not in slot_of:
            buffers.append(BufferSpec(slot, "temp", n, offset=arena))
            arena += (n.type.nbytes + 63) // 64 * 64
            slot_of[id(n)] = slot
            slot += 1
        kernels.append(Kernel(n, n.attrs["kind"], slot_of[id(n)]))
    for param, value in zip(update_params, update_values):
        copies.append((slot_of[id(value)], slot_of[id(param)]))
    return Plan(graph, buffers, kernels, slot_of, output_slots, arena, copies)


def describe(p: Plan) -> str:
    """One line per kernel: kind, node, shape (for dumps and tests)."""
    lines = []
    for k in p.kernels:
        root = k.body.outputs[0]
        lines.append(f"k{len(lines)}: {k.kind:<12} {root.op:<12} {k.node.type}  -> slot {k.slot}")
    return "\n".join(lines)

