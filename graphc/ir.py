"""The graph IR: a typed SSA graph of nodes, one value per node.

* ``TensorType``: a static shape (tuple of ints) and a ``DType``.
* ``Node``: op name, input nodes, attributes, output type, and the user's
  ``file:line``. Leaves are nodes too: ``placeholder`` (a graph input, named),
  ``parameter`` (named, with an initial numpy value) and ``constant`` (a numpy
  value).
* ``Graph``: inputs (placeholders), parameters, constants, all nodes in
  topological order, and outputs. ``verify()`` checks well-formedness: every
  node's inputs come before it and its type is what its op infers.

Nodes are immutable by convention; passes build new graphs.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from .dtypes import DType, as_dtype
from .errors import GraphVerificationError

LEAF_OPS = ("placeholder", "parameter", "constant")

_serial = itertools.count()
_ORIGIN: list[str] = []


class created_by:
    """Context manager: nodes created inside record ``origin`` (e.g. "autodiff")."""

    def __init__(self, origin: str):
        self.origin = origin

    def __enter__(self):
        _ORIGIN.append(self.origin)
        return self

    def __exit__(self, *exc):
        _ORIGIN.pop()
        return False


@dataclass(frozen=True)
class TensorType:
    """Static type of a value: ``shape`` (tuple of non-negative ints) and ``dtype``."""

    shape: tuple
    dtype: DType

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        object.__setattr__(self, "dtype", as_dtype(self.dtype))

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return math.prod(self.shape)  # Python ints: exact, and 30x faster than np.prod on a tuple

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    def __str__(self) -> str:
        return f"{self.dtype.short}[{','.join(str(s) for s in self.shape)}]"


def freeze_attr(v):
    """Attributes are stored hashable: lists become tuples, numpy scalars Python scalars."""
    if isinstance(v, (list, tuple)):
        return tuple(freeze_attr(x) for x in v)
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.dtype):
        return as_dtype(v)
    return v


VALUE_EPOCH = np.zeros(1, np.int64)  # changed by every ``Node.value`` assignment (see codegen.dispatch)
_epochs = itertools.count(1)


class Node:
    """One SSA value: ``type = op(*inputs, **attrs)``, created at ``loc``.

    ``value`` holds the numpy array of a ``parameter`` (its initial value) or
    ``constant``; ``name`` the user's name of a placeholder or parameter.
    """

    __slots__ = ("op", "inputs", "attrs", "type", "loc", "_value", "name", "serial", "origin", "__weakref__")

    def __init__(self, op: str, inputs: Sequence["Node"], attrs: dict, type: TensorType,
                 loc: str | None = None, value: np.ndarray | None = None, name: str | None = None):
        self.op = op
        self.inputs = tuple(inputs)
        self.attrs = {k: freeze_attr(v) for k, v in attrs.items()}
        self.type = type
        self.loc = loc
        self._value = value  # a new node is in no compiled function yet: no epoch bump
        self.name = name
        self.serial = next(_serial)
        # which stage made the node: None (the user's code) or "autodiff" (a derivative rule)
        self.origin = _ORIGIN[-1] if _ORIGIN else None

    @property
    def value(self) -> np.ndarray | None:
        return self._value

    @value.setter
    def value(self, array: np.ndarray | None) -> None:
        # compiled functions keep the data addresses of parameter arrays; re-binding one
        # (``node.value = new_array``) bumps VALUE_EPOCH so that they look them up again
        self._value = array
        VALUE_EPOCH[0] = next(_epochs)  # a fresh value even if two threads re-bind at once

    @property
    def shape(self) -> tuple:
        return self.type.shape

    @property
    def dtype(self) -> DType:
        return self.type.dtype

    @property
    def is_leaf(self) -> bool:
        return self.op in LEAF_OPS

    def attrs_key(self) -> tuple:
        """A hashable, order-independent form of the attributes (for CSE and caching)."""
        return tuple(sorted(self.attrs.items()))

    def __repr__(self) -> str:
        label = f" {self.name!r}" if self.name else ""
        return f"<Node {self.op}{label}: {self.type}>"


def topological_order(outputs: Iterable[Node], extra: Iterable[Node] = ()) -> list[Node]:
    """All nodes reachable from ``outputs`` (and ``extra``), each after its inputs.

    Depth-first post-order, visiting inputs left to right: deterministic, and
    close to the order in which a user wrote the code.
    """
    order: list[Node] = []
    seen: set[int] = set()
    for root in itertools.chain(extra, outputs):
        if id(root) in seen:
            continue
        stack = [(root, iter(root.inputs))]
        seen.add(id(root))
        while stack:
            node, it = stack[-1]
            for child in it:
                if id(child) not in seen:
                    seen.add(id(child))
                    stack.append((child, iter(child.inputs)))
                    break
            else:
                stack.pop()
                order.append(node)
    return order


class Graph:
    """A computation: placeholders in, outputs out, with parameters and constants.

    ``nodes`` lists every node in topological order (leaves included);
    ``inputs`` gives the order in which placeholders are fed; ``outputs`` may
    repeat a node or name a leaf.
    """

    def __init__(self, inputs: Sequence[Node], outputs: Sequence[Node], name: str = "graph",
                 output_names: Sequence[str] | None = None):
        self.name = name
        self.inputs = list(inputs)
        self.outputs = list(outputs)
        self.output_names = list(output_names) if output_names is not None else None
        self.nodes = topological_order(self.outputs, extra=self.inputs)

    @classmethod
    def from_outputs(cls, outputs: Sequence[Node], inputs: Sequence[Node] | None = None,
                     name: str = "graph", output_names=None) -> "Graph":
        """The graph computing ``outputs``; inputs default to every reachable placeholder
        in creation order."""
        if inputs is None:
            reachable = topological_order(outputs)
            inputs = sorted((n for n in reachable if n.op == "placeholder"), key=lambda n: n.serial)
        return cls(inputs, outputs, name=name, output_names=output_names)

    @property
    def parameters(self) -> list[Node]:
        return [n for n in self.nodes if n.op == "parameter"]

    @property
    def constants(self) -> list[Node]:
        return [n for n in self.nodes if n.op == "constant"]

    @property
    def ops(self) -> list[Node]:
        """The non-leaf nodes, in topological order."""
        return [n for n in self.nodes if not n.is_leaf]

    def param_values(self) -> dict[str, np.ndarray]:
        """Initial values of the parameters, by name."""
        return {n.name: n.value for n in self.parameters}

    def users(self) -> dict[int, list[Node]]:
        """For each node (by ``id``), the nodes that use it, in topological order."""
        users: dict[int, list[Node]] = {id(n): [] for n in self.nodes}
        for n in self.nodes:
            for i in n.inputs:
                users[id(i)].append(n)
        return users

    def verify(self) -> "Graph":
        """Check well-formedness; raise GraphVerificationError naming the bad node.

        Checks: inputs are distinct, named placeholders; parameter names are
        unique; every node's inputs precede it; each node's type is what its
        op infers from its inputs' types and attributes; leaf values match
        their types; every output is in the graph.
        """
        from .ops.registry import get_op, OpTypeError  # the registry imports this module

        def fail(node, msg):
            where = f" (created at {node.loc})" if node is not None and node.loc else ""
            raise GraphVerificationError(f"graph {self.name!r}: {msg}{where}")

        position = {id(n): i for i, n in enumerate(self.nodes)}
        names = set()
        for n in self.inputs:
            if n.op != "placeholder":
                fail(n, f"input {n!r} is not a placeholder")
            if n.name in names:
                fail(n, f"two inputs are named {n.name!r}")
            names.add(n.name)
        input_ids = {id(n) for n in self.inputs}
        param_names = set()
        for i, n in enumerate(self.nodes):
            if n.op == "placeholder" and id(n) not in input_ids:
                fail(n, f"placeholder {n.name!r} is used but is not an input of the graph")
            if n.op == "parameter":
                if n.name in param_names:
                    fail(n, f"two parameters are named {n.name!r}")
                param_names.add(n.name)
            if n.op in ("parameter", "constant"):
                v = n.value
                if not isinstance(v, np.ndarray) or v.shape != n.type.shape \
                        or v.dtype != n.type.dtype.np_dtype:
                    fail(n, f"{n.op} value does not match its type {n.type}")
            for x in n.inputs:
                if id(x) not in position or position[id(x)] >= i:
                    fail(n, f"{n.op}: an input is not computed before its use")
            try:
                op = get_op(n.op)
            except KeyError:
                fail(n, f"unknown op {n.op!r}")
            if n.is_leaf:
                continue
            try:
                expected = op.infer_type([x.type for x in n.inputs], n.attrs)
            except OpTypeError as e:
                fail(n, f"{n.op}: {e}")
            if expected != n.type:
                fail(n, f"{n.op}: recorded type {n.type} but inputs give {expected}")
        for o in self.outputs:
            if id(o) not in position:
                fail(o, f"output {o!r} is not in the graph")
        return self

    def __str__(self) -> str:
        from .printer import format_graph
        return format_graph(self)

    def __repr__(self) -> str:
        return (f"<Graph {self.name!r}: {len(self.inputs)} inputs, {len(self.parameters)} parameters, "
                f"{len(self.ops)} ops, {len(self.outputs)} outputs>")
