"""The ``fused`` op: one kernel, made by the fusion pass from a group of ops.

A ``fused`` node has the group's external values as inputs and two
attributes: ``kind`` (how codegen lowers it: ``elementwise``, ``reduce``,
``softmax``, ``matmul``, ``scatter_add``) and ``body``, a Graph whose
placeholders stand for the inputs, in order, and whose one output is the
node's value. Its reference implementation runs the body with the
interpreter, so a fused graph evaluates exactly like the graph it came from.
The printer shows the body indented under the node; Graphviz draws it as a
cluster.
"""

from __future__ import annotations

from ..ir import Graph, TensorType
from .registry import OpDef, OpTypeError, register

FUSED_KINDS = ("elementwise", "reduce", "softmax", "matmul", "scatter_add")


def _infer_fused(*types, kind, body):
    if kind not in FUSED_KINDS:
        raise OpTypeError(f"unknown kernel kind {kind!r}")
    if not isinstance(body, Graph) or len(body.outputs) != 1:
        raise OpTypeError("body must be a Graph with one output")
    if [n.type for n in body.inputs] != list(types):
        raise OpTypeError(f"inputs {[str(t) for t in types]} do not match the body's "
                          f"{[str(n.type) for n in body.inputs]}")
    out: TensorType = body.outputs[0].type
    return out


def _ref_fused(xp, *arrays, kind, body):
    from ..interpreter import run_graph
    return run_graph(body, list(arrays), xp=xp)[0]


register(OpDef("fused", "fused", _infer_fused, _ref_fused, nin=None, attrs={"kind": None, "body": None},
               differentiable=False, doc="a group of ops lowered as one kernel (made by the fusion pass)"))
