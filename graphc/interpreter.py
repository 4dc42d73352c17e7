"""The reference interpreter: runs any graph with numpy, one op at a time.

It is the oracle of every later stage (passes, codegen): each node's value
is its op's ``ref`` applied to its inputs' values. Floating-point exceptions
follow IEEE (inf/nan, no warnings). With ``xp=sympy_namespace()`` the same
loop evaluates a graph symbolically (object arrays of sympy expressions).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from .errors import InputError
from .ir import Graph, Node
from .ops.registry import get_op
from .xp import numpy_ns


def _as_input_array(node: Node, value, position: int) -> np.ndarray:
    """Check one fed value against its placeholder; converts Python data and safe dtype changes."""
    t = node.type
    target = t.dtype.np_dtype
    label = f"input {position} ({node.name!r}, expected {t})"
    if isinstance(value, np.ndarray):
        arr = value
        if arr.dtype != target:
            if not np.can_cast(arr.dtype, target, casting="same_kind"):
                raise InputError(f"{label}: got dtype {arr.dtype}, which does not convert safely to {t.dtype.name}")
            arr = arr.astype(target)
    else:
        try:
            arr = np.asarray(value, dtype=target)
        except (TypeError, ValueError) as e:
            raise InputError(f"{label}: cannot convert {type(value).__name__} to {t.dtype.name}: {e}") from None
    if arr.shape != t.shape:
        raise InputError(f"{label}: got shape {arr.shape}")
    return arr


def run_graph(graph: Graph, inputs: Sequence | Mapping = (), params: Mapping | None = None,
              xp=numpy_ns, check_types: bool | None = None, visit=None) -> list:
    """Evaluate ``graph``; returns its outputs in order.

    ``visit(node, value, args)``, if given, sees every computed value as it is
    made and returns the value to keep (diagnostics, perturbation studies).

    ``inputs``: values in ``graph.inputs`` order, or a mapping from input name
    (or placeholder node) to value. ``params``: values by parameter name that
    replace the parameters' initial values. ``xp``: the array namespace.
    """
    symbolic = getattr(xp, "symbolic", False)
    check = (not symbolic) if check_types is None else check_types
    if isinstance(inputs, Mapping):
        by_key = dict(inputs)
        values = []
        for n in graph.inputs:
            if n in by_key:
                values.append(by_key.pop(n))
            elif n.name in by_key:
                values.append(by_key.pop(n.name))
            else:
                raise InputError(f"no value fed for input {n.name!r} ({n.type})")
        if by_key:
            extra = [getattr(k, "name", k) for k in by_key]
            raise InputError(f"fed values for unknown inputs {extra}; graph inputs are "
                             f"{[n.name for n in graph.inputs]}")
    else:
        values = list(inputs)
        if len(values) != len(graph.inputs):
            raise InputError(f"graph {graph.name!r} takes {len(graph.inputs)} inputs "
                             f"{[n.name for n in graph.inputs]}, got {len(values)}")
    env: dict[int, object] = {}
    for i, (n, v) in enumerate(zip(graph.inputs, values)):
        env[id(n)] = _as_input_array(n, v, i) if not symbolic else v
    params = dict(params or {})

    # free each intermediate after its last use
    last_use: dict[int, int] = {}
    for i, n in enumerate(graph.nodes):
        for x in n.inputs:
            last_use[id(x)] = i
    keep = {id(o) for o in graph.outputs}

    with np.errstate(all="ignore"):
        for i, n in enumerate(graph.nodes):
            if n.op == "placeholder":
                if id(n) not in env:
                    raise InputError(f"placeholder {n.name!r} is not an input of graph {graph.name!r}")
                continue
            if n.op == "parameter":
                env[id(n)] = params.get(n.name, n.value)
                continue
            if n.op == "constant":
                env[id(n)] = n.value
                continue
            args = [env[id(x)] for x in n.inputs]
            out = get_op(n.op).ref(xp, *args, **n.attrs)
            if symbolic:
                out = np.asarray(out, dtype=object)
            else:
                out = np.asarray(out)
            if check and (out.shape != n.type.shape or out.dtype != n.type.dtype.np_dtype):
                raise AssertionError(f"reference of {n.op} returned {out.dtype}{list(out.shape)} "
                                     f"but the node's type is {n.type} (at {n.loc})")
            if visit is not None:
                out = visit(n, out, args)
            env[id(n)] = out
            for x in n.inputs:
                if last_use.get(id(x)) == i and id(x) not in keep and not x.is_leaf:
                    env.pop(id(x), None)
    return [env[id(o)] for o in graph.outputs]


def evaluate(outputs, feed: Mapping | None = None, params: Mapping | None = None):
    """Compute tensors with the reference interpreter.

    ``outputs``: a Tensor, a list/tuple of Tensors, or a Graph. ``feed`` maps
    placeholders (Tensors or their names) to arrays. Returns one numpy array
    for one Tensor, otherwise a list.

    >>> x = gc.placeholder((3,), name="x")
    >>> gc.evaluate(gc.exp(x) + 1, {x: np.zeros(3, np.float32)})
    array([2., 2., 2.], dtype=float32)
    """
    from .tensor import Tensor
    feed = dict(feed or {})
    if isinstance(outputs, Graph):
        return run_graph(outputs, {getattr(k, "node", k): v for k, v in feed.items()}, params)
    single = isinstance(outputs, Tensor)
    outs = [outputs] if single else list(outputs)
    for o in outs:
        if not isinstance(o, Tensor):
            raise TypeError(f"evaluate() takes graph Tensors, got {type(o).__name__}")
    graph = Graph.from_outputs([o.node for o in outs])
    keyed = {}
    for k, v in feed.items():
        keyed[k.node if isinstance(k, Tensor) else k] = v
    # feeding an unused placeholder is allowed: ignore it
    used = {id(n) for n in graph.inputs} | {n.name for n in graph.inputs}
    keyed = {k: v for k, v in keyed.items() if (id(k) if isinstance(k, Node) else k) in used}
    result = run_graph(graph, keyed, params)
    return result[0] if single else result


class _FirstNaN(Exception):
    def __init__(self, node, args, out):
        self.node, self.args, self.out = node, args, out


def first_nan(graph: Graph, inputs, params: Mapping | None = None):
    """The first node (in execution order) whose value has a NaN although none of its inputs has,
    or None. For diagnosing where a NaN comes from: ``(node, message)``."""
    from .errors import short_location

    def has_nan(a):
        a = np.asarray(a)
        return a.dtype.kind == "f" and bool(np.isnan(a).any())

    def visit(node, out, args):
        if has_nan(out) and not any(has_nan(a) for a in args):
            raise _FirstNaN(node, args, out)
        return out
    try:
        run_graph(graph, list(inputs), params, visit=visit)
    except _FirstNaN as found:
        n, out = found.node, found.out
        where = np.argwhere(np.isnan(out))[0].tolist() if out.ndim else []
        types = ", ".join(str(x.type) for x in n.inputs)
        return n, (f"{n.op} produced the first NaN (at index {where}) from inputs without NaN "
                   f"[{types}] (at {short_location(n.loc) or n.loc})")
    return None
