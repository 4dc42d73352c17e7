"""W4: a tiny training step, where the cost of calling decides everything.

    python bench/bench_tiny_step.py [--steps 20000] [--repeats 7] [--skip-peers]

Logistic regression, 10 features, batch 16, binary log-loss from logits,
one SGD step (lr 0.1) per call, float32, input checks ON (graphc checks
every input's type, dtype, shape and layout at every call). Reported: the
median over ``--repeats`` blocks of ``--steps`` calls, in µs per step, and
the ratio to the hand-written numpy step. Rows:

* numpy: the forward, the gradient and the update written by hand;
* graphc: the compiled step through the native call path (codegen/dispatch.py);
* graphc, Python call path: the same compiled code called through the
  Python checks and ctypes (``GRAPHC_PYTHON_CALLS=1``), to show what the
  native call path saves;
* JAX (``jax.jit``, parameters passed in and returned), PyTorch eager
  (``loss.backward()`` + ``optimizer.step()``) and PyTensor (Numba backend,
  parameters in shared variables; with its input checks, and with
  ``trust_input`` as the issue's anchor ran it) where installed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

import graphc as gc

BATCH, FEATURES, LR = 16, 10, 0.1


def data(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((BATCH, FEATURES)).astype(np.float32)
    y = (rng.random(BATCH) > 0.5).astype(np.float32)
    return x, y


def per_step_us(step, steps, repeats):
    for _ in range(min(steps, 1000)):
        step()
    blocks = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(steps):
            step()
        blocks.append((time.perf_counter() - t) / steps * 1e6)
    return statistics.median(blocks)


def numpy_impl(x, y):
    w, b = np.zeros(FEATURES, np.float32), np.zeros((), np.float32)

    def step():
        nonlocal b
        z = x @ w + b
        loss = np.mean(np.logaddexp(0, z) - y * z)
        g = (1 / (1 + np.exp(-z)) - y) / BATCH
        w[...] -= LR * (x.T @ g)
        b = b - LR * g.sum()
        return loss
    return step


def graphc_impl(x, y, python_calls=False):
    if python_calls:
        os.environ["GRAPHC_PYTHON_CALLS"] = "1"
    try:
        xp = gc.placeholder((BATCH, FEATURES), gc.float32, "x")
        yp = gc.placeholder((BATCH,), gc.float32, "y")
        w = gc.parameter(np.zeros(FEATURES, np.float32), name="w")
        b = gc.parameter(np.zeros((), np.float32), name="b")
        loss = gc.nn.binary_cross_entropy_with_logits(xp @ w + b, yp)
        fn = gc.compile([xp, yp], loss, updates=gc.optim.SGD(LR).updates(loss, [w, b]), name="w4")
    finally:
        os.environ.pop("GRAPHC_PYTHON_CALLS", None)
    return lambda: fn(x, y)


def jax_impl(x, y):
    import jax
    import jax.numpy as jnp

    def loss_fn(p, xb, yb):
        z = xb @ p[0] + p[1]
        return jnp.mean(jax.nn.softplus(z) - yb * z)

    @jax.jit
    def step(p, xb, yb):
        loss, g = jax.value_and_grad(loss_fn)(p, xb, yb)
        return loss, (p[0] - LR * g[0], p[1] - LR * g[1])
    state = {"p": (jnp.zeros(FEATURES, jnp.float32), jnp.zeros((), jnp.float32))}
    xj, yj = jnp.asarray(x), jnp.asarray(y)

    def run():
        loss, state["p"] = step(state["p"], xj, yj)
        return loss
    run()[()].block_until_ready()
    return run


def torch_impl(x, y):
    import torch
    torch.set_num_threads(1)
    model = torch.nn.Linear(FEATURES, 1)
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    lossf = torch.nn.BCEWithLogitsLoss()
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)

    def run():
        opt.zero_grad(set_to_none=True)
        loss = lossf(model(xt)[:, 0], yt)
        loss.backward()
        opt.step()
        return loss
    return run


def pytensor_impl(x, y, trust_input=False):
    import pytensor
    import pytensor.tensor as pt
    xp, yp = pt.matrix("x", dtype="float32"), pt.vector("y", dtype="float32")
    w = pytensor.shared(np.zeros(FEATURES, np.float32), name="w")
    b = pytensor.shared(np.zeros((), np.float32), name="b")
    z = xp @ w + b
    loss = pt.mean(pt.softplus(z) - yp * z)
    gw, gb = pytensor.grad(loss, [w, b])
    fn = pytensor.function([xp, yp], loss, mode="NUMBA",
                           updates=[(w, w - np.float32(LR) * gw), (b, b - np.float32(LR) * gb)])
    fn.trust_input = trust_input
    fn(x, y)  # Numba compiles on the first call
    return lambda: fn(x, y)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--steps", type=int, default=20000)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--skip-peers", action="store_true")
    args = p.parse_args(argv)
    x, y = data()
    impls = [("numpy (hand-written)", numpy_impl), ("graphc", graphc_impl),
             ("graphc, Python call path", lambda a, b: graphc_impl(a, b, python_calls=True))]
    if not args.skip_peers:
        impls += [("JAX jit", jax_impl), ("torch eager", torch_impl), ("PyTensor Numba", pytensor_impl),
                  ("PyTensor Numba, no checks", lambda a, b: pytensor_impl(a, b, trust_input=True))]
    rows = []
    for name, make in impls:
        try:
            step = make(x, y)
        except ImportError as e:
            print(f"{name}: not installed ({e})")
            continue
        steps = args.steps if "torch" not in name and "JAX" not in name else max(args.steps // 10, 100)
        rows.append((name, per_step_us(step, steps, args.repeats)))
    base = rows[0][1]
    print(f"W4: logistic regression, {FEATURES} features, batch {BATCH}, one SGD step per call, "
          f"checks on; median of {args.repeats} blocks, µs per step")
    print(f"{'impl':<26} {'µs/step':>9} {'vs numpy':>9}")
    for name, us in rows:
        print(f"{name:<26} {us:>9.2f} {base / us:>8.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
