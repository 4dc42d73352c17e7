"""Vectorizable elementwise math functions emitted as LLVM IR.

``get_math_function(module, name, ir_type)`` adds (once per module) an
``internal alwaysinline`` function ``gc.<name>.<f32|f64>`` to an
``llvmlite.ir.Module`` and returns it.  Every body is straight-line code: no
branches, no libm calls, only arithmetic, ``select``, integer bit tricks on
the IEEE representation and the intrinsics ``llvm.{fma,fabs,copysign,rint,
floor,ceil,sqrt}``.  After inlining into a loop, LLVM's loop vectoriser turns
them into packed AVX2/AVX-512 code.  (``llvm.fma`` is used for exact
reductions and polynomial evaluation; the host is assumed to have FMA --
without it LLVM lowers ``llvm.fma`` to a slow libm call.)

Algorithms (polynomial coefficients are weighted-minimax fits made offline
with a Remez exchange in mpmath and rounded to the working precision; "err"
is the fit's contribution to the relative error of the result):

exp     n = rint(x/ln2) by the shifter trick (k = fma(x, 1/ln2, 1.5*2^mant),
        n = k - 1.5*2^mant; 2^n from the bits of k, no float->int
        conversion), r = x - n*ln2 (two-constant Cody-Waite with fma, the
        first step exact), |r| <= ln2/2;  e^r = 1 + r + r^2*Q(r),
        Q degree 5 (f32, err 2^-28.7) / 10 (f64, err 2^-61).  The scaling by
        2^n is split as 2^(n>>1) * 2^(n - (n>>1)) so overflow to inf and
        gradual underflow to subnormals round exactly once; the first factor
        is applied by the fma that adds the 1 (fma(p, s1, s1) = s1 round(1+p)
        exactly, s1 normal).  x is clamped
        to [EXP_LO, EXP_HI] by selects that let NaN through (NaN r -> NaN).
expm1   same reduction, the rounding error of r kept (r + rl);
        e^r - 1 = ph + pl (r + r^2 Q(r) by fast TwoSum) and
        2^n (ph + pl) + (2^n - 1) with the main sum done by TwoSum, so the
        cancellation at n = +-1 costs nothing; the rounding of 2^n - 1 for
        n > 24 / 53 is added back exactly; n > 60 / 900 uses the exp path.
log     x = 2^k * m with m in [sqrt(1/2), sqrt(2)) from the bit pattern
        (subnormals pre-scaled by 2^23 / 2^52); f = m - 1 exact,
        s = f/(2+f), z = s^2, log(1+f) = 2 atanh(s) = 2s + s*z*R(z),
        R degree 2 (f32, err 2^-30) / 7 (f64, err 2^-61.5), evaluated as
        k*ln2_hi + (f - (f^2/2 - (s*(f^2/2 + z*R) + k*ln2_lo)))  (uses
        2s = f - f^2/2 + s*f^2/2; the exact f is added last).
log1p   u = 1 + x rounded, log1p(x) = log(u) + c, c = ((1+x) - u)/u with
        an exact numerator ((x - (u-1)) or (1 - (u-x)), Sterbenz); c joins
        the k*ln2_lo term of the log formula above.
tanh    f32: w = 2|x| (|x| clamped to 10, NaN passes) = n ln2 + r (shifter,
        one-step reduction: its error n 2^-28.9 is damped by 1/(1+h));
        h = (e^w - 1)/2 = fma(2^(n-1), p, 2^(n-1) - 1/2), p = e^r - 1 =
        r + r^2 Q(r) (the exp polynomial; no cancellation, 2^(n-1) - 1/2
        exact); q = h/(1+h) (one division); tanh|x| = h - h q for h < 1/2
        (damps the error of q), else q; sign copied from x.  Tiny x: n = 0,
        h = |x| exactly.  ~24 vector ops, no polynomial for small x.
        f64: h = expm1(2|x|)/2, q = h/(1+h), tanh = h - h*q for h < 1/2,
        else q; |x| clamped to 40 (tanh == 1 there).
sigmoid e = exp(-|x|): x >= 0 -> 1/(1+e), x < 0 -> e/(1+e)  (one division).
        The exp is specialised to t = -|x| <= 0: clamped below only (NaN
        passes); numerator and denominator are scaled by 2^S (S = 64 / 128)
        so that e 2^S = fma(p, 2^(n+S), 2^(n+S)) is normal and the division
        is the only rounding into the subnormals.
softplus max(x,0) + log1p(exp(-|x|)).
sin/cos n = nearest integer to x*2/pi (2/pi as a double-double, so that
        |r| <= pi/4 also for huge x), r = x - n*pi/2, quadrant n mod 4
        (computed in floating point).  pi/2 = C1+C2+C3 (3 x 53 bits),
        r1 = x - n*C1 is exact (fma).
        f64: r = rh + rl kept as a double-double (TwoSum/TwoProd);
        sin(r) = rh + (rh z S(z) + rl(1 - z/2)), S degree 5 (err 2^-57);
        cos(r) = w + ((1-w) - z/2 + z^2 C(z) - rh rl), w = 1 - z/2,
        C degree 5 (err 2^-60).
        f32: computed in double: r = fma-chain with C2, C3; S/C of degree
        3 (err 2^-37); one final rounding (nearly correctly rounded).
        Accurate for |x| < 2^52 (``SINCOS_ACCURATE_RANGE``).  Beyond that
        (where a Payne-Hanek reduction would be needed; not implemented)
        results are finite values in [-1, 1] but NOT accurate; inf/nan -> nan.
pow     C99 Annex F special cases by selects (pow(x, +-0) = 1, pow(1, y) = 1,
        pow(neg, non-integer) = nan, pow(+-0, y<0) = inf with the sign for
        odd integers, pow(-1, +-inf) = 1, ...); the core is
        |x|^y = exp(y log|x|), sign applied for odd integer y.
        f64: log|x| as a double-double (s = f/(2+f) and z = s^2 as
        double-doubles, atanh(s) = s + s*z*(1/3 + z*P(z)), P degree 6,
        err 2^-66), y*log|x| by TwoProd, then exp of a double-double.
        f32: computed in double with the f64 log/exp kernels, one rounding.
sqrt, floor, ceil, fabs: the LLVM intrinsics (exact).

Measured max error, ulp (tests/test_mathlib.py inputs: random bit patterns
over the whole range incl. subnormals, dense sweeps, special values; "exact"
= vs a higher-precision reference: numpy in f64 for f32, long double for
f64, the actual error in fractional ulps; "numpy" = integer ulp distance to
numpy's own float32/float64 result, which has errors of its own, e.g. up to
~3.4 ulp for float32 log; f32 exp, tanh and sigmoid also checked
exhaustively over every float32 input of their non-trivial range):

    function    f32 exact  f32 numpy   f64 exact  f64 numpy
    exp           0.99        3          0.97        1
    log           0.81        4          0.80        1
    log1p         0.79        2          0.78        1
    expm1         0.83        2          0.79        1
    tanh          1.86        2          1.58        2
    sigmoid       2.41       (2)         2.36       (2)   no numpy ufunc:
    softplus      1.54       (2)         1.48       (2)   vs exact, rounded
    sin, cos      0.50        1          0.77        1    |x| < 2^52
    pow           0.50        1          0.96        1
    sqrt/floor/ceil/fabs  0 (exact)
"""

from __future__ import annotations

from llvmlite import ir

__all__ = ["MATH_FUNCTIONS", "ARITY", "get_math_function", "function_name",
           "SINCOS_ACCURATE_RANGE", "FP"]

F32 = ir.FloatType()
F64 = ir.DoubleType()
I32 = ir.IntType(32)
I64 = ir.IntType(64)

MATH_FUNCTIONS = ("exp", "log", "log1p", "expm1", "tanh", "sigmoid", "softplus",
                  "sin", "cos", "pow", "sqrt", "floor", "ceil", "fabs")
ARITY = {name: (2 if name == "pow" else 1) for name in MATH_FUNCTIONS}

# |x| below which sin/cos are accurate (checked by the tests); beyond it no
# Payne-Hanek reduction is done and results are merely bounded in [-1, 1].
SINCOS_ACCURATE_RANGE = {"f32": 2.0 ** 52, "f64": 2.0 ** 52}

INF = float("inf")
NAN = float("nan")


def _h(s: str) -> float:
    return float.fromhex(s)


def _hs(*hexes: str) -> tuple:
    return tuple(float.fromhex(s) for s in hexes)


# --------------------------------------------------------------------------
# constants and polynomial coefficients (lowest degree first)
# --------------------------------------------------------------------------

_CONST = {
    "f32": dict(
        LOG2E=_h("0x1.715476p+0"),
        LN2_HI=_h("0x1.62e430p-1"), LN2_LO=_h("-0x1.05c610p-29"),
        # exp(r) = 1 + r + r^2 Q(r), |r| <= 0.3473
        EXP_Q=_hs("0x1p-1", "0x1.555556p-3", "0x1.5554acp-5", "0x1.11108ep-7",
                  "0x1.6d75e8p-10", "0x1.a1a2f0p-13"),
        # 2 atanh(s) = 2s + s z R(z), z = s^2 <= 0.02944
        LOG_R=_hs("0x1.55557ap-1", "0x1.995eb4p-2", "0x1.31e3a8p-2"),
        EXP_LO=-110.0, EXP_HI=100.0,        # clamp: exp -> 0 / inf beyond
        SHIFT=_h("0x1.8p23"),               # rint by adding 1.5*2^23
        EXPM1_LO=-40.0, EXPM1_BIG=60,       # expm1 == -1 below; 2^n path above
    ),
    "f64": dict(
        LOG2E=_h("0x1.71547652b82fep+0"),
        LN2_HI=_h("0x1.62e42fefa39efp-1"), LN2_LO=_h("0x1.abc9e3b39803fp-56"),
        EXP_Q=_hs("0x1p-1", "0x1.5555555555559p-3", "0x1.555555555555ap-5",
                  "0x1.111111110f643p-7", "0x1.6c16c16c143bbp-10",
                  "0x1.a01a01b015723p-13", "0x1.a01a01b0e5cafp-16",
                  "0x1.71ddf7cd568d2p-19", "0x1.27e4c53bcc755p-22",
                  "0x1.af5fbd451a272p-26", "0x1.1f9600d7e598dp-29"),
        LOG_R=_hs("0x1.5555555555555p-1", "0x1.9999999999e00p-2",
                  "0x1.249249242b30cp-2", "0x1.c71c725911295p-3",
                  "0x1.745cde2f7d146p-3", "0x1.3b20ac9d7ddfbp-3",
                  "0x1.0f5cb116f3a44p-3", "0x1.0f63ecda42ae4p-3"),
        EXP_LO=-760.0, EXP_HI=720.0,
        SHIFT=_h("0x1.8p52"),
        EXPM1_LO=-40.0, EXPM1_BIG=900,
    ),
}

# double-only constants (f64 kernels and the f32 functions computed in double)
_PIO2_1 = _h("0x1.921fb54442d18p+0")
_PIO2_2 = _h("0x1.1a62633145c07p-54")
_PIO2_3 = _h("-0x1.f1976b7ed8fbcp-110")
_TWO_OVER_PI = _h("0x1.45f306dc9c883p-1")
_TWO_OVER_PI_LO = _h("-0x1.6b01ec5417056p-55")
_THIRD_HI = _h("0x1.5555555555555p-2")
_THIRD_LO = _h("0x1.5555555555555p-56")
# sin r = r + r^3 S(z), cos r = 1 - z/2 + z^2 C(z), z = r^2 <= (pi/4)^2
_SIN_S = {
    "f64": _hs("-0x1.5555555555549p-3", "0x1.111111110f87ap-7",
               "-0x1.a01a019c11990p-13", "0x1.71de3577b65a5p-19",
               "-0x1.ae5e663a60019p-26", "0x1.5d9300eed005fp-33"),
    "f32": _hs("-0x1.5555554cb90fap-3", "0x1.11110895ab0efp-7",
               "-0x1.a00f9d23c3004p-13", "0x1.6cd838ded3ec6p-19"),
}
_COS_C = {
    "f64": _hs("0x1.555555555554cp-5", "-0x1.6c16c16c1517ep-10",
               "0x1.a01a019cb1bd9p-16", "-0x1.27e4f809f08d8p-22",
               "0x1.1ee9ebe91fe97p-29", "-0x1.8fae9c6f9a7a0p-37"),
    "f32": _hs("0x1.5555554f4dac1p-5", "-0x1.6c16b89822fe4p-10",
               "0x1.a0111fb669833p-16", "-0x1.242abe5d51d82p-22"),
}
# atanh(s) = s + s z (1/3 + z P(z))   (pow's double-double log)
_LOG_P = _hs("0x1.9999999999b30p-3", "0x1.2492492457c8ep-3", "0x1.c71c722d7905bp-4",
             "0x1.745ce9dcbc3cap-4", "0x1.3b1eed47f37b0p-4", "0x1.0f7fcbb2a13d6p-4",
             "0x1.0e43cb9b72fabp-4")


# --------------------------------------------------------------------------
# IR helper: typed floating-point operations on one IRBuilder
# --------------------------------------------------------------------------

class FP:
    """Readable floating-point IR emission for one float type.

    ``FP(builder, F32)`` offers ``add/sub/mul/div/fma``, ordered comparisons
    (``lt, le, gt, ge, eq``; false if an operand is NaN), ``sel``, the IEEE
    bit view (``bits``/``from_bits``), ``pow2`` (2^n from an integer) and
    error-free transformations (``two_sum``, ``two_prod``).  Python numbers
    are accepted wherever a value is expected and become constants.
    """

    def __init__(self, builder: ir.IRBuilder, ftype):
        self.b = builder
        self.t = ftype
        self.is64 = isinstance(ftype, ir.DoubleType)
        self.it = I64 if self.is64 else I32
        self.mant = 52 if self.is64 else 23
        self.bias = 1023 if self.is64 else 127
        self.suffix = "f64" if self.is64 else "f32"
        self.k = _CONST[self.suffix]

    # values -------------------------------------------------------------
    def v(self, x):
        if isinstance(x, (int, float)):
            return ir.Constant(self.t, float(x))
        return x

    def i(self, x):
        if isinstance(x, int):
            return ir.Constant(self.it, x)
        return x

    # arithmetic ---------------------------------------------------------
    def add(self, a, b):
        return self.b.fadd(self.v(a), self.v(b))

    def sub(self, a, b):
        return self.b.fsub(self.v(a), self.v(b))

    def mul(self, a, b):
        return self.b.fmul(self.v(a), self.v(b))

    def div(self, a, b):
        return self.b.fdiv(self.v(a), self.v(b))

    def neg(self, a):
        return self.b.fneg(self.v(a))

    def intrinsic(self, name, *args):
        full = f"llvm.{name}.{self.suffix}"
        module = self.b.module
        fnty = ir.FunctionType(self.t, [self.t] * len(args))
        fn = module.globals.get(full)
        if fn is None:
            fn = ir.Function(module, fnty, full)
        elif fn.function_type != fnty:
            raise TypeError(f"{full} already declared as {fn.function_type}, need {fnty}")
        return self.b.call(fn, [self.v(a) for a in args])

    def fma(self, a, b, c):
        """a*b + c with a single rounding."""
        return self.intrinsic("fma", a, b, c)

    def abs(self, a):
        return self.intrinsic("fabs", a)

    def copysign(self, mag, sign):
        return self.intrinsic("copysign", mag, sign)

    def rint(self, a):
        """Round to nearest integer, ties to even (default rounding mode)."""
        return self.intrinsic("rint", a)

    def floor(self, a):
        return self.intrinsic("floor", a)

    def poly(self, x, coeffs):
        """Horner with fma: c0 + x*(c1 + x*(c2 + ...))."""
        acc = self.v(coeffs[-1])
        for c in reversed(coeffs[:-1]):
            acc = self.fma(acc, x, c)
        return acc

    # comparisons / selection -------------------------------------------
    def _cmp(self, op, a, b):
        return self.b.fcmp_ordered(op, self.v(a), self.v(b))

    def lt(self, a, b):
        return self._cmp("<", a, b)

    def le(self, a, b):
        return self._cmp("<=", a, b)

    def gt(self, a, b):
        return self._cmp(">", a, b)

    def ge(self, a, b):
        return self._cmp(">=", a, b)

    def eq(self, a, b):
        return self._cmp("==", a, b)

    def isnan(self, a):
        return self.b.fcmp_unordered("uno", self.v(a), self.v(a))

    def isfinite(self, a):
        return self.lt(self.abs(a), INF)

    def sel(self, cond, a, b):
        return self.b.select(cond, self.v(a), self.v(b))

    def and_(self, *conds):
        out = conds[0]
        for c in conds[1:]:
            out = self.b.and_(out, c)
        return out

    def or_(self, *conds):
        out = conds[0]
        for c in conds[1:]:
            out = self.b.or_(out, c)
        return out

    def not_(self, c):
        return self.b.not_(c)

    # bit view / integers ----------------------------------------------------
    def bits(self, a):
        return self.b.bitcast(self.v(a), self.it)

    def from_bits(self, n):
        return self.b.bitcast(self.i(n), self.t)

    def iadd(self, a, b):
        return self.b.add(self.i(a), self.i(b))

    def isub(self, a, b):
        return self.b.sub(self.i(a), self.i(b))

    def iand(self, a, b):
        return self.b.and_(self.i(a), self.i(b))

    def ashr(self, a, n):
        return self.b.ashr(self.i(a), self.i(n))

    def shl(self, a, n):
        return self.b.shl(self.i(a), self.i(n))

    def to_int(self, a):
        return self.b.fptosi(self.v(a), self.it)

    def to_float(self, n):
        return self.b.sitofp(self.i(n), self.t)

    def signbit(self, a):
        return self.b.icmp_signed("<", self.bits(a), self.i(0))

    def pow2(self, n):
        """2.0**n for an integer n in the normal exponent range."""
        return self.from_bits(self.shl(self.iadd(n, self.bias), self.mant))

    def ldexp(self, x, n):
        """x * 2**n with one rounding, for |n| <= 2*bias - 4 (split scale)."""
        n1 = self.ashr(n, 1)
        n2 = self.isub(n, n1)
        return self.mul(self.mul(x, self.pow2(n1)), self.pow2(n2))

    # error-free transformations (double-double helpers) -------------------
    def two_sum(self, a, b):
        """s + e == a + b exactly (Knuth TwoSum)."""
        s = self.add(a, b)
        bb = self.sub(s, a)
        e = self.add(self.sub(a, self.sub(s, bb)), self.sub(b, bb))
        return s, e

    def fast_two_sum(self, a, b):
        """s + e == a + b exactly, requires |a| >= |b| (or a == 0)."""
        s = self.add(a, b)
        return s, self.sub(b, self.sub(s, a))

    def two_prod(self, a, b):
        """p + e == a * b exactly (fma)."""
        p = self.mul(a, b)
        return p, self.fma(a, b, self.neg(p))


# --------------------------------------------------------------------------
# kernels: Python functions emitting straight-line IR through an FP helper
# --------------------------------------------------------------------------

def _exp_reduce(fp: FP, x):
    """n = rint(x/ln2) (float and int) and r = x - n ln2, |r| <= ~0.3466."""
    k = fp.k
    n = fp.rint(fp.mul(x, k["LOG2E"]))
    mn = fp.neg(n)
    r0 = fp.fma(mn, k["LN2_HI"], x)     # exact (Sterbenz-like, fma)
    r = fp.fma(mn, k["LN2_LO"], r0)
    return n, fp.to_int(n), r, r0


def _exp_reduce_lo(fp: FP, n, r, r0):
    """Rounding error of the second reduction step: x - n ln2 ~= r + rl."""
    return fp.fma(fp.neg(n), fp.k["LN2_LO"], fp.sub(r0, r))


def _expm1_poly(fp: FP, r):
    """e^r - 1 = r + r^2 Q(r) on |r| <= ln2/2."""
    return fp.fma(fp.mul(r, r), fp.poly(r, fp.k["EXP_Q"]), r)


def _clamp(fp: FP, x, lo, hi):
    """Clamp to [lo, hi]; NaN becomes lo (callers re-select NaN)."""
    x = fp.sel(fp.gt(x, lo), x, lo)
    return fp.sel(fp.lt(x, hi), x, hi)


def _clamp_keep_nan(fp: FP, x, lo, hi=None):
    """Clamp to [lo, hi] (or below only); NaN passes through unchanged."""
    x = fp.sel(fp.lt(x, lo), lo, x)
    return x if hi is None else fp.sel(fp.gt(x, hi), hi, x)


def _exp_shift_reduce(fp: FP, x, one_step=False):
    """n = rint(x/ln2) by the shifter trick, r = x - n ln2, |r| <= ~0.3466.

    k = fma(x, 1/ln2, 1.5*2^mant) rounds x/ln2 to an integer held in the
    low mantissa bits of k (|n| < 2^(mant-1)); n = k - 1.5*2^mant exactly.
    r = x - n ln2_hi (exact) - n ln2_lo; with ``one_step`` only
    r = fma(-n, ln2_hi, x) (ln2_hi is ln2 rounded to the working precision;
    absolute error |n| 2^-28.9 in f32 -- for callers that damp it).
    Returns (k, n, r); ``_pow2_from_shift(k)`` gives 2^n without a float ->
    int conversion (one vrndscale + vcvt fewer than rint + fptosi).
    NaN x gives NaN r.
    """
    k = fp.k
    kk = fp.fma(x, k["LOG2E"], k["SHIFT"])
    n = fp.sub(kk, k["SHIFT"])
    mn = fp.neg(n)
    if one_step:
        return kk, n, fp.fma(mn, k["LN2_HI"], x)
    r0 = fp.fma(mn, k["LN2_HI"], x)     # exact (n ln2_hi has few bits)
    return kk, n, fp.fma(mn, k["LN2_LO"], r0)


def _pow2_from_shift(fp: FP, kk, extra=0):
    """2^(n + extra) for the shifter k of ``_exp_shift_reduce``.

    bits(k) = bits(1.5*2^mant) + n, whose low (width - mant) bits are those
    of n: shifting left by mant leaves n << mant (mod 2^width).  Valid when
    n + extra is in the normal exponent range.
    """
    return fp.from_bits(fp.iadd(fp.shl(fp.bits(kk), fp.mant), (fp.bias + extra) << fp.mant))


def _exp(fp: FP, x):
    k = fp.k
    xc = _clamp_keep_nan(fp, x, k["EXP_LO"], k["EXP_HI"])
    kk, _, r = _exp_shift_reduce(fp, xc)
    ni = fp.isub(fp.bits(kk), fp.bits(k["SHIFT"]))      # n as an integer
    # 2^n (1 + p) as (2^n1 (1 + p)) 2^n2 (n1 = n >> 1, n2 = n - n1): the fma
    # gives 2^n1 round(1 + p) exactly (normal), the product rounds once
    # into inf or the subnormals.  NaN x: p is NaN, so is the result.
    n1 = fp.ashr(ni, 1)
    s1 = fp.pow2(n1)
    return fp.mul(fp.fma(_expm1_poly(fp, r), s1, s1), fp.pow2(fp.isub(ni, n1)))


def _expm1(fp: FP, x):
    k = fp.k
    xc = _clamp(fp, x, k["EXPM1_LO"], k["EXP_HI"])
    n, ni, r, r0 = _exp_reduce(fp, xc)
    big = fp.b.icmp_signed(">", ni, fp.i(k["EXPM1_BIG"]))
    t = fp.pow2(fp.b.select(big, fp.i(0), ni))
    # e^(r + rl) - 1 = ph + pl:  ph = r + r^2 Q(r) (fast TwoSum), pl also
    # carries rl (1 + p), the rounding error of the reduction; then
    # 2^n (ph + pl) + (2^n - 1) with the cancellation at n = +-1 exact.
    w = fp.mul(fp.mul(r, r), fp.poly(r, k["EXP_Q"]))
    ph, pl = fp.fast_two_sum(r, w)
    pl = fp.fma(_exp_reduce_lo(fp, n, r, r0), fp.add(ph, 1.0), pl)
    tm1 = fp.sub(t, 1.0)
    e1 = fp.sub(fp.sub(t, tm1), 1.0)                # rounding of 2^n - 1 (n > mant)
    hi, lo = fp.two_sum(fp.mul(t, ph), tm1)
    small = fp.add(hi, fp.add(fp.fma(t, pl, lo), e1))
    large = fp.ldexp(fp.add(fp.add(ph, pl), 1.0), ni)
    y = fp.sel(big, large, small)
    y = fp.sel(fp.eq(x, 0.0), x, y)                 # keep -0
    return fp.sel(fp.isnan(x), x, y)


def _log_parts(fp: FP, f, dk, c=None):
    """k ln2 + log(1+f) (+ c) for f in [sqrt(1/2)-1, sqrt(2)-1], dk = float(k).

    Evaluated as k ln2_hi + (f - (f^2/2 - (s (f^2/2 + R(z)) + k ln2_lo + c)))
    so that the exact f is added last before k ln2_hi.
    """
    k = fp.k
    s = fp.div(f, fp.add(f, 2.0))
    z = fp.mul(s, s)
    hfsq = fp.mul(fp.mul(f, f), 0.5)
    R = fp.mul(z, fp.poly(z, k["LOG_R"]))
    lo = fp.mul(dk, k["LN2_LO"]) if c is None else fp.fma(dk, k["LN2_LO"], c)
    inner = fp.fma(s, fp.add(hfsq, R), lo)
    return fp.fma(dk, k["LN2_HI"], fp.sub(f, fp.sub(hfsq, inner)))


def _split_log(fp: FP, u):
    """u = 2^k m, m in [sqrt(1/2), sqrt(2)); returns (k as int, f = m - 1)."""
    off = 0x3FE6A09E667F3BCD if fp.is64 else 0x3F3504F3   # bits of sqrt(1/2)
    mmask = (1 << fp.mant) - 1
    t = fp.isub(fp.bits(u), off)
    kk = fp.ashr(t, fp.mant)
    m = fp.from_bits(fp.iadd(fp.iand(t, mmask), off))
    return kk, fp.sub(m, 1.0)


def _log_core(fp: FP, x):
    """log(x) for finite x > 0 (subnormals included)."""
    tiny = 2.0 ** (1 - fp.bias)
    sub = fp.lt(x, tiny)
    xs = fp.sel(sub, fp.mul(x, 2.0 ** fp.mant), x)
    kk, f = _split_log(fp, xs)
    kk = fp.isub(kk, fp.b.select(sub, fp.i(fp.mant), fp.i(0)))
    return _log_parts(fp, f, fp.to_float(kk))


def _log(fp: FP, x):
    y = _log_core(fp, x)
    y = fp.sel(fp.eq(x, INF), INF, y)
    y = fp.sel(fp.eq(x, 0.0), -INF, y)
    return fp.sel(fp.b.fcmp_unordered("<", x, fp.v(0.0)), NAN, y)   # x<0 or nan


def _log1p(fp: FP, x):
    u = fp.add(x, 1.0)
    kk, f = _split_log(fp, u)
    # c = ((1 + x) - u) / u, numerator exact
    num = fp.sel(fp.gt(u, 2.0), fp.sub(1.0, fp.sub(u, x)), fp.sub(x, fp.sub(u, 1.0)))
    y = _log_parts(fp, f, fp.to_float(kk), fp.div(num, u))
    y = fp.sel(fp.eq(x, 0.0), x, y)                 # keep -0
    y = fp.sel(fp.eq(x, INF), INF, y)
    y = fp.sel(fp.eq(x, -1.0), -INF, y)
    return fp.sel(fp.b.fcmp_unordered("<", x, fp.v(-1.0)), NAN, y)


def _tanh(fp: FP, x, module):
    a = fp.abs(x)
    if fp.is64:
        a = fp.sel(fp.lt(a, 40.0), a, 40.0)         # tanh == 1 already; nan -> 40
        expm1_fn = get_math_function(module, "expm1", fp.t)
        h = fp.mul(fp.b.call(expm1_fn, [fp.add(a, a)]), 0.5)
        q = fp.div(h, fp.add(h, 1.0))               # tanh = h/(1+h)
        # = h - h*q: the error of q is damped by h (< 1/2 there)
        y = fp.sel(fp.lt(h, 0.5), fp.fma(fp.neg(h), q, h), q)
        y = fp.sel(fp.isnan(x), x, y)
        return fp.copysign(y, x)
    # w = 2|x| = n ln2 + r (n >= 0), h = (e^w - 1)/2 = 2^(n-1) p + (2^(n-1) - 1/2)
    # with p = e^r - 1 from the expm1 polynomial: one fma, no cancellation
    # (2^(n-1) - 1/2 is exact for n <= 25, its rounding negligible beyond).
    # tanh|x| = h/(1+h) = q;  for h < 1/2 as h - h q (the error of q damped).
    # The one-step reduction's error n 2^-28.9 in r is damped by 1/(1+h) ~ 2^(1-n).
    # Tiny |x|: n = 0, h = |x| exactly.  |x| is clamped to 10 (tanh == 1 in
    # f32 above 9.01); NaN passes through all of it.
    a = fp.sel(fp.gt(a, 10.0), 10.0, a)
    kk, _, r = _exp_shift_reduce(fp, fp.add(a, a), one_step=True)
    t = _pow2_from_shift(fp, kk, -1)
    h = fp.fma(t, _expm1_poly(fp, r), fp.sub(t, 0.5))
    q = fp.div(h, fp.add(h, 1.0))
    y = fp.sel(fp.lt(h, 0.5), fp.fma(fp.neg(h), q, h), q)
    return fp.copysign(y, x)


def _sigmoid(fp: FP, x):
    """e = exp(-|x|): x >= 0 -> 1/(1+e), x < 0 -> e/(1+e).

    exp of t = -|x| <= 0 only (clamped below at EXP_LO; NaN passes and gives
    NaN).  Numerator and denominator are both scaled by 2^S (S = 64 / 128)
    so that every intermediate is normal: E = fma(p, 2^(n+S), 2^(n+S)) =
    2^(n+S) round(1 + p) exactly (p = e^r - 1), den = round(2^S + E),
    num = 2^S or E; the division is then the only rounding into the
    subnormals (tiny results are rounded once, not twice).  About 20
    vector ops (f32) with the division.
    """
    k = fp.k
    S = 128 if fp.is64 else 64
    t = _clamp_keep_nan(fp, fp.neg(fp.abs(x)), k["EXP_LO"])
    kk, _, r = _exp_shift_reduce(fp, t)
    scale = _pow2_from_shift(fp, kk, S)
    e_s = fp.fma(_expm1_poly(fp, r), scale, scale)
    num = fp.sel(fp.ge(x, 0.0), 2.0 ** S, e_s)
    return fp.div(num, fp.add(e_s, 2.0 ** S))


def _softplus(fp: FP, x, exp_fn, log1p_fn):
    e = fp.b.call(exp_fn, [fp.neg(fp.abs(x))])
    lp = fp.b.call(log1p_fn, [e])
    return fp.add(fp.sel(fp.gt(x, 0.0), x, 0.0), lp)


def _sincos_f64(d: FP, x, cos: bool, precise: bool):
    """sin/cos of a double; ``precise`` keeps r as a double-double."""
    # n = nearest integer to x*2/pi, using 2/pi as a double-double so that
    # |r| <= pi/4 holds up to |x| ~ 2^52 (plain rint(x*(2/pi)) drifts)
    ph, pl = d.two_prod(x, _TWO_OVER_PI)
    pl = d.fma(x, _TWO_OVER_PI_LO, pl)
    n = d.rint(ph)
    n = d.add(n, d.rint(d.add(d.sub(ph, n), pl)))
    # quadrant n mod 4 computed in floating point (no int overflow for huge n)
    nq = d.sub(n, d.mul(d.floor(d.mul(n, 0.25)), 4.0))
    q = d.to_int(d.sel(d.isfinite(nq), nq, 0.0))
    if cos:
        q = d.iadd(q, 1)
    mn = d.neg(n)
    r1 = d.fma(mn, _PIO2_1, x)                      # exact while |n| < 2^53
    if precise:
        p, pe = d.two_prod(n, _PIO2_2)
        rh, e1 = d.two_sum(r1, d.neg(p))
        rl = d.fma(mn, _PIO2_3, d.sub(e1, pe))
        rh, rl = d.fast_two_sum(rh, rl)
        S, C = _SIN_S["f64"], _COS_C["f64"]
    else:
        rh = d.fma(mn, _PIO2_3, d.fma(mn, _PIO2_2, r1))
        rl = None
        S, C = _SIN_S["f32"], _COS_C["f32"]
    # beyond the accurate range r is meaningless: keep results within [-1, 1]
    ok = d.lt(d.abs(rh), 0.8)
    rh = d.sel(ok, rh, 0.0)
    z = d.mul(rh, rh)
    hz = d.mul(z, 0.5)
    zz = d.mul(z, z)
    if precise:
        rl = d.sel(ok, rl, 0.0)
        s = d.add(rh, d.fma(d.mul(rh, z), d.poly(z, S), d.fma(d.neg(rl), hz, rl)))
        w = d.sub(1.0, hz)
        tail = d.fma(zz, d.poly(z, C), d.neg(d.mul(rh, rl)))
        c = d.add(w, d.add(d.sub(d.sub(1.0, w), hz), tail))
    else:
        s = d.fma(d.mul(rh, z), d.poly(z, S), rh)
        c = d.fma(zz, d.poly(z, C), d.sub(1.0, hz))
    use_cos = d.b.icmp_signed("!=", d.iand(q, 1), d.i(0))
    negate = d.b.icmp_signed("!=", d.iand(q, 2), d.i(0))
    y = d.sel(use_cos, c, s)
    y = d.sel(negate, d.neg(y), y)
    if not cos:
        y = d.sel(d.eq(x, 0.0), x, y)               # keep -0
    return d.sel(d.isfinite(x), y, NAN)


def _pow_core_dd(d: FP, ax, y):
    """|x|^y for finite ax > 0, finite y: double-double log, exp of dd."""
    k = d.k
    # ---- log(ax) = th + tl -------------------------------------------------
    sub = d.lt(ax, 2.0 ** -1022)
    xs = d.sel(sub, d.mul(ax, 2.0 ** 54), ax)
    kk, f = _split_log(d, xs)
    kk = d.isub(kk, d.b.select(sub, d.i(54), d.i(0)))
    dk = d.to_float(kk)
    # s = f / (2 + f) as sh + sl
    dh = d.add(f, 2.0)
    dl = d.add(d.sub(2.0, dh), f)                   # exact: |2| > |f|
    sh = d.div(f, dh)
    rem = d.fma(d.neg(sh), dh, f)                   # f - sh*dh exactly
    sl = d.div(d.fma(d.neg(sh), dl, rem), dh)
    # z = s^2 as zh + zl
    zh, zl = d.two_prod(sh, sh)
    zl = d.fma(d.add(sh, sh), sl, zl)
    # q = 1/3 + z P(z) as qh + ql
    w = d.mul(zh, d.poly(zh, _LOG_P))
    qh, ql = d.fast_two_sum(_THIRD_HI, w)
    ql = d.add(ql, _THIRD_LO)
    # u = z*q, v = s*u  (dd products, low parts to first order)
    uh, ul = d.two_prod(zh, qh)
    ul = d.add(ul, d.fma(zh, ql, d.mul(zl, qh)))
    vh, vl = d.two_prod(sh, uh)
    vl = d.add(vl, d.fma(sh, ul, d.mul(sl, uh)))
    # log(m) = 2 (s + v)
    mh, ml = d.fast_two_sum(sh, vh)
    ml = d.add(ml, d.add(sl, vl))
    mh, ml = d.mul(mh, 2.0), d.mul(ml, 2.0)
    # + k ln2
    kh, kl = d.two_prod(dk, k["LN2_HI"])
    th, tl = d.two_sum(kh, mh)
    tl = d.add(tl, d.add(ml, d.fma(dk, k["LN2_LO"], kl)))
    # ---- y * log = ph + pl -------------------------------------------------
    ph, pl = d.two_prod(y, th)
    pl = d.fma(y, tl, pl)
    out = d.or_(d.not_(d.lt(ph, 800.0)), d.not_(d.gt(ph, -800.0)))
    ph = _clamp(d, ph, -800.0, 800.0)
    pl = d.sel(out, 0.0, pl)
    # ---- exp(ph + pl) ------------------------------------------------------
    n = d.rint(d.mul(ph, k["LOG2E"]))
    ni = d.to_int(n)
    r0 = d.fma(d.neg(n), k["LN2_HI"], ph)           # exact
    rh, rl = d.two_sum(r0, d.fma(d.neg(n), k["LN2_LO"], pl))
    em = _expm1_poly(d, rh)
    p = d.add(d.add(em, d.fma(rl, em, rl)), 1.0)
    return d.ldexp(p, ni)


def _pow_core_simple(d: FP, ax, y):
    """|x|^y in double with single-double log/exp (enough for f32)."""
    t = d.mul(y, _log_core(d, ax))
    t = _clamp(d, t, -200.0, 200.0)
    _, ni, r, _ = _exp_reduce(d, t)
    return d.ldexp(d.add(_expm1_poly(d, r), 1.0), ni)


def _pow(d: FP, x, y, precise: bool):
    """C99 pow on doubles (special cases by selects)."""
    ax = d.abs(x)
    x_ok = d.and_(d.gt(ax, 0.0), d.lt(ax, INF))
    y_fin = d.isfinite(y)
    core = (_pow_core_dd if precise else _pow_core_simple)(
        d, d.sel(x_ok, ax, 1.0), d.sel(y_fin, y, 0.0))
    y_int = d.eq(d.floor(y), y)                     # true for +-inf
    hy = d.mul(y, 0.5)
    y_odd = d.and_(y_int, d.not_(d.eq(d.floor(hy), hy)))
    y_neg = d.lt(y, 0.0)
    m = core
    m = d.sel(d.eq(ax, 0.0), d.sel(y_neg, INF, 0.0), m)
    m = d.sel(d.eq(ax, INF), d.sel(y_neg, 0.0, INF), m)
    y_inf = d.not_(d.or_(y_fin, d.isnan(y)))
    inf_res = d.sel(d.b.icmp_unsigned("==", d.lt(ax, 1.0), y_neg), INF, 0.0)
    m = d.sel(y_inf, d.sel(d.eq(ax, 1.0), 1.0, inf_res), m)
    m = d.sel(d.and_(d.signbit(x), y_odd), d.neg(m), m)
    bad = d.and_(d.lt(x, 0.0), d.gt(x, -INF), y_fin, d.not_(y_int))
    bad = d.or_(bad, d.isnan(x), d.isnan(y))
    m = d.sel(bad, NAN, m)
    return d.sel(d.or_(d.eq(y, 0.0), d.eq(x, 1.0)), 1.0, m)


# --------------------------------------------------------------------------
# public interface
# --------------------------------------------------------------------------

def _type_of(ir_type):
    if isinstance(ir_type, str):
        return {"f32": F32, "float32": F32, "float": F32,
                "f64": F64, "float64": F64, "double": F64}[ir_type]
    if isinstance(ir_type, ir.FloatType):
        return F32
    if isinstance(ir_type, ir.DoubleType):
        return F64
    raise TypeError(f"unsupported math type {ir_type!r}")


def function_name(name: str, ir_type) -> str:
    """Symbol used for ``name`` at ``ir_type``, e.g. ``gc.exp.f32``."""
    return f"gc.{name}.{'f64' if _type_of(ir_type) is F64 else 'f32'}"


def get_math_function(module: ir.Module, name: str, ir_type) -> ir.Function:
    """Return (creating once) ``gc.<name>.<f32|f64>`` in ``module``.

    ``ir_type`` is ``ir.FloatType()``/``ir.DoubleType()`` or ``'f32'``/
    ``'f64'``.  The function is ``internal``, ``alwaysinline`` and takes
    ``ARITY[name]`` arguments of that type.
    """
    if name not in ARITY:
        raise KeyError(f"unknown math function {name!r}; have {MATH_FUNCTIONS}")
    t = _type_of(ir_type)
    sym = function_name(name, t)
    existing = module.globals.get(sym)
    if existing is not None:
        return existing
    fn = ir.Function(module, ir.FunctionType(t, [t] * ARITY[name]), sym)
    fn.linkage = "internal"
    fn.attributes.add("alwaysinline")
    fn.attributes.add("nounwind")
    builder = ir.IRBuilder(fn.append_basic_block("entry"))
    fp = FP(builder, t)
    args = list(fn.args)
    builder.ret(_emit(module, name, t, fp, args))
    return fn


def _emit(module, name, t, fp: FP, args):
    x = args[0]
    if name in ("sqrt", "floor", "ceil", "fabs"):
        return fp.intrinsic(name, x)
    if name == "exp":
        return _exp(fp, x)
    if name == "expm1":
        return _expm1(fp, x)
    if name == "log":
        return _log(fp, x)
    if name == "log1p":
        return _log1p(fp, x)
    if name == "tanh":
        return _tanh(fp, x, module)
    if name == "sigmoid":
        return _sigmoid(fp, x)
    if name == "softplus":
        return _softplus(fp, x, get_math_function(module, "exp", t),
                         get_math_function(module, "log1p", t))
    if name in ("sin", "cos", "pow"):
        b = fp.b
        d = FP(b, F64)
        wide = [a if t is F64 else b.fpext(a, F64) for a in args]
        if name == "pow":
            y = _pow(d, wide[0], wide[1], precise=t is F64)
        else:
            y = _sincos_f64(d, wide[0], cos=name == "cos", precise=t is F64)
        return y if t is F64 else b.fptrunc(y, F32)
    raise KeyError(name)  # pragma: no cover
