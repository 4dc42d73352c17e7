"""Scalar lowering: one table from elementwise op to LLVM IR on one element.

``SCALAR_OPS[name](sb, args, in_dtype, out_dtype, attrs)`` returns the LLVM
value of the op applied to scalar (or vector) LLVM values ``args``. ``sb``
is a ``ScalarBuilder``: the IR builder plus the module's math library
(branch-free inline polynomials from ``codegen.mathlib``, so loops that use
them vectorize). Semantics follow numpy:

* comparisons with nan are false, except ``ne`` which is true;
* ``maximum``/``minimum`` propagate nan;
* ``sign(nan) = nan``; integer ops wrap around;
* float -> int casts saturate (nan -> 0) where numpy's result is undefined;
* bool values are ``i1`` in registers and one byte in memory.

User ops defined by a sympy formula lower through ``lower_sympy``.
"""

from __future__ import annotations

import math
from typing import Callable

from llvmlite import ir

from graphc.dtypes import DType

from . import mathlib

I1 = ir.IntType(1)
I8 = ir.IntType(8)
I32 = ir.IntType(32)
I64 = ir.IntType(64)
F32 = ir.FloatType()
F64 = ir.DoubleType()


def llvm_type(d: DType, memory: bool = False):
    """The LLVM type of a dtype: in registers (bool = i1) or in memory (bool = i8); uint8 is i8."""
    if d.is_bool:
        return I8 if memory else I1
    return {"float32": F32, "float64": F64, "int32": I32, "int64": I64, "uint8": I8}[d.name]


def _suffix(t) -> str:
    if isinstance(t, ir.IntType):
        return f"i{t.width}"
    return {"float": "f32", "double": "f64"}[str(t)]


class ScalarBuilder:
    """An IR builder with the helpers scalar lowerings need."""

    def __init__(self, builder: ir.IRBuilder, module: ir.Module):
        self.b = builder
        self.module = module

    def math(self, name: str, *args):
        fn = mathlib.get_math_function(self.module, name, args[0].type)
        return self.b.call(fn, list(args))

    def intrinsic(self, name: str, *args, types=None):
        """Call an LLVM intrinsic overloaded on ``types`` (default: the first argument's type),
        returning ``types[0]``. Declared by its mangled name with the signature of ``args``:
        llvmlite's ``declare_intrinsic`` guesses signatures from the name, and for names it
        does not list (``llvm.maximum``) guesses one argument."""
        types = types or [args[0].type]
        full = ".".join([name] + [_suffix(t) for t in types])
        fn = self.module.globals.get(full) or ir.Function(
            self.module, ir.FunctionType(types[0], [a.type for a in args]), name=full)
        return self.b.call(fn, list(args))

    def const(self, value, d: DType):
        t = llvm_type(d)
        if d.is_float:
            return ir.Constant(t, float(value))
        return ir.Constant(t, int(bool(value)) if d.is_bool else int(value))

    def cast(self, v, src: DType, dst: DType):
        """numpy's astype for one value.

        uint8 is read as unsigned (zero-extended). A float becomes uint8 as numpy's cast does on
        x86-64, through int32: values in int32's range are truncated toward zero and wrap modulo
        256 (-1.0 -> 255, 300.0 -> 44); nan, infinities and values beyond int32 become int32's
        "indefinite" value 0x80000000 (cvttss2si), whose low byte is 0.
        """
        b = self.b
        if src == dst:
            return v
        if dst.is_bool:
            if src.is_float:
                return b.fcmp_unordered("!=", v, ir.Constant(v.type, 0.0))
            return b.icmp_signed("!=", v, ir.Constant(v.type, 0))
        t = llvm_type(dst)
        if src.is_bool or src.is_unsigned:
            return b.uitofp(v, t) if dst.is_float else b.zext(v, t) if t.width > v.type.width else v
        if src.is_float and dst.is_float:
            return b.fpext(v, t) if dst.itemsize > src.itemsize else b.fptrunc(v, t)
        if src.is_int and dst.is_float:
            return b.sitofp(v, t)
        if src.is_float and dst.is_unsigned:
            lo, hi = ir.Constant(v.type, -2.0 ** 31), ir.Constant(v.type, 2.0 ** 31)
            inside = b.and_(b.fcmp_ordered(">=", v, lo), b.fcmp_ordered("<", v, hi))
            i = b.select(inside, self.intrinsic("llvm.fptosi.sat", v, types=[I32, v.type]),
                         ir.Constant(I32, -2 ** 31))
            return b.trunc(i, t)
        if src.is_float and dst.is_int:
            # saturating: defined for nan and out-of-range values (numpy's result is undefined there)
            return self.intrinsic("llvm.fptosi.sat", v, types=[t, v.type])
        return b.sext(v, t) if dst.itemsize > src.itemsize else b.trunc(v, t)

    def is_nan(self, v):
        return self.b.fcmp_unordered("uno", v, v)

    def select(self, c, a, b):
        return self.b.select(c, a, b)


def _fneg(sb, x):
    return sb.b.fneg(x)


def _float_or_int(float_fn: Callable, int_fn: Callable):
    def lower(sb, args, d, out, attrs):
        return float_fn(sb, *args) if d.is_float else int_fn(sb, *args)
    return lower


def _math(name):
    return lambda sb, args, d, out, attrs: sb.math(name, *args)


def _sign(sb, x, d):
    b = sb.b
    zero = ir.Constant(x.type, 0.0 if d.is_float else 0)
    one = ir.Constant(x.type, 1.0 if d.is_float else 1)
    if d.is_float:
        pos, neg = b.fcmp_ordered(">", x, zero), b.fcmp_ordered("<", x, zero)
        r = b.select(pos, one, b.select(neg, b.fneg(one), zero))
        return b.select(sb.is_nan(x), x, r)
    pos, neg = b.icmp_signed(">", x, zero), b.icmp_signed("<", x, zero)
    return b.select(pos, one, b.select(neg, b.neg(one), zero))


def _extremum(greater: bool):
    def lower(sb, args, d, out, attrs):
        a, c = args
        b = sb.b
        if d.is_float:
            pick = b.fcmp_ordered(">" if greater else "<", a, c)
            r = b.select(pick, a, c)
            return b.select(sb.is_nan(a), a, r)  # nan in c already selected by the ordered compare
        if d.is_bool:
            return b.or_(a, c) if greater else b.and_(a, c)
        return b.select(b.icmp_signed(">" if greater else "<", a, c), a, c)
    return lower


def _relu(sb, args, d, out, attrs):
    x = args[0]
    zero = ir.Constant(x.type, 0.0 if d.is_float else 0)
    return _extremum(True)(sb, [x, zero], d, out, attrs)


def _compare(op: str):
    def lower(sb, args, d, out, attrs):
        a, c = args
        if d.is_float:
            return sb.b.fcmp_unordered("!=", a, c) if op == "!=" else sb.b.fcmp_ordered(op, a, c)
        if d.is_bool:
            return sb.b.icmp_unsigned(op, a, c)
        return sb.b.icmp_signed(op, a, c)
    return lower


def _pow(sb, args, d, out, attrs):
    a, c = args
    if d.is_float:
        return sb.math("pow", a, c)
    return _int_pow(sb, a, c)


def _int_pow(sb: "ScalarBuilder", a, c):
    """``a ** c`` for integers as numpy computes it: by squaring, wrapping around on overflow
    (``2000 ** 3`` in int32 is -589934592). A constant exponent becomes its chain of
    multiplications; another calls ``gc.ipow.iN`` (a loop over the exponent's bits: 64
    unrolled steps cost ~200 ms of LLVM per power). numpy refuses negative exponents; here
    they give C's answer (1 for a base of 1, +-1 for -1, else 0)."""
    b = sb.b
    t = a.type
    if isinstance(c, ir.Constant) and isinstance(c.constant, int):
        e = c.constant
        if e < 0:
            return _negative_int_pow(b, a, e & 1 == 1)
        result, base = ir.Constant(t, 1), a
        while e:
            if e & 1:
                result = b.mul(result, base)
            e >>= 1
            if e:
                base = b.mul(base, base)
        return result
    return b.call(_ipow_function(sb.module, t), [a, c])


def _negative_int_pow(b: ir.IRBuilder, a, odd):
    """``a ** e`` for ``e < 0`` (``odd``: an i1 value or bool): 1 if a == 1, (-1) ** e if a == -1, else 0."""
    t = a.type
    one, minus_one = ir.Constant(t, 1), ir.Constant(t, -1)
    odd = ir.Constant(ir.IntType(1), int(odd)) if isinstance(odd, bool) else odd
    at_minus_one = b.select(odd, minus_one, one)
    return b.select(b.icmp_signed("==", a, one), one,
                    b.select(b.icmp_signed("==", a, minus_one), at_minus_one, ir.Constant(t, 0)))


def _ipow_function(module: ir.Module, t: ir.IntType) -> ir.Function:
    """``gc.ipow.iN(a, e)`` in ``module`` (created once, internal): square-and-multiply over
    the bits of ``e``, wrapping; ``e < 0`` as in ``_negative_int_pow``."""
    name = f"gc.ipow.i{t.width}"
    fn = module.globals.get(name)
    if fn is not None:
        return fn
    fn = ir.Function(module, ir.FunctionType(t, [t, t]), name)
    fn.linkage = "internal"
    fn.attributes.add("nounwind")
    a, e = fn.args
    entry, loop, done, negative = (fn.append_basic_block(n) for n in ("entry", "loop", "done", "negative"))
    b = ir.IRBuilder(entry)
    zero, one = ir.Constant(t, 0), ir.Constant(t, 1)
    b.cbranch(b.icmp_signed("<", e, zero), negative, loop)
    b.position_at_end(loop)
    result = b.phi(t, "result")
    base = b.phi(t, "base")
    rest = b.phi(t, "rest")
    odd = b.icmp_unsigned("!=", b.and_(rest, one), zero)
    result_next = b.select(odd, b.mul(result, base), result)
    rest_next = b.lshr(rest, one)
    base_next = b.mul(base, base)
    b.cbranch(b.icmp_unsigned("!=", rest_next, zero), loop, done)
    for phi, first, nxt in ((result, one, result_next), (base, a, base_next), (rest, e, rest_next)):
        phi.add_incoming(first, entry)
        phi.add_incoming(nxt, loop)
    b.position_at_end(done)
    b.ret(result_next)
    b.position_at_end(negative)
    b.ret(_negative_int_pow(b, a, b.trunc(e, ir.IntType(1))))
    return fn


def _gelu(sb, args, d, out, attrs):
    """x/2 (1 + tanh(c (x + a x³)))."""
    b = sb.b
    x = args[0]
    k = lambda v: ir.Constant(x.type, v)  # noqa: E731
    inner = b.fmul(k(math.sqrt(2 / math.pi)), b.fadd(x, b.fmul(k(0.044715), b.fmul(x, b.fmul(x, x)))))
    return b.fmul(b.fmul(k(0.5), x), b.fadd(k(1.0), sb.math("tanh", inner)))


SCALAR_OPS: dict[str, Callable] = {
    "neg": _float_or_int(lambda sb, x: sb.b.fneg(x), lambda sb, x: sb.b.neg(x)),
    "abs": _float_or_int(lambda sb, x: sb.intrinsic("llvm.fabs", x),
                         lambda sb, x: sb.b.select(sb.b.icmp_signed("<", x, ir.Constant(x.type, 0)), sb.b.neg(x), x)),
    "sign": lambda sb, args, d, out, attrs: _sign(sb, args[0], d),
    "exp": _math("exp"),
    "log": _math("log"),
    "log1p": _math("log1p"),
    "expm1": _math("expm1"),
    "sqrt": lambda sb, args, d, out, attrs: sb.intrinsic("llvm.sqrt", args[0]),
    "rsqrt": lambda sb, args, d, out, attrs: sb.b.fdiv(ir.Constant(args[0].type, 1.0),
                                                       sb.intrinsic("llvm.sqrt", args[0])),
    "square": _float_or_int(lambda sb, x: sb.b.fmul(x, x), lambda sb, x: sb.b.mul(x, x)),
    "reciprocal": lambda sb, args, d, out, attrs: sb.b.fdiv(ir.Constant(args[0].type, 1.0), args[0]),
    "sin": _math("sin"),
    "cos": _math("cos"),
    "tanh": _math("tanh"),
    "sigmoid": _math("sigmoid"),
    "softplus": _math("softplus"),
    "relu": _relu,
    "gelu": _gelu,
    "floor": lambda sb, args, d, out, attrs: sb.intrinsic("llvm.floor", args[0]),
    "ceil": lambda sb, args, d, out, attrs: sb.intrinsic("llvm.ceil", args[0]),
    "add": _float_or_int(lambda sb, a, c: sb.b.fadd(a, c), lambda sb, a, c: sb.b.add(a, c)),
    "sub": _float_or_int(lambda sb, a, c: sb.b.fsub(a, c), lambda sb, a, c: sb.b.sub(a, c)),
    "mul": _float_or_int(lambda sb, a, c: sb.b.fmul(a, c), lambda sb, a, c: sb.b.mul(a, c)),
    "div": lambda sb, args, d, out, attrs: sb.b.fdiv(*args),
    "pow": _pow,
    "maximum": _extremum(True),
    "minimum": _extremum(False),
    "eq": _compare("=="),
    "ne": _compare("!="),
    "lt": _compare("<"),
    "le": _compare("<="),
    "gt": _compare(">"),
    "ge": _compare(">="),
    "logical_and": lambda sb, args, d, out, attrs: sb.b.and_(*args),
    "logical_or": lambda sb, args, d, out, attrs: sb.b.or_(*args),
    "logical_not": lambda sb, args, d, out, attrs: sb.b.not_(args[0]),
    "where": lambda sb, args, d, out, attrs: sb.b.select(*args),
    "cast": lambda sb, args, d, out, attrs: sb.cast(args[0], d, out),
}


def lower_scalar(sb: ScalarBuilder, op: str, args, in_dtype: DType, out_dtype: DType, attrs: dict):
    """The LLVM value of elementwise ``op`` on ``args``: the table, or the op's sympy formula."""
    fn = SCALAR_OPS.get(op)
    if fn is not None:
        return fn(sb, args, in_dtype, out_dtype, attrs)
    from graphc.ops.registry import get_op
    formula = get_op(op).scalar
    if formula is None:
        raise NotImplementedError(f"no scalar lowering for op {op!r} (add it to codegen.scalar.SCALAR_OPS "
                                  "or give the op a sympy formula)")
    symbols, expr = formula
    return lower_sympy(sb, expr, dict(zip(symbols, args)), in_dtype)


def lower_sympy(sb: ScalarBuilder, expr, env: dict, d: DType):
    """Translate a sympy expression over float symbols to LLVM IR (ops of the math library)."""
    import sympy
    b = sb.b
    t = llvm_type(d)
    memo: dict = {}

    def go(e):
        if e in memo:
            return memo[e]
        r = _go(e)
        memo[e] = r
        return r

    def _go(e):
        if e in env:
            return env[e]
        if e.is_Number:
            return ir.Constant(t, float(e))
        if e is sympy.pi:
            return ir.Constant(t, math.pi)
        if e is sympy.E:
            return ir.Constant(t, math.e)
        if isinstance(e, sympy.Add):
            acc = go(e.args[0])
            for a in e.args[1:]:
                acc = b.fadd(acc, go(a))
            return acc
        if isinstance(e, sympy.Mul):
            acc = go(e.args[0])
            for a in e.args[1:]:
                acc = b.fmul(acc, go(a))
            return acc
        if isinstance(e, sympy.Pow):
            base, ex = e.args
            if ex.is_Integer and abs(int(ex)) <= 8:
                n = abs(int(ex))
                v = go(base)
                acc = ir.Constant(t, 1.0)
                for _ in range(n):
                    acc = b.fmul(acc, v)
                return b.fdiv(ir.Constant(t, 1.0), acc) if int(ex) < 0 else acc
            if ex == sympy.Rational(1, 2):
                return sb.intrinsic("llvm.sqrt", go(base))
            if ex == -sympy.Rational(1, 2):
                return b.fdiv(ir.Constant(t, 1.0), sb.intrinsic("llvm.sqrt", go(base)))
            if base is sympy.E:
                return sb.math("exp", go(ex))
            return sb.math("pow", go(base), go(ex))
        unary = {sympy.exp: "exp", sympy.log: "log", sympy.sin: "sin", sympy.cos: "cos", sympy.tanh: "tanh"}
        if e.func in unary:
            return sb.math(unary[e.func], go(e.args[0]))
        if e.func is sympy.Abs:
            return sb.intrinsic("llvm.fabs", go(e.args[0]))
        if e.func in (sympy.Max, sympy.Min):
            acc = go(e.args[0])
            for a in e.args[1:]:
                acc = _extremum(e.func is sympy.Max)(sb, [acc, go(a)], d, d, {})
            return acc
        if e.func is sympy.sinh:
            x = go(e.args[0])
            return b.fmul(ir.Constant(t, 0.5), b.fsub(sb.math("exp", x), sb.math("exp", b.fneg(x))))
        if e.func is sympy.cosh:
            x = go(e.args[0])
            return b.fmul(ir.Constant(t, 0.5), b.fadd(sb.math("exp", x), sb.math("exp", b.fneg(x))))
        raise NotImplementedError(f"cannot lower sympy expression {e} ({e.func})")

    return go(expr)
