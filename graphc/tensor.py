"""The user-facing ``Tensor`` and the leaves of a graph: placeholders, parameters, constants.

A ``Tensor`` is a handle on one IR node. Building expressions with tensors
(``x @ w + b``, ``gc.exp(x)``) adds nodes; nothing is computed until the
graph is evaluated or compiled. The API follows numpy: broadcasting (with
explicit ``broadcast_to`` nodes in the IR), dtype promotion (explicit
``cast`` nodes), Python scalars as weak operands.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .dtypes import DType, as_dtype, float32
from .errors import GraphError, user_location
from .ir import Node, TensorType
from .ops.registry import make_node


class Tensor:
    """A symbolic array: the value of one node of a graph under construction."""

    __slots__ = ("node",)
    __array_priority__ = 1000  # numpy defers to our operators: np.ones(3) + t -> Tensor

    def __init__(self, node: Node):
        self.node = node

    # ----- static facts
    @property
    def shape(self) -> tuple:
        return self.node.type.shape

    @property
    def dtype(self) -> DType:
        return self.node.type.dtype

    @property
    def ndim(self) -> int:
        return len(self.node.type.shape)

    @property
    def size(self) -> int:
        return self.node.type.size

    @property
    def type(self) -> TensorType:
        return self.node.type

    @property
    def name(self) -> str | None:
        return self.node.name

    @property
    def op(self) -> str:
        return self.node.op

    @property
    def value(self) -> np.ndarray | None:
        """The current value of a parameter or constant (None for computed tensors).

        A parameter's array is live state: compiled steps update it in place, and
        the interpreter and every compiled function read it. Assign into it
        (``w.value[...] = new``) rather than replacing it.
        """
        return self.node.value

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    def __repr__(self) -> str:
        what = f"{self.op} {self.name!r}" if self.name else self.op
        return f"Tensor({self.type}, {what})"

    def __bool__(self):
        raise TypeError("a graph Tensor has no truth value while the graph is being built; "
                        "use gc.where(...) for data-dependent choices")

    def __iter__(self):
        raise TypeError("a graph Tensor cannot be iterated; index it (x[i]) instead")

    def __hash__(self):
        return id(self)

    # ----- operators (numpy semantics); implemented by the op modules
    def __add__(self, o): return _ops().add(self, o)
    def __radd__(self, o): return _ops().add(o, self)
    def __sub__(self, o): return _ops().subtract(self, o)
    def __rsub__(self, o): return _ops().subtract(o, self)
    def __mul__(self, o): return _ops().multiply(self, o)
    def __rmul__(self, o): return _ops().multiply(o, self)
    def __truediv__(self, o): return _ops().divide(self, o)
    def __rtruediv__(self, o): return _ops().divide(o, self)
    def __pow__(self, o): return _ops().power(self, o)
    def __rpow__(self, o): return _ops().power(o, self)
    def __matmul__(self, o): return _ops().matmul(self, o)
    def __rmatmul__(self, o): return _ops().matmul(o, self)
    def __neg__(self): return _ops().negative(self)
    def __pos__(self): return self
    def __abs__(self): return _ops().abs(self)
    # ~, &, | are numpy's bitwise ops; graphc has them for bool only (where they are logical)
    def __invert__(self): return _ops().logical_not(_bool_operand("~", self))
    def __and__(self, o): return _ops().logical_and(_bool_operand("&", self, o), o)
    def __rand__(self, o): return _ops().logical_and(o, _bool_operand("&", self, o))
    def __or__(self, o): return _ops().logical_or(_bool_operand("|", self, o), o)
    def __ror__(self, o): return _ops().logical_or(o, _bool_operand("|", self, o))
    def __eq__(self, o): return _ops().equal(self, o)  # noqa: a graph op, as in numpy
    def __ne__(self, o): return _ops().not_equal(self, o)
    def __lt__(self, o): return _ops().less(self, o)
    def __le__(self, o): return _ops().less_equal(self, o)
    def __gt__(self, o): return _ops().greater(self, o)
    def __ge__(self, o): return _ops().greater_equal(self, o)

    def __getitem__(self, index): return _ops().getitem(self, index)

    # ----- numpy-style methods
    @property
    def T(self) -> "Tensor":
        return _ops().transpose(self)

    def transpose(self, *axes): return _ops().transpose(self, axes[0] if len(axes) == 1 else (axes or None))
    def reshape(self, *shape): return _ops().reshape(self, shape[0] if len(shape) == 1 else shape)
    def astype(self, dtype): return _ops().cast(self, dtype)
    def sum(self, axis=None, keepdims=False): return _ops().sum(self, axis=axis, keepdims=keepdims)
    def mean(self, axis=None, keepdims=False): return _ops().mean(self, axis=axis, keepdims=keepdims)
    def max(self, axis=None, keepdims=False): return _ops().max(self, axis=axis, keepdims=keepdims)
    def min(self, axis=None, keepdims=False): return _ops().min(self, axis=axis, keepdims=keepdims)
    def prod(self, axis=None, keepdims=False): return _ops().prod(self, axis=axis, keepdims=keepdims)
    def argmax(self, axis=None, keepdims=False): return _ops().argmax(self, axis=axis, keepdims=keepdims)
    def argmin(self, axis=None, keepdims=False): return _ops().argmin(self, axis=axis, keepdims=keepdims)
    def flatten(self): return _ops().reshape(self, (-1,))


def _bool_operand(symbol: str, t: "Tensor", other=None) -> "Tensor":
    """``t`` if ``t`` (and a tensor ``other``) are bool; otherwise the GraphError for ``symbol``:
    on integers numpy's ``~ & |`` are bitwise, which graphc does not have."""
    for x in (t, other):
        if isinstance(x, Tensor) and not x.dtype.is_bool:
            operands = [y.type for y in (t, other) if isinstance(y, Tensor)]
            raise GraphError(symbol, f"bitwise {symbol} on {x.dtype.name} is not supported (graphc has "
                                     f"{symbol} for bool only, as logical not/and/or)", operands=operands)
    return t


def _ops():
    """The public op functions (imported lazily: the op modules import this one)."""
    import graphc
    return graphc


# ---------------------------------------------------------------- leaves

def _check_shape(shape, what: str) -> tuple:
    if isinstance(shape, (int, np.integer)):
        shape = (shape,)
    try:
        shape = tuple(shape)
    except TypeError:
        raise GraphError(what, f"shape must be a tuple of ints, got {shape!r}") from None
    for s in shape:
        if not isinstance(s, (int, np.integer)) or isinstance(s, bool) or s < 0:
            raise GraphError(what, f"shape must be a tuple of non-negative ints, got {shape!r}")
    return tuple(int(s) for s in shape)


def placeholder(shape, dtype=float32, name: str | None = None) -> Tensor:
    """A graph input of a fixed ``shape`` and ``dtype``, fed at evaluation by tensor or ``name``."""
    shape = _check_shape(shape, "placeholder")
    node = Node("placeholder", (), {}, TensorType(shape, as_dtype(dtype)), loc=user_location())
    node.name = name if name is not None else f"input{node.serial}"
    return Tensor(node)


def parameter(value, name: str | None = None, dtype=None) -> Tensor:
    """A trainable array with an initial ``value`` (copied); numpy's dtype unless ``dtype`` is given."""
    arr = np.array(value, dtype=None if dtype is None else as_dtype(dtype).np_dtype, copy=True, order="C")
    try:
        t = TensorType(arr.shape, as_dtype(arr.dtype))
    except TypeError as e:
        raise GraphError("parameter", str(e)) from None
    node = Node("parameter", (), {}, t, loc=user_location(), value=arr)
    node.name = name if name is not None else f"param{node.serial}"
    return Tensor(node)


def constant(value, dtype=None) -> Tensor:
    """A constant array (copied and made read-only); numpy's dtype unless ``dtype`` is given."""
    if isinstance(value, Tensor):
        raise GraphError("constant", "value is already a graph Tensor")
    arr = np.array(value, dtype=None if dtype is None else as_dtype(dtype).np_dtype, copy=True, order="C")
    try:
        t = TensorType(arr.shape, as_dtype(arr.dtype))
    except TypeError as e:
        raise GraphError("constant", str(e)) from None
    arr.flags.writeable = False
    return Tensor(Node("constant", (), {}, t, loc=user_location(), value=arr))


def as_tensor(x, dtype=None) -> Tensor:
    """A Tensor as it is, anything array-like as a constant (of ``dtype`` if given)."""
    if isinstance(x, Tensor):
        return x
    return constant(x, dtype=dtype)


def as_tensors(xs: Sequence) -> list[Tensor]:
    return [as_tensor(x) for x in xs]


def node_op(op_name: str, inputs: Sequence[Tensor], **attrs) -> Tensor:
    """Add one node ``op_name(*inputs, **attrs)`` and return its Tensor."""
    return Tensor(make_node(op_name, [t.node for t in inputs], attrs))
