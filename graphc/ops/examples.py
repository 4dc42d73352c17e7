"""Sample calls shared by op records, for the registry-parametrized tests.

Shapes cover the cases every op must get right: scalars (0-d), size-1 and
size-0 dims, broadcasting, and every dtype an op accepts.
"""

from __future__ import annotations

from ..dtypes import bool_, float32, float64, int32, int64, uint8
from .registry import Arg, Example

UNARY_SHAPES = [(), (5,), (2, 3), (0, 3), (1, 4, 1)]
BINARY_SHAPES = [((2, 3), (2, 3)), ((2, 3), (3,)), ((2, 1), (1, 3)), ((0, 3), (1, 3)),
                 ((), (4,)), ((3, 1, 2), (4, 1)), ((1,), ())]
MIXED_DTYPES = [(int32, float32), (float32, float64), (int32, int64), (bool_, int32), (int64, float32)]


def unary_examples(dtypes, low=-3.0, high=3.0, **kw):
    """One example per (shape, dtype): values drawn from [low, high]."""
    return tuple(Example((Arg(s, d, low, high, **kw),)) for d in dtypes for s in UNARY_SHAPES)


def binary_examples(dtypes, low=-3.0, high=3.0, scalars=(2, 0.5), mixed=True, low_b=None, high_b=None):
    """Broadcasting pairs per dtype, mixed-dtype pairs (promotion) and weak Python scalars."""
    lb = low if low_b is None else low_b
    hb = high if high_b is None else high_b
    out = [Example((Arg(sa, d, low, high), Arg(sb, d, lb, hb))) for d in dtypes for sa, sb in BINARY_SHAPES]
    if mixed:
        for da, db in MIXED_DTYPES:
            out.append(Example((Arg((2, 3), da, low, high), Arg((3,), db, lb, hb))))
    for s in scalars:
        d = dtypes[0]
        out.append(Example((Arg((2, 3), d, low, high), s)))
        out.append(Example((s, Arg((3,), d, lb, hb))))
    return tuple(out)


def reduce_examples(dtypes, low=-3.0, high=3.0, empty_ok=True):
    """Reductions over no axis list (all), one axis, several, negative axes; keepdims both ways."""
    cases = [((2, 3), {}), ((2, 3), {"axis": 1}), ((2, 3, 4), {"axis": (0, 2)}),
             ((2, 3, 4), {"axis": -1, "keepdims": True}), ((4,), {"axis": 0}),
             ((3, 1), {"axis": 1}), ((), {}), ((2, 3), {"axis": None, "keepdims": True})]
    if empty_ok:
        cases.append(((0, 3), {"axis": 0}))
    cases.append(((2, 0), {"axis": 0}))
    return tuple(Example((Arg(s, d, low, high),), kw) for d in dtypes for s, kw in cases)


FLOATS = (float32, float64)
NUMERIC = (float32, float64, int32, int64)
ALL = (float32, float64, int32, int64, bool_)
MOVABLE = ALL + (uint8,)  # what shape and indexing ops move, cast converts (uint8: storage only)
