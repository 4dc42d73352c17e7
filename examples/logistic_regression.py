"""Logistic regression with the log-loss: p(y = 1 | x) = σ(w·x + b).

Two classes of points in the plane drawn from Gaussians with a shared
covariance, for which the Bayes-optimal decision boundary is a line, so
logistic regression can reach the best possible accuracy. The loss is the
binary log-loss computed stably from the logit z = w·x + b:

    ℓ(z, y) = -y log σ(z) - (1 - y) log(1 - σ(z)) = softplus(z) - y·z

minimized with minibatch SGD (``gc.train.Trainer``: one native call per
batch does forward, backward and update). The result is checked against the
exact Bayes classifier and the 0-1 error on held-out points.

Run: python examples/logistic_regression.py [--epochs 20] [--quick]
"""

import argparse
import os

import numpy as np

import graphc as gc

MU0, MU1 = np.array([-1.0, -0.5]), np.array([1.0, 1.0])
COV = np.array([[1.0, 0.4], [0.4, 0.8]])


def sample(n, seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    chol = np.linalg.cholesky(COV)
    x = np.where(y[:, None] == 1, MU1, MU0) + rng.normal(size=(n, 2)) @ chol.T
    return x.astype(np.float32), y.astype(np.float32)


def bayes_boundary():
    """Equal priors, shared covariance Σ: log-odds = (μ1-μ0)ᵀ Σ⁻¹ x - (μ1ᵀΣ⁻¹μ1 - μ0ᵀΣ⁻¹μ0)/2."""
    inv = np.linalg.inv(COV)
    w = inv @ (MU1 - MU0)
    b = -0.5 * (MU1 @ inv @ MU1 - MU0 @ inv @ MU0)
    return w, b


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--quick", action="store_true", default=os.environ.get("GRAPHC_EXAMPLE_QUICK") == "1")
    ap.add_argument("--progress", action="store_true", help="show the tqdm progress bar")
    args = ap.parse_args(argv)
    epochs = min(args.epochs, 5) if args.quick else args.epochs

    x_tr, y_tr = sample(4000, seed=0)
    x_te, y_te = sample(2000, seed=1)
    w = gc.parameter(np.zeros(2, np.float32), "logreg.w")
    b = gc.parameter(np.zeros((), np.float32), "logreg.b")

    def model(x):
        return x @ w + b  # the logit z, shape [batch]

    tr = gc.train.Trainer(model, [w, b], gc.optim.SGD(gc.optim.ExponentialDecay(0.5, 0.9, decay_steps=125)),
                          batch_size=64, x_shape=(2,), y_dtype=gc.float32, loss=gc.nn.log_loss,
                          metrics={"error": gc.nn.zero_one_error}, name="logreg")
    hist = tr.fit(x_tr, y_tr, epochs=epochs, eval_data=(x_te, y_te), progress=args.progress)
    res = tr.evaluate(x_te, y_te)

    wb, bb = bayes_boundary()
    bayes_err = np.mean(((x_te @ wb + bb) > 0) != (y_te > 0))
    z = x_te @ w.value + b.value
    manual = np.mean(np.logaddexp(0, z) - y_te * z)
    print(f"trained {epochs} epochs of {len(x_tr)} points, batch 64, SGD lr 0.5·0.9^(t/125)")
    print(f"  learned  w = {np.round(w.value.astype(float), 3).tolist()}, b = {float(b.value):.3f}")
    print(f"  Bayes    w = {np.round(wb, 3).tolist()}, b = {bb:.3f}")
    print(f"  test log-loss {res['loss']:.4f} (numpy: {manual:.4f}), test error {100 * res['error']:.2f}% "
          f"(Bayes-optimal: {100 * bayes_err:.2f}%)")
    print(f"  per-epoch test error: {[round(100 * e, 2) for e in hist['eval_error']]}")
    return res, bayes_err


if __name__ == "__main__":
    main()
