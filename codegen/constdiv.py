"""Division of small integers by a constant without a divide instruction, bit for bit.

``x / c`` with ``x`` a float cast of a uint8 or bool (at most 256 values: pixels
normalized by ``/ 255``) and ``c`` a float constant. A divide is several times
slower than a multiply (Zen 4: one 16-lane ``vdivps`` per ~5 cycles, two
``vfmadd`` per cycle), but ``x * (1/c)`` is not ``x / c``: with c = 255 it
is off by one ulp for some x. The corrected quotient (Markstein)::

    r  = RN(1 / c)
    q1 = RN(x * r)
    e  = fma(-q1, c, x)        # x - q1 c, exactly when q1 is near x / c
    q  = fma(e, r, q1)

is the correctly rounded x / c for most divisors and all x, but not for every
divisor (Brisebarre, Muller, Raina 2004). With 256 possible x there is no
theory to trust: :func:`corrected_reciprocal` runs the sequence in exact rational
arithmetic for every x and returns ``r`` only if all of them give ``RN(x / c)``,
the IEEE quotient numpy computes (signed zeros included).
"""

from __future__ import annotations

import functools
from fractions import Fraction

import numpy as np


def round_to(q: Fraction, np_dtype) -> Fraction:
    """``q`` rounded to the nearest ``np_dtype`` value (ties to even, subnormals included),
    as an exact Fraction. No overflow check: callers stay far from the largest value."""
    if q == 0:
        return Fraction(0)
    fi = np.finfo(np_dtype)
    p, emin = fi.nmant + 1, fi.minexp
    sign, q = (-1, -q) if q < 0 else (1, q)
    e = q.numerator.bit_length() - q.denominator.bit_length()
    if Fraction(2) ** e > q:
        e -= 1  # 2^e <= q < 2^(e+1)
    e = max(e, emin)
    scale = Fraction(2) ** (p - 1 - e)
    m = q * scale
    n, rem = divmod(m.numerator, m.denominator)
    half = 2 * rem - m.denominator  # sign of (m - n) - 1/2
    if half > 0 or (half == 0 and n % 2 == 1):
        n += 1
    return sign * Fraction(n) / scale


@functools.lru_cache(maxsize=256)
def corrected_reciprocal(c: float, np_dtype_name: str, count: int):
    """``RN(1 / c)`` in ``np_dtype_name`` if the corrected sequence above gives the IEEE
    quotient ``x / c`` for every x in ``0 .. count - 1``; else None (also for c zero, not
    finite, with a reciprocal that is not a normal number, or with a subnormal quotient)."""
    dt = np.dtype(np_dtype_name)
    c = dt.type(c)
    if not np.isfinite(c) or c == 0:
        return None
    with np.errstate(all="ignore"):
        r = dt.type(1) / c
    if not np.isfinite(r) or abs(r) < np.finfo(dt).tiny:
        return None
    cf, rf = Fraction(float(c)), Fraction(float(r))
    for v in range(1, count):  # x = 0: q1 = 0 with the sign of r (of c), e = +0, q = q1: 0 / c
        x = Fraction(v)
        q1 = round_to(x * rf, dt)
        e = round_to(x - q1 * cf, dt)
        q = round_to(e * rf + q1, dt)
        want = dt.type(v) / c
        if abs(want) < np.finfo(dt).tiny or q != Fraction(float(want)):  # (subnormal quotients: not tried)
            return None
    return float(r)
