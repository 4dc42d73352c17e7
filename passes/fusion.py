"""Fusion: group the graph's ops into kernels, each one ``fused`` node.

Rewrite: every value that needs a buffer becomes the root of one kernel; the
ops it reads that need no buffer of their own are inlined into it. The
result is a graph of ``fused`` nodes (see ``graphc.ops.fused``) over the
leaves, each with its body.

A value gets a buffer (is a kernel root) when it is

* an output of the graph;
* a reduction, softmax, matmul or scatter_add (their own loop nests);
* used by two or more ops, unless it is a view (views are index maps:
  inlined into every reader, free) or a 0-d constant;
* needed in memory by its reader: a matmul operand that is not a buffer or
  a BLAS-compatible view of one, the array a ``take`` gathers from, a
  softmax's input, a value reshaped after a non-contiguous view.

So chains and DAGs of elementwise ops (with broadcasts, transposes and
slices as index maps) become one loop with no intermediate buffers
(elementwise fusion); elementwise producers of a reduction or softmax are
its prologue (reduction fusion); and an elementwise group whose only heavy
input is a reduction, softmax or matmul of the same shape, used nowhere
else, is that kernel's epilogue: bias add and activation after a GEMM,
``-mean`` after a sum (epilogue fusion).
"""

from __future__ import annotations

from graphc.ir import Graph, Node

from .layout import VIEW_OPS, blas_layout, kernel_kind, resolve_view

HEAVY_KINDS = ("reduce", "softmax", "matmul", "scatter_add")


def _resolvable(node: Node, roots: set, leaves: set):
    fake = {i: -1 for i in roots | leaves}
    return resolve_view(node, fake)


def choose_roots(graph: Graph) -> set[int]:
    """ids of the nodes that get a buffer (see the module docstring)."""
    users = graph.users()
    out_ids = {id(o) for o in graph.outputs}
    leaves = {id(n) for n in graph.nodes if n.is_leaf and not _inline_constant(n)}  # buffers
    roots: set[int] = set()
    for n in graph.nodes:
        if n.is_leaf:
            continue
        if id(n) in out_ids or kernel_kind(n) != "elementwise":
            roots.add(id(n))
        elif n.op not in VIEW_OPS and len({id(u) for u in users[id(n)]}) > 1:
            roots.add(id(n))
    changed = True
    while changed:
        changed = False
        for n in graph.nodes:
            need = []
            if n.op == "reshape":
                # a reshape is free over a contiguous buffer, or when it only adds or drops
                # size-1 dims; otherwise its input is computed into a (contiguous) buffer first
                if _resolvable(n, roots - {id(n)}, leaves) is None and not _unit_dims_only(n):
                    need.append(n.inputs[0])
            elif n.op == "matmul":
                for x in n.inputs:
                    v = _resolvable(x, roots, leaves)
                    if v is None or (x.dtype.is_float and blas_layout(v, x.shape) is None):
                        need.append(x)
            elif n.op == "take":
                if _resolvable(n.inputs[0], roots, leaves) is None:
                    need.append(n.inputs[0])
            elif n.op in ("softmax", "log_softmax"):
                if _resolvable(n.inputs[0], roots, leaves) is None:
                    need.append(n.inputs[0])
            for x in need:
                # a view that cannot be read in place is copied: the view itself becomes a root
                if not (x.is_leaf and not _inline_constant(x)) and id(x) not in roots:
                    roots.add(id(x))
                    changed = True
    return roots


def _unit_dims_only(n: Node) -> bool:
    """A reshape that only inserts or removes size-1 dims (an affine index map)."""
    return [s for s in n.inputs[0].shape if s != 1] == [s for s in n.shape if s != 1]


def _region(root: Node, roots: set[int]) -> tuple[list[Node], list[Node]]:
    """(nodes inlined into root's kernel in topological order, boundary inputs in first-use order)."""
    order: list[Node] = []
    inputs: list[Node] = []
    seen: set[int] = set()

    def visit(n: Node, top: bool):
        if id(n) in seen:
            return
        seen.add(id(n))
        if not top and (id(n) in roots or (n.is_leaf and not _inline_constant(n))):
            inputs.append(n)
            return
        for i in n.inputs:
            visit(i, False)
        order.append(n)
    visit(root, True)
    return order, inputs


def _inline_constant(n: Node) -> bool:
    """0-d constants go into kernel bodies as immediates."""
    return n.op == "constant" and n.type.shape == ()


def merge_epilogues(graph: Graph, roots: set[int]) -> dict[int, int]:
    """Heavy kernels absorbed by their elementwise consumer: {id(heavy): id(consumer root)}.

    Conditions: the heavy value is not an output, has one user, reaches the
    consumer root through elementwise (non-view) ops only, the root has its
    shape, and the root's kernel has no other heavy op.
    """
    users = graph.users()
    out_ids = {id(o) for o in graph.outputs}
    merged: dict[int, int] = {}
    taken: set[int] = set()
    for h in graph.nodes:
        if id(h) not in roots or kernel_kind(h) not in ("reduce", "softmax", "matmul") or id(h) in out_ids:
            continue
        if h.op in ("argmax", "argmin"):
            continue
        path = h
        ok = True
        while True:
            us = users[id(path)]
            if len(us) != 1:
                ok = False
                break
            u = us[0]
            if u.op in VIEW_OPS or kernel_kind(u) != "elementwise" or u.op in ("take", "concatenate", "stack",
                                                                              "pad", "one_hot"):
                ok = False
                break
            if u.shape != h.shape or u.dtype != h.dtype:  # the epilogue runs in place on h's buffer
                ok = False
                break
            path = u
            if id(u) in roots:
                break
        if not ok or id(path) in taken:
            continue
        merged[id(h)] = id(path)
        taken.add(id(path))
    return merged


def fuse(graph: Graph) -> Graph:
    """The graph as kernels: ``fused`` nodes over the leaves (see the module docstring)."""
    roots = choose_roots(graph)
    merged = merge_epilogues(graph, roots)
    roots -= set(merged)
    heavy_of = {c: h for h, c in merged.items()}
    by_id = {id(n): n for n in graph.nodes}
    new: dict[int, Node] = {}
    for n in graph.nodes:
        if n.is_leaf:
            new[id(n)] = n
            continue
        if id(n) not in roots:
            continue
        body_nodes, inputs = _region(n, roots)
        kind = kernel_kind(by_id[heavy_of[id(n)]]) if id(n) in heavy_of else kernel_kind(n)
        phs = [Node("placeholder", (), {}, x.type, loc=x.loc, name=f"in{k}") for k, x in enumerate(inputs)]
        clone: dict[int, Node] = {id(x): ph for x, ph in zip(inputs, phs)}
        for b in body_nodes:
            c = Node(b.op, [clone[id(i)] for i in b.inputs], b.attrs, b.type, loc=b.loc, value=b.value, name=b.name)
            c.origin = b.origin
            clone[id(b)] = c
        body = Graph(phs, [clone[id(n)]], name=f"{kind}_{n.op}")
        new[id(n)] = Node("fused", [new[id(x)] for x in inputs], {"kind": kind, "body": body}, n.type,
                          loc=n.loc)
        new[id(n)].origin = n.origin
    outputs = [new[id(o)] for o in graph.outputs]
    return Graph(graph.inputs, outputs, name=graph.name, output_names=graph.output_names)


def kernels(graph: Graph) -> list[Node]:
    """The ``fused`` nodes of a fused graph, in order."""
    return [n for n in graph.nodes if n.op == "fused"]


def heavy_node(body: Graph, kind: str) -> Node | None:
    """The reduction/softmax/matmul/scatter_add a kernel's body is built around (None: elementwise)."""
    if kind == "elementwise":
        return None
    found = [n for n in body.nodes if not n.is_leaf and kernel_kind(n) == kind]
    return found[-1] if found else None
