"""Graph-building errors name the op, the operands' types and the user's file:line."""

from __future__ import annotations

import numpy as np
import pytest

import graphc as gc

THIS_FILE = __file__


def _line_of(fn) -> int:
    return fn.__code__.co_firstlineno


def _check(fn, *fragments):
    with pytest.raises(gc.GraphError) as info:
        fn()
    msg = str(info.value)
    for frag in fragments:
        assert frag in msg, f"{frag!r} not in {msg!r}"
    assert f"{THIS_FILE}:{_line_of(fn)}" in msg, msg
    assert info.value.location == f"{THIS_FILE}:{_line_of(fn)}"
    assert isinstance(info.value, ValueError)
    return info.value


f32 = gc.float32


def test_broadcast_error_names_op_shapes_and_line():
    a = gc.placeholder((3, 4))
    b = gc.placeholder((5,))
    err = _check(lambda: a + b, "add", "f32[3,4]", "f32[5]", "do not broadcast")
    assert err.op == "add"


BINARY = [op for op in gc.all_ops() if op.kind == "elementwise" and op.nin == 2]


@pytest.mark.parametrize("op", BINARY, ids=lambda o: o.name)
def test_every_binary_op_rejects_unbroadcastable_shapes(op):
    dtype = gc.bool_ if op.name.startswith("logical") else gc.float32
    a = gc.placeholder((2, 3), dtype)
    b = gc.placeholder((4,), dtype)
    _check(lambda: op.api(a, b), op.api.__name__, f"{dtype.short}[2,3]", f"{dtype.short}[4]")


FLOAT_UNARY = [op for op in gc.all_ops() if op.kind == "elementwise" and op.nin == 1
               and op.name not in ("neg", "abs", "sign", "square", "relu", "logical_not", "cast")]


@pytest.mark.parametrize("op", FLOAT_UNARY, ids=lambda o: o.name)
def test_float_ops_reject_bool(op):
    x = gc.placeholder((3,), gc.bool_)
    _check(lambda: op.api(x), op.name, "bool[3]", "not supported")


REDUCTIONS = [op for op in gc.all_ops() if op.kind == "reduce"]


@pytest.mark.parametrize("op", REDUCTIONS, ids=lambda o: o.name)
def test_reductions_reject_bad_axis(op):
    x = gc.placeholder((2, 3))
    _check(lambda: op.api(x, axis=2), op.name, "axis 2 is out of range for rank 2", "f32[2,3]")


@pytest.mark.parametrize("name", ["max", "min", "argmax", "argmin"])
def test_reductions_without_identity_reject_empty_axes(name):
    x = gc.placeholder((0, 3))
    _check(lambda: getattr(gc, name)(x, axis=0), name, "empty", "f32[0,3]")


def test_matmul_contraction_mismatch():
    a = gc.placeholder((2, 3))
    b = gc.placeholder((4, 5))
    _check(lambda: a @ b, "matmul", "contraction", "f32[2,3]", "f32[4,5]")


def test_matmul_batch_mismatch():
    a = gc.placeholder((2, 2, 3))
    b = gc.placeholder((3, 3, 5))
    _check(lambda: gc.matmul(a, b), "matmul", "batch dims", "f32[2,2,3]", "f32[3,3,5]")


def test_matmul_scalar_operand():
    a = gc.placeholder(())
    b = gc.placeholder((3,))
    _check(lambda: a @ b, "matmul", "at least 1 dimension")


def test_reshape_size_mismatch():
    x = gc.placeholder((2, 3))
    _check(lambda: gc.reshape(x, (4, 2)), "reshape", "f32[2,3]", "(4, 2)")


def test_transpose_bad_perm():
    x = gc.placeholder((2, 3))
    _check(lambda: gc.transpose(x, (0, 0)), "transpose", "not a permutation")


def test_broadcast_to_bad_shape():
    x = gc.placeholder((3,))
    _check(lambda: gc.broadcast_to(x, (2, 4)), "broadcast_to", "f32[3]", "cannot broadcast")


def test_concatenate_mismatch():
    a, b = gc.placeholder((2, 3)), gc.placeholder((2, 4))
    _check(lambda: gc.concatenate([a, b], axis=0), "concatenate", "f32[2,3]", "f32[2,4]")


def test_stack_mismatch():
    a, b = gc.placeholder((2, 3)), gc.placeholder((3, 2))
    _check(lambda: gc.stack([a, b]), "stack", "same shape")


def test_squeeze_non_unit_axis():
    x = gc.placeholder((2, 1))
    _check(lambda: gc.squeeze(x, 0), "squeeze", "size 2")


def test_getitem_out_of_range():
    x = gc.placeholder((2, 3))
    _check(lambda: x[5], "getitem", "out of bounds", "f32[2,3]")
    _check(lambda: x[0, 0, 0], "getitem", "too many indices")


def test_take_float_indices():
    x = gc.placeholder((4, 3))
    i = gc.placeholder((2,), gc.float32)
    _check(lambda: gc.take(x, i, axis=0), "take", "indices dtype float32", "f32[4,3]")


def test_where_non_broadcastable():
    c = gc.placeholder((2,), gc.bool_)
    _check(lambda: gc.where(c, gc.placeholder((3,)), 0.0), "where", "do not broadcast")


def test_cast_unknown_dtype():
    x = gc.placeholder((2,))
    _check(lambda: gc.cast(x, "complex64"), "cast")


def test_softmax_of_scalar():
    x = gc.placeholder(())
    _check(lambda: gc.softmax(x), "softmax")


def test_pad_negative():
    x = gc.placeholder((2,))
    _check(lambda: gc.pad(x, ((-1, 0),)), "pad", ">= 0")


def test_bad_placeholder_shape():
    _check(lambda: gc.placeholder((2, -1)), "placeholder", "non-negative")


def test_tensor_has_no_truth_value():
    x = gc.placeholder((2,))
    with pytest.raises(TypeError, match="no truth value"):
        if x > 0:
            pass


def test_location_is_the_callers_line_not_graphcs():
    x = gc.placeholder((2,))
    y = x * 2  # this line
    assert y.node.loc == f"{THIS_FILE}:{_line_of(test_location_is_the_callers_line_not_graphcs) + 2}"
    # the cast/broadcast/constant helpers are attributed to the same user line
    g = gc.graph(y)
    assert all(n.loc.startswith(THIS_FILE) for n in g.nodes)


def test_input_errors_name_the_input():
    x = gc.placeholder((2, 3), name="x")
    y = x + 1
    with pytest.raises(gc.InputError, match=r"'x'.*shape \(3, 2\)"):
        gc.evaluate(y, {x: np.zeros((3, 2), np.float32)})
    with pytest.raises(gc.InputError, match="no value fed for input 'x'"):
        gc.evaluate(y, {})
    with pytest.raises(gc.InputError, match="does not convert safely"):
        gc.evaluate(y, {x: np.zeros((2, 3), np.complex64)})


@pytest.mark.parametrize("bad, which", [([0, 2, -1, 5], "5"), ([-5, 0], "-5")])
def test_constant_indices_out_of_range_fail_at_build_time(bad, which):
    """A constant take / scatter_add index outside [-n, n) is wrong whatever is fed: a GraphError
    where the graph is built (it would have gone unnoticed where no element reads it)."""
    x = gc.placeholder((4, 3))
    _check(lambda: gc.take(x, bad, axis=0), "take", f"constant index {which} is out of range for an axis of size 4",
           "f32[4,3]")
    u = gc.placeholder((len(bad), 3))
    _check(lambda: gc.scatter_add(u, gc.constant(np.array(bad)), 0, 4), "scatter_add",
           f"constant index {which} is out of range", f"f32[{len(bad)},3]")
    gc.take(x, [-4, 3], axis=0)  # the ends of the range are fine
