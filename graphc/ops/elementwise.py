"""Elementwise ops: unary math, binary arithmetic, comparisons, logic, where, cast.

At IR level an elementwise op takes operands of EQUAL shape and dtype; the
API functions here apply numpy's rules first, adding explicit
``broadcast_to`` and ``cast`` nodes. Each op is one ``OpDef`` record; the
functions ``unary``/``binary`` below only shorten writing them.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from ..dtypes import (ALL_DTYPES, ANY_DTYPES, FLOAT_DTYPES, NUMERIC_DTYPES, DType, as_dtype, bool_, float32,
                      float64, int32, result_type)
from ..errors import GraphError
from ..ir import TensorType
from ..tensor import Tensor, as_tensor, constant, node_op
from .examples import ALL, FLOATS, MOVABLE, binary_examples, unary_examples
from .registry import (Arg, Example, OpDef, OpTypeError, get_op, register, require_dtypes, same_types,
                       storage_hint)

__all__ = [
    "negative", "abs", "sign", "exp", "log", "log1p", "expm1", "sqrt", "rsqrt", "square",
    "reciprocal", "sin", "cos", "tanh", "sigmoid", "relu", "softplus", "gelu", "floor", "ceil",
    "add", "subtract", "multiply", "divide", "power", "maximum", "minimum",
    "equal", "not_equal", "less", "less_equal", "greater", "greater_equal",
    "logical_and", "logical_or", "logical_not", "where", "cast", "broadcast_shapes",
]


# ---------------------------------------------------------------- API helpers

def broadcast_shapes(op: str, *types: TensorType) -> tuple:
    """numpy's broadcast of shapes; GraphError naming ``op`` and the operands if impossible."""
    try:
        return tuple(np.broadcast_shapes(*(t.shape for t in types)))
    except ValueError:
        shapes = " and ".join(str(t) for t in types)
        raise GraphError(op, f"shapes {shapes} do not broadcast", operands=types) from None


def _cast(t: Tensor, dtype: DType) -> Tensor:
    return t if t.dtype == dtype else node_op("cast", [t], dtype=dtype)


def _broadcast(t: Tensor, shape: tuple) -> Tensor:
    return t if t.shape == shape else node_op("broadcast_to", [t], shape=shape)


def _is_weak(x) -> bool:
    """Python scalars are weak operands in numpy 2's promotion; numpy scalars and arrays are not."""
    return isinstance(x, (bool, int, float)) and not isinstance(x, np.generic)


def promote(op: str, operands, dtype: DType | None = None, allowed=ALL_DTYPES, promote_int_to=None):
    """Tensors of one dtype from ``operands``, by numpy's promotion (weak Python scalars).

    Scalars become constants and tensors gain ``cast`` nodes where needed.
    ``promote_int_to``: ops defined on floats only (exp, divide...) take
    integer operands as numpy does, by computing in float64.
    """
    if dtype is None:
        keys = [x if _is_weak(x) else as_tensor(x).dtype for x in operands]
        try:
            dtype = result_type(*keys)
        except TypeError as e:
            raise GraphError(op, str(e)) from None
        if promote_int_to is not None and not dtype.is_float:
            dtype = promote_int_to
    def types():
        return [as_tensor(x).type if not _is_weak(x) else type(x).__name__ for x in operands]
    if dtype not in allowed:
        raise GraphError(op, f"dtype {dtype.name} is not supported "
                             f"(expected {', '.join(d.name for d in allowed)})" + storage_hint(dtype),
                         operands=types())
    if dtype.is_int or dtype.is_unsigned:  # a weak Python int takes the array's type (numpy 2): it must fit
        info = np.iinfo(dtype.np_dtype)
        for x in operands:
            if _is_weak(x) and isinstance(x, int) and not isinstance(x, bool) and not info.min <= x <= info.max:
                raise GraphError(op, f"the Python int {x} is out of range for {dtype.name} "
                                     f"({info.min}..{info.max})", operands=types())
    return [constant(x, dtype=dtype) if _is_weak(x) else _cast(as_tensor(x), dtype) for x in operands]


def _operands(op: str, operands, dtype: DType | None = None, allowed=ALL_DTYPES, promote_int_to=None):
    """Promote dtypes (numpy rules), make scalars constants, broadcast to one shape."""
    tensors = promote(op, operands, dtype, allowed, promote_int_to)
    shape = broadcast_shapes(op, *(t.type for t in tensors))
    return [_broadcast(t, shape) for t in tensors]


# ---------------------------------------------------------------- unary ops

def unary(name: str, ref, *, dtypes=FLOAT_DTYPES, api_name=None, oracle=None, low=-3.0, high=3.0,
          differentiable=True, doc="", int_to_float=True, examples=None, scalar=None, vjp=None):
    """Register a unary elementwise op (same shape and dtype out) and return its API function.

    For float-only ops, integer arguments are computed in float64 as numpy does.
    """
    def infer(x):
        require_dtypes(name, x, dtypes)
        return x

    def api(x):
        x = as_tensor(x)
        promote = float64 if (int_to_float and set(dtypes) <= set(FLOAT_DTYPES) and x.dtype.is_int) else None
        (x,) = _operands(name, [x], allowed=dtypes, promote_int_to=promote)
        return node_op(name, [x])

    api.__name__ = api_name or name
    api.__doc__ = doc
    if examples is None:
        ex_dtypes = tuple(dtypes) + ((int32,) if int_to_float and set(dtypes) <= set(FLOAT_DTYPES) else ())
        examples = unary_examples(ex_dtypes, low, high)
    register(OpDef(name, "elementwise", infer, ref, nin=1, differentiable=differentiable, doc=doc,
                   api=api, oracle=oracle, examples=examples, scalar=scalar, vjp=vjp))
    return api


def _np(fn):
    """An oracle that evaluates a numpy expression with floating-point warnings silenced."""
    def oracle(*args, **kw):
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return fn(*args, **kw)
    return oracle


negative = unary("neg", lambda xp, x: xp.negative(x), dtypes=NUMERIC_DTYPES, api_name="negative",
                 oracle=_np(np.negative), doc="-x",
                 vjp=lambda g, x, out: (-g,))
abs = unary("abs", lambda xp, x: xp.abs(x), dtypes=NUMERIC_DTYPES, oracle=_np(np.abs), doc="|x|",
            vjp=lambda g, x, out: (g * sign(x),))
sign = unary("sign", lambda xp, x: xp.sign(x), dtypes=NUMERIC_DTYPES, oracle=_np(np.sign),
             differentiable=False, doc="-1, 0 or 1 by the sign of x (nan stays nan)")
exp = unary("exp", lambda xp, x: xp.exp(x), oracle=_np(np.exp), doc="e^x",
            vjp=lambda g, x, out: (g * out,))
log = unary("log", lambda xp, x: xp.log(x), oracle=_np(np.log), low=0.01, high=5.0, doc="ln x",
            vjp=lambda g, x, out: (g / x,))
log1p = unary("log1p", lambda xp, x: xp.log1p(x), oracle=_np(np.log1p), low=-0.9, high=3.0,
              doc="ln(1 + x), accurate for small x",
              vjp=lambda g, x, out: (g / (1 + x),))
expm1 = unary("expm1", lambda xp, x: xp.expm1(x), oracle=_np(np.expm1), doc="e^x - 1, accurate for small x",
              vjp=lambda g, x, out: (g * (out + 1),))
sqrt = unary("sqrt", lambda xp, x: xp.sqrt(x), oracle=_np(np.sqrt), low=0.0, high=5.0, doc="√x",
             vjp=lambda g, x, out: (g / (2 * out),))
rsqrt = unary("rsqrt", lambda xp, x: 1 / xp.sqrt(x), oracle=_np(lambda x: 1 / np.sqrt(x)),
              low=0.05, high=5.0, doc="1/√x",
              vjp=lambda g, x, out: (g * -0.5 * out / x,))
square = unary("square", lambda xp, x: x * x, dtypes=NUMERIC_DTYPES, oracle=_np(np.square), doc="x²",
               vjp=lambda g, x, out: (g * 2 * x,))
reciprocal = unary("reciprocal", lambda xp, x: 1 / x, oracle=_np(lambda x: 1 / x), low=0.2, high=4.0,
                   doc="1/x",
                   vjp=lambda g, x, out: (-(g * out * out),))
sin = unary("sin", lambda xp, x: xp.sin(x), oracle=_np(np.sin), doc="sin x",
            vjp=lambda g, x, out: (g * cos(x),))
cos = unary("cos", lambda xp, x: xp.cos(x), oracle=_np(np.cos), doc="cos x",
            vjp=lambda g, x, out: (-(g * sin(x)),))
tanh = unary("tanh", lambda xp, x: xp.tanh(x), oracle=_np(np.tanh), doc="tanh x",
             vjp=lambda g, x, out: (g * (1 - out * out),))
sigmoid = unary("sigmoid", lambda xp, x: xp.sigmoid(x), oracle=_np(lambda x: 1 / (1 + np.exp(-x))),
                low=-20.0, high=20.0, doc="σ(x) = 1/(1 + e^-x), evaluated without overflow",
                vjp=lambda g, x, out: (g * out * (1 - out),))
relu = unary("relu", lambda xp, x: xp.maximum(x, 0), dtypes=NUMERIC_DTYPES,
             oracle=_np(lambda x: np.maximum(x, 0).astype(x.dtype)), doc="max(x, 0)",
             vjp=lambda g, x, out: (where(out > 0, g, 0),))  # out > 0 iff x > 0: x need not be kept
softplus = unary("softplus", lambda xp, x: xp.softplus(x), oracle=_np(lambda x: np.logaddexp(x, 0)),
                 low=-20.0, high=20.0, doc="ln(1 + e^x) = max(x,0) + log1p(e^-|x|)",
                 vjp=lambda g, x, out: (g * sigmoid(x),))

_GELU_C = math.sqrt(2.0 / math.pi)
_GELU_A = 0.044715


def _gelu(xp, x):
    return 0.5 * x * (1 + xp.tanh(_GELU_C * (x + _GELU_A * (x * x * x))))


def _gelu_vjp(g, x, out):
    """d/dx [x/2 (1 + t)] = (1 + t)/2 + x/2 (1 - t²) c (1 + 3a x²),  t = tanh(c (x + a x³))."""
    t = tanh(_GELU_C * (x + _GELU_A * (x * x * x)))
    return (g * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * _GELU_C * (1 + 3 * _GELU_A * (x * x))),)


gelu = unary("gelu", _gelu, doc="x/2 · (1 + tanh(√(2/π)(x + 0.044715 x³))), the tanh form",
             oracle=_np(lambda x: 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))),
             vjp=_gelu_vjp)


def _rounding(name, fn):
    """floor/ceil: identity on integers (as numpy 2 returns them unchanged)."""
    op_api = unary(name, lambda xp, x: getattr(xp, name)(x), oracle=_np(fn), low=-5.0, high=5.0,
                   differentiable=False, int_to_float=False, doc=f"{name} of x",
                   examples=unary_examples(FLOATS, -5.0, 5.0)
                   + (Example((Arg((2, 3), int32),)),))

    def api(x):
        x = as_tensor(x)
        return x if x.dtype.is_int else op_api(x)
    api.__name__, api.__doc__ = name, op_api.__doc__
    get_op(name).api = api
    return api


floor = _rounding("floor", np.floor)
ceil = _rounding("ceil", np.ceil)


# ---------------------------------------------------------------- binary ops

def binary(name: str, ref, *, dtypes=NUMERIC_DTYPES, api_name=None, oracle=None, out_dtype=None,
           float_only=False, low=-3.0, high=3.0, low_b=None, high_b=None, differentiable=True,
           doc="", scalars=(2, 0.5), examples=None, scalar=None, vjp=None):
    """Register a binary elementwise op and return its numpy-style API function.

    ``out_dtype``: fixed result dtype (bool for comparisons); otherwise the
    operands' dtype. ``float_only``: integers are computed in float64 (numpy's
    true division).
    """
    def infer(a, b):
        same_types([a, b])
        require_dtypes(name, a, dtypes)
        return TensorType(a.shape, out_dtype or a.dtype)

    def api(a, b):
        a, b = _operands(api.__name__, [a, b], allowed=dtypes,
                         promote_int_to=float64 if float_only else None)
        return node_op(name, [a, b])

    api.__name__ = api_name or name
    api.__doc__ = doc
    if examples is None:
        examples = binary_examples(dtypes if dtypes != ALL_DTYPES else ALL, low, high, scalars=scalars,
                                   low_b=low_b, high_b=high_b)
    register(OpDef(name, "elementwise", infer, ref, nin=2, differentiable=differentiable, doc=doc,
                   api=api, oracle=oracle, examples=examples, scalar=scalar, vjp=vjp))
    return api


def _pow_vjp(g, a, b, out):
    """d(a^b)/da = b a^(b-1) (0 where b = 0); d(a^b)/db = a^b ln a (0 where a <= 0).

    Both branches that ``where`` drops are kept finite (b = 0 becomes 1 under the power, a <= 0
    becomes 1 under the log): the derivative of a ``where`` still multiplies the dropped branch's
    derivative by 0, and 0 * inf would make second derivatives (``hvp``, ``jvp``) nan at a = 0."""
    zero_b = equal(b, 0)
    da = where(zero_b, 0, g * b * power(a, where(zero_b, 1, b) - 1))
    db = g * out * log(where(greater(a, 0), a, 1))
    return da, db


def _extremum_vjp(pick):
    """maximum/minimum: the gradient goes to the chosen operand; ties split it evenly."""
    def vjp(g, a, b, out):
        share = where(pick(a, b), 1.0, where(equal(a, b), 0.5, 0.0))
        share = cast(share, g.dtype)
        return g * share, g * (1 - share)
    return vjp


add = binary("add", lambda xp, a, b: a + b, oracle=_np(np.add), doc="a + b",
             vjp=lambda g, a, b, out: (g, g))
subtract = binary("sub", lambda xp, a, b: a - b, api_name="subtract", oracle=_np(np.subtract), doc="a - b",
                  vjp=lambda g, a, b, out: (g, -g))
multiply = binary("mul", lambda xp, a, b: a * b, api_name="multiply", oracle=_np(np.multiply), doc="a · b",
                  vjp=lambda g, a, b, out: (g * b, g * a))
divide = binary("div", lambda xp, a, b: a / b, api_name="divide", dtypes=FLOAT_DTYPES, float_only=True,
                low_b=0.5, high_b=3.0, oracle=_np(np.true_divide), doc="a / b (true division)",
                vjp=lambda g, a, b, out: (g / b, -(g * out / b)))
power = binary("pow", lambda xp, a, b: xp.power(a, b), api_name="power", low=0.1, high=3.0,
               low_b=0.0, high_b=3.0, oracle=_np(np.power), scalars=(2, 0.5),
               doc="a ** b (floats: C pow; integers: wrap around as numpy, exponents >= 0: for negative "
                   "ones numpy raises and compiled code gives C's 0, 1 or -1)", vjp=_pow_vjp)
maximum = binary("maximum", lambda xp, a, b: xp.maximum(a, b), oracle=_np(np.maximum),
                 doc="max(a, b), nan if either is nan", vjp=_extremum_vjp(lambda a, b: greater(a, b)))
minimum = binary("minimum", lambda xp, a, b: xp.minimum(a, b), oracle=_np(np.minimum),
                 doc="min(a, b), nan if either is nan", vjp=_extremum_vjp(lambda a, b: less(a, b)))


def _compare(name, api_name, fn_name, oracle):
    return binary(name, lambda xp, a, b: getattr(xp, fn_name)(a, b), api_name=api_name, dtypes=ALL_DTYPES,
                  out_dtype=bool_, differentiable=False, oracle=_np(oracle), doc=f"a {name} b (bool)",
                  examples=binary_examples(ALL, -2, 2))


equal = _compare("eq", "equal", "equal", np.equal)
not_equal = _compare("ne", "not_equal", "not_equal", np.not_equal)
less = _compare("lt", "less", "less", np.less)
less_equal = _compare("le", "less_equal", "less_equal", np.less_equal)
greater = _compare("gt", "greater", "greater", np.greater)
greater_equal = _compare("ge", "greater_equal", "greater_equal", np.greater_equal)


def _logical_examples():
    return binary_examples((bool_,), scalars=(True,), mixed=False) + (
        Example((Arg((2, 3), float32), Arg((3,), bool_))),)


def _logical(name):
    def ref(xp, a, b):
        return getattr(xp, name)(a, b)
    op_api = binary(name, ref, dtypes=(bool_,), differentiable=False, oracle=_np(getattr(np, name)),
                    doc=f"{name} of truth values (non-bool operands: x != 0)", examples=_logical_examples())

    def api(a, b):
        return op_api(_truth(a), _truth(b))
    api.__name__, api.__doc__ = name, op_api.__doc__
    get_op(name).api = api
    return api


def _truth(x):
    """A truth-valued operand: bool tensors as they are, others compared with zero (x != 0)."""
    if _is_weak(x):
        return bool(x)
    x = as_tensor(x)
    return x if x.dtype == bool_ else node_op("cast", [x], dtype=bool_)


logical_and = _logical("logical_and")
logical_or = _logical("logical_or")
_logical_not_api = unary("logical_not", lambda xp, x: xp.logical_not(x), dtypes=(bool_,),
                         differentiable=False, int_to_float=False, oracle=_np(np.logical_not),
                         examples=unary_examples((bool_,)) + (Example((Arg((2, 3), float32),)),),
                         doc="not x (non-bool operands: x == 0)")


def logical_not(x):
    """not x (non-bool operands: x == 0)"""
    return _logical_not_api(_truth(x))


get_op("logical_not").api = logical_not


# ---------------------------------------------------------------- where, cast

def _infer_where(c, a, b):
    if c.dtype != bool_:
        raise OpTypeError(f"condition dtype must be bool, got {c.dtype.name}")
    same_types([c, TensorType(a.shape, bool_), TensorType(b.shape, bool_)])
    same_types([a, b])
    return a


def where(cond, a, b):
    """``a`` where ``cond`` is true, else ``b`` (numpy broadcasting and promotion of a and b)."""
    cond = _truth(cond)
    a, b = _operands("where", [a, b], allowed=ANY_DTYPES)  # a select moves values: uint8 too
    cond = as_tensor(cond)
    shape = broadcast_shapes("where", cond.type, a.type, b.type)
    return node_op("where", [_broadcast(cond, shape), _broadcast(a, shape), _broadcast(b, shape)])


register(OpDef("where", "elementwise", _infer_where, lambda xp, c, a, b: xp.where(c, a, b), nin=3,
               doc="cond ? a : b", vjp=lambda g, c, a, b, out: (None, where(c, g, 0), where(c, 0, g)), api=where, oracle=_np(np.where),
               examples=tuple(Example((Arg(sc, bool_), Arg(sa, d), Arg(sb, d)))
                              for d in MOVABLE for sc, sa, sb in [((2, 3), (2, 3), (2, 3)), ((2, 1), (3,), ()),
                                                             ((0, 3), (1, 3), (3,))])
               + (Example((Arg((2, 3), bool_), Arg((2, 3), float32), 1.5)),
                  Example((Arg((3,), bool_), Arg((3,), int32), Arg((3,), float64))))))


def _infer_cast(x, *, dtype):
    return TensorType(x.shape, dtype)


def _normalize_cast(types, attrs):
    try:
        return {**attrs, "dtype": as_dtype(attrs["dtype"])}
    except (TypeError, KeyError) as e:
        raise OpTypeError(str(e)) from None


def cast(x, dtype):
    """``x`` converted to ``dtype`` as numpy's ``astype`` does (float -> int truncates toward zero)."""
    x = as_tensor(x)
    try:
        dtype = as_dtype(dtype)
    except TypeError as e:
        raise GraphError("cast", str(e), operands=[x.type]) from None
    return _cast(x, dtype)


register(OpDef("cast", "elementwise", _infer_cast, lambda xp, x, dtype: xp.astype(x, dtype),
               attrs={"dtype": None}, normalize=_normalize_cast,
               vjp=lambda g, x, out, dtype: (cast(g, x.dtype) if x.dtype.is_float and dtype.is_float else None,),
               doc="convert the element type", api=cast,
               oracle=lambda x, dtype: x.astype(as_dtype(dtype).np_dtype),
               examples=tuple(Example((Arg((2, 3), a, -5, 5),), {"dtype": b})
                              for a in MOVABLE for b in MOVABLE if a != b)
               + (Example((Arg((0, 2), float32),), {"dtype": "int32"}),)))
