"""The seed's derivative examples, as the autodiff issue states them."""

from __future__ import annotations

import numpy as np

import graphc as gc


def test_chain_rule_through_two_linear_units():
    x = gc.placeholder((), gc.float64, name="x")
    w1, b1 = gc.parameter(1.5, name="w1"), gc.parameter(-0.5, name="b1")
    w2, b2 = gc.parameter(2.0, name="w2"), gc.parameter(0.25, name="b2")
    y1 = x * w1 + b1
    y2 = y1 * w2 + b2
    dy2_dw1, dy2_dy1, dy1_dw1 = gc.evaluate([gc.grad(y2, w1), gc.grad(y2, y1), gc.grad(y1, w1)], {x: 3.0})
    assert dy2_dw1 == dy2_dy1 * dy1_dw1 == 2.0 * 3.0


def test_gradient_of_polynomial_is_exact():
    x, y, z = (gc.placeholder((), gc.float64, name=n) for n in "xyz")
    f = x ** 2 + 3 * x * y + y ** 2 + z ** 3
    g = gc.evaluate(gc.grad(f, [x, y, z]), {x: 1.0, y: 2.0, z: 3.0})
    assert [float(v) for v in g] == [8.0, 7.0, 27.0]


def test_linear_relu_linear_mse_matches_numpy_backprop():
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(16, 4)), rng.normal(size=(16, 2))
    W1, B1, W2, B2 = rng.normal(size=(4, 8)), rng.normal(size=8), rng.normal(size=(8, 2)), rng.normal(size=2)
    x, t = gc.placeholder(X.shape, gc.float64, name="x"), gc.placeholder(Y.shape, gc.float64, name="t")
    w1, b1, w2, b2 = (gc.parameter(v, name=n) for v, n in [(W1, "w1"), (B1, "b1"), (W2, "w2"), (B2, "b2")])
    h = gc.relu(x @ w1 + b1)
    out = h @ w2 + b2
    loss = gc.mean((out - t) ** 2)
    grads = gc.evaluate(gc.grad(loss, [w1, b1, w2, b2]), {x: X, t: Y})
    # hand-written backprop
    a = X @ W1 + B1
    H = np.maximum(a, 0)
    O = H @ W2 + B2
    dO = 2 * (O - Y) / O.size
    dW2, dB2 = H.T @ dO, dO.sum(0)
    dH = dO @ W2.T
    da = dH * (a > 0)
    dW1, dB1 = X.T @ da, da.sum(0)
    for got, want in zip(grads, [dW1, dB1, dW2, dB2]):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


def test_hessian_of_logistic_loss_is_the_closed_form():
    rng = np.random.default_rng(1)
    n, d = 20, 3
    X = rng.normal(size=(n, d))
    y = (rng.random(n) < 0.5).astype(np.float64)
    w = gc.placeholder((d,), gc.float64, name="w")
    z = gc.constant(X) @ w
    loss = gc.mean(gc.softplus(z) - gc.constant(y) * z)  # mean binary log-loss from logits
    wv = rng.normal(size=d)
    H = gc.evaluate(gc.hessian(loss, w), {w: wv})
    p = 1 / (1 + np.exp(-(X @ wv)))
    np.testing.assert_allclose(H, X.T @ np.diag(p * (1 - p)) @ X / n, rtol=1e-12)


def test_hessian_classifies_minimum_and_saddle():
    v = gc.placeholder((2,), gc.float64, name="v")
    x, y = v[0], v[1]
    saddle = x ** 2 - y ** 2 + 0.1 * x * y
    bowl = x ** 2 + y ** 2 + x * y
    for f, kind in [(saddle, "saddle"), (bowl, "minimum")]:
        g, H = gc.evaluate([gc.grad(f, v), gc.hessian(f, v)], {v: np.zeros(2)})
        np.testing.assert_array_equal(g, 0)  # a critical point
        eig = np.linalg.eigvalsh(H)
        assert (kind == "saddle") == (eig.min() < 0 < eig.max())
        assert (kind == "minimum") == (eig.min() > 0)
