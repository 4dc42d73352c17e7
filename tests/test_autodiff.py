"""Autodiff: every rule proven (sympy) and checked (finite differences); the split backward graph;
higher order, forward mode, stability, custom ops."""

from __future__ import annotations

import numpy as np
import pytest
import sympy

import graphc as gc
from graphc.ops.registry import unregister
from graphc.passes.autodiff import grad_graph
from graphc.verify import KINKED, differentiable_ops, numeric_check, symbolic_check

RULE_OPS = differentiable_ops()


def test_every_differentiable_op_has_a_rule():
    missing = [op.name for op in gc.all_ops()
               if op.kind != "leaf" and op.differentiable and op.vjp is None
               and op.name not in ("argmax", "argmin")]
    assert not missing, f"differentiable ops without a vjp rule: {missing}"


@pytest.mark.parametrize("op", RULE_OPS, ids=lambda o: o.name)
def test_rule_symbolically(op):
    status, detail = symbolic_check(op)
    expected = "points" if op.name in KINKED else "proven"
    assert status == expected, f"{op.name}: {status} ({detail})"


@pytest.mark.parametrize("op", RULE_OPS, ids=lambda o: o.name)
def test_rule_numerically(op):
    err = numeric_check(op)
    assert err is not None and err <= 1.0


def test_symbolic_check_catches_a_wrong_rule():
    op = gc.get_op("sin")
    good = op.vjp
    try:
        op.vjp = lambda g, x, out: (g * gc.cos(x) * 1.0001,)
        status, detail = symbolic_check(op)
        assert status == "failed"
        with pytest.raises(AssertionError, match="finite differences"):
            numeric_check(op)
    finally:
        op.vjp = good


# ---------------------------------------------------------------- random composite graphs

SAFE_UNARY = [gc.tanh, gc.sigmoid, gc.sin, gc.cos, gc.softplus, gc.gelu, gc.square, gc.negative,
              lambda x: gc.exp(gc.tanh(x)), lambda x: gc.log(gc.softplus(x) + 1), lambda x: gc.sqrt(gc.square(x) + 1),
              lambda x: gc.log1p(gc.sigmoid(x)), lambda x: gc.expm1(gc.tanh(x)), lambda x: gc.reciprocal(2 + gc.cos(x))]
SAFE_BINARY = [gc.add, gc.subtract, gc.multiply, lambda a, b: a / (1 + gc.square(b)), gc.maximum,
               lambda a, b: gc.power(gc.sigmoid(a) + 0.5, b)]


def random_function(seed: int):
    """A random composition of many ops over inputs of shapes (2,3), (3,), (3,2)."""
    rng = np.random.default_rng(seed)

    def fn(a, b, c):
        vals = [a, b, c]
        for _ in range(rng.integers(4, 10)):
            kind = rng.integers(0, 9)
            x = vals[rng.integers(len(vals))]
            if kind <= 2:
                vals.append(SAFE_UNARY[rng.integers(len(SAFE_UNARY))](x))
            elif kind <= 4:
                y = vals[rng.integers(len(vals))]
                try:
                    np.broadcast_shapes(x.shape, y.shape)
                except ValueError:
                    continue
                vals.append(SAFE_BINARY[rng.integers(len(SAFE_BINARY))](x, y))
            elif kind == 5 and x.ndim:
                red = [gc.sum, gc.mean, gc.max, gc.logsumexp, gc.prod][rng.integers(5)]
                vals.append(red(x, axis=int(rng.integers(x.ndim)), keepdims=bool(rng.integers(2))))
            elif kind == 6 and x.ndim == 2:
                vals.append([lambda t: t @ c if t.shape[1] == 3 else t.T @ t, lambda t: t.T,
                             lambda t: gc.softmax(t, axis=0), lambda t: gc.log_softmax(t),
                             lambda t: t[:, ::-1], lambda t: gc.reshape(t, (-1,))][rng.integers(6)](x))
            elif kind == 7 and x.ndim >= 1:
                vals.append(gc.concatenate([x, x * 2], axis=-1)[..., 1:])
            elif kind == 8 and x.ndim == 1:
                vals.append(gc.take(x, gc.constant(np.array([0, 2, 2, 1])), axis=0)
                            + gc.pad(x, 1)[:4] if x.shape[0] == 3 else gc.stack([x, -x], axis=1))
        total = None
        for v in vals[3:] or vals:
            s = gc.sum(v * gc.constant(rng.normal(size=v.shape)))
            total = s if total is None else total + s
        return total
    return fn


@pytest.mark.parametrize("seed", range(40))
def test_random_composite_gradients(seed):
    rng = np.random.default_rng(1000 + seed)
    inputs = [rng.normal(size=(2, 3)), rng.normal(size=(3,)), rng.normal(size=(3, 2))]
    gc.check_grads(random_function(seed), inputs, rtol=2e-5, atol=1e-6)


# ---------------------------------------------------------------- the separate backward graph

def _mlp(batch=4):
    rng = np.random.default_rng(0)
    x = gc.placeholder((batch, 5), gc.float64, name="x")
    labels = gc.placeholder((batch,), gc.int64, name="labels")
    w1 = gc.parameter(rng.normal(size=(5, 8)), name="w1")
    b1 = gc.parameter(np.zeros(8), name="b1")
    w2 = gc.parameter(rng.normal(size=(8, 3)), name="w2")
    b2 = gc.parameter(np.zeros(3), name="b2")
    h = gc.relu(x @ w1 + b1)
    logits = h @ w2 + b2
    loss = -gc.mean(gc.sum(gc.one_hot(labels, 3, gc.float64) * gc.log_softmax(logits), axis=1))
    return x, labels, [w1, b1, w2, b2], loss


def test_backward_graph_is_separate_and_agrees_with_joint_grads():
    x, labels, params, loss = _mlp()
    prog = gc.grad_program(loss, params, name="mlp")
    prog.forward.verify()
    prog.backward.verify()
    fwd_ids = {id(n) for n in prog.forward.nodes}
    assert not any(id(n) in fwd_ids for n in prog.backward.nodes), "backward shares nodes with forward"
    assert [n.name for n in prog.backward.inputs][-1] == "cotangent"
    # residuals are real values, not views or constants (those are recomputed)
    assert all(r.op not in ("broadcast_to", "reshape", "transpose", "constant") for r in prog.residuals)
    assert prog.forward.outputs[0] is loss.node and len(prog.forward.outputs) == 1 + len(prog.residuals)
    rng = np.random.default_rng(1)
    xv, lv = rng.normal(size=(4, 5)), rng.integers(0, 3, size=4)
    (lossv,), grads = prog.run([xv, lv])
    joint = gc.evaluate([loss] + gc.grad(loss, params), {x: xv, labels: lv})
    np.testing.assert_allclose(lossv, joint[0])
    for a, b in zip(grads, joint[1:]):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    text = str(prog.backward)
    assert "input  %cotangent:f64[]" in text and "return" in text and "(dw1)" in text


def test_backward_graph_runs_alone_with_the_interpreter():
    x, labels, params, loss = _mlp()
    prog = gc.grad_program(loss, params)
    rng = np.random.default_rng(2)
    xv, lv = rng.normal(size=(4, 5)), rng.integers(0, 3, size=4)
    fwd = gc.run_graph(prog.forward, [xv, lv])
    pv = prog.forward.param_values()
    feed = []
    for kind, key in prog.backward_sources:
        feed.append({"output": lambda k: fwd[k], "input": lambda k: {"x": xv, "labels": lv}[k],
                     "parameter": lambda k: pv[k], "cotangent": lambda k: np.float64(1.0)}[kind](key))
    grads = gc.run_graph(prog.backward, feed)
    gc_ = gc.evaluate(gc.grad(loss, params), {x: xv, labels: lv})
    for a, b in zip(grads, gc_):
        np.testing.assert_allclose(a, b, rtol=1e-12)


def test_backward_nodes_point_at_the_forward_lines():
    x = gc.placeholder((3,), gc.float64, name="x")
    y = gc.sum(gc.exp(x))  # the forward line
    g = gc.grad(y, x)
    locs = {n.loc for n in gc.graph(g).ops}
    assert any(loc.endswith(f":{test_backward_nodes_point_at_the_forward_lines.__code__.co_firstlineno + 2}")
               for loc in locs)


def test_gradients_accumulate_over_uses():
    x = gc.placeholder((), gc.float64, name="x")
    y = x * x + gc.sin(x) * x + x
    g = gc.grad(y, x)
    v = 0.7
    np.testing.assert_allclose(gc.evaluate(g, {x: v}), 2 * v + np.cos(v) * v + np.sin(v) + 1)


def test_broadcast_gradient_is_summed_back():
    b = gc.placeholder((3,), gc.float64, name="b")
    x = gc.placeholder((4, 3), gc.float64, name="x")
    y = gc.sum((x + b) ** 2)
    gb = gc.grad(y, b)
    xv, bv = np.arange(12.0).reshape(4, 3), np.array([1.0, -1.0, 0.5])
    np.testing.assert_allclose(gc.evaluate(gb, {x: xv, b: bv}), (2 * (xv + bv)).sum(0))


def test_unused_input_has_zero_gradient_and_bad_requests_raise():
    x = gc.placeholder((2,), gc.float64)
    z = gc.placeholder((3,), gc.float64)
    y = gc.sum(x)
    gz = gc.grad(y, z)
    np.testing.assert_array_equal(gc.evaluate(gz, {z: np.ones(3)}), np.zeros(3))
    with pytest.raises(gc.GraphError, match="scalar"):
        gc.grad(x * 2, x)
    with pytest.raises(gc.GraphError, match="int64"):
        gc.grad(y, gc.placeholder((2,), gc.int64))


# ---------------------------------------------------------------- higher order and forward mode

def test_hessian_of_quadratic_and_cubic():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4, 4))
    x = gc.placeholder((4,), gc.float64, name="x")
    A = gc.constant(a)
    y = 0.5 * gc.sum(x * (A @ x)) + gc.sum(x ** 3)
    xv = rng.normal(size=4)
    H = gc.evaluate(gc.hessian(y, x), {x: xv})
    np.testing.assert_allclose(H, 0.5 * (a + a.T) + np.diag(6 * xv), rtol=1e-12, atol=1e-12)


def test_hessian_of_backward_graph_itself():
    """grad of grad: the backward graph is made of ordinary ops with rules of their own."""
    x = gc.placeholder((3,), gc.float64, name="x")
    y = gc.logsumexp(x * x)
    xv = np.array([0.3, -0.5, 1.1])
    H = gc.evaluate(gc.hessian(y, x), {x: xv})
    eps = 1e-5
    g = gc.grad(y, x)
    num = np.stack([(gc.evaluate(g, {x: xv + eps * e}) - gc.evaluate(g, {x: xv - eps * e})) / (2 * eps)
                    for e in np.eye(3)])
    np.testing.assert_allclose(H, num, rtol=1e-7, atol=1e-9)


def test_hvp_equals_hessian_times_vector():
    x = gc.placeholder((5,), gc.float64, name="x")
    y = gc.sum(gc.softplus(x) * gc.tanh(x[::-1])) + gc.max(x)
    rng = np.random.default_rng(3)
    xv, vv = rng.normal(size=5), rng.normal(size=5)
    H = gc.evaluate(gc.hessian(y, x), {x: xv})
    hv = gc.evaluate(gc.hvp(y, x, gc.constant(vv)), {x: xv})
    np.testing.assert_allclose(hv, H @ vv, rtol=1e-10, atol=1e-12)


def test_jvp_matches_finite_differences():
    rng = np.random.default_rng(4)
    x = gc.placeholder((3, 2), gc.float64, name="x")
    w = gc.placeholder((2, 4), gc.float64, name="w")
    y = gc.softmax(gc.tanh(x @ w), axis=-1)
    xv, wv = rng.normal(size=(3, 2)), rng.normal(size=(2, 4))
    tx, tw = rng.normal(size=(3, 2)), rng.normal(size=(2, 4))
    jv = gc.evaluate(gc.jvp(y, [x, w], [gc.constant(tx), gc.constant(tw)]), {x: xv, w: wv})
    eps = 1e-6
    plus = gc.evaluate(y, {x: xv + eps * tx, w: wv + eps * tw})
    minus = gc.evaluate(y, {x: xv - eps * tx, w: wv - eps * tw})
    np.testing.assert_allclose(jv, (plus - minus) / (2 * eps), rtol=1e-7, atol=1e-10)


def test_second_derivatives_of_power_at_zero_base_and_exponent_are_finite():
    """Fuzz seed 701332: ``a ** b`` at a = 0, b = 0. The gradient's convention there is 0 (b = 0);
    the branch ``where`` drops (b a^(b-1) = 0 * inf) must stay finite, or the derivative of the
    ``where`` multiplies it by 0 and ``hvp`` / ``jvp`` give nan."""
    a = gc.placeholder((3,), gc.float64, name="a")
    b = gc.placeholder((3,), gc.float64, name="b")
    loss = gc.sum(gc.cos(gc.power(a, b)))
    feed = {a: np.array([0.0, -0.0, 2.0]), b: np.zeros(3)}
    ga, gb = (gc.evaluate(t, feed) for t in gc.grad(loss, [a, b]))
    np.testing.assert_array_equal(ga, 0.0)
    np.testing.assert_allclose(gb, [0.0, 0.0, -np.sin(1.0) * np.log(2.0)], rtol=1e-15)
    ta, tb = np.ones(3), np.full(3, 0.5)
    jv = gc.evaluate(gc.jvp(loss, [a, b], [gc.constant(ta), gc.constant(tb)]), feed)
    np.testing.assert_allclose(jv, ga @ ta + gb @ tb, rtol=1e-15)
    np.testing.assert_array_equal(gc.evaluate(gc.hvp(loss, a, gc.constant(ta)), feed), 0.0)


@pytest.mark.parametrize("name", ["exp", "log", "sqrt", "tanh", "sigmoid", "softplus", "gelu", "sin",
                                  "reciprocal", "rsqrt", "log1p", "expm1"])
def test_second_derivatives_of_unary_ops(name):
    f = getattr(gc, name)
    x = sympy.Symbol("x", positive=True)
    sym = {"exp": sympy.exp(x), "log": sympy.log(x), "sqrt": sympy.sqrt(x), "tanh": sympy.tanh(x),
           "sigmoid": 1 / (1 + sympy.exp(-x)), "softplus": sympy.log(1 + sympy.exp(x)),
           "gelu": x / 2 * (1 + sympy.tanh(sympy.sqrt(2 / sympy.pi) * (x + sympy.Float(0.044715) * x ** 3))),
           "sin": sympy.sin(x), "reciprocal": 1 / x, "rsqrt": 1 / sympy.sqrt(x), "log1p": sympy.log(1 + x),
           "expm1": sympy.exp(x) - 1}[name]
    d2 = sympy.lambdify(x, sympy.diff(sym, x, 2))
    xs = np.array([0.3, 0.9, 1.7])
    t = gc.placeholder((3,), gc.float64, name="t")
    H = gc.evaluate(gc.hessian(gc.sum(f(t)), t), {t: xs})
    np.testing.assert_allclose(np.diag(H), [float(d2(v)) for v in xs], rtol=1e-10)
    np.testing.assert_allclose(H - np.diag(np.diag(H)), 0, atol=1e-14)


# ---------------------------------------------------------------- stability

BIG = np.array([[1e4, -1e4, 0.0, 3.0], [-1e4, -1e4 + 1, 5e3, -2.0]], np.float32)


def _f64_softmax(z):
    z = z.astype(np.float64)
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


@pytest.mark.parametrize("loss_name", ["logsumexp", "softmax", "log_softmax", "cross_entropy", "sigmoid",
                                       "softplus", "binary_log_loss"])
def test_gradients_stable_for_large_float32_logits(loss_name):
    z = gc.placeholder(BIG.shape, gc.float32, name="z")
    labels = np.array([1, 3])
    y01 = np.array([[1, 0, 1, 0], [0, 1, 1, 0]], np.float32)
    r = np.random.default_rng(0).normal(size=BIG.shape).astype(np.float32)
    losses = {
        "logsumexp": lambda: gc.sum(gc.logsumexp(z, axis=1)),
        "softmax": lambda: gc.sum(gc.softmax(z) * r),
        "log_softmax": lambda: gc.sum(gc.log_softmax(z) * r),
        "cross_entropy": lambda: -gc.mean(gc.sum(gc.one_hot(gc.constant(labels), 4) * gc.log_softmax(z), axis=1)),
        "sigmoid": lambda: gc.sum(gc.sigmoid(z) * r),
        "softplus": lambda: gc.sum(gc.softplus(z)),
        "binary_log_loss": lambda: gc.mean(gc.softplus(z) - z * y01),
    }
    loss = losses[loss_name]()
    value, g = gc.evaluate([loss, gc.grad(loss, z)], {z: BIG})
    assert np.isfinite(value) and np.all(np.isfinite(g)), (value, g)
    assert g.dtype == np.float32
    p = _f64_softmax(BIG)
    zz = BIG.astype(np.float64)
    sig = np.where(zz >= 0, 1 / (1 + np.exp(-np.abs(zz))), np.exp(-np.abs(zz)) / (1 + np.exp(-np.abs(zz))))
    want = {
        "logsumexp": p,
        "softmax": p * (r - (r * p).sum(1, keepdims=True)),
        "log_softmax": r - p * r.sum(1, keepdims=True),
        "cross_entropy": (p - np.eye(4)[labels]) / 2,
        "sigmoid": r * sig * (1 - sig),
        "softplus": sig,
        "binary_log_loss": (sig - y01) / BIG.size,
    }[loss_name]
    np.testing.assert_allclose(g, want, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- custom ops

@pytest.fixture
def cleanup_ops():
    names = []
    yield names
    for n in names:
        unregister(n)


def test_custom_op_with_user_rule(cleanup_ops):
    cleanup_ops.append("cube")
    cube = gc.define_op("cube", infer=lambda t: t, ref=lambda xp, x: x * x * x,
                        vjp=lambda g, x, out: (3 * g * x * x,), doc="x³")
    x = gc.placeholder((3,), gc.float64, name="x")
    y = gc.sum(cube(gc.sin(x)))
    xv = np.array([0.1, 0.5, -1.2])
    np.testing.assert_allclose(gc.evaluate(gc.grad(y, x), {x: xv}), 3 * np.sin(xv) ** 2 * np.cos(xv))
    status, _ = symbolic_check(gc.get_op("cube")) if gc.get_op("cube").examples else ("skipped", "")
    assert status == "skipped"  # a user op without examples is checked by check_grads instead
    gc.check_grads(lambda a: gc.sum(cube(a)), [xv])
    assert "cube" in str(gc.graph(y))


def test_elementwise_op_from_sympy_formula(cleanup_ops):
    cleanup_ops.extend(["swish", "swish_d0", "swish_d0_d0"])
    swish = gc.elementwise_op("swish", lambda x: x / (1 + sympy.exp(-x)))
    x = gc.placeholder((4,), gc.float64, name="x")
    xv = np.linspace(-3, 3, 4)
    s = 1 / (1 + np.exp(-xv))
    np.testing.assert_allclose(gc.evaluate(swish(x), {x: xv}), xv * s)
    g = gc.grad(gc.sum(swish(x)), x)
    np.testing.assert_allclose(gc.evaluate(g, {x: xv}), s + xv * s * (1 - s))
    H = gc.evaluate(gc.hessian(gc.sum(swish(x)), x), {x: xv})
    np.testing.assert_allclose(np.diag(H), 2 * s * (1 - s) + xv * s * (1 - s) * (1 - 2 * s), rtol=1e-12)
    status, _ = symbolic_check(gc.get_op("swish"))
    assert status == "proven"
    # float32 stays float32; broadcasting works like any op
    x32 = gc.placeholder((2, 3), gc.float32)
    assert swish(x32 + gc.placeholder((3,), gc.float32)).dtype == gc.float32
    with pytest.raises(ValueError, match="already registered"):
        gc.elementwise_op("swish", lambda x: x)


def test_two_input_formula(cleanup_ops):
    cleanup_ops.extend(["hyp", "hyp_d0", "hyp_d1"])
    hyp = gc.elementwise_op("hyp", lambda a, b: sympy.sqrt(a * a + b * b))
    a = gc.placeholder((3,), gc.float64)
    b = gc.placeholder((3,), gc.float64)
    av, bv = np.array([3.0, 1.0, 2.0]), np.array([4.0, 1.0, -1.0])
    ga, gb = gc.evaluate(gc.grad(gc.sum(hyp(a, b)), [a, b]), {a: av, b: bv})
    r = np.hypot(av, bv)
    np.testing.assert_allclose(ga, av / r)
    np.testing.assert_allclose(gb, bv / r)


def test_verify_command_exit_codes(capsys):
    from graphc.cli import main
    assert main(["verify", "exp", "tanh", "matmul"]) == 0
    out = capsys.readouterr().out
    assert "exp" in out and "proven" in out and "3 rules checked" in out
    op = gc.get_op("exp")
    good = op.vjp
    try:
        op.vjp = lambda g, x, out: (g * out * 2,)
        assert main(["verify", "exp"]) == 1
        assert "failed" in capsys.readouterr().out
    finally:
        op.vjp = good
