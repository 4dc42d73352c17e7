"""The one printer for all IR: a stable text form, one line per node.

::

    graph demo {
      input  %x:f32[4,3]
      param  %w1:f32[3,5]
      %0:f32[4,5] = matmul %x, %w1                          # demo.py:12
      %1:f32[4,5] = broadcast_to[shape=(4,5)] %b1           # demo.py:12
      %2:f32[4,5] = add %0, %1                              # demo.py:12
      return %2
    }

Placeholders and parameters are named by the user's names (when those are
identifiers, unique in the graph); other values are numbered in order.
Attributes print in the order the op declares them. Small constants print
their values; large ones print their type only (their values are in the
saved .npz). Every later stage (backward graphs, passes, dumps) uses this.
"""

from __future__ import annotations

import re

from .dtypes import DType
from .errors import short_location
from .ir import Graph, Node

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")
LOCATION_COLUMN = 56
MAX_CONSTANT_ELEMENTS = 8


def value_names(graph: Graph) -> dict[int, str]:
    """``id(node) -> '%name'`` for every node: user names for inputs/params, numbers for the rest."""
    names: dict[int, str] = {}
    taken: set[str] = set()
    for n in graph.nodes:
        if n.op in ("placeholder", "parameter") and n.name and _IDENT.match(n.name) \
                and not n.name.isdigit() and n.name not in taken:
            names[id(n)] = "%" + n.name
            taken.add(n.name)
    counter = 0
    for n in graph.nodes:
        if id(n) in names:
            continue
        while str(counter) in taken:
            counter += 1
        names[id(n)] = f"%{counter}"
        taken.add(str(counter))
        counter += 1
    return names


def format_attr(v) -> str:
    """Attribute values: tuples without spaces, dtypes by short name, floats by repr."""
    if isinstance(v, tuple):
        inner = ",".join(format_attr(x) for x in v)
        return f"({inner},)" if len(v) == 1 else f"({inner})"
    if isinstance(v, DType):
        return v.short
    if isinstance(v, float):
        return repr(v)
    return str(v)


def format_constant(value) -> str:
    """A constant's value if small, else a placeholder for it."""
    if value.size > MAX_CONSTANT_ELEMENTS:
        return "<...>"
    def nested(v):
        if isinstance(v, list):
            return "[" + ",".join(nested(x) for x in v) + "]"
        return format_attr(v)
    return nested(value.tolist())


def format_node(node: Node, names: dict[int, str]) -> str:
    """``%3:f32[2,3] = op[attrs] %1, %2`` (without location)."""
    lhs = f"{names[id(node)]}:{node.type}"
    if node.op == "constant":
        return f"{lhs} = constant {format_constant(node.value)}"
    attrs = ""
    if node.op == "fused":
        return f"{lhs} = fused[kind={node.attrs['kind']}] " + ", ".join(names[id(i)] for i in node.inputs)
    if node.attrs:
        from .ops.registry import get_op
        try:
            order = list(get_op(node.op).attrs)
        except KeyError:
            order = []
        keys = [k for k in order if k in node.attrs] + [k for k in node.attrs if k not in order]
        attrs = "[" + ", ".join(f"{k}={format_attr(node.attrs[k])}" for k in keys) + "]"
    args = ", ".join(names[id(i)] for i in node.inputs)
    return f"{lhs} = {node.op}{attrs}{' ' + args if args else ''}"


def format_graph(graph: Graph, locations: bool = True, indent: str = "") -> str:
    """The whole graph: header, inputs, parameters, one line per node, the returned values.

    A ``fused`` node's body follows its line, indented, between braces.
    """
    names = value_names(graph)
    lines = [f"graph {graph.name} {{"]
    for n in graph.inputs:
        lines.append(f"  input  {names[id(n)]}:{n.type}")
    for n in graph.parameters:
        lines.append(f"  param  {names[id(n)]}:{n.type}")
    for n in graph.nodes:
        if n.op in ("placeholder", "parameter"):
            continue
        text = "  " + format_node(n, names)
        if n.op == "fused":
            body = format_graph(n.attrs["body"], locations=locations).split("\n")
            lines.append(text + " {")
            lines.extend("    " + line for line in body[1:-1])
            lines.append("  }")
            continue
        if locations and n.loc:
            text = text.ljust(LOCATION_COLUMN) + f"  # {short_location(n.loc)}"
        lines.append(text)
    outs = ", ".join(names[id(o)] for o in graph.outputs)
    if graph.output_names:
        outs = ", ".join(f"{names[id(o)]} ({nm})" for o, nm in zip(graph.outputs, graph.output_names))
    lines.append(f"  return {outs}")
    lines.append("}")
    return "\n".join(indent + line for line in lines)
