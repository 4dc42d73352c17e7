"""User-defined ops: with your own derivative rule, or elementwise from a sympy formula.

* ``define_op(name, infer, ref, vjp=...)`` registers an op record of your own
  (the same ``OpDef`` the built-in ops use) and returns its user function.
* ``elementwise_op(name, formula)`` takes a scalar formula in sympy, e.g.
  ``lambda x: x / (1 + sympy.exp(-x))``. The reference implementation is the
  formula (lambdified for numpy, substituted for sympy), the record keeps the
  formula for codegen, and the derivative rule is DERIVED: for each input i,
  ``∂f/∂x_i`` is itself registered as an elementwise op (on first use), so
  gradients of gradients work too.
"""

from __future__ import annotations

import inspect
import re
from typing import Callable

import numpy as np

from .dtypes import FLOAT_DTYPES, float64
from .ops.elementwise import _np, _operands
from .ops.examples import FLOATS, binary_examples, unary_examples
from .ops.registry import OpDef, get_op, register, require_dtypes, same_types, unregister
from .tensor import as_tensor, node_op

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _check_name(name: str, replace: bool):
    if not _NAME.match(name):
        raise ValueError(f"op name {name!r} must be an identifier")
    try:
        get_op(name)
    except KeyError:
        return
    if not replace:
        raise ValueError(f"an op named {name!r} is already registered (pass replace=True to redefine it)")
    unregister(name)


def define_op(name: str, infer: Callable, ref: Callable, vjp: Callable | None = None, *, nin: int = 1,
              attrs: dict | None = None, kind: str = "elementwise", doc: str = "", replace: bool = False,
              differentiable: bool | None = None):
    """Register an op with your own ``infer(*types, **attrs)``, ``ref(xp, *arrays, **attrs)`` and
    ``vjp(g, *inputs, out, **attrs)``; returns ``fn(*tensors, **attrs)``.

    ``vjp`` builds its result from graph functions (``gc.exp``, ``*``...), so
    the backward graph stays an ordinary graph.
    """
    _check_name(name, replace)

    def api(*xs, **kw):
        return node_op(name, [as_tensor(x) for x in xs], **kw)

    api.__name__ = name
    api.__doc__ = doc
    register(OpDef(name, kind, infer, ref, nin=nin, attrs=dict(attrs or {}), vjp=vjp, doc=doc or name,
                   differentiable=vjp is not None if differentiable is None else differentiable, api=api))
    return api


def elementwise_op(name: str, formula: Callable, *, replace: bool = False, doc: str = ""):
    """An elementwise float op from a scalar sympy ``formula(x0, x1, ...)``; its VJP is derived.

    >>> swish = gc.elementwise_op("swish", lambda x: x / (1 + sympy.exp(-x)))
    >>> y = swish(x)            # numpy broadcasting; gc.grad(y.sum(), x) just works
    """
    import sympy
    nin = len(inspect.signature(formula).parameters)
    symbols = sympy.symbols(f"x0:{nin}", real=True)
    expr = sympy.sympify(formula(*symbols))
    return _elementwise_from_expr(name, symbols, expr, replace=replace, doc=doc)


def _elementwise_from_expr(name, symbols, expr, *, replace=False, doc=""):
    import sympy
    _check_name(name, replace)
    nin = len(symbols)
    numeric = sympy.lambdify(symbols, expr, modules="numpy")
    lam = sympy.Lambda(symbols, expr)
    symbolic = np.frompyfunc(lambda *v: lam(*v), nin, 1)

    def ref(xp, *arrays):
        if getattr(xp, "symbolic", False):
            return np.asarray(symbolic(*arrays), dtype=object)
        out = numeric(*arrays)
        return np.broadcast_to(np.asarray(out), np.shape(arrays[0])).astype(arrays[0].dtype)

    def infer(*types):
        same_types(types)
        require_dtypes(name, types[0], FLOAT_DTYPES)
        return types[0]

    derivative_ops: dict[int, Callable] = {}

    def derivative(i):
        """∂f/∂x_i as an elementwise op of its own (registered on first use)."""
        if i not in derivative_ops:
            d_expr = sympy.diff(expr, symbols[i])  # as derived: simplify may trade stability for brevity
            d_name = f"{name}_d{i}"
            try:
                derivative_ops[i] = get_op(d_name).api
            except KeyError:
                derivative_ops[i] = _elementwise_from_expr(d_name, symbols, d_expr,
                                                           doc=f"∂{name}/∂x{i} = {d_expr}")
        return derivative_ops[i]

    def vjp(g, *xs_out):
        xs = xs_out[:-1]
        return tuple(g * derivative(i)(*xs) for i in range(nin))

    def api(*xs):
        if len(xs) != nin:
            raise TypeError(f"{name} takes {nin} argument(s), got {len(xs)}")
        xs = _operands(name, list(xs), allowed=FLOAT_DTYPES, promote_int_to=float64)
        return node_op(name, xs)

    def oracle(*arrays):
        arrays = [np.asarray(a, dtype=np.result_type(*arrays, np.float32) if not any(
            np.asarray(a).dtype.kind == "f" for a in arrays) else None) for a in arrays]
        out = numeric(*arrays)
        shape = np.broadcast_shapes(*(np.shape(a) for a in arrays))
        dtype = np.result_type(*[a.dtype for a in arrays])
        dtype = dtype if dtype.kind == "f" else np.float64
        return np.broadcast_to(np.asarray(out), shape).astype(dtype)

    api.__name__ = name
    api.__doc__ = doc or f"{name}({', '.join(map(str, symbols))}) = {expr}"
    examples = unary_examples(FLOATS) if nin == 1 else binary_examples(FLOATS, mixed=False)
    register(OpDef(name, "elementwise", infer, ref, nin=nin, vjp=vjp, scalar=(tuple(symbols), expr),
                   doc=api.__doc__, api=api, oracle=_np(oracle), examples=examples if nin <= 2 else ()))
    return api
