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
from graphc.passes.layout import EXPR_OPS, VIEW_OPS, kernel_kind

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
    # a matmul kernel updating a parameter in place: C = alpha * A @ B + beta * C
    accumulate: tuple | None = None

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
    in_place: list[str] = field(default_factory=list)  # parameters updated in place (no copy)
    updated: list[str] = field(default_factory=list)  # every parameter a call updates
    graph_before_passes: Graph | None = None  # the graph as the user built it (for diagnostics)

    @property
    def peak_bytes(self) -> int:
        """Memory a call uses: inputs, parameters, constants, outputs and the scratch arena."""
        return sum(b.nbytes for b in self.buffers if b.kind != "temp") + self.arena_bytes


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
    leaves = [n for n in graph.nodes if n.op in ("parameter", "constant")]
    known = {id(n) for n in leaves}
    leaves += [p for p in update_params if id(p) not in known]  # updated, but read by nothing
    for n in leaves:
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
    fused = [n for n in graph.nodes if n.op == "fused"]
    position = {id(n): i for i, n in enumerate(fused)}
    last_read: dict[int, int] = {}
    for i, n in enumerate(fused):
        for x in n.inputs:
            last_read[id(x)] = i
    for value in update_values:  # a parameter's new value that IS another leaf is read by the final copies
        if value.is_leaf:
            last_read[id(value)] = len(fused)
    out_ids = {id(o) for o in outputs}
    in_place: dict[int, tuple] = {}  # id(value) -> (param, accumulate)
    for param, value in zip(update_params, update_values):
        if value.op != "fused" or id(value) in out_ids or id(param) in out_ids or id(value) in in_place:
            continue
        if last_read.get(id(param), -1) > position[id(value)]:
            continue  # a later kernel still reads the old value
        how = update_in_place(value, param)
        if how is not None:
            in_place[id(value)] = (param, how)
    for value, (param, _) in ((v, pa) for v, pa in in_place.items()):
        slot_of[value] = slot_of[id(param)]

    # scratch: kernel results live from their kernel to their last reader; reuse freed space
    live_until = {id(n): last_read.get(id(n), position[id(n)]) for n in fused}
    for value in update_values:
        live_until[id(value)] = len(fused)  # read by the final copies
    temps = [n for n in fused if id(n) not in slot_of]
    offsets, arena = assign_arena([(position[id(n)], live_until[id(n)], n.type.nbytes) for n in temps])
    for n, off in zip(temps, offsets):
        buffers.append(BufferSpec(slot, "temp", n, offset=off))
        slot_of[id(n)] = slot
        slot += 1
    kernels = []
    for n in fused:
        acc = in_place[id(n)][1] if id(n) in in_place else None
        kernels.append(Kernel(n, n.attrs["kind"], slot_of[id(n)], acc if isinstance(acc, tuple) else None))
    # updates are simultaneous: a new value that is itself a parameter (or other leaf) is first
    # copied aside, so p1 <- p2, p2 <- p1 swaps
    snapshots: dict[int, int] = {}
    for value in update_values:
        if value.is_leaf and id(value) not in snapshots:
            buffers.append(BufferSpec(slot, "temp", value, offset=arena))
            arena += (value.type.nbytes + 63) // 64 * 64
            snapshots[id(value)] = slot
            copies.append((slot_of[id(value)], slot))
            slot += 1
    for param, value in zip(update_params, update_values):
        if in_place.get(id(value), (None,))[0] is not param:
            copies.append((snapshots.get(id(value), slot_of[id(value)]), slot_of[id(param)]))
    p = Plan(graph, buffers, kernels, slot_of, output_slots, arena, copies)
    p.in_place = [pa.name for pa, _ in in_place.values()]
    p.updated = [pa.name for pa in update_params]
    return p


def assign_arena(intervals: Sequence[tuple[int, int, int]]) -> tuple[list[int], int]:
    """Offsets for buffers live over kernel intervals ``(first, last, nbytes)``: two buffers share
    bytes only if their intervals do not overlap. Greedy, largest first, lowest free offset;
    returns (offsets, arena size). Offsets are 64-byte aligned."""
    order = sorted(range(len(intervals)), key=lambda i: -intervals[i][2])
    placed: list[tuple[int, int, int, int]] = []  # (first, last, offset, end)
    offsets = [0] * len(intervals)
    size = 0
    for i in order:
        first, last, nbytes = intervals[i]
        nbytes = (nbytes + 63) // 64 * 64
        busy = sorted((o, e) for f, l, o, e in placed if not (l < first or last < f))
        off = 0
        for o, e in busy:
            if off + nbytes <= o:
                break
            off = max(off, e)
        offsets[i] = off
        placed.append((first, last, off, off + nbytes))
        size = max(size, off + nbytes)
    return offsets, size


def update_in_place(value: Node, param: Node):
    """How a kernel can write a parameter's new value over the old one, or None.

    * an elementwise kernel that reads the parameter only elementwise, at the
      index it writes (every use is an elementwise op of the same shape):
      ``True`` (each element is read before it is overwritten);
    * a matmul kernel whose epilogue is ``beta * P + alpha * (A @ B)`` with
      constant ``alpha``, ``beta``: ``(alpha, beta)``, one GEMM with ``C = P``;
    * a kernel that does not read the parameter at all: ``True``.
    """
    body = value.attrs["body"]
    kind = value.attrs["kind"]
    phs = [ph for ph, outer in zip(body.inputs, value.inputs) if outer is param]
    if not phs:
        return True if kind == "elementwise" else None
    ph = phs[0]
    if kind == "elementwise":
        if param.shape != value.shape:
            return None
        # every op between the parameter and the result must read it at the index it writes
        users = body.users()
        todo, seen = [ph], set()
        while todo:
            n = todo.pop()
            for u in users[id(n)]:
                if id(u) in seen:
                    continue
                seen.add(id(u))
                if u.op in VIEW_OPS or kernel_kind(u) != "elementwise" or u.op in EXPR_OPS \
                        or u.shape != value.shape:
                    return None
                todo.append(u)
        return True
    if kind == "matmul":
        return gemm_accumulate(body, ph)
    return None


def _scalar_constant(n: Node):
    while n.op == "broadcast_to":
        n = n.inputs[0]
    if n.op == "constant" and n.type.shape == ():
        return float(n.value)
    return None


def _scaled(n: Node, target: Node):
    """c if n is c * target (or target * c, or target itself with c = 1), else None."""
    if n is target:
        return 1.0
    if n.op == "mul":
        a, b = n.inputs
        if a is target and _scalar_constant(b) is not None:
            return _scalar_constant(b)
        if b is target and _scalar_constant(a) is not None:
            return _scalar_constant(a)
    if n.op == "neg" and n.inputs[0] is target:
        return -1.0
    return None


def gemm_accumulate(body: Graph, ph: Node):
    """(alpha, beta) if the body is exactly ``beta * ph ± alpha * (A @ B)``, else None.

    Then one GEMM with ``C = ph``'s buffer computes it in place:
    ``C = alpha * A @ B + beta * C``.
    """
    root = body.outputs[0]
    mm = [n for n in body.nodes if n.op == "matmul"]
    if len(mm) != 1 or root.op not in ("add", "sub") or ph.shape != root.shape:
        return None
    h = mm[0]
    a, b = root.inputs
    found = None
    if root.op == "add":
        for p_side, h_side in ((a, b), (b, a)):
            beta, alpha = _scaled(p_side, ph), _scaled(h_side, h)
            if beta is not None and alpha is not None:
                found = (alpha, beta, p_side, h_side)
                break
    else:
        beta, alpha = _scaled(a, ph), _scaled(b, h)
        if beta is not None and alpha is not None:
            found = (-alpha, beta, a, b)
        else:
            alpha, beta = _scaled(a, h), _scaled(b, ph)
            if beta is not None and alpha is not None:
                found = (alpha, -beta, b, a)
    if found is None:
        return None
    for x in h.inputs:  # BLAS must not read the buffer it overwrites
        while x.op in VIEW_OPS:
            x = x.inputs[0]
        if x is ph:
            return None
    alpha, beta, p_side, h_side = found
    allowed = {id(root), id(h), id(p_side), id(h_side)}
    for x in h.inputs:  # the operands: placeholders or views of them
        while x.op in VIEW_OPS:
            allowed.add(id(x))
            x = x.inputs[0]
    for n in body.nodes:
        if n.is_leaf or id(n) in allowed:
            continue
        if n.op == "broadcast_to" and _scalar_constant(n) is not None:
            continue
        return None
    return alpha, beta




def describe(p: Plan) -> str:
    """One line per kernel: kind, node, shape (for dumps and tests)."""
    lines = []
    for k in p.kernels:
        root = k.body.outputs[0]
        lines.append(f"k{len(lines)}: {k.kind:<12} {root.op:<12} {k.node.type}  -> slot {k.slot}")
    return "\n".join(lines)

