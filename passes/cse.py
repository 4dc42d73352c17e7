"""Common subexpression elimination.

Rewrite: two nodes with the same key compute the same value; every use of
the later one uses the first one instead. The key of

* a computed node is ``(op, its inputs (after CSE), its attributes, its type)``;
  the inputs of commutative ops (add, mul, maximum, minimum, eq, ne,
  logical_and, logical_or) are taken as a set, since IEEE addition and
  multiplication are commutative bit for bit;
* a constant is ``(dtype, shape, bytes)``: equal bits, so ``0.0`` and ``-0.0``
  stay apart and NaNs with equal payloads merge;
* a placeholder or a parameter is the node itself: they are never merged (two
  inputs, or two parameters with equal initial values, are different state).

Attribute values are compared with their Python types (``1``, ``1.0`` and
``True`` differ; ``0.0`` and ``-0.0`` differ). Every op is pure, so merging
never drops an effect. Locations and origins are those of the first node.
"""

from __future__ import annotations

import hashlib

import numpy as np

from graphc.ir import Graph, Node

from .dce import copy_with_inputs

COMMUTATIVE_OPS = frozenset({"add", "mul", "maximum", "minimum", "eq", "ne", "logical_and", "logical_or"})


def _attr_key(v):
    """A hashable form of an attribute value that tells apart 1, 1.0, True and 0.0, -0.0."""
    if isinstance(v, tuple):
        return ("tuple",) + tuple(_attr_key(x) for x in v)
    if isinstance(v, float):
        return ("float", v.hex() if v == v else "nan")
    if isinstance(v, (bool, int, str)) or v is None:
        return (type(v).__name__, v)
    try:
        hash(v)
    except TypeError:
        return ("id", id(v))
    return (type(v).__name__, v)


def node_key(n: Node, input_ids: tuple) -> tuple:
    """The CSE key of a node whose inputs (after CSE) have these ids."""
    if n.op == "constant":
        v = np.ascontiguousarray(n.value)
        data = v.tobytes() if v.nbytes <= 4096 else hashlib.sha256(v).digest()
        return ("constant", v.dtype.str, v.shape, data)
    if n.op in ("placeholder", "parameter"):
        return (n.op, id(n))
    ids = tuple(sorted(input_ids)) if n.op in COMMUTATIVE_OPS else input_ids
    attrs = tuple((k, _attr_key(v)) for k, v in sorted(n.attrs.items()))
    return (n.op, ids, attrs, n.type)


def cse(graph: Graph) -> Graph:
    """The graph with each repeated computation (and each repeated constant) kept once."""
    new: dict[int, Node] = {}
    table: dict[tuple, Node] = {}
    for n in graph.nodes:
        ins = [new[id(i)] for i in n.inputs]
        key = node_key(n, tuple(id(i) for i in ins))
        hit = table.get(key)
        if hit is None:
            hit = copy_with_inputs(n, ins)
            table[key] = hit
        new[id(n)] = hit
    return Graph(graph.inputs, [new[id(o)] for o in graph.outputs], name=graph.name,
                 output_names=graph.output_names)


__all__ = ["cse", "node_key", "COMMUTATIVE_OPS"]
