"""One MLP training step as one native call: 784-512-512-10, ReLU, softmax cross-entropy, SGD.

This is the benchmark W3's step. Run it as `python examples/mlp_step.py`, or
see every stage of its compilation with `graphc dump examples/mlp_step.py`.
"""

import numpy as np

import graphc as gc

BATCH = 128


def build(batch=BATCH, sizes=(784, 512, 512, 10), lr=0.05, seed=0):
    rng = np.random.default_rng(seed)
    x = gc.placeholder((batch, sizes[0]), gc.float32, name="x")
    labels = gc.placeholder((batch,), gc.int64, name="labels")
    params = []
    h = x
    for k, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
        w = gc.parameter((rng.normal(size=(n_in, n_out)) * np.sqrt(2 / n_in)).astype(np.float32), name=f"w{k}")
        b = gc.parameter(np.zeros(n_out, np.float32), name=f"b{k}")
        params += [w, b]
        h = h @ w + b
        if k < len(sizes) - 1:
            h = gc.relu(h)
    loss = -gc.mean(gc.sum(gc.one_hot(labels, sizes[-1]) * gc.log_softmax(h), axis=1))
    grads = gc.grad(loss, params)
    step = gc.compile([x, labels], loss, updates=[(p, p - lr * g) for p, g in zip(params, grads)],
                      name="mlp_step")
    return step, params


def main():
    step, params = build()
    rng = np.random.default_rng(1)
    xs = rng.normal(size=(BATCH, 784)).astype(np.float32)
    ys = rng.integers(0, 10, BATCH)
    losses = [float(step(xs, ys)) for _ in range(20)]
    print(f"loss on one batch, 20 steps: {losses[0]:.3f} -> {losses[-1]:.3f}")
    assert losses[-1] < losses[0]
    print(f"{len(step.plan.kernels)} kernels; parameters updated in place: {', '.join(step.plan.in_place)}")


if __name__ == "__main__":
    main()
