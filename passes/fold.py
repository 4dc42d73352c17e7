"""Constant folding: compute at compile time what depends on constants only.

A value is *known* when it is a constant or computed from known values
only. Rewrites (each value computed by the op's own reference
implementation, ``get_op(op).ref(numpy_ns, *values, **attrs)``, with IEEE
semantics and no warnings, exactly as the interpreter computes it at run
time):

* a known value of at most ``max_elements`` elements (4096 by default)
  ->  ``constant(value)``;
* an elementwise op whose inputs are known values or ``broadcast_to`` of
  known values  ->  the op on the un-broadcast values (their common
  broadcast shape, at most ``max_elements``), broadcast to the result's
  shape: ``add(broadcast_to(2.0), broadcast_to(3.0))`` becomes
  ``broadcast_to(5.0)``, however large the result;
* a view (``reshape``, ``broadcast_to``, ``transpose``...) of a splat (a view
  of a 0-d constant)  ->  ``broadcast_to`` of that 0-d constant;
* a folded value whose elements are all equal becomes ``broadcast_to`` of a
  0-d constant (an immediate in a fused kernel).

Views of constants that read the constant in place (``broadcast_to``,
``transpose``, ``slice``, ``expand_dims``, ``squeeze``, ``reshape`` of a
contiguous value: index maps, free in a kernel) stay views; a constant
copy would only cost memory. Their users are still folded. Never folded:
parameters (live state), ``fused`` kernels, and a node whose reference
raises (e.g. an out-of-range ``take`` index, which stays a run-time
error). Folded constants are C-contiguous and read-only, and carry the
location and origin of the node they replace.
"""

from __future__ import annotations

import numpy as np

from graphc.ir import Graph, Node, TensorType
from graphc.ops.registry import get_op
from graphc.xp import numpy_ns

from .dce import copy_with_inputs, make_like
from .layout import resolve_view
from .simplify import VIEW_OPS, make_constant, splat, splat_source, uniform_value

MAX_ELEMENTS = 4096


def _evaluate(n: Node, values: list, shape: tuple):
    """``n``'s op on ``values`` (numpy arrays) giving an array of ``shape`` and n's dtype, or None."""
    try:
        with np.errstate(all="ignore"):
            out = np.asarray(get_op(n.op).ref(numpy_ns, *values, **n.attrs))
    except Exception:  # noqa: BLE001 - a failing evaluation stays in the graph (a run-time error)
        return None
    if out.shape != shape or out.dtype != n.type.dtype.np_dtype:
        return None
    return out


def _constant_node(value: np.ndarray, t: TensorType, like: Node) -> Node:
    """``value`` (broadcast to ``t``) as a constant or, if uniform or smaller, as a broadcast of one."""
    u = uniform_value(value)
    if u is not None and t.ndim > 0:
        return splat(u, t, like)
    c = make_constant(value, TensorType(value.shape, t.dtype), like)
    if value.shape == t.shape:
        return c
    return make_like("broadcast_to", [c], {"shape": t.shape}, like)


class _Folder:
    def __init__(self, max_elements: int):
        self.max_elements = max_elements
        self.known: dict[int, tuple[Node, np.ndarray]] = {}  # id(node) -> (node, value)

    def value(self, n: Node):
        hit = self.known.get(id(n))
        return None if hit is None else hit[1]

    def record(self, n: Node) -> Node:
        """Remember the value of ``n`` if it is known (a constant, or a view of known values)."""
        if n.op == "constant":
            self.known[id(n)] = (n, n.value)
        elif n.op in VIEW_OPS and id(n.inputs[0]) in self.known:
            with np.errstate(all="ignore"):
                v = get_op(n.op).ref(numpy_ns, self.value(n.inputs[0]), **n.attrs)
            self.known[id(n)] = (n, np.asarray(v))
        return n

    def in_place_view(self, n: Node) -> bool:
        """Is ``n`` a chain of views reading constants in place?"""
        slots = {}
        stack = [n]
        while stack:
            x = stack.pop()
            if x.op == "constant":
                slots[id(x)] = 0
            elif x.op in VIEW_OPS:
                stack.append(x.inputs[0])
        return resolve_view(n, slots) is not None

    def fold(self, n: Node) -> Node:
        if n.is_leaf or n.op == "fused" or not n.inputs:
            return n
        if n.op in VIEW_OPS and n.type.size > 0:
            src = splat_source(n.inputs[0])
            if src is not None and not (n.op == "broadcast_to" and n.inputs[0] is src):
                return splat(None, n.type, n, source=src)  # a view of a splat: one broadcast
        known = [self.value(i) for i in n.inputs]
        if all(v is not None for v in known):
            if n.op in VIEW_OPS and self.in_place_view(n):
                return n
            if n.type.size <= self.max_elements:
                out = _evaluate(n, known, n.type.shape)
                if out is not None:
                    return _constant_node(out, n.type, n)
        if get_op(n.op).kind == "elementwise":
            return self.fold_elementwise(n)
        return n

    def fold_elementwise(self, n: Node) -> Node:
        """An elementwise op over (broadcasts of) known values, computed at their common shape."""
        sources = []
        for i in n.inputs:
            if i.op == "broadcast_to" and id(i.inputs[0]) in self.known:
                sources.append(self.value(i.inputs[0]))
            elif id(i) in self.known and i.op != "broadcast_to":
                sources.append(self.value(i))
            else:
                return n
        try:
            core = tuple(np.broadcast_shapes(*(s.shape for s in sources)))
        except ValueError:
            return n
        if int(np.prod(core, dtype=np.int64)) > self.max_elements:
            return n
        core = (1,) * (n.type.ndim - len(core)) + core  # then it broadcasts to the result
        out = _evaluate(n, [np.broadcast_to(s, core) for s in sources], core)
        if out is None:
            return n
        return _constant_node(out, n.type, n)


def fold_node(n: Node, max_elements: int = MAX_ELEMENTS) -> Node:
    """``n`` (whose inputs are final) folded on its own, as ``fold_constants`` would."""
    f = _Folder(max_elements)
    for i in n.inputs:
        _record_tree(f, i)
    return f.fold(n)


def _record_tree(f: _Folder, n: Node) -> None:
    """Record ``n`` and the nodes below it that are not recorded yet (constants, views of them)."""
    from graphc.ir import topological_order
    if id(n) in f.known:
        return
    for x in topological_order([n]):
        if id(x) not in f.known:
            f.record(x)


def fold_constants(graph: Graph, *, max_elements: int = MAX_ELEMENTS) -> Graph:
    """The graph with every foldable node replaced by its value (see the module docstring)."""
    f = _Folder(max_elements)
    new: dict[int, Node] = {}
    for n in graph.nodes:
        if n.op in ("placeholder", "parameter"):
            new[id(n)] = n
            continue
        m = copy_with_inputs(n, [new[id(i)] for i in n.inputs])
        out = f.fold(m)
        if out.type != n.type:
            raise AssertionError(f"fold changed {n.op}:{n.type} into {out.op}:{out.type}")
        if out is m:
            f.record(out)
        else:
            _record_tree(f, out)
        new[id(n)] = out
    return Graph(graph.inputs, [new[id(o)] for o in graph.outputs], name=graph.name,
                 output_names=graph.output_names)


__all__ = ["fold_constants", "fold_node", "MAX_ELEMENTS"]
