"""gc.optim: every optimizer against a hand-written numpy implementation, compiled, over several steps,
with constant rates and with schedules; schedules against their formulas; state buffers."""

import math

import numpy as np
import pytest

import graphc as gc
from graphc import optim

N, D, K = 16, 4, 3
STEPS = 8


# ---------------------------------------------------------------- numpy references (written independently)

class NpSGD:
    def __init__(self, lr, momentum=0.0, nesterov=False, wd=0.0):
        self.lr, self.mu, self.nesterov, self.wd, self.v = lr, momentum, nesterov, wd, None

    def step(self, ps, gs, t):
        lr = self.lr(t)
        if self.v is None:
            self.v = [np.zeros_like(p) for p in ps]
        out = []
        for i, (p, g) in enumerate(zip(ps, gs)):
            g = g + self.wd * p
            if self.mu == 0:
                out.append(p - lr * g)
                continue
            self.v[i] = self.mu * self.v[i] + g
            d = g + self.mu * self.v[i] if self.nesterov else self.v[i]
            out.append(p - lr * d)
        return out


class NpAdaGrad:
    def __init__(self, lr, eps=1e-10):
        self.lr, self.eps, self.s = lr, eps, None

    def step(self, ps, gs, t):
        if self.s is None:
            self.s = [np.zeros_like(p) for p in ps]
        out = []
        for i, (p, g) in enumerate(zip(ps, gs)):
            self.s[i] = self.s[i] + g * g
            out.append(p - self.lr(t) * g / (np.sqrt(self.s[i]) + self.eps))
        return out


class NpRMSProp:
    def __init__(self, lr, rho=0.9, eps=1e-8):
        self.lr, self.rho, self.eps, self.s = lr, rho, eps, None

    def step(self, ps, gs, t):
        if self.s is None:
            self.s = [np.zeros_like(p) for p in ps]
        out = []
        for i, (p, g) in enumerate(zip(ps, gs)):
            self.s[i] = self.rho * self.s[i] + (1 - self.rho) * g * g
            out.append(p - self.lr(t) * g / (np.sqrt(self.s[i]) + self.eps))
        return out


class NpAdam:
    def __init__(self, lr, b1=0.9, b2=0.999, eps=1e-8, wd=0.0, decoupled=False):
        self.lr, self.b1, self.b2, self.eps, self.wd, self.decoupled = lr, b1, b2, eps, wd, decoupled
        self.m = self.v = None

    def step(self, ps, gs, t):
        if self.m is None:
            self.m = [np.zeros_like(p) for p in ps]
            self.v = [np.zeros_like(p) for p in ps]
        k = t + 1
        out = []
        for i, (p, g) in enumerate(zip(ps, gs)):
            if not self.decoupled:
                g = g + self.wd * p
            self.m[i] = self.b1 * self.m[i] + (1 - self.b1) * g
            self.v[i] = self.b2 * self.v[i] + (1 - self.b2) * g * g
            mh = self.m[i] / (1 - self.b1 ** k)
            vh = self.v[i] / (1 - self.b2 ** k)
            upd = mh / (np.sqrt(vh) + self.eps)
            if self.decoupled:
                upd = upd + self.wd * p
            out.append(p - self.lr(t) * upd)
        return out


def np_constant(lr):
    return lambda t: lr


def np_warmup_cosine(lr, warm, total):
    def f(t):
        if t < warm:
            return lr * (t + 1) / warm
        u = min(t - warm, total) / total
        return 0.5 * lr * (1 + math.cos(math.pi * u))
    return f


def np_step_decay(lr, size, gamma):
    return lambda t: lr * gamma ** (t // size)


def np_exp_decay(lr, rate, steps):
    return lambda t: lr * rate ** (t / steps)


# (name, graphc optimizer factory(lr), numpy factory(lr-fn), base lr)
CASES = [
    ("sgd", lambda lr: optim.SGD(lr), lambda f: NpSGD(f), 0.1),
    ("sgd_wd", lambda lr: optim.SGD(lr, weight_decay=0.05), lambda f: NpSGD(f, wd=0.05), 0.1),
    ("momentum", lambda lr: optim.Momentum(lr, momentum=0.8), lambda f: NpSGD(f, 0.8), 0.05),
    ("nesterov", lambda lr: optim.Nesterov(lr, momentum=0.8), lambda f: NpSGD(f, 0.8, nesterov=True), 0.05),
    ("adagrad", lambda lr: optim.AdaGrad(lr), lambda f: NpAdaGrad(f), 0.1),
    ("rmsprop", lambda lr: optim.RMSProp(lr, rho=0.8), lambda f: NpRMSProp(f, rho=0.8), 0.01),
    ("adam", lambda lr: optim.Adam(lr), lambda f: NpAdam(f), 0.01),
    ("adam_l2", lambda lr: optim.Adam(lr, weight_decay=0.1), lambda f: NpAdam(f, wd=0.1), 0.01),
    ("adamw", lambda lr: optim.AdamW(lr, weight_decay=0.1), lambda f: NpAdam(f, wd=0.1, decoupled=True), 0.01),
]

SCHEDULES = {
    "constant": (lambda lr: lr, np_constant),
    "warmup_cosine": (lambda lr: optim.Warmup(optim.CosineDecay(lr, total_steps=4), 3),
                      lambda lr: np_warmup_cosine(lr, 3, 4)),
    "step_decay": (lambda lr: optim.StepDecay(lr, step_size=3, gamma=0.5), lambda lr: np_step_decay(lr, 3, 0.5)),
    "exp_decay": (lambda lr: optim.ExponentialDecay(lr, rate=0.7, decay_steps=2),
                  lambda lr: np_exp_decay(lr, 0.7, 2)),
}


def _problem(dtype, seed=0):
    """loss = Σ (X W + b - Y)² / (2N): gradients W̄ = Xᵀ R / N, b̄ = Σ_rows R / N with R = XW + b - Y."""
    rng = np.random.default_rng(seed)
    W0 = rng.normal(size=(D, K)).astype(dtype)
    b0 = rng.normal(size=K).astype(dtype)
    data = [(rng.normal(size=(N, D)).astype(dtype), rng.normal(size=(N, K)).astype(dtype)) for _ in range(STEPS)]
    return W0, b0, data


def _np_grads(W, b, X, Y):
    R = X @ W + b - Y
    return [X.T @ R / N, R.sum(0) / N]


def _run(case, sched, dtype):
    name, make, make_np, lr = case
    g_sched, np_sched = SCHEDULES[sched]
    W0, b0, data = _problem(dtype)
    W = gc.parameter(W0, "W")
    b = gc.parameter(b0, "b")
    x = gc.placeholder((N, D), gc.as_dtype(dtype), "x")
    y = gc.placeholder((N, K), gc.as_dtype(dtype), "y")
    r = x @ W + b - y
    loss = gc.sum(r * r) / (2 * N)
    opt = make(g_sched(lr))
    step = gc.compile([x, y], loss, updates=opt.updates(loss, [W, b]))
    ref = make_np(np_sched(lr))
    ps = [W0.astype(np.float64), b0.astype(np.float64)]
    got, want = [], []
    for t, (X, Y) in enumerate(data):
        step(X, Y)
        ps = ref.step(ps, _np_grads(*ps, X.astype(np.float64), Y.astype(np.float64)), t)
        got.append([W.value.copy(), b.value.copy()])
        want.append([p.copy() for p in ps])
    assert opt.t == STEPS and int(opt.step.value) == STEPS
    return got, want


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_optimizer_matches_numpy_float64_on_a_schedule(case):
    sched = {"sgd": "step_decay", "momentum": "step_decay", "rmsprop": "exp_decay", "adagrad": "exp_decay"}.get(
        case[0], "warmup_cosine")
    got, want = _run(case, sched, np.float64)
    for k, (g, w) in enumerate(zip(got, want)):
        for a, e in zip(g, w):
            np.testing.assert_allclose(a, e, rtol=1e-10, atol=1e-12, err_msg=f"{case[0]} step {k}")


@pytest.mark.parametrize("case", [c for c in CASES if c[0] in ("sgd", "nesterov", "adagrad", "rmsprop", "adamw")],
                         ids=lambda c: c[0])
def test_optimizer_matches_numpy_float32_constant_rate(case):
    got, want = _run(case, "constant", np.float32)
    for k, (g, w) in enumerate(zip(got, want)):
        for a, e in zip(g, w):
            assert a.dtype == np.float32
            np.testing.assert_allclose(a, e, rtol=2e-4, atol=2e-5, err_msg=f"{case[0]} step {k}")


def test_compiled_update_agrees_with_interpreter():
    W0, b0, data = _problem(np.float64, seed=3)
    W, b = gc.parameter(W0, "W"), gc.parameter(b0, "b")
    x, y = gc.placeholder((N, D), gc.float64, "x"), gc.placeholder((N, K), gc.float64, "y")
    r = x @ W + b - y
    loss = gc.sum(r * r) / (2 * N)
    opt = optim.Adam(optim.Warmup(0.05, 2))
    ups = opt.updates(loss, [W, b])
    X, Y = data[0]
    interp = gc.evaluate([v for _, v in ups], {x: X, y: Y})  # reads the current (initial) values
    step = gc.compile([x, y], loss, updates=ups)
    step(X, Y)
    for (p, _), v in zip(ups, interp):
        np.testing.assert_allclose(p.value, v, rtol=1e-12, atol=1e-15, err_msg=p.name)


# ---------------------------------------------------------------- schedules

def _graph_values(s, n):
    t = gc.placeholder((), gc.int64, "t")
    lr = s(t)
    return np.array([float(gc.evaluate(lr, {t: np.array(k, np.int64)})) for k in range(n)])


@pytest.mark.parametrize("name", ["constant", "warmup_cosine", "step_decay", "exp_decay"])
def test_schedule_graph_matches_python_and_formula(name):
    g_sched, np_sched = SCHEDULES[name]
    s = optim.as_schedule(g_sched(0.3))
    n = 12
    np.testing.assert_allclose(_graph_values(s, n), [np_sched(0.3)(k) for k in range(n)], rtol=1e-12)
    np.testing.assert_allclose(s.values(n), [np_sched(0.3)(k) for k in range(n)], rtol=1e-12)


def test_schedule_known_values():
    cos = optim.CosineDecay(1.0, total_steps=10, min_lr=0.1)
    assert cos.value(0) == pytest.approx(1.0)
    assert cos.value(5) == pytest.approx(0.55)
    assert cos.value(10) == pytest.approx(0.1) and cos.value(50) == pytest.approx(0.1)
    st = optim.StepDecay(0.1, step_size=100, gamma=0.1)
    assert [st.value(t) for t in (0, 99, 100, 250)] == pytest.approx([0.1, 0.1, 0.01, 0.001])
    ex = optim.ExponentialDecay(1.0, rate=0.5, decay_steps=10, staircase=True)
    assert [ex.value(t) for t in (9, 10, 25)] == pytest.approx([1.0, 0.5, 0.25])
    w = optim.Warmup(optim.StepDecay(0.4, 2, 0.5), warmup_steps=4)
    assert w.values(8) == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.4, 0.4, 0.2, 0.2])
    np.testing.assert_allclose(_graph_values(w, 8), w.values(8))
    np.testing.assert_allclose(_graph_values(ex, 26)[[9, 10, 25]], [1.0, 0.5, 0.25])
    with pytest.raises(TypeError, match="learning rate"):
        optim.SGD(lr="fast")
    with pytest.raises(ValueError):
        optim.CosineDecay(1.0, 0)


# ---------------------------------------------------------------- state

def test_state_buffers_named_and_updated_in_place():
    w = gc.parameter(np.ones(3, np.float32), "w")
    x = gc.placeholder((3,), gc.float32, "x")
    loss = gc.sum(w * x)
    opt = optim.Adam(0.1)
    step = gc.compile([x], loss, updates=opt.updates(loss, [w]))
    assert sorted(opt.state) == ["adam/step", "adam/w/m", "adam/w/v"]
    m = opt.state["adam/w/m"].value
    step(np.array([1, 2, 3], np.float32))
    np.testing.assert_allclose(m, [0.1, 0.2, 0.3], rtol=1e-6)  # the same array, updated in place
    np.testing.assert_allclose(opt.state["adam/w/v"].value, [0.001, 0.004, 0.009], rtol=1e-5)
    assert opt.t == 1 and opt.current_lr() == pytest.approx(0.1)
    np.testing.assert_allclose(w.value, 1 - 0.1, rtol=1e-6)  # Adam's first step is lr·sign(g)


def test_apply_gradients_with_clipped_gradients_and_shared_state():
    w = gc.parameter(np.zeros(2), "w")
    x = gc.placeholder((2,), gc.float64, "x")
    loss = gc.sum(w * x)
    g = gc.grad(loss, w)
    clipped = g * gc.minimum(1.0, 1.0 / gc.sqrt(gc.sum(g * g)))
    opt = optim.Momentum(1.0, momentum=0.5)
    step = gc.compile([x], loss, updates=opt.apply_gradients([w], [clipped]))
    step(np.array([3.0, 4.0]))
    np.testing.assert_allclose(w.value, [-0.6, -0.8])
    # a second graph (another input size) reuses the same velocity and counter
    x2 = gc.placeholder((2,), gc.float64, "x2")
    loss2 = gc.sum(w * x2) * 0.0
    step2 = gc.compile([x2], loss2, updates=opt.updates(loss2, [w]))
    step2(np.array([1.0, 1.0]))
    np.testing.assert_allclose(w.value, [-0.6 - 0.3, -0.8 - 0.4])  # v = 0.5·v + 0
    assert opt.t == 2 and len(opt.state) == 2


def test_optimizer_errors():
    a = gc.parameter(np.zeros(2), "same")
    b = gc.parameter(np.zeros(2), "same")
    loss = gc.sum(a) + gc.sum(b)
    with pytest.raises(gc.GraphError, match="named 'same'"):
        optim.Adam().updates(loss, [a, b])
    x = gc.placeholder((2,), gc.float64, "x")
    with pytest.raises(gc.GraphError, match="only update parameters"):
        optim.SGD(0.1).apply_gradients([x], [x])
    with pytest.raises(gc.GraphError, match="listed twice"):
        optim.SGD(0.1).updates(gc.sum(a), [a, a])
    with pytest.raises(ValueError, match="momentum"):
        optim.SGD(0.1, nesterov=True)
