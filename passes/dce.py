"""Dead-code elimination, and the rebuilding helpers every rewriting pass shares.

Rewrite: keep exactly the nodes some output needs; keep every input of the
graph, used or not (a compiled function's signature does not change).

A ``Graph`` already holds only the nodes reachable from its outputs (and
its inputs), so ``dce`` is a rebuild; it matters after a pass that built a
graph by hand from a node list, and it is the place the pipeline states the
rule. The helpers below (``rebuild``, ``make_like``, ``copy_with_inputs``)
are how passes build a NEW graph without touching the nodes of the old one:
an unchanged node (same inputs) is reused as it is; a node whose inputs
changed is copied; a node a pass creates takes the location and origin of
the node it replaces.
"""

from __future__ import annotations

from typing import Callable, Sequence

from graphc.ir import Graph, Node
from graphc.ops.registry import get_op


def copy_with_inputs(node: Node, inputs: Sequence[Node]) -> Node:
    """``node`` itself if ``inputs`` are its inputs, else a copy over ``inputs`` (same op, attrs,
    type, location, value, name and origin)."""
    if len(inputs) == len(node.inputs) and all(a is b for a, b in zip(inputs, node.inputs)):
        return node
    c = Node(node.op, inputs, node.attrs, node.type, loc=node.loc, value=node.value, name=node.name)
    c.origin = node.origin
    return c


def make_like(op_name: str, inputs: Sequence[Node], attrs: dict | None, like: Node) -> Node:
    """A new node ``op_name(*inputs, **attrs)`` (type inferred, attributes normalized) carrying
    the location and origin of ``like``, the node it stands in for."""
    op = get_op(op_name)
    full = dict(op.attrs)
    full.update(attrs or {})
    types = [i.type for i in inputs]
    if op.normalize is not None:
        full = op.normalize(types, full)
    out_type = op.infer_type(types, full)
    n = Node(op_name, inputs, full, out_type, loc=like.loc)
    n.origin = like.origin
    return n


def rebuild(graph: Graph, rewrite: Callable[[Node], Node] | None = None) -> Graph:
    """A new graph: each node in topological order, with its inputs replaced by their new
    versions, is passed to ``rewrite`` (which returns it, or a node of the same type that
    computes the same value from nodes of the new graph). Placeholders and parameters are
    never replaced."""
    new: dict[int, Node] = {}
    for n in graph.nodes:
        if n.op in ("placeholder", "parameter"):
            new[id(n)] = n
            continue
        base = copy_with_inputs(n, [new[id(i)] for i in n.inputs])
        out = rewrite(base) if rewrite is not None else base
        if out.type != n.type:
            raise AssertionError(f"a rewrite of {n.op} changed its type {n.type} to {out.type} (at {n.loc})")
        new[id(n)] = out
    return Graph(graph.inputs, [new[id(o)] for o in graph.outputs], name=graph.name,
                 output_names=graph.output_names)


def dce(graph: Graph) -> Graph:
    """Drop the nodes no output needs; every input stays an input (in order), used or not.

    Rule: ``nodes := reachable(outputs) ∪ inputs``. Nodes are reused as they are.
    """
    return Graph(list(graph.inputs), list(graph.outputs), name=graph.name, output_names=graph.output_names)


__all__ = ["dce", "rebuild", "make_like", "copy_with_inputs"]
