"""The op registry: every fact about an op lives in one record, an ``OpDef``.

An ``OpDef`` declares

* ``name``, ``kind`` (``leaf``, ``elementwise``, ``reduce``, ``matmul``,
  ``shape``, ``index``, ``nn``) and ``attrs`` (names with defaults);
* ``infer(*input_types, **attrs) -> TensorType``, which raises
  ``OpTypeError`` with a plain message for bad shapes, dtypes or axes (the
  caller turns it into a ``GraphError`` naming the op, operands and the
  user's line);
* ``normalize(input_types, attrs) -> attrs`` (optional): canonical attribute
  values, e.g. negative axes made positive, so that equal ops print equal;
* ``ref(xp, *arrays, **attrs)``: the reference implementation, written once
  against an array namespace (``graphc.xp``) so that it runs on numpy arrays
  and on object arrays of sympy symbols;
* ``differentiable``, and the fields later stages add in the same record:
  ``vjp`` / ``jvp`` (autodiff), ``scalar`` (a scalar sympy formula for
  elementwise ops, used by codegen and derived rules), ``flops`` (cost);
* ``api``, ``oracle`` and ``examples``: the user-facing function, an
  independent numpy implementation with the same signature, and sample
  arguments. Registry-parametrized tests use these three, so a new op is
  tested by adding its record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from ..dtypes import ALL_DTYPES, STORAGE_DTYPES, DType, float32
from ..errors import GraphError, user_location
from ..ir import Node, TensorType


class OpTypeError(Exception):
    """Raised by an op's ``infer``/``normalize`` with a message about its operands."""


@dataclass(frozen=True)
class Arg:
    """A sample array argument for registry tests: shape, dtype and value range.

    For uint8 the range is clipped at 0, and the default range (-3, 3) means the type's whole
    range 0-255 (where a signed reading of the bytes would show).
    """

    shape: tuple
    dtype: DType
    low: float = -3.0
    high: float = 3.0
    integer_values: bool = False  # draw integral values (for ops whose result would be ill-conditioned)

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        d = self.dtype
        if d.is_bool:
            return rng.random(self.shape) < 0.5
        if d.is_unsigned:
            if (self.low, self.high) == (-3.0, 3.0):  # the defaults: its whole range (128+ shows a signed reading)
                return rng.integers(0, np.iinfo(d.np_dtype).max + 1, size=self.shape).astype(d.np_dtype)
            return rng.integers(max(int(self.low), 0), int(self.high) + 1, size=self.shape).astype(d.np_dtype)
        if d.is_int:
            return rng.integers(int(self.low), int(self.high) + 1, size=self.shape).astype(d.np_dtype)
        x = rng.uniform(self.low, self.high, size=self.shape)
        if self.integer_values:
            x = np.round(x)
        return x.astype(d.np_dtype)


@dataclass(frozen=True)
class Example:
    """One call of an op's API function in registry tests: ``api(*args, **kwargs)``.

    Each ``Arg`` in ``args`` becomes a placeholder fed with random data;
    other values are passed as they are (Python scalars, axes...).
    """

    args: tuple
    kwargs: dict = field(default_factory=dict)
    rtol: float | None = None


@dataclass(eq=False)
class OpDef:
    """Everything graphc knows about one op (see the module docstring)."""

    name: str
    kind: str
    infer: Callable[..., TensorType]
    ref: Callable[..., Any] | None
    nin: int | None = 1  # None: variadic
    attrs: dict = field(default_factory=dict)
    normalize: Callable[[Sequence[TensorType], dict], dict] | None = None
    differentiable: bool = True
    doc: str = ""
    # autodiff (filled by the autodiff issue): vjp(g, *inputs, out, **attrs) -> input cotangents
    vjp: Callable | None = None
    jvp: Callable | None = None
    # elementwise scalar formula in sympy, f(*symbols) -> expr (codegen, derived rules)
    scalar: Callable | None = None
    # cost: flops(*input_types, out_type, **attrs) -> int; default by kind
    flops: Callable | None = None
    # testing: user API, independent numpy oracle with the same signature, sample calls
    api: Callable | None = None
    oracle: Callable | None = None
    examples: Sequence[Example] = ()
    # build-time check of constant operands: check(*input_nodes, **attrs) raises OpTypeError
    # for values that are wrong whatever is fed (e.g. a constant take index out of range)
    check_constants: Callable | None = None

    def infer_type(self, types: Sequence[TensorType], attrs: dict) -> TensorType:
        """Check arity and attributes, then run ``infer``; raises OpTypeError."""
        if self.nin is not None and len(types) != self.nin:
            raise OpTypeError(f"takes {self.nin} input(s), got {len(types)}")
        if self.nin is None and not types and self.kind != "fused":
            raise OpTypeError("takes at least one input")
        unknown = set(attrs) - set(self.attrs)
        if unknown:
            raise OpTypeError(f"unknown attribute(s) {sorted(unknown)}; "
                              f"{self.name} takes {sorted(self.attrs) or 'none'}")
        return self.infer(*types, **attrs)

    def cost(self, node: Node) -> tuple[int, int]:
        """(flops, bytes moved) of one node: a default by kind unless ``flops`` is given."""
        ins = [i.type for i in node.inputs]
        nbytes = sum(t.nbytes for t in ins) + node.type.nbytes
        if self.flops is not None:
            return int(self.flops(*ins, node.type, **node.attrs)), nbytes
        if self.kind in ("shape", "leaf", "index"):
            return 0, nbytes
        if self.kind == "reduce" or self.kind == "nn":
            return sum(t.size for t in ins), nbytes
        return node.type.size, nbytes

    def __repr__(self) -> str:
        return f"<OpDef {self.name} ({self.kind})>"


_REGISTRY: dict[str, OpDef] = {}


def register(op: OpDef) -> OpDef:
    """Add an op to the registry; its name must be new."""
    if op.name in _REGISTRY:
        raise ValueError(f"op {op.name!r} is already registered")
    _REGISTRY[op.name] = op
    return op


def unregister(name: str) -> None:
    """Remove an op (for tests and user-defined ops being redefined)."""
    _REGISTRY.pop(name, None)


def get_op(name: str) -> OpDef:
    """The OpDef called ``name``; KeyError if there is none."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"no op named {name!r} is registered") from None


def all_ops() -> list[OpDef]:
    """Every registered op, sorted by name."""
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def make_node(op_name: str, inputs: Sequence[Node], attrs: dict | None = None,
              loc: str | None = None) -> Node:
    """Create a node, inferring its type; bad operands raise GraphError.

    Missing attributes take their defaults, so every node carries all of its
    op's attributes explicitly (the printed IR is unambiguous).
    """
    op = get_op(op_name)
    if loc is None:
        loc = user_location()
    types = [i.type for i in inputs]
    full = dict(op.attrs)
    full.update(attrs or {})
    try:
        if op.normalize is not None:
            full = op.normalize(types, full)
        out_type = op.infer_type(types, full)
        if op.check_constants is not None and any(i.op == "constant" for i in inputs):
            op.check_constants(*inputs, **full)
    except OpTypeError as e:
        raise GraphError(op_name, str(e), operands=types, location=loc) from None
    return Node(op_name, inputs, full, out_type, loc=loc)


# ---------------------------------------------------------------- helpers for op files

def require_dtypes(op: str, t: TensorType, allowed: Sequence[DType], what: str = "operand") -> None:
    """Raise OpTypeError unless ``t.dtype`` is one of ``allowed``."""
    if t.dtype not in allowed:
        names = ", ".join(d.name for d in allowed)
        raise OpTypeError(f"{what} dtype {t.dtype.name} is not supported (expected {names})"
                          + storage_hint(t.dtype, allowed[0]))


def storage_hint(dtype: DType, to: DType | None = None) -> str:
    """The advice added to a dtype error about a storage type (uint8): convert before computing
    (to ``to``: the first type the op takes, e.g. int32 for indices; float32 by default)."""
    if dtype in STORAGE_DTYPES:
        return f"; {dtype.name} is a storage type: convert it first, e.g. x.astype(graphc.{(to or float32).name})"
    return ""


def normalize_axis(axis: int, ndim: int) -> int:
    """A possibly negative axis as an index in ``range(ndim)``; OpTypeError if out of range."""
    if not isinstance(axis, (int, np.integer)) or isinstance(axis, bool):
        raise OpTypeError(f"axis must be an int, got {axis!r}")
    if not -ndim <= axis < ndim:
        raise OpTypeError(f"axis {axis} is out of range for rank {ndim}")
    return int(axis) % ndim if ndim else 0


def normalize_axes(axes, ndim: int) -> tuple:
    """``None`` (all axes), an int or a sequence, as a sorted tuple of distinct axes."""
    if axes is None:
        return tuple(range(ndim))
    if isinstance(axes, (int, np.integer)):
        axes = (axes,)
    out = tuple(sorted(normalize_axis(a, ndim) for a in axes))
    if len(set(out)) != len(out):
        raise OpTypeError(f"repeated axis in {tuple(axes)}")
    return out


def same_types(types: Sequence[TensorType]) -> None:
    """IR elementwise ops take equal shapes and dtypes (the API inserts broadcasts and casts)."""
    first = types[0]
    for t in types[1:]:
        if t.shape != first.shape:
            raise OpTypeError(f"shapes {first} and {t} differ (IR elementwise ops take equal shapes)")
        if t.dtype != first.dtype:
            raise OpTypeError(f"dtypes {first.dtype.name} and {t.dtype.name} differ")


ANY_DTYPE = ALL_DTYPES + STORAGE_DTYPES  # what shape and indexing ops move
