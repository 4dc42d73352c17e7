"""Shape ops: reshape, broadcast_to, expand_dims, squeeze, concatenate, stack, slice, pad.

All attributes are stored normalized (``-1`` resolved in reshape, axes made
non-negative, slice bounds made concrete), so equal ops print equal.
``getitem`` turns numpy basic indexing (ints, slices, ``None``, ``...``) into
one ``slice`` and one ``reshape``; an integer tensor index becomes ``take``.
"""

from __future__ import annotations

import builtins

import numpy as np

from ..dtypes import ALL_DTYPES, ANY_DTYPES, as_dtype, float32, uint8
from ..errors import GraphError
from ..ir import TensorType
from ..tensor import Tensor, as_tensor, constant, node_op
from .elementwise import promote
from .examples import ALL, MOVABLE
from .registry import Arg, Example, OpDef, OpTypeError, normalize_axes, normalize_axis, register

__all__ = ["reshape", "broadcast_to", "expand_dims", "squeeze", "concatenate", "stack", "slice",
           "pad", "getitem", "full", "zeros", "ones", "zeros_like", "ones_like"]


def _same_dtype(op, xs):
    for x in xs[1:]:
        if x.dtype != xs[0].dtype:
            raise OpTypeError(f"dtypes {xs[0].dtype.name} and {x.dtype.name} differ")


def _shape_attr(shape) -> tuple:
    if isinstance(shape, (int, np.integer)):
        shape = (shape,)
    try:
        return tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        raise OpTypeError(f"shape must be a tuple of ints, got {shape!r}") from None


# ---------------------------------------------------------------- reshape

def _normalize_reshape(types, attrs):
    x = types[0]
    shape = list(_shape_attr(attrs["shape"]))
    if shape.count(-1) > 1:
        raise OpTypeError(f"can only infer one dimension, got shape {tuple(shape)}")
    if any(s < -1 for s in shape):
        raise OpTypeError(f"negative dimension in shape {tuple(shape)}")
    if -1 in shape:
        known = int(np.prod([s for s in shape if s != -1], dtype=np.int64))
        i = shape.index(-1)
        if known == 0 or x.size % known:
            raise OpTypeError(f"cannot reshape {x} (size {x.size}) into {tuple(shape)}")
        shape[i] = x.size // known
    return {"shape": tuple(shape)}


def _infer_reshape(x, *, shape):
    if int(np.prod(shape, dtype=np.int64)) != x.size:
        raise OpTypeError(f"cannot reshape {x} (size {x.size}) into {shape}")
    return TensorType(shape, x.dtype)


def reshape(x, shape):
    """The same elements (row-major order) in a new shape; one dim may be -1."""
    return node_op("reshape", [as_tensor(x)], shape=shape)


register(OpDef("reshape", "shape", _infer_reshape, lambda xp, x, shape: xp.reshape(x, shape),
               attrs={"shape": None}, normalize=_normalize_reshape, doc="same elements, new shape",
               vjp=lambda g, x, out, shape: (reshape(g, x.shape),),
               api=reshape, oracle=lambda x, shape: np.reshape(x, shape),
               examples=tuple(Example((Arg(s, d),), {"shape": t}) for d in MOVABLE for s, t in
                              [((2, 3), (3, 2)), ((2, 3), (-1,)), ((4,), (2, 1, 2)), ((), (1, 1)),
                               ((0, 3), (3, 0)), ((2, 3, 4), (6, -1))])))


# ---------------------------------------------------------------- broadcast_to

def _infer_broadcast(x, *, shape):
    if len(shape) < x.ndim:
        raise OpTypeError(f"cannot broadcast {x} to the lower rank shape {shape}")
    for xs, s in zip(reversed(x.shape), reversed(shape)):
        if xs != s and xs != 1:
            raise OpTypeError(f"cannot broadcast {x} to {shape}")
    return TensorType(shape, x.dtype)


def broadcast_to(x, shape):
    """Repeat size-1 (and missing leading) dims of ``x`` to ``shape`` (numpy rules)."""
    x = as_tensor(x)
    try:
        shape = _shape_attr(shape)
    except OpTypeError as e:
        raise GraphError("broadcast_to", str(e), operands=[x.type]) from None
    return x if x.shape == shape else node_op("broadcast_to", [x], shape=shape)


register(OpDef("broadcast_to", "shape", _infer_broadcast,
               lambda xp, x, shape: xp.broadcast_to(x, shape),
               attrs={"shape": None}, normalize=lambda t, a: {"shape": _shape_attr(a["shape"])},
               doc="repeat size-1 dims (an index map: free inside fused kernels)", api=broadcast_to,
               # the autodiff pass sums every cotangent back to its input's shape, in one place
               vjp=lambda g, x, out, shape: (g,),
               oracle=lambda x, shape: np.broadcast_to(x, shape),
               examples=tuple(Example((Arg(s, d),), {"shape": t}) for d in MOVABLE for s, t in
                              [((3,), (2, 3)), ((2, 1), (2, 4)), ((), (2, 2)), ((1, 3), (0, 3)),
                               ((2, 1, 3), (4, 2, 5, 3))])))


# ---------------------------------------------------------------- expand_dims / squeeze

def _normalize_expand(types, attrs):
    axes = attrs["axes"]
    out_ndim = types[0].ndim + (1 if isinstance(axes, (int, np.integer)) else len(axes))
    return {"axes": normalize_axes(axes, out_ndim)}


def _infer_expand(x, *, axes):
    shape = list(x.shape)
    for a in axes:
        shape.insert(a, 1)
    return TensorType(tuple(shape), x.dtype)


def expand_dims(x, axis):
    """Insert size-1 dims at ``axis`` (an int or a tuple of positions in the result)."""
    return node_op("expand_dims", [as_tensor(x)], axes=axis)


register(OpDef("expand_dims", "shape", _infer_expand, lambda xp, x, axes: xp.expand_dims(x, axes),
               attrs={"axes": None}, normalize=_normalize_expand, doc="insert size-1 dims",
               vjp=lambda g, x, out, axes: (reshape(g, x.shape),),
               api=expand_dims, oracle=lambda x, axis: np.expand_dims(x, axis),
               examples=tuple(Example((Arg(s, d),), {"axis": a}) for d in MOVABLE for s, a in
                              [((2, 3), 0), ((2, 3), -1), ((2, 3), (0, 3)), ((), 0), ((0,), 1)])))


def _normalize_squeeze(types, attrs):
    x = types[0]
    axes = attrs["axes"]
    if axes is None:
        axes = tuple(i for i, s in enumerate(x.shape) if s == 1)
    return {"axes": normalize_axes(axes, x.ndim)}


def _infer_squeeze(x, *, axes):
    for a in axes:
        if x.shape[a] != 1:
            raise OpTypeError(f"cannot squeeze axis {a} of size {x.shape[a]} in {x}")
    return TensorType(tuple(s for i, s in enumerate(x.shape) if i not in axes), x.dtype)


def squeeze(x, axis=None):
    """Remove size-1 dims (all of them, or those in ``axis``)."""
    return node_op("squeeze", [as_tensor(x)], axes=axis)


register(OpDef("squeeze", "shape", _infer_squeeze, lambda xp, x, axes: xp.squeeze(x, axes),
               attrs={"axes": None}, normalize=_normalize_squeeze, doc="remove size-1 dims",
               vjp=lambda g, x, out, axes: (reshape(g, x.shape),),
               api=squeeze, oracle=lambda x, axis=None: np.squeeze(x, axis),
               examples=tuple(Example((Arg(s, d),), kw) for d in MOVABLE for s, kw in
                              [((1, 3, 1), {}), ((1, 3, 1), {"axis": -1}), ((1,), {"axis": 0}),
                               ((1, 0), {"axis": 0}), ((2, 3), {})])))


# ---------------------------------------------------------------- concatenate / stack

def _normalize_concat(types, attrs):
    if types[0].ndim == 0:
        raise OpTypeError("zero-dimensional arrays cannot be concatenated")
    return {"axis": normalize_axis(attrs["axis"], types[0].ndim)}


def _infer_concat(*xs, axis):
    _same_dtype("concatenate", xs)
    first = xs[0]
    for x in xs[1:]:
        if x.ndim != first.ndim or any(a != b for i, (a, b) in enumerate(zip(x.shape, first.shape))
                                       if i != axis):
            raise OpTypeError(f"shapes {first} and {x} differ off axis {axis}")
    shape = list(first.shape)
    shape[axis] = builtins.sum(x.shape[axis] for x in xs)
    return TensorType(tuple(shape), first.dtype)


def concatenate(xs, axis=0):
    """Join arrays along an existing axis (dtypes promote as in numpy)."""
    xs = promote("concatenate", list(xs), allowed=ANY_DTYPES)
    return node_op("concatenate", xs, axis=axis)


def _normalize_stack(types, attrs):
    return {"axis": normalize_axis(attrs["axis"], types[0].ndim + 1)}


def _infer_stack(*xs, axis):
    _same_dtype("stack", xs)
    for x in xs[1:]:
        if x.shape != xs[0].shape:
            raise OpTypeError(f"all inputs must have the same shape, got {xs[0]} and {x}")
    shape = list(xs[0].shape)
    shape.insert(axis, len(xs))
    return TensorType(tuple(shape), xs[0].dtype)


def stack(xs, axis=0):
    """Join equal-shaped arrays along a new axis."""
    xs = promote("stack", list(xs), allowed=ANY_DTYPES)
    return node_op("stack", xs, axis=axis)


def _concat_vjp(g, *xs_out, axis):
    """Each input gets its window of the cotangent."""
    xs = xs_out[:-1]
    out, start = [], 0
    for x in xs:
        starts = [0] * g.ndim
        stops = list(g.shape)
        starts[axis], stops[axis] = start, start + x.shape[axis]
        out.append(slice(g, starts, stops))
        start += x.shape[axis]
    return tuple(out)


def _stack_vjp(g, *xs_out, axis):
    """Input i gets the cotangent's i-th entry along the new axis."""
    xs = xs_out[:-1]
    return tuple(getitem(g, (builtins.slice(None),) * axis + (i,)) for i in range(len(xs)))


def _variadic_examples():
    out = []
    for d in MOVABLE:
        out.append(Example(([Arg((2, 3), d), Arg((1, 3), d)],), {"axis": 0}))
        out.append(Example(([Arg((2, 3), d), Arg((2, 0), d), Arg((2, 2), d)],), {"axis": -1}))
    return tuple(out)


register(OpDef("concatenate", "shape", _infer_concat, lambda xp, *xs, axis: xp.concatenate(xs, axis),
               nin=None, attrs={"axis": 0}, normalize=_normalize_concat, doc="join along an axis",
               vjp=_concat_vjp,
               api=concatenate, oracle=lambda xs, axis=0: np.concatenate(xs, axis),
               examples=_variadic_examples()
               + (Example(([Arg((2,), ALL[0]), Arg((3,), ALL[2])],), {"axis": 0}),)))
register(OpDef("stack", "shape", _infer_stack, lambda xp, *xs, axis: xp.stack(xs, axis),
               nin=None, attrs={"axis": 0}, normalize=_normalize_stack, doc="join along a new axis",
               vjp=_stack_vjp,
               api=stack, oracle=lambda xs, axis=0: np.stack(xs, axis),
               examples=tuple(Example(([Arg(s, d), Arg(s, d), Arg(s, d)],), {"axis": a}) for d in MOVABLE
                              for s, a in [((2, 3), 0), ((2, 3), -1), ((), 0), ((0, 2), 1)])))


# ---------------------------------------------------------------- slice

def _normalize_slice(types, attrs):
    """IR slice bounds are literal: axis i takes ``range(starts[i], stops[i], steps[i])``.

    (``stops[i] == -1`` with a negative step means "through index 0"; the API
    functions turn Python slice notation into these concrete bounds.)
    """
    x = types[0]
    n = x.ndim
    try:
        starts, stops, steps = (tuple(int(v) for v in attrs[k]) for k in ("starts", "stops", "steps"))
    except (TypeError, ValueError):
        raise OpTypeError("starts, stops and steps must be sequences of ints") from None
    if not len(starts) == len(stops) == len(steps) == n:
        raise OpTypeError(f"starts/stops/steps need one entry per axis of {x}")
    starts, stops = list(starts), list(stops)
    for i, (dim, a, b, c) in enumerate(zip(x.shape, starts, stops, steps)):
        if c == 0:
            raise OpTypeError("slice step cannot be zero")
        if not len(range(a, b, c)):  # any empty range (x[::-1] of an empty axis: -1, -1, -1) is (0, 0)
            starts[i] = stops[i] = a = b = 0
        if not (0 <= a <= dim and -1 <= b <= dim) or (c < 0 and len(range(a, b, c)) and a >= dim):
            raise OpTypeError(f"slice bounds ({a}, {b}, {c}) are outside an axis of size {dim}")
    return {"starts": tuple(starts), "stops": tuple(stops), "steps": steps}


def _infer_slice(x, *, starts, stops, steps):
    shape = tuple(len(range(a, b, c)) for a, b, c in zip(starts, stops, steps))
    return TensorType(shape, x.dtype)


def _slice_ref(xp, x, starts, stops, steps):
    index = tuple(builtins.slice(a, None if (c < 0 and b < 0) else b, c)
                  for a, b, c in zip(starts, stops, steps))
    return x[index]


def slice(x, starts, stops, steps=None):
    """Strided slice with one (start, stop, step) per axis, Python slice semantics (None = default)."""
    x = as_tensor(x)
    n = x.ndim
    steps = (None,) * n if steps is None else tuple(steps)
    if not len(starts) == len(stops) == len(steps) == n:
        raise GraphError("slice", f"starts/stops/steps need one entry per axis of {x.type}", operands=[x.type])
    if any(c == 0 for c in steps):
        raise GraphError("slice", "slice step cannot be zero", operands=[x.type])
    bounds = [builtins.slice(a, b, c).indices(dim) for dim, a, b, c in zip(x.shape, starts, stops, steps)]
    return node_op("slice", [x], starts=tuple(b[0] for b in bounds), stops=tuple(b[1] for b in bounds),
                   steps=tuple(b[2] for b in bounds))


def _slice_vjp(g, x, out, starts, stops, steps):
    """The adjoint of a strided window: g scattered back into zeros of x's shape.

    Per axis taking ``range(a, b, c)`` (n elements): a negative step is the
    reversed window with step |c| from its last element; a step s > 1
    interleaves s - 1 zeros after each element (stack + reshape); then zero
    padding puts the window at its offset.
    """
    if any(len(range(a, b, c)) == 0 for a, b, c in zip(starts, stops, steps)):
        return (zeros_like(x),)
    t = g
    for axis, (dim, a, b, c) in enumerate(zip(x.shape, starts, stops, steps)):
        n = len(range(a, b, c))
        if c < 0:
            rev = [builtins.slice(None)] * t.ndim
            rev[axis] = builtins.slice(None, None, -1)
            t = getitem(t, tuple(rev))
            a, c = a + (n - 1) * c, -c
        if c > 1:
            z = zeros_like(t)
            t = stack([t] + [z] * (c - 1), axis=axis + 1)
            shape = list(t.shape)
            shape[axis:axis + 2] = [n * c]
            t = reshape(t, tuple(shape))
            keep = [builtins.slice(None)] * t.ndim
            keep[axis] = builtins.slice(0, (n - 1) * c + 1)
            t = getitem(t, tuple(keep))
        width = [(0, 0)] * t.ndim
        width[axis] = (a, dim - a - t.shape[axis])
        if width[axis] != (0, 0):
            t = pad(t, tuple(width))
    return (t,)


_GETITEM_CASES = [((5,), (builtins.slice(1, 4),)), ((4, 5), (builtins.slice(None), builtins.slice(1, 3))),
                  ((4, 5), (builtins.slice(None, None, -1), builtins.slice(0, 5, 2))),
                  ((4, 5), (1,)), ((4, 5), (-1, builtins.slice(None, None, -2))),
                  ((2, 3, 4), (Ellipsis, 1)), ((2, 3), (None, builtins.slice(0, 1), None)),
                  ((3,), (builtins.slice(5, 10),)), ((0, 3), (builtins.slice(None), 2)), ((2, 3), ())]
register(OpDef("slice", "shape", _infer_slice, _slice_ref,
               attrs={"starts": None, "stops": None, "steps": None}, normalize=_normalize_slice,
               vjp=_slice_vjp,
               doc="strided window of each axis", api=lambda x, index: x[index],
               oracle=lambda x, index: x[index],
               examples=tuple(Example((Arg(s, d),), {"index": i}) for d in MOVABLE for s, i in _GETITEM_CASES)))


def getitem(x: Tensor, index) -> Tensor:
    """numpy basic indexing: ints, slices, ``None`` and ``...``; a 1-D integer tensor on one axis.

    Result: one ``slice`` node (if it selects anything less than everything)
    and one ``reshape`` (dropping integer-indexed axes, adding ``None`` axes).
    """
    x = as_tensor(x)
    if not isinstance(index, tuple):
        index = (index,)
    tensor_pos = [i for i, ix in enumerate(index) if isinstance(ix, (Tensor, np.ndarray, list))]
    if tensor_pos:
        return _getitem_take(x, index, tensor_pos)
    n_real = builtins.sum(1 for ix in index if ix is not None and ix is not Ellipsis)
    if builtins.sum(1 for ix in index if ix is Ellipsis) > 1:
        raise GraphError("getitem", "an index can only have a single ellipsis", operands=[x.type])
    if n_real > x.ndim:
        raise GraphError("getitem", f"too many indices ({n_real}) for {x.type}", operands=[x.type])
    expanded = []
    for ix in index:
        if ix is Ellipsis:
            expanded.extend([builtins.slice(None)] * (x.ndim - n_real))
        else:
            expanded.append(ix)
    if Ellipsis not in index:
        expanded.extend([builtins.slice(None)] * (x.ndim - n_real))
    starts, stops, steps, out_shape = [], [], [], []
    axis = 0
    for ix in expanded:
        if ix is None:
            out_shape.append(1)
            continue
        dim = x.shape[axis]
        if isinstance(ix, builtins.slice):
            if ix.step == 0:
                raise GraphError("getitem", "slice step cannot be zero", operands=[x.type])
            a, b, c = ix.indices(dim)
            starts.append(a), stops.append(b), steps.append(c)
            out_shape.append(len(range(a, b, c)))
        elif isinstance(ix, (int, np.integer)) and not isinstance(ix, bool):
            if not -dim <= ix < dim:
                raise GraphError("getitem", f"index {ix} is out of bounds for axis {axis} with size {dim}",
                                 operands=[x.type])
            i = int(ix) % dim
            starts.append(i), stops.append(i + 1), steps.append(1)
        else:
            raise GraphError("getitem", f"unsupported index {ix!r} (use ints, slices, None, ... "
                             "or an integer tensor)", operands=[x.type])
        axis += 1
    out = x
    if (tuple(starts), tuple(stops), tuple(steps)) != ((0,) * x.ndim, x.shape, (1,) * x.ndim):
        out = node_op("slice", [x], starts=tuple(starts), stops=tuple(stops), steps=tuple(steps))
    if tuple(out_shape) != out.shape:
        out = node_op("reshape", [out], shape=tuple(out_shape))
    return out


def _getitem_take(x, index, tensor_pos):
    """``x[..., idx, ...]`` with one integer array index: ``take`` along that axis."""
    if len(tensor_pos) > 1 or any(ix is None or ix is Ellipsis for ix in index):
        raise GraphError("getitem", "only one integer-array index, without None or ..., is supported",
                         operands=[x.type])
    pos = tensor_pos[0]
    if any(not (isinstance(ix, builtins.slice) and ix == builtins.slice(None)) for i, ix in enumerate(index)
           if i != pos):
        raise GraphError("getitem", "an integer-array index can only be combined with ':' slices",
                         operands=[x.type])
    from .index import take
    return take(x, index[pos], axis=pos)


# ---------------------------------------------------------------- pad

def _normalize_pad(types, attrs):
    x = types[0]
    pw = attrs["pad_width"]
    try:
        pw = np.broadcast_to(np.asarray(pw, dtype=np.int64), (x.ndim, 2))
    except ValueError:
        raise OpTypeError(f"pad_width {pw!r} does not fit rank {x.ndim}") from None
    if (pw < 0).any():
        raise OpTypeError(f"pad widths must be >= 0, got {pw.tolist()}")
    value = attrs["value"]
    if not isinstance(value, (bool, int, float, np.generic)):
        raise OpTypeError(f"pad value must be a number, got {value!r}")
    return {"pad_width": tuple(tuple(int(v) for v in row) for row in pw), "value": value}


def _infer_pad(x, *, pad_width, value):
    return TensorType(tuple(s + a + b for s, (a, b) in zip(x.shape, pad_width)), x.dtype)


def _pad_vjp(g, x, out, pad_width, value):
    """The cotangent of the interior: a window of g."""
    starts = [lo for lo, _ in pad_width]
    return (slice(g, starts, [lo + d for lo, d in zip(starts, x.shape)]),)


def pad(x, pad_width, constant_values=0):
    """Add ``pad_width[i] = (before, after)`` elements of ``constant_values`` around axis i."""
    x = as_tensor(x)
    v = constant_values
    v = v.item() if isinstance(v, np.generic) else v
    if x.dtype.is_float:
        v = float(v)
    elif (x.dtype.is_int or x.dtype.is_unsigned) and isinstance(v, float) and v.is_integer():
        v = int(v)
    if x.dtype.is_unsigned and not (isinstance(v, int) and 0 <= v <= 255):
        raise GraphError("pad", f"constant_values={v!r} is not a uint8 value (0-255)", operands=[x.type])
    return node_op("pad", [x], pad_width=pad_width, value=v)


register(OpDef("pad", "shape", _infer_pad,
               lambda xp, x, pad_width, value: xp.pad(x, pad_width, value),
               attrs={"pad_width": None, "value": 0}, normalize=_normalize_pad,
               vjp=_pad_vjp,
               doc="constant padding around each axis", api=pad,
               oracle=lambda x, pad_width, constant_values=0: np.pad(x, pad_width, constant_values=constant_values),
               examples=tuple(Example((Arg(s, d),), kw) for d in ALL_DTYPES[:3] + (uint8,) for s, kw in
                              [((2, 3), {"pad_width": ((1, 0), (2, 1))}), ((3,), {"pad_width": 2}),
                               ((2, 3), {"pad_width": ((0, 0), (1, 1)), "constant_values": 1}),
                               ((0, 2), {"pad_width": 1})])))


# ---------------------------------------------------------------- filled arrays

def full(shape, fill_value, dtype=None) -> Tensor:
    """An array of ``shape`` filled with ``fill_value``: a 0-d constant and a broadcast."""
    if dtype is None:
        dtype = float32 if isinstance(fill_value, float) else as_dtype(np.asarray(fill_value).dtype)
    return broadcast_to(constant(fill_value, dtype=as_dtype(dtype)), tuple(shape))


def zeros(shape, dtype=float32) -> Tensor:
    """``full(shape, 0, dtype)``."""
    return full(shape, 0, dtype)


def ones(shape, dtype=float32) -> Tensor:
    """``full(shape, 1, dtype)``."""
    return full(shape, 1, dtype)


def zeros_like(x) -> Tensor:
    x = as_tensor(x)
    return full(x.shape, 0, x.dtype)


def ones_like(x) -> Tensor:
    x = as_tensor(x)
    return full(x.shape, 1, x.dtype)
