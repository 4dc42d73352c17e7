"""A curve as a sum of sigmoids, and as a sum of ReLUs (a one-hidden-layer network, written out).

    sigmoid form:  y = b + Σ_i c_i σ(b_i + Σ_j w_ij x_j)
    ReLU form:     y = b + Σ_i c_i max(0, b_i + Σ_j w_ij x_j)

Any continuous curve is approached by enough such pieces: each sigmoid is a
smooth step placed at ``-b_i / w_ij`` with height ``c_i``; each ReLU is a
hinge, and two hinges make a ramp. In matrix form the inner sums are
``x @ W + b_vec``, so the model is ``act(x @ W + b_vec) @ c + b`` with
``W`` [features, pieces]. Here x has one feature and the target is a wiggly
curve on [-3, 3]; both forms are fitted by compiled full-batch Adam on the
mean squared error and compared with the best straight line.

Run: python examples/piecewise_curve.py [--pieces 16] [--steps 3000] [--quick]
"""

import argparse
import os

import numpy as np

import graphc as gc


def target(x):
    return np.sin(2.0 * x) + 0.3 * x + 0.5 * (x > 1.0)


def piecewise_model(x, n_features, pieces, activation, name, seed=0):
    """y = b + Σ_i c_i act(b_i + Σ_j w_ij x_j), parameters named {name}.W/.b_in/.c/.b.

    The pieces start with their steps (or hinges) spread evenly over [-3, 3]:
    piece i switches where b_i + w_i x = 0, i.e. at x = -b_i / w_i.
    """
    rng = np.random.default_rng(seed)
    w0 = rng.choice([-2.0, 2.0], size=(n_features, pieces)) * rng.uniform(0.5, 1.5, (n_features, pieces))
    at = np.linspace(-3, 3, pieces) + rng.uniform(-0.1, 0.1, pieces)
    W = gc.parameter(w0.astype(np.float32), f"{name}.W")
    b_in = gc.parameter((-w0.sum(0) * at).astype(np.float32), f"{name}.b_in")
    c = gc.parameter(rng.normal(0, 0.1, pieces).astype(np.float32), f"{name}.c")
    b = gc.parameter(np.zeros((), np.float32), f"{name}.b")
    y = activation(x @ W + b_in) @ c + b
    return y, [W, b_in, c, b]


def fit(xs, ys, pieces, activation, steps, name, lr=0.03):
    n = len(xs)
    x = gc.placeholder((n, 1), gc.float32, "x")
    y = gc.placeholder((n,), gc.float32, "y")
    pred, params = piecewise_model(x, 1, pieces, activation, name)
    loss = gc.nn.mse(pred, y)
    opt = gc.optim.Adam(gc.optim.Warmup(gc.optim.CosineDecay(lr, steps, min_lr=lr * 0.02), 50))
    step = gc.compile([x, y], [loss], updates=opt.updates(loss, params))
    curve = []
    for k in range(steps):
        (l,) = step(xs, ys)
        if k % max(steps // 10, 1) == 0 or k == steps - 1:
            curve.append((k, float(l)))
    predict = gc.compile([x], pred)
    return float(l), curve, predict(xs)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pieces", type=int, default=16)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--quick", action="store_true", default=os.environ.get("GRAPHC_EXAMPLE_QUICK") == "1")
    args = ap.parse_args(argv)
    steps = min(args.steps, 1000) if args.quick else args.steps

    xs1 = np.linspace(-3, 3, 200)
    ys = target(xs1).astype(np.float32)
    xs = xs1[:, None].astype(np.float32)
    a = np.stack([np.ones_like(xs1), xs1], 1)
    line = a @ np.linalg.lstsq(a, ys, rcond=None)[0]
    line_mse = float(np.mean((line - ys) ** 2))
    print(f"target: sin(2x) + 0.3x + 0.5·[x > 1] on 200 points of [-3, 3]; best straight line MSE {line_mse:.4f}")
    results = {"line": line_mse}
    for label, act in (("sigmoid", gc.sigmoid), ("relu", gc.relu)):
        final, curve, pred = fit(xs, ys, args.pieces, act, steps, name=label)
        results[label] = final
        trace = "  ".join(f"{k}:{v:.4f}" for k, v in curve[::2] + curve[-1:] * (len(curve) % 2 == 0))
        print(f"\n{label} form, {args.pieces} pieces, {steps} steps: MSE {final:.5f} "
              f"(max |error| {np.max(np.abs(pred - ys)):.3f})")
        print(f"  loss by step  {trace}")
    print(f"\nboth piecewise forms beat the line by {line_mse / max(results['sigmoid'], results['relu']):.0f}x or more")
    return results


if __name__ == "__main__":
    main()
