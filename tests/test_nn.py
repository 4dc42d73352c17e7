"""gc.nn: activations, losses (stable by construction), metrics, initializers, layers — against numpy."""

import numpy as np
import pytest

import graphc as gc
from graphc import nn


def _lse(z, axis=-1):
    m = np.max(z, axis=axis, keepdims=True)
    return np.squeeze(m, axis) + np.log(np.sum(np.exp(z - m), axis=axis))


def _ev(t, feed):
    return gc.evaluate(t, feed)


RNG = np.random.default_rng(0)


# ---------------------------------------------------------------- activations

def test_activations_match_numpy():
    xv = np.linspace(-6, 6, 25)
    x = gc.placeholder(xv.shape, gc.float64, "x")
    np.testing.assert_allclose(_ev(nn.leaky_relu(x, 0.1), {x: xv}), np.where(xv > 0, xv, 0.1 * xv))
    np.testing.assert_allclose(_ev(nn.elu(x), {x: xv}), np.where(xv > 0, xv, np.expm1(xv)))
    np.testing.assert_allclose(_ev(nn.silu(x), {x: xv}), xv / (1 + np.exp(-xv)))
    np.testing.assert_allclose(_ev(nn.sigmoid(x), {x: xv}), 1 / (1 + np.exp(-xv)))
    np.testing.assert_allclose(_ev(nn.tanh(x), {x: xv}), np.tanh(xv))
    np.testing.assert_allclose(_ev(nn.relu(x), {x: xv}), np.maximum(xv, 0))
    np.testing.assert_allclose(_ev(nn.softplus(x), {x: xv}), np.logaddexp(0, xv))
    m = xv.reshape(5, 5)
    xm = gc.placeholder((5, 5), gc.float64, "xm")
    np.testing.assert_allclose(_ev(nn.softmax(xm), {xm: m}), np.exp(m) / np.exp(m).sum(-1, keepdims=True))


def test_elu_has_no_overflow_for_large_inputs():
    xv = np.array([-1000.0, 0.0, 1000.0], np.float32)
    x = gc.placeholder((3,), gc.float32, "x")
    out = _ev(nn.elu(x), {x: xv})
    np.testing.assert_allclose(out, [-1.0, 0.0, 1000.0])


# ---------------------------------------------------------------- regression losses

def test_mse_and_mae_with_reductions():
    p, t = RNG.normal(size=(6, 3)), RNG.normal(size=(6, 3))
    P, T = gc.placeholder((6, 3), gc.float64, "p"), gc.placeholder((6, 3), gc.float64, "t")
    feed = {P: p, T: t}
    np.testing.assert_allclose(_ev(nn.mse(P, T), feed), np.mean((p - t) ** 2))
    np.testing.assert_allclose(_ev(nn.mse(P, T, reduction="sum"), feed), np.sum((p - t) ** 2))
    np.testing.assert_allclose(_ev(nn.mse(P, T, reduction="none"), feed), np.mean((p - t) ** 2, axis=1))
    np.testing.assert_allclose(_ev(nn.mae(P, T), feed), np.mean(np.abs(p - t)))
    np.testing.assert_allclose(_ev(nn.mae(P, T, reduction="none"), feed), np.mean(np.abs(p - t), axis=1))


def test_regression_loss_refuses_broadcasting_shapes():
    with pytest.raises(gc.GraphError, match="differ in shape"):
        nn.mse(gc.placeholder((8, 1)), gc.placeholder((8,)))
    with pytest.raises(gc.GraphError, match="reduction"):
        nn.mse(gc.placeholder((8,)), gc.placeholder((8,)), reduction="avg")


# ---------------------------------------------------------------- cross-entropy

def test_cross_entropy_matches_numpy_and_is_stable_for_huge_logits():
    z = RNG.normal(size=(5, 7)) * 300.0  # exp(300) overflows float64's softmax-then-log
    y = np.array([0, 6, 3, 3, 1])
    Z, Y = gc.placeholder((5, 7), gc.float64, "z"), gc.placeholder((5,), gc.int64, "y")
    ref = _lse(z) - z[np.arange(5), y]
    got = _ev(nn.cross_entropy(Z, Y, reduction="none"), {Z: z, Y: y})
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, ref, rtol=1e-12)
    np.testing.assert_allclose(_ev(nn.cross_entropy(Z, Y), {Z: z, Y: y}), ref.mean(), rtol=1e-12)
    np.testing.assert_allclose(_ev(nn.cross_entropy(Z, Y, reduction="sum"), {Z: z, Y: y}), ref.sum(), rtol=1e-12)


def test_cross_entropy_float32_compiled_extreme_logits():
    z = np.array([[1000.0, -1000.0, 0.0], [-1e4, 1e4, 3.0]], np.float32)
    y = np.array([1, 1])
    Z, Y = gc.placeholder((2, 3), gc.float32, "z"), gc.placeholder((2,), gc.int64, "y")
    f = gc.compile([Z, Y], nn.cross_entropy(Z, Y, reduction="none"))
    np.testing.assert_allclose(f(z, y), [2000.0, 0.0], rtol=1e-6)


def test_cross_entropy_never_takes_log_of_softmax():
    Z, Y = gc.placeholder((4, 3), gc.float32, "z"), gc.placeholder((4,), gc.int64, "y")
    ops = {n.op for n in gc.graph(nn.cross_entropy(Z, Y)).nodes}
    assert "log_softmax" in ops
    assert "log" not in ops and "softmax" not in ops


def test_cross_entropy_gradient_is_softmax_minus_one_hot():
    z = RNG.normal(size=(4, 3))
    y = np.array([2, 0, 1, 2])
    Z, Y = gc.placeholder((4, 3), gc.float64, "z"), gc.placeholder((4,), gc.int64, "y")
    g = _ev(gc.grad(nn.cross_entropy(Z, Y), Z), {Z: z, Y: y})
    s = np.exp(z - _lse(z)[:, None])
    np.testing.assert_allclose(g, (s - np.eye(3)[y]) / 4, rtol=1e-12)


def test_cross_entropy_probability_labels_and_class_axis():
    z = RNG.normal(size=(3, 4))
    p = RNG.random((3, 4))
    p /= p.sum(1, keepdims=True)
    Z, P = gc.placeholder((3, 4), gc.float64, "z"), gc.placeholder((3, 4), gc.float64, "p")
    ref = -(p * (z - _lse(z)[:, None])).sum(1)
    np.testing.assert_allclose(_ev(nn.cross_entropy(Z, P, reduction="none"), {Z: z, P: p}), ref, rtol=1e-12)
    # classes along axis 0: logits [C, N], labels [N]
    y = np.array([1, 0, 3])
    Zt, Y = gc.placeholder((4, 3), gc.float64, "zt"), gc.placeholder((3,), gc.int64, "y")
    got = _ev(nn.cross_entropy(Zt, Y, axis=0, reduction="none"), {Zt: z.T, Y: y})
    np.testing.assert_allclose(got, _lse(z) - z[np.arange(3), y], rtol=1e-12)


def test_cross_entropy_shape_errors():
    with pytest.raises(gc.GraphError, match="labels"):
        nn.cross_entropy(gc.placeholder((4, 3)), gc.placeholder((3,), gc.int64))
    with pytest.raises(gc.GraphError, match="class axis"):
        nn.cross_entropy(gc.placeholder(()), gc.placeholder((), gc.int64))


# ---------------------------------------------------------------- binary losses

def test_binary_log_loss_is_softplus_minus_yz_and_stable():
    z = np.array([-800.0, -30.0, -1.0, 0.0, 2.0, 40.0, 800.0])
    y = np.array([1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.0])
    Z, Y = gc.placeholder((7,), gc.float64, "z"), gc.placeholder((7,), gc.float64, "y")
    got = _ev(nn.binary_cross_entropy_with_logits(Z, Y, reduction="none"), {Z: z, Y: y})
    ref = np.logaddexp(0, z) - y * z
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, ref, rtol=1e-12)
    np.testing.assert_allclose(got[[0, 6]], [800.0, 800.0])
    ops = {n.op for n in gc.graph(nn.log_loss(Z, Y)).nodes}
    assert "softplus" in ops and "log" not in ops and "sigmoid" not in ops
    # gradient: (σ(z) - y) / n
    g = _ev(gc.grad(nn.log_loss(Z, Y), Z), {Z: z, Y: y})
    np.testing.assert_allclose(g, (0.5 * (1 + np.tanh(z / 2)) - y) / 7, atol=1e-15)


def test_binary_log_loss_float32_compiled():
    z = np.array([-100.0, -3.0, 0.5, 100.0], np.float32)
    y = np.array([1, 0, 1, 0], np.float32)
    Z, Y = gc.placeholder((4,), gc.float32, "z"), gc.placeholder((4,), gc.float32, "y")
    f = gc.compile([Z, Y], nn.log_loss(Z, Y, reduction="none"))
    np.testing.assert_allclose(f(z, y), np.logaddexp(0, z.astype(np.float64)) - y * z, rtol=1e-6)


def test_hinge_losses():
    s, y = RNG.normal(size=8), np.where(RNG.random(8) > 0.5, 1.0, -1.0)
    S, Y = gc.placeholder((8,), gc.float64, "s"), gc.placeholder((8,), gc.float64, "y")
    np.testing.assert_allclose(_ev(nn.hinge(S, Y), {S: s, Y: y}), np.mean(np.maximum(0, 1 - y * s)))
    sm, lab = RNG.normal(size=(5, 4)), np.array([0, 3, 1, 1, 2])
    SM, L = gc.placeholder((5, 4), gc.float64, "sm"), gc.placeholder((5,), gc.int64, "l")
    ref = [sum(max(0.0, 1 + sm[i, k] - sm[i, lab[i]]) for k in range(4) if k != lab[i]) for i in range(5)]
    np.testing.assert_allclose(_ev(nn.multiclass_hinge(SM, L, reduction="none"), {SM: sm, L: lab}), ref)


# ---------------------------------------------------------------- metrics

def test_zero_one_error_and_accuracy():
    z = np.array([[0.1, 0.9, 0.0], [2.0, 1.0, 0.0], [0.0, 0.0, 5.0], [1.0, 3.0, 2.0]], np.float32)
    y = np.array([1, 1, 2, 0])
    Z, Y = gc.placeholder((4, 3), gc.float32, "z"), gc.placeholder((4,), gc.int64, "y")
    assert _ev(nn.zero_one_error(Z, Y), {Z: z, Y: y}) == pytest.approx(0.5)
    assert _ev(nn.accuracy(Z, Y), {Z: z, Y: y}) == pytest.approx(0.5)
    np.testing.assert_array_equal(_ev(nn.zero_one_error(Z, Y, reduction="none"), {Z: z, Y: y}), [0, 1, 0, 1])
    # binary: scores > 0 against labels > 0 ({0, 1} or {-1, +1})
    s = np.array([0.3, -2.0, 1.0, -0.1], np.float32)
    S, B = gc.placeholder((4,), gc.float32, "s"), gc.placeholder((4,), gc.float32, "b")
    assert _ev(nn.zero_one_error(S, B), {S: s, B: np.array([1, 0, 0, 1], np.float32)}) == pytest.approx(0.5)
    assert _ev(nn.accuracy(S, B), {S: s, B: np.array([1, -1, 1, -1], np.float32)}) == pytest.approx(1.0)


# ---------------------------------------------------------------- initializers

def test_initializer_statistics_and_seeding():
    shape = (400, 300)
    for fn, std in [(nn.xavier_uniform, np.sqrt(2 / 700)), (nn.xavier_normal, np.sqrt(2 / 700)),
                    (nn.he_normal, np.sqrt(2 / 400)), (nn.he_uniform, np.sqrt(2 / 400))]:
        a = fn(shape, seed=1)
        assert a.shape == shape and a.dtype == np.float32
        assert abs(a.std() / std - 1) < 0.02, fn.__name__
        assert abs(a.mean()) < 0.01 * std * 10
        np.testing.assert_array_equal(a, fn(shape, seed=1))
        assert not np.array_equal(a, fn(shape, seed=2))
    lim = np.sqrt(6 / 700)
    assert np.abs(nn.xavier_uniform(shape, seed=0)).max() <= lim
    assert nn.normal((1000,), std=0.5, seed=0).std() == pytest.approx(0.5, rel=0.05)
    np.testing.assert_array_equal(nn.zeros((2, 3)), np.zeros((2, 3), np.float32))
    assert nn.initialize("he", (3, 2), seed=0, dtype=np.float64).dtype == np.float64
    with pytest.raises(ValueError, match="unknown initializer"):
        nn.initialize("orthogonal", (2, 2))


# ---------------------------------------------------------------- layers

def test_linear_layer_parameters_and_output():
    layer = nn.Linear(3, 2, name="fc", init="he", seed=0)
    assert [p.name for p in layer.params] == ["fc.weight", "fc.bias"]
    assert layer.weight.shape == (3, 2) and layer.bias.shape == (2,)
    layer.bias.value[...] = [0.5, -1.0]
    xv = RNG.normal(size=(4, 3)).astype(np.float32)
    x = gc.placeholder((4, 3), gc.float32, "x")
    np.testing.assert_allclose(_ev(layer(x), {x: xv}), xv @ layer.weight.value + layer.bias.value, rtol=1e-6)
    with pytest.raises(gc.GraphError, match="expects inputs"):
        layer(gc.placeholder((4, 5)))
    nobias = nn.Linear(3, 2, name="nb", bias=False)
    assert [p.name for p in nobias.params] == ["nb.weight"]


def test_mlp_names_and_forward():
    mlp = nn.MLP([4, 5, 3], seed=0, name="net")
    assert [p.name for p in mlp.params] == ["net.0.weight", "net.0.bias", "net.1.weight", "net.1.bias"]
    xv = RNG.normal(size=(2, 4)).astype(np.float32)
    x = gc.placeholder((2, 4), gc.float32, "x")
    w0, b0, w1, b1 = (p.value for p in mlp.params)
    ref = np.maximum(xv @ w0 + b0, 0) @ w1 + b1
    np.testing.assert_allclose(_ev(mlp(x), {x: xv}), ref, rtol=1e-5, atol=1e-6)
