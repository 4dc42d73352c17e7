"""The element types of graphc and numpy's promotion rules between them.

A graph value has one of the five compute types ``float32``, ``float64``,
``int32``, ``int64``, ``bool``, or the storage type ``uint8``.

``uint8`` holds data as it comes from disk (image pixels, bytes): it can be
fed, stored as a parameter or constant, viewed and moved by the shape and
indexing ops (reshape, transpose, slice, take, concatenate, ...) and
converted with ``cast`` / ``astype``; arithmetic, comparisons, reductions and
matmul reject it with a message saying to cast first. Reading a batch of
pixels as ``uint8`` and normalizing it inside the step moves a quarter of the
bytes of a ``float32`` copy.

Promotion between the compute types follows numpy 2 (NEP 50):

* array with array: ``bool < int32 < int64`` and ``float32 < float64``;
  an integer meeting ``float32`` gives ``float64`` (as numpy does), an
  integer meeting ``float64`` gives ``float64``;
* a Python scalar is *weak*: ``f32 + 2.0 -> f32``, ``i32 + 2 -> i32``,
  ``i32 + 2.0 -> f64``, ``bool + 2 -> i64``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class DType:
    """An element type: its long name, the short name used by the printer, and numpy's dtype."""

    name: str
    short: str
    np_dtype: np.dtype
    itemsize: int

    @property
    def is_float(self) -> bool:
        return self.np_dtype.kind == "f"

    @property
    def is_int(self) -> bool:
        return self.np_dtype.kind == "i"

    @property
    def is_bool(self) -> bool:
        return self.np_dtype.kind == "b"

    @property
    def is_unsigned(self) -> bool:
        return self.np_dtype.kind == "u"

    @property
    def is_numeric(self) -> bool:
        return not self.is_bool

    def __repr__(self) -> str:
        return f"graphc.{self.name}"

    def __str__(self) -> str:
        return self.short


float32 = DType("float32", "f32", np.dtype(np.float32), 4)
float64 = DType("float64", "f64", np.dtype(np.float64), 8)
int32 = DType("int32", "i32", np.dtype(np.int32), 4)
int64 = DType("int64", "i64", np.dtype(np.int64), 8)
bool_ = DType("bool", "bool", np.dtype(np.bool_), 1)
uint8 = DType("uint8", "u8", np.dtype(np.uint8), 1)

ALL_DTYPES = (float32, float64, int32, int64, bool_)  # the compute types
STORAGE_DTYPES = (uint8,)  # moved and converted, never computed on (see the module docstring)
ANY_DTYPES = ALL_DTYPES + STORAGE_DTYPES
FLOAT_DTYPES = (float32, float64)
INT_DTYPES = (int32, int64)
INDEX_DTYPES = (int32, int64, uint8)  # what take / one_hot / scatter_add accept as indices (uint8: labels)
NUMERIC_DTYPES = (float32, float64, int32, int64)

_BY_NAME = {}
for _d in ANY_DTYPES:
    _BY_NAME[_d.name] = _d
    _BY_NAME[_d.short] = _d
_BY_NAME["bool_"] = bool_


def as_dtype(x) -> DType:
    """Convert a DType, a name ('float32', 'f32'), a numpy dtype or a Python type to a DType."""
    if isinstance(x, DType):
        return x
    if isinstance(x, str) and x in _BY_NAME:
        return _BY_NAME[x]
    if x is float:
        return float64
    if x is int:
        return int64
    if x is bool:
        return bool_
    try:
        npd = np.dtype(x)
    except TypeError:
        raise TypeError(f"not a graphc dtype: {x!r} (expected one of "
                        f"{', '.join(d.name for d in ANY_DTYPES)})") from None
    for d in ANY_DTYPES:
        if d.np_dtype == npd:
            return d
    raise TypeError(f"unsupported dtype {npd} (graphc supports "
                    f"{', '.join(d.name for d in ANY_DTYPES)})")


def promote_types(*dtypes: DType) -> DType:
    """numpy's promotion of array dtypes, e.g. ``promote_types(int32, float32) == float64``."""
    return as_dtype(np.result_type(*(d.np_dtype for d in dtypes)))


def result_type(*operands) -> DType:
    """Promotion of DTypes and weak Python scalars (bool, int, float) as numpy 2 does it."""
    arrays = [as_dtype(o) for o in operands if isinstance(o, DType)]
    scalars = [o for o in operands if not isinstance(o, DType)]
    if not arrays:
        return as_dtype(np.result_type(*scalars))
    base = promote_types(*arrays)
    for s in scalars:
        if isinstance(s, (bool, np.bool_)):
            continue
        if isinstance(s, (int, np.integer)):
            if base.is_bool:
                base = int64
        elif isinstance(s, (float, np.floating)):
            if not base.is_float:
                base = float64
        else:
            raise TypeError(f"unsupported scalar {s!r} of type {type(s).__name__}")
    return base
