"""Reverse-mode autodiff: a separate backward Graph from per-op derivative rules.

Two layers:

* ``backward(outputs, cotangents, wrt)`` walks the graph from the outputs
  back, calling each op's ``vjp`` rule (which builds ordinary graph ops) and
  summing the cotangents of values used more than once. Every cotangent is
  brought to its input's type by ``unbroadcast``, the ONE place where
  broadcasting is undone: a broadcast dim's cotangent is summed over. The
  result is a "joint" graph: gradient nodes that refer to forward nodes.
  ``gc.grad`` returns these; differentiating them again gives Hessians.

* ``grad_graph(graph, wrt)`` splits the joint graph in two: the forward
  Graph gains the values the backward one needs (residuals) as extra
  outputs, and the backward Graph takes those residuals and the output
  cotangent as its inputs and returns the gradients. Shape-only views of
  saved values (broadcast, reshape, transpose...) and constants are
  recomputed in the backward graph instead of being saved, so a broadcast
  bias is never materialized as a residual.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from graphc.errors import GraphError, attribute_to
from graphc.ir import Graph, Node, TensorType, created_by, topological_order
from graphc.ops.registry import get_op

# views and constants are recomputed in the backward graph rather than saved
RECOMPUTED_OPS = frozenset({"constant", "broadcast_to", "reshape", "expand_dims", "squeeze", "transpose"})


def _tensor(node: Node):
    from graphc.tensor import Tensor
    return Tensor(node)


def unbroadcast(ct, t: TensorType):
    """Bring a cotangent to the type ``t`` of the value it belongs to.

    If ``ct`` has the shape of ``t`` broadcast (extra leading dims, or size
    > 1 where ``t`` has 1), sum over those dims: the adjoint of broadcasting.
    A lower-rank cotangent (a rule returning a scalar) is broadcast up. The
    dtype is cast to ``t``'s. This is the only place broadcasting is undone.
    """
    from graphc.ops.elementwise import cast
    from graphc.ops.reduce import sum as reduce_sum
    from graphc.ops.shape import broadcast_to, reshape
    if ct.dtype != t.dtype:
        ct = cast(ct, t.dtype)
    if ct.shape == t.shape:
        return ct
    if ct.ndim < len(t.shape):
        return broadcast_to(ct, t.shape)
    lead = ct.ndim - len(t.shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, s in enumerate(t.shape) if s == 1 and ct.shape[lead + i] != 1)
    for i, s in enumerate(t.shape):
        if s != 1 and ct.shape[lead + i] != s:
            raise GraphError("autodiff", f"cotangent {ct.type} does not broadcast from {t}")
    if axes:
        ct = reduce_sum(ct, axis=axes, keepdims=False)
    return ct if ct.shape == t.shape else reshape(ct, t.shape)


def active_nodes(order: Sequence[Node], wrt: Sequence[Node]) -> set[int]:
    """ids of the nodes that depend on any of ``wrt`` (including ``wrt`` themselves)."""
    active = {id(w) for w in wrt}
    for n in order:
        if any(id(i) in active for i in n.inputs):
            active.add(id(n))
    return active


def backward(outputs: Sequence[Node], cotangents: Sequence[Node], wrt: Sequence[Node]) -> list:
    """Cotangents of ``wrt`` given those of ``outputs`` (Tensors, or None where no path exists).

    For each node from last to first: ``inputs̄ += op.vjp(nodē, *inputs, node, **attrs)``.
    Only float values on a path from ``wrt`` to ``outputs`` are visited.
    """
    with created_by("autodiff"):
        return _backward(outputs, cotangents, wrt)


def _backward(outputs, cotangents, wrt) -> list:
    order = topological_order(outputs)
    active = active_nodes(order, wrt)
    ct: dict[int, object] = {}

    def accumulate(node: Node, c):
        c = unbroadcast(c, node.type)
        prev = ct.get(id(node))
        ct[id(node)] = c if prev is None else prev + c

    for o, c in zip(outputs, cotangents):
        if id(o) in active:
            with attribute_to(o.loc):
                accumulate(o, _tensor(c) if isinstance(c, Node) else c)
    for node in reversed(order):
        g = ct.get(id(node))
        if g is None or node.is_leaf or id(node) not in active:
            continue
        needs = [id(i) in active and i.dtype.is_float for i in node.inputs]
        if not any(needs):
            continue
        op = get_op(node.op)
        if op.vjp is None:
            if op.differentiable:
                raise GraphError(node.op, "has no derivative rule (vjp) in its OpDef",
                                 operands=[i.type for i in node.inputs], location=node.loc)
            continue
        with attribute_to(node.loc):
            cts = op.vjp(g, *[_tensor(i) for i in node.inputs], _tensor(node), **node.attrs)
            if len(cts) != len(node.inputs):
                raise GraphError(node.op, f"vjp rule returned {len(cts)} cotangents for "
                                 f"{len(node.inputs)} inputs", location=node.loc)
            for inp, c, need in zip(node.inputs, cts, needs):
                if need and c is not None:
                    accumulate(inp, c)
    return [ct.get(id(w)) for w in wrt]


# ---------------------------------------------------------------- the separate backward graph

@dataclass
class GradProgram:
    """A forward graph with residual outputs and the backward graph that consumes them.

    ``backward_sources[i]`` says where backward input ``i`` comes from:
    ``("output", k)`` (forward output k, a residual), ``("input", name)``,
    ``("parameter", name)`` or ``("cotangent", None)``.
    """

    forward: Graph
    backward: Graph
    wrt: list[Node]
    n_outputs: int
    backward_sources: list[tuple] = field(default_factory=list)

    @property
    def residuals(self) -> list[Node]:
        return self.forward.outputs[self.n_outputs:]

    def run(self, inputs: Sequence, cotangent=None, params=None):
        """Evaluate forward then backward with the interpreter: (outputs, gradients).

        ``cotangent`` defaults to ones of the differentiated output's type.
        """
        from graphc.interpreter import run_graph
        fwd = run_graph(self.forward, inputs, params)
        out_type = [n for n in self.backward.inputs if n.name == _COTANGENT][0].type
        if cotangent is None:
            cotangent = np.ones(out_type.shape, out_type.dtype.np_dtype)
        feed_by_name = {n.name: v for n, v in zip(self.forward.inputs, inputs)}
        pvals = dict(self.forward.param_values())
        pvals.update(params or {})
        values = []
        for kind, key in self.backward_sources:
            if kind == "output":
                values.append(fwd[key])
            elif kind == "input":
                values.append(feed_by_name[key])
            elif kind == "parameter":
                values.append(pvals[key])
            else:
                values.append(cotangent)
        grads = run_graph(self.backward, values)
        return fwd[:self.n_outputs], grads


_COTANGENT = "cotangent"


def grad_graph(graph: Graph, wrt: Sequence[Node] | None = None, output: int = 0,
               recompute: bool = True) -> GradProgram:
    """Split the gradient of ``graph.outputs[output]`` w.r.t. ``wrt`` into forward + backward graphs.

    ``wrt`` defaults to every float parameter of the graph. The backward
    graph's inputs are the residuals (forward values, forward inputs and
    parameters it reads) and the output's cotangent; its outputs are the
    gradients, in ``wrt`` order (zeros where the output does not depend on
    a value).
    """
    from graphc.ops.shape import zeros_like
    if wrt is None:
        wrt = [p for p in graph.parameters if p.dtype.is_float]
    wrt = list(wrt)
    for w in wrt:
        if not w.dtype.is_float:
            raise GraphError("grad", f"cannot differentiate with respect to a {w.dtype.name} value "
                             f"{w.name or w.op!r}", operands=[w.type])
    y = graph.outputs[output]
    if not y.dtype.is_float:
        raise GraphError("grad", f"the differentiated output must be a float value, got {y.type}")
    cot = Node("placeholder", (), {}, y.type, loc=y.loc, name=_COTANGENT)
    grads = backward([y], [cot], wrt)
    with attribute_to(y.loc):
        grads = [g if g is not None else zeros_like(_tensor(w)) for g, w in zip(grads, wrt)]
    grad_nodes = [g.node for g in grads]

    forward_ids = {id(n) for n in graph.nodes}
    bwd_order = topological_order(grad_nodes)
    needed: list[Node] = []
    seen: set[int] = set()

    def need(n: Node):
        if id(n) in seen:
            return
        seen.add(id(n))
        if recompute and n.op in RECOMPUTED_OPS:
            for i in n.inputs:
                need(i)
            recomputed.add(id(n))
        else:
            needed.append(n)

    recomputed: set[int] = set()
    for n in bwd_order:
        if id(n) in forward_ids:
            continue
        for i in n.inputs:
            if id(i) in forward_ids:
                need(i)
    for n in grad_nodes:  # a gradient that IS a forward value (e.g. d(x)/dx of an identity path)
        if id(n) in forward_ids:
            need(n)

    # backward inputs: residuals, then the cotangent
    used_names = {_COTANGENT}
    sources: list[tuple] = []
    placeholders: dict[int, Node] = {}
    residual_outputs: list[Node] = []
    bwd_inputs: list[Node] = []
    for n in needed:
        if n.op == "placeholder":
            name, src = n.name, ("input", n.name)
        elif n.op == "parameter":
            name, src = n.name, ("parameter", n.name)
        else:
            name = f"res.{len(residual_outputs)}"
            src = ("output", len(graph.outputs) + len(residual_outputs))
            residual_outputs.append(n)
        while name in used_names:
            name += "_"
        used_names.add(name)
        ph = Node("placeholder", (), {}, n.type, loc=n.loc, name=name)
        placeholders[id(n)] = ph
        bwd_inputs.append(ph)
        sources.append(src)
    placeholders[id(cot)] = cot
    bwd_inputs.append(cot)
    sources.append(("cotangent", None))

    memo: dict[int, Node] = {}

    def clone(n: Node) -> Node:
        if id(n) in placeholders:
            return placeholders[id(n)]
        if id(n) in memo:
            return memo[id(n)]
        c = Node(n.op, [clone(i) for i in n.inputs], n.attrs, n.type, loc=n.loc, value=n.value, name=n.name)
        memo[id(n)] = c
        return c

    bwd = Graph(bwd_inputs, [clone(n) for n in grad_nodes], name=f"{graph.name}_backward",
                output_names=[f"d{w.name or 'w' + str(k)}" for k, w in enumerate(wrt)])
    names = (graph.output_names or [f"out{k}" for k in range(len(graph.outputs))]) + \
            [f"res.{k}" for k in range(len(residual_outputs))]
    fwd = Graph(graph.inputs, list(graph.outputs) + residual_outputs, name=graph.name, output_names=names)
    return GradProgram(fwd, bwd, wrt, len(graph.outputs), sources)


def differentiate(graph: Graph) -> Graph:
    """A pass-shaped view of autodiff: the backward Graph of output 0 w.r.t. all float parameters."""
    return grad_graph(graph).backward


def make_cotangent(t: TensorType, value=1.0) -> Node:
    """A constant cotangent (ones by default) of type ``t``."""
    arr = np.full(t.shape, value, dtype=t.dtype.np_dtype)
    arr.flags.writeable = False
    return Node("constant", (), {}, t, value=arr)


__all__ = ["backward", "unbroadcast", "grad_graph", "GradProgram", "differentiate", "RECOMPUTED_OPS",
           "active_nodes"]
