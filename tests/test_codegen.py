"""Compiled code == the reference interpreter, for every op in the registry and more shapes."""

from __future__ import annotations

import re

import llvmlite.binding as llvm
import numpy as np
import pytest

import graphc as gc
from registry_cases import build, example_params

TRANSCENDENTAL = {"exp", "log", "log1p", "expm1", "tanh", "sigmoid", "softplus", "sin", "cos", "pow", "gelu",
                  "logsumexp", "softmax", "log_softmax"}


def _compare(op_name, got, want, dtype):
    assert got.shape == want.shape and got.dtype == want.dtype, (got.dtype, want.dtype, got.shape, want.shape)
    if want.dtype.kind == "f":
        rtol = 1e-5 if want.dtype == np.float32 else 1e-12
        if op_name in TRANSCENDENTAL:
            rtol = 4e-6 if want.dtype == np.float32 else 1e-13
        # differences like log_softmax's x - lse lose digits: absolute error scales with the values
        scale = float(np.nanmax(np.abs(want[np.isfinite(want)]))) if np.isfinite(want).any() else 1.0
        atol = rtol * max(1.0, scale) if op_name in TRANSCENDENTAL else rtol * 1e-2
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, equal_nan=True)
    else:
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("op,ex", example_params())
def test_compiled_op_matches_interpreter(op, ex):
    args, feed, raw = build(ex)
    out = op.api(*args, **ex.kwargs)
    inputs = [t for t in feed]
    f = gc.compile(inputs, out)
    got = f(*[feed[t] for t in inputs])
    want = gc.evaluate(out, feed)
    _compare(op.name, got, want, out.dtype)


@pytest.mark.parametrize("shape", [(1,), (7,), (33,), (3, 5), (17, 1, 9), (0, 4), (2, 3, 4, 5)])
def test_fused_chain_on_odd_shapes(shape):
    rng = np.random.default_rng(0)
    x = gc.placeholder(shape, name="x")
    b = gc.placeholder(shape[-1:], name="b")
    y = gc.sigmoid(x * 1.5 + b) * gc.tanh(x) + 0.5 * x * x - gc.exp(-gc.abs(x))
    f = gc.compile([x, b], y)
    xv = rng.normal(size=shape).astype(np.float32)
    bv = rng.normal(size=shape[-1:]).astype(np.float32)
    _compare("exp", f(xv, bv), gc.evaluate(y, {x: xv, b: bv}), np.float32)


def test_transposed_and_sliced_inputs_as_index_maps():
    rng = np.random.default_rng(1)
    x = gc.placeholder((6, 8), name="x")
    y = gc.exp(x.T[::2, 1:5]) + gc.transpose(x)[1::2, :4] * 2
    f = gc.compile([x], y)
    xv = rng.normal(size=(6, 8)).astype(np.float32)
    _compare("exp", f(xv), gc.evaluate(y, {x: xv}), np.float32)
    assert len(f.kernels) == 1, "views and elementwise ops should fuse into one kernel"


def test_matmul_with_transposed_operands_and_batches():
    rng = np.random.default_rng(2)
    a = gc.placeholder((3, 40, 30), name="a")
    b = gc.placeholder((50, 40), name="b")
    y = gc.matmul(gc.transpose(a, (0, 2, 1)), gc.transpose(b)) + 1.0
    f = gc.compile([a, b], y)
    av = rng.normal(size=(3, 40, 30)).astype(np.float32)
    bv = rng.normal(size=(50, 40)).astype(np.float32)
    np.testing.assert_allclose(f(av, bv), gc.evaluate(y, {a: av, b: bv}), rtol=1e-4, atol=1e-4)
    kinds = [k.kernel.kind for k in f.kernels]
    assert kinds.count("elementwise") <= 1, "transposed operands must not be copied"


def test_large_parallel_elementwise_and_reductions():
    rng = np.random.default_rng(3)
    x = gc.placeholder((512, 1024), name="x")
    outs = [gc.tanh(x) * 2, gc.sum(x, axis=1), gc.sum(x, axis=0), gc.max(x, axis=1), gc.mean(x),
            gc.logsumexp(x, axis=-1), gc.softmax(x, axis=-1), gc.argmax(x, axis=1), gc.log_softmax(x, axis=0)]
    f = gc.compile([x], outs)
    xv = rng.normal(size=(512, 1024)).astype(np.float32)
    got = f(xv)
    want = gc.evaluate(outs, {x: xv})
    for g, w in zip(got, want):
        if w.dtype.kind == "f":
            np.testing.assert_allclose(g, w, rtol=2e-4, atol=1e-4)
        else:
            np.testing.assert_array_equal(g, w)


def test_updates_apply_in_place():
    w = gc.parameter(np.ones(4, np.float32), name="w")
    x = gc.placeholder((4,), name="x")
    loss = gc.sum(w * x)
    gw = gc.grad(loss, w)
    step = gc.compile([x], loss, updates=[(w, w - 0.5 * gw)])
    xv = np.arange(4, dtype=np.float32)
    first = step(xv)
    assert first == 6.0
    np.testing.assert_allclose(step.parameters()["w"], 1 - 0.5 * xv)
    second = step(xv)
    np.testing.assert_allclose(second, np.sum((1 - 0.5 * xv) * xv))


def test_out_of_range_take_raises_not_crashes():
    x = gc.placeholder((5, 3), name="x")
    i = gc.placeholder((4,), gc.int64, name="i")
    y = gc.take(x, i, axis=0)
    f = gc.compile([x, i], y)
    xv = np.arange(15, dtype=np.float32).reshape(5, 3)
    np.testing.assert_array_equal(f(xv, np.array([0, -1, 4, 2])), xv[[0, -1, 4, 2]])
    with pytest.raises(IndexError, match="out of range"):
        f(xv, np.array([0, 5, 1, 2]))
    with pytest.raises(IndexError):
        f(xv, np.array([0, -6, 1, 2]))


def _mlp_step(momentum: bool):
    rng = np.random.default_rng(5)
    x = gc.placeholder((16, 12), gc.float32, name="x")
    y = gc.placeholder((16,), gc.int64, name="y")
    w1 = gc.parameter(rng.normal(size=(12, 8)).astype(np.float32) * 0.3, name="w1")
    b1 = gc.parameter(np.zeros(8, np.float32), name="b1")
    w2 = gc.parameter(rng.normal(size=(8, 4)).astype(np.float32) * 0.3, name="w2")
    b2 = gc.parameter(np.zeros(4, np.float32), name="b2")
    params = [w1, b1, w2, b2]
    logits = gc.relu(x @ w1 + b1) @ w2 + b2
    loss = -gc.mean(gc.sum(gc.one_hot(y, 4) * gc.log_softmax(logits), axis=1))
    grads = gc.grad(loss, params)
    updates = []
    if momentum:
        for p, g in zip(params, grads):
            v = gc.parameter(np.zeros(p.shape, np.float32), name="v_" + p.name)
            v_new = 0.9 * v + g
            updates += [(v, v_new), (p, p - 0.1 * v_new)]
    else:
        updates = [(p, p - 0.1 * g) for p, g in zip(params, grads)]
    return x, y, loss, updates, rng


@pytest.mark.parametrize("momentum", [False, True])
def test_training_step_updates_match_the_interpreter(momentum):
    """In-place updates (elementwise and GEMM C = alpha AB + beta C) give the interpreter's values."""
    x, y, loss, updates, rng = _mlp_step(momentum)
    step = gc.compile([x, y], loss, updates=updates)
    if not momentum:
        assert set(step.plan.in_place) >= {"w1", "w2"}, step.plan.in_place
    state = {p.name: p.value.copy() for p, _ in updates}
    news = [v for _, v in updates]
    for _ in range(3):
        xv = rng.normal(size=(16, 12)).astype(np.float32)
        yv = rng.integers(0, 4, 16)
        # the interpreter's step on copies of the state
        feed = {x: xv, y: yv}
        from graphc.interpreter import run_graph
        g = gc.graph([loss] + news, inputs=[x, y])
        want = run_graph(g, [xv, yv], params=state)
        got_loss = step(xv, yv)
        np.testing.assert_allclose(got_loss, want[0], rtol=1e-5)
        for (p, _), w in zip(updates, want[1:]):
            np.testing.assert_allclose(p.value, w, rtol=2e-5, atol=1e-6, err_msg=p.name)
            state[p.name] = w


@pytest.mark.parametrize("dtype", [np.int32, np.float32])
def test_fortran_order_constants_and_parameters(dtype):
    """A transposed (Fortran-order) array given as a constant or parameter is copied in C order."""
    c_val = np.arange(15, dtype=dtype).reshape(3, 5).T  # F-contiguous (5, 3)
    x = gc.placeholder((4, 5), dtype)
    w = gc.parameter(np.asfortranarray(np.ones((5, 3), dtype)), name="w")
    f = gc.compile([x], [x @ gc.constant(c_val), x @ w])
    xv = np.arange(20, dtype=dtype).reshape(4, 5)
    got = f(xv)
    np.testing.assert_array_equal(got[0], xv @ c_val)
    np.testing.assert_array_equal(got[1], xv @ np.ones((5, 3), dtype))
    assert w.value.flags["C_CONTIGUOUS"]


@pytest.mark.parametrize("case", ["concat_inner", "concat_outer_chunked", "pad", "stack", "reversed_concat",
                                  pytest.param("pad_of_concat", marks=pytest.mark.xfail(
                                      llvm.llvm_version_info[0] < 22, strict=True,
                                      reason="LLVM < 22 unrolls the parts' 64-element copies whole, scalar "
                                             "(1.8-2.2x slower here)"))])
def test_pads_and_joins_split_into_select_free_vector_loops(case):
    """pad / concatenate / stack choose per element between parts by range tests; the kernel
    splits its loop at the points where the tests change, so each part is a plain loop that
    vectorizes (``codegen.emit._emit_split``), with the same values."""
    rng = np.random.default_rng(0)
    A = rng.standard_normal((1024, 64)).astype(np.float32)
    B = rng.standard_normal((1024, 64)).astype(np.float32)
    a, b = gc.placeholder(A.shape, gc.float32, "a"), gc.placeholder(B.shape, gc.float32, "b")
    graph, ref = {
        "concat_inner": (lambda: gc.concatenate([a, b * 2], axis=1),
                         lambda: np.concatenate([A, B * 2], axis=1)),
        "concat_outer_chunked": (lambda: gc.concatenate([a, b], axis=0) + 1,
                                 lambda: np.concatenate([A, B], axis=0) + 1),
        "pad": (lambda: gc.pad(a * 3, ((2, 1), (3, 5)), constant_values=-1.5),
                lambda: np.pad(A * 3, ((2, 1), (3, 5)), constant_values=-1.5)),
        "stack": (lambda: gc.stack([a, b], axis=1) * 2, lambda: np.stack([A, B], axis=1) * 2),
        "reversed_concat": (lambda: gc.concatenate([a, b], axis=1)[:, ::-1] - 1,
                            lambda: np.concatenate([A, B], axis=1)[:, ::-1] - 1),
        "pad_of_concat": (lambda: gc.pad(gc.concatenate([a, b], axis=1), ((0, 0), (1, 1))),
                          lambda: np.pad(np.concatenate([A, B], axis=1), ((0, 0), (1, 1)))),
    }[case]
    f = gc.compile([a, b], graph())
    np.testing.assert_array_equal(f(A, B), ref())
    if case == "concat_outer_chunked":
        assert max(k.chunks for k in f.kernels) > 1
    ir_text = f.optimized_llvm_ir
    # vector code (none of these was vectorized with the selects: no vector load at all)
    assert re.search(r"store <\d+ x float>", ir_text)
    if case != "pad":
        assert re.search(r"load <\d+ x float>", ir_text)


def _nests(monkeypatch):
    """Records the loop nests an elementwise kernel emits: (bounds of the innermost loop, whether
    it was unrolled, whether range tests remain)."""
    import graphc.codegen.emit as E
    import graphc.codegen.expr as X
    seen = []
    orig = E._emit_nest

    def spy(kc, k, e, cshape, cout, bounds, lanes):
        inner = bounds[-1] if bounds else None
        seen.append((inner, inner == (0, cshape[-1]) and E._unrolls(e, cshape), X.has_conditions(e)))
        return orig(kc, k, e, cshape, cout, bounds, lanes)
    monkeypatch.setattr(E, "_emit_nest", spy)
    return seen


@pytest.mark.parametrize("case, shape, nests, unrolled", [
    # a short last axis of a cheap expression is unrolled, one store per position, not split into loops of 1-3
    ("stack_last", (64, 3), 1, True),
    ("pad_inner", (64, 3), 1, True),
    ("concat_inner", (64, 3), 1, True),
    # a row longer than UNROLL_MAX_INNER: split (pad borders of 1 next to a long row are fine)
    ("concat_inner", (64, 10), 2, False),
    ("pad_inner", (64, 40), 3, False),
    ("pad_inner", (64, 18), 3, False),  # a row too long to unroll is split, however short its parts
    # both dims padded: the inner split, then the rows of the middle part (borders are constant)
    ("pad_both", (40, 40), 5, False),
    # an outer split keeps a short inner row whole
    ("concat_outer", (64, 10), 2, False),
    ("pad_3d", (4, 9, 40), 5, False),
])
def test_loop_split_and_unroll_rules(monkeypatch, case, shape, nests, unrolled):
    """``_split_dims`` / ``_emit_nest``: which loops are split, unrolled, or left alone; values
    equal numpy's, and no part keeps a range test."""
    monkeypatch.setenv("GRAPHC_CACHE", "0")  # emit, do not load from the cache
    seen = _nests(monkeypatch)
    rng = np.random.default_rng(1)
    A = rng.standard_normal(shape).astype(np.float32)
    B = rng.standard_normal(shape).astype(np.float32)
    a, b = gc.placeholder(shape, gc.float32, "a"), gc.placeholder(shape, gc.float32, "b")
    last = len(shape) - 1
    widths = [(0, 0)] * last + [(1, 2)]
    graph, ref = {
        "stack_last": (lambda: gc.stack([a, b], axis=-1) * 2, lambda: np.stack([A, B], axis=-1) * 2),
        "pad_inner": (lambda: gc.pad(a * 3, widths, constant_values=0.5),
                      lambda: np.pad(A * 3, widths, constant_values=0.5)),
        "concat_inner": (lambda: gc.concatenate([a, -b], axis=-1) + 1,
                         lambda: np.concatenate([A, -B], axis=-1) + 1),
        "pad_both": (lambda: gc.pad(a, ((1, 1), (2, 1))) - 1, lambda: np.pad(A, ((1, 1), (2, 1))) - 1),
        "concat_outer": (lambda: gc.concatenate([a, b[::-1]], axis=0) * 2,
                         lambda: np.concatenate([A, B[::-1]], axis=0) * 2),
        "pad_3d": (lambda: gc.pad(a, ((0, 0), (1, 1), (1, 1))) * 2, lambda: np.pad(A, ((0, 0), (1, 1), (1, 1))) * 2),
    }[case]
    f = gc.compile([a, b], graph())
    np.testing.assert_array_equal(f(A, B), ref())
    assert len(seen) == nests, seen
    assert any(u for _, u, _ in seen) == unrolled, seen
    assert unrolled or not any(cond for _, _, cond in seen), seen


def test_short_rows_under_much_math_are_split_not_unrolled(monkeypatch):
    """Unrolled, a short row of a costly expression (more than ``UNROLL_MAX_NODES`` nodes) is
    vectorized poorly: it is split instead, its middle part on masked lanes, with no range test
    left in any part."""
    import graphc.codegen.emit as E
    monkeypatch.setenv("GRAPHC_CACHE", "0")
    seen = _nests(monkeypatch)
    A = np.random.default_rng(2).standard_normal((64, 14)).astype(np.float32)
    x = gc.placeholder(A.shape, gc.float32, "x")
    y, ref = x, A.astype(np.float64)
    for k in range(E.UNROLL_MAX_NODES // 3 + 1):  # each step adds 3+ nodes
        y = gc.tanh(y * 0.5 + k)
        ref = np.tanh(ref * 0.5 + k)
    f = gc.compile([x], gc.pad(y, ((0, 0), (1, 1)), constant_values=3.0))
    np.testing.assert_allclose(f(A), np.pad(ref, ((0, 0), (1, 1)), constant_values=3.0), rtol=1e-5, atol=1e-6)
    assert seen == [((0, 1), False, False), ((1, 15), False, False), ((15, 16), False, False)], seen
    assert re.search(r"<16 x float>", f.optimized_llvm_ir)  # the 14-wide part, on 16 masked lanes


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_integer_power_wraps_as_numpy(dtype):
    """Integer ``power`` multiplies by squaring and wraps around on overflow, as numpy does (it was
    computed in float64 and saturated: 2000 ** 3 in int32 gave 2147483647; fuzz seed 620133)."""
    xs = np.array([2000, -3000, 7, 1 << 20, -1, 0, 3, 2, 2, 5, -7, 0], dtype)
    es = np.array([3, 3, 2, 2, 7, 0, 40, 31, 32, 1, 63, 5], dtype)
    x, e = gc.placeholder(xs.shape, dtype), gc.placeholder(es.shape, dtype)
    f = gc.compile([x, e], [gc.power(x, e), gc.power(x, 3), x ** 2])
    got = f(xs, es)
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(got[0], np.power(xs, es))
        np.testing.assert_array_equal(got[1], np.power(xs, 3))
        np.testing.assert_array_equal(got[2], xs ** 2)


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_integer_power_negative_exponent_gives_c_answer(dtype):
    """numpy refuses negative integer exponents; compiled code gives C's answer (1 ** e = 1,
    (-1) ** e = +-1, else 0), for constant and fed exponents alike."""
    xs = np.array([1, -1, -1, 2, -3, 0], dtype)
    es = np.array([-5, -3, -2, -1, -4, -2], dtype)
    want = np.where(xs == 1, 1, np.where(xs == -1, np.where(es % 2 == 1, -1, 1), 0)).astype(dtype)
    x, e = gc.placeholder(xs.shape, dtype), gc.placeholder(es.shape, dtype)
    got = gc.compile([x, e], [gc.power(x, e), gc.power(x, -3)])(xs, es)
    np.testing.assert_array_equal(got[0], want)
    np.testing.assert_array_equal(got[1], np.where(xs == 1, 1, np.where(xs == -1, -1, 0)).astype(dtype))


@pytest.mark.parametrize("index", [np.s_[::-1], np.s_[::-2], np.s_[5:1:-1], np.s_[:, 2:0], np.s_[1:1, ::-1]])
def test_empty_slices_as_numpy(index):
    """A slice that selects nothing (a reversed empty axis: bounds -1, -1, -1) is an empty array
    as in numpy, not an error (review of session 6)."""
    for shape in [(0, 3), (4, 3)]:
        xs = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
        x = gc.placeholder(shape, gc.float32)
        y = x[index]
        assert y.shape == xs[index].shape
        np.testing.assert_array_equal(gc.compile([x], y * 2)(xs), xs[index] * 2)


def test_split_prefers_the_dim_with_most_parts(monkeypatch):
    """A concatenate of 16 padded inputs along axis 0: splitting its rows into 16 parts beats
    splitting the pad's 3 columns (the cap allows one of the two): a select left between 16
    parts computes all 16 inputs for every element (10x slower)."""
    monkeypatch.setenv("GRAPHC_CACHE", "0")
    seen = _nests(monkeypatch)
    rng = np.random.default_rng(3)
    vals = [rng.standard_normal((20, 14)).astype(np.float32) for _ in range(16)]
    xs = [gc.placeholder(v.shape, gc.float32) for v in vals]
    out = gc.concatenate([gc.pad(gc.tanh(gc.tanh(x * 0.5) + 1), ((0, 0), (1, 1))) for x in xs], axis=0)
    f = gc.compile(xs, out)
    want = np.concatenate([np.pad(np.tanh(np.tanh(v * 0.5) + 1), ((0, 0), (1, 1))) for v in vals], axis=0)
    np.testing.assert_allclose(f(*vals), want, rtol=1e-5, atol=1e-6)
    assert len(seen) == 16 and all(inner == (0, 16) for inner, _, _ in seen), seen


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("op", ["max", "min"])
def test_row_max_min_as_vector_reductions_keep_numpy_values(op, dtype):
    """Float max / min along a row are llvm.maximum / llvm.minimum reductions (vectorized): a nan
    anywhere in the row gives nan, infinities win, all -0 stays -0, and long rows with their
    remainders match numpy exactly."""
    rng = np.random.default_rng(7)
    v = rng.standard_normal((6, 1003)).astype(dtype)
    v[1, 517] = np.nan
    v[2, 1002] = np.nan
    v[3, 5] = np.inf if op == "max" else -np.inf
    v[4] = -0.0
    v[5, ::2] = -np.inf if op == "max" else np.inf
    x = gc.placeholder(v.shape, gc.float32 if dtype == np.float32 else gc.float64, "x")
    fn = getattr(gc, op)
    f = gc.compile([x], [fn(x, axis=1), fn(x), fn(x[:, :7], axis=1)])
    rows, whole, short = f(v)
    ref = getattr(np, op)
    with np.errstate(invalid="ignore"):
        np.testing.assert_array_equal(rows, ref(v, axis=1))
        np.testing.assert_array_equal(short, ref(v[:, :7], axis=1))
        assert np.isnan(whole)
    assert np.isnan(rows[1]) and np.isnan(rows[2]) and np.signbit(rows[4]) and rows[4] == 0
    assert rows[3] == (np.inf if op == "max" else -np.inf)


@pytest.mark.parametrize("n", [16, 64, 1000])
def test_softmax_rows_with_a_vector_max_match_numpy(n):
    """Softmax / log_softmax rows of 16 or more take their max as a vector reduction: a nan row
    stays nan, a row with +inf gives nan as in numpy (inf - inf), -inf entries give 0 / -inf."""
    rng = np.random.default_rng(n)
    v = rng.standard_normal((5, n)).astype(np.float32) * 4
    v[1, n // 2] = np.nan
    v[2, n - 1] = np.inf
    v[3, ::3] = -np.inf
    x = gc.placeholder(v.shape, gc.float32, "x")
    sm, lsm = gc.compile([x], [gc.nn.softmax(x, axis=1), gc.nn.log_softmax(x, axis=1)])(v)
    with np.errstate(invalid="ignore", over="ignore"):
        m = v.max(axis=1, keepdims=True)
        e = np.exp(v - m)
        want_sm = e / e.sum(axis=1, keepdims=True)
        c = np.where(np.isfinite(m), m, 0)
        want_lsm = v - c - np.log(np.exp(v - c).sum(axis=1, keepdims=True))
    np.testing.assert_allclose(sm, want_sm, rtol=2e-6, atol=1e-7)
    np.testing.assert_allclose(lsm, want_lsm, rtol=2e-6, atol=2e-6)
    assert np.isnan(sm[1]).all() and np.isnan(lsm[1]).all()
    assert (sm[3, ::3] == 0).all() and np.isneginf(lsm[3, ::3]).all()
