"""IR, dtypes, printer, verifier, Tensor operators and the symbolic namespace."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import graphc as gc
from graphc.ir import Graph, Node, TensorType
from graphc.xp import sympy_namespace
from registry_cases import build, compute_ops

DTYPES = [gc.float32, gc.float64, gc.int32, gc.int64, gc.bool_]


@pytest.mark.parametrize("a,b", list(itertools.product(DTYPES, DTYPES)), ids=str)
def test_promotion_matches_numpy(a, b):
    assert gc.promote_types(a, b).np_dtype == np.result_type(a.np_dtype, b.np_dtype)


@pytest.mark.parametrize("d", DTYPES, ids=str)
@pytest.mark.parametrize("scalar", [True, 3, 2.5])
def test_weak_scalar_promotion_matches_numpy(d, scalar):
    want = (np.zeros(2, d.np_dtype) + scalar).dtype if not (d.is_bool and isinstance(scalar, bool)) \
        else np.dtype(bool)
    assert gc.result_type(d, scalar).np_dtype == want


def test_operators_follow_numpy():
    rng = np.random.default_rng(0)
    xv = rng.normal(size=(3, 4)).astype(np.float32)
    wv = rng.normal(size=(4, 2)).astype(np.float32)
    x = gc.placeholder((3, 4), name="x")
    w = gc.constant(wv)
    exprs = {
        "arith": (lambda x, w: ((x + 1) * 2 - x / 3) ** 2, None),
        "rops": (lambda x, w: 1 - x, None),
        "rdiv": (lambda x, w: 2.0 / (abs(x) + 1), None),
        "matmul": (lambda x, w: x @ w, None),
        "neg_T": (lambda x, w: (-x).T, None),
        "cmp": (lambda x, w: (x > 0) & (x < 1) | ~(x == 0), None),
        "slice": (lambda x, w: x[:, 1:3], None),
        "slice2": (lambda x, w: x[::-1, ::2][1], None),
        "methods": (lambda x, w: x.sum(axis=0) + x.mean() + x.max(axis=1, keepdims=True).reshape(3), "skip"),
        "numpy_left": (lambda x, w: np.ones((3, 4), np.float32) + x, None),
    }
    for name, (fn, mode) in exprs.items():
        if mode == "skip":
            continue
        got = gc.evaluate(fn(x, w), {x: xv})
        want = fn(xv, wv)
        assert got.dtype == np.asarray(want).dtype, name
        np.testing.assert_allclose(got, want, rtol=1e-6, err_msg=name)
    got = gc.evaluate(x.sum(axis=0)[:3] + x.mean() + x.max(axis=1, keepdims=True).reshape(3), {x: xv})
    np.testing.assert_allclose(got, xv.sum(0)[:3] + xv.mean() + xv.max(1, keepdims=True).reshape(3), rtol=1e-6)


def test_broadcasts_and_casts_are_explicit_nodes():
    x = gc.placeholder((2, 3), gc.int32)
    y = x + gc.placeholder((3,), gc.float32)
    g = gc.graph(y)
    ops = [n.op for n in g.ops]
    assert ops.count("cast") == 2 and ops.count("broadcast_to") == 1 and ops[-1] == "add"
    assert y.dtype == gc.float64


def test_printer_exact_form():
    x = gc.placeholder((4, 3), name="x")
    w1 = gc.parameter(np.ones((3, 5), np.float32), name="w1")
    y = gc.sum(gc.relu(x @ w1), axis=-1, keepdims=True)
    text = gc.format_graph(gc.graph([y], name="tiny"), locations=False)
    assert text == (
        "graph tiny {\n"
        "  input  %x:f32[4,3]\n"
        "  param  %w1:f32[3,5]\n"
        "  %0:f32[4,5] = matmul %x, %w1\n"
        "  %1:f32[4,5] = relu %0\n"
        "  %2:f32[4,1] = sum[axes=(1,), keepdims=True] %1\n"
        "  return %2\n"
        "}")
    assert "# test_ir.py:" in str(gc.graph([y]))


def test_printer_shows_small_constants_and_hides_large():
    x = gc.placeholder((3,), name="x")
    y = x * gc.constant(np.array([1.5, 2.0, -1.0], np.float32)) + gc.constant(np.zeros(3, np.float32) + 1)
    z = gc.constant(np.zeros(100, np.float32))
    text = str(gc.graph([y, z]))
    assert "constant [1.5,2.0,-1.0]" in text
    assert "f32[100] = constant <...>" in text


def test_verify_catches_bad_graphs():
    x = gc.placeholder((2,), name="x")
    y = gc.exp(x)
    bad = Node("exp", [x.node], {}, TensorType((3,), gc.float32))
    with pytest.raises(gc.GraphVerificationError, match="recorded type f32\\[3\\]"):
        Graph([x.node], [bad]).verify()
    with pytest.raises(gc.GraphVerificationError, match="not an input"):
        Graph([], [y.node]).verify()
    p1 = gc.parameter(np.zeros(2, np.float32), name="w")
    p2 = gc.parameter(np.zeros(2, np.float32), name="w")
    with pytest.raises(gc.GraphVerificationError, match="two parameters are named 'w'"):
        gc.graph(p1 + p2).verify()
    unknown = Node("frobnicate", [x.node], {}, TensorType((2,), gc.float32))
    with pytest.raises(gc.GraphVerificationError, match="unknown op"):
        Graph([x.node], [unknown]).verify()
    gc.graph(y).verify()


def test_evaluate_by_name_and_with_params():
    x = gc.placeholder((2,), name="x")
    w = gc.parameter(np.array([1.0, 2.0], np.float32), name="w")
    y = x * w
    np.testing.assert_array_equal(gc.evaluate(y, {"x": [1, 1]}), [1, 2])
    g = gc.graph(y)
    np.testing.assert_array_equal(gc.run_graph(g, [np.ones(2, np.float32)], params={"w": np.full(2, 3, np.float32)})[0], [3, 3])


def test_graph_inputs_in_creation_order_and_unused_input_allowed():
    a = gc.placeholder((), name="a")
    b = gc.placeholder((), name="b")
    g = gc.graph(b - a)
    assert [n.name for n in g.inputs] == ["a", "b"]
    g2 = gc.graph(b * 2, inputs=[a, b])
    assert gc.run_graph(g2, [1.0, 2.0])[0] == 4.0


def test_cost_model():
    a = gc.placeholder((8, 16))
    b = gc.placeholder((16, 4))
    y = a @ b
    flops, nbytes = gc.get_op("matmul").cost(y.node)
    assert flops == 2 * 8 * 16 * 4 and nbytes == 4 * (8 * 16 + 16 * 4 + 8 * 4)


SYMBOLIC_OPS = [op for op in compute_ops() if op.name not in ("argmax", "argmin")]


def _flat_args(ex):
    return [a for x in ex.args for a in (x if isinstance(x, list) else [x]) if hasattr(a, "dtype")]


@pytest.mark.parametrize("op", SYMBOLIC_OPS, ids=lambda o: o.name)
def test_reference_runs_on_sympy_symbols(op):
    """The same ref, on object arrays of sympy symbols, agrees with numpy at a sample point."""
    import sympy
    ex = next((e for e in op.examples if any(a.dtype.is_float and a.shape for a in _flat_args(e))),
              op.examples[0])
    args, feed, raw = build(ex, seed=3)
    g = gc.graph(op.api(*args, **ex.kwargs))
    by_node = {t.node: v for t, v in feed.items()}
    subs, values = {}, []
    for k, n in enumerate(g.inputs):
        v = by_node[n]
        if n.dtype.is_float:
            syms = np.array([sympy.Symbol(f"x{k}_{i}", real=True) for i in range(v.size)], dtype=object)
            subs.update({s: sympy.Float(float(val), 30) for s, val in zip(syms, v.reshape(-1))})
            values.append(syms.reshape(v.shape))
        else:
            values.append(v)
    sym_out, = gc.run_graph(g, values, xp=sympy_namespace())
    want, = gc.run_graph(g, [by_node[n] for n in g.inputs])
    assert np.shape(sym_out) == want.shape

    def number(e):
        e = sympy.sympify(e).subs(subs)
        if isinstance(e, sympy.logic.boolalg.Boolean):
            return bool(e)
        return float(e.evalf(30))
    got = np.array([number(e) for e in np.asarray(sym_out).reshape(-1)]).reshape(want.shape)
    if want.dtype.kind == "f":
        rtol = 1e-5 if want.dtype == np.float32 else 1e-9
        np.testing.assert_allclose(got, want.astype(np.float64), rtol=rtol, atol=rtol * 1e-3)
    else:
        np.testing.assert_array_equal(got.astype(want.dtype), want)
