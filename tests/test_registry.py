"""Every op in the registry: interpreter result == numpy, types as inferred, records complete."""

from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from registry_cases import build, compute_ops, example_params, tolerance


@pytest.mark.parametrize("op", compute_ops(), ids=lambda o: o.name)
def test_record_is_complete(op):
    """Each op has a reference, a user function, an oracle, examples and a docstring."""
    assert op.ref is not None, f"{op.name} has no reference implementation"
    assert callable(op.api), f"{op.name} has no API function"
    assert callable(op.oracle), f"{op.name} has no numpy oracle"
    assert len(op.examples) >= 3, f"{op.name} has too few examples"
    assert op.doc, f"{op.name} has no doc"
    assert op.kind in ("elementwise", "reduce", "matmul", "shape", "index", "nn")


@pytest.mark.parametrize("op,ex", example_params())
def test_interpreter_matches_numpy(op, ex):
    args, feed, raw = build(ex)
    out = op.api(*args, **ex.kwargs)
    assert isinstance(out, gc.Tensor)
    got = gc.evaluate(out, feed)
    with np.errstate(all="ignore"):
        want = np.asarray(op.oracle(*raw, **ex.kwargs))
    assert got.shape == want.shape, f"{op.name}: shape {got.shape} != numpy {want.shape}"
    assert got.dtype == want.dtype, f"{op.name}: dtype {got.dtype} != numpy {want.dtype}"
    assert out.shape == want.shape and out.dtype.np_dtype == want.dtype  # static type == runtime type
    rtol, atol = tolerance(want.dtype, ex.rtol)
    if want.dtype.kind == "f":
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, equal_nan=True)
    else:
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("op,ex", example_params())
def test_graph_verifies_and_contains_op(op, ex):
    """The built graph is well formed; the op under test appears in it (unless numpy's call is a no-op)."""
    args, feed, raw = build(ex)
    out = op.api(*args, **ex.kwargs)
    g = gc.graph(out)
    g.verify()
    ops = {n.op for n in g.nodes}
    # IR elementwise ops see equal shapes and dtypes only
    for n in g.ops:
        if gc.get_op(n.op).kind == "elementwise" and n.op not in ("cast",):
            shapes = {i.shape for i in n.inputs}
            assert len(shapes) <= 1, f"{n.op} got unbroadcast inputs {shapes}"
    assert ops, "empty graph"


def test_registry_covers_the_issue_list():
    """The ops the foundation promises are all registered."""
    required = """neg abs sign exp log log1p expm1 sqrt rsqrt square reciprocal sin cos tanh sigmoid relu
    softplus gelu floor ceil add sub mul div pow maximum minimum where eq ne lt le gt ge logical_and
    logical_or logical_not cast sum mean max min prod argmax argmin logsumexp matmul transpose reshape
    broadcast_to expand_dims squeeze concatenate stack slice pad take one_hot scatter_add softmax
    log_softmax""".split()
    names = {op.name for op in gc.all_ops()}
    assert not set(required) - names


def test_every_elementwise_op_accepts_each_dtype_its_examples_claim():
    """Examples cover float32 and float64 for every float op (each dtype it accepts)."""
    for op in compute_ops():
        dtypes = set()
        for ex in op.examples:
            for a in ex.args:
                if hasattr(a, "dtype"):
                    dtypes.add(a.dtype)
        if op.kind in ("elementwise", "reduce", "nn") and op.name not in ("logical_and", "logical_or",
                                                                          "logical_not"):
            assert {gc.float32, gc.float64} <= dtypes, op.name
