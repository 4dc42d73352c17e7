"""``gc.compile``: a graph of tensors to one native function.

    step = gc.compile([x, labels], [loss], updates=[(w, w - lr * gw), ...])
    loss_value, = step(x_batch, label_batch)      # one native call; w updated in place

The whole graph becomes ONE LLVM module with ONE entry point; a call checks
its inputs, then makes one native call (no Python between ops).
"""

from __future__ import annotations

from typing import Sequence

from .errors import GraphError
from .ir import Graph
from .tensor import Tensor


def compile(inputs: Sequence[Tensor], outputs, updates: Sequence[tuple[Tensor, Tensor]] | None = None,
            name: str = "graph", dump=None):
    """Compile ``outputs`` as functions of the placeholders ``inputs``.

    ``outputs``: a Tensor (the call returns one array) or a list of Tensors
    (the call returns a list). ``updates``: ``(parameter, new_value)`` pairs
    applied in place after each call. Returns a ``CompiledFunction`` whose
    ``graph``, ``llvm_ir``, ``optimized_llvm_ir`` and ``assembly`` show each
    stage. ``dump``: a folder to write every stage into (see ``graphc.dump``;
    the environment variable ``GRAPHC_DUMP`` does the same for every compile).
    """
    from graphc.codegen.compiler import compile_graph
    single = isinstance(outputs, Tensor)
    outs = [outputs] if single else list(outputs)
    updates = list(updates or [])
    ins = list(inputs)
    for t in ins:
        if not isinstance(t, Tensor) or t.op != "placeholder":
            raise GraphError("compile", f"inputs must be placeholders, got {t!r}")
    seen = set()
    for p, v in updates:
        if not isinstance(p, Tensor) or p.op != "parameter":
            raise GraphError("compile", f"updates must be (parameter, value) pairs; {p!r} is not a parameter")
        if id(p.node) in seen:
            raise GraphError("compile", f"parameter {p.name!r} is updated twice")
        seen.add(id(p.node))
        if v.shape != p.shape or v.dtype != p.dtype:
            raise GraphError("compile", f"update of {p.name!r}: new value {v.type} does not match {p.type}",
                             operands=[p.type, v.type])
    graph = Graph([t.node for t in ins], [o.node for o in outs] + [v.node for _, v in updates], name=name)
    graph.verify()
    used = {id(n) for n in graph.nodes if n.op == "placeholder"}
    missing = [n.name for n in graph.nodes if n.op == "placeholder" and n not in graph.inputs]
    if missing or len(used) > len(graph.inputs):
        raise GraphError("compile", f"the outputs depend on placeholders that are not inputs: {missing}")
    return compile_graph(graph, [p.node for p, _ in updates], single_output=single, dump=dump)
