"""Optimizers compared: SGD, momentum, AdaGrad, RMSProp and Adam, each with linear warmup then cosine decay.

One small network (784-64-10 MLP, ReLU, cross-entropy) trained from the
same initial weights on the same batches by each optimizer; every rate
follows ``η_t = η · (t+1)/W`` for the first W = 30 updates, then a cosine
decay to η/20 over the remaining ones (``gc.optim.Warmup(CosineDecay(...))``,
computed in the graph from the optimizer's step counter). The update rules:

    SGD       p ← p - η g
    momentum  v ← 0.9 v + g;                 p ← p - η v
    AdaGrad   s ← s + g²;                    p ← p - η g / (√s + ε)
    RMSProp   s ← 0.9 s + 0.1 g²;            p ← p - η g / (√s + ε)
    Adam      m ← β₁m + (1-β₁)g, v ← β₂v + (1-β₂)g²;  p ← p - η m̂ / (√v̂ + ε)

Data: MNIST's 10k test set split 8,000 / 2,000 when available, else a
generated 10-class set. Writes ``optimizer_comparison.md`` (the table) and,
if matplotlib is installed, ``optimizer_comparison.png`` (loss curves) into
``--outdir`` (default: ``graphc-optimizer-comparison`` in the temp folder).

Run: python examples/optimizer_comparison.py [--epochs 4] [--outdir DIR] [--quick]
"""

import argparse
import os
import tempfile
import time

import numpy as np

import graphc as gc

OPTIMIZERS = [  # (label, factory(schedule), peak rate)
    ("SGD", lambda lr: gc.optim.SGD(lr), 0.2),
    ("momentum", lambda lr: gc.optim.Momentum(lr, momentum=0.9), 0.02),
    ("AdaGrad", lambda lr: gc.optim.AdaGrad(lr), 0.02),
    ("RMSProp", lambda lr: gc.optim.RMSProp(lr), 0.002),
    ("Adam", lambda lr: gc.optim.Adam(lr), 0.003),
]


def dataset():
    try:
        x, y = gc.data.load_mnist("test", flatten=True, normalize=True)
        return (x[:8000], y[:8000]), (x[8000:], y[8000:]), "MNIST (8,000 train / 2,000 test)"
    except gc.data.DatasetNotFoundError:
        rng = np.random.default_rng(0)
        centers = rng.random((10, 784)).astype(np.float32)

        def draw(n):
            yy = rng.integers(0, 10, n)
            return np.clip(centers[yy] + rng.normal(0, 0.6, (n, 784)), 0, 1).astype(np.float32), yy
        return draw(8000), draw(2000), "generated 10-class data (MNIST not found)"


def smooth(v, k=10):
    v = np.asarray(v)
    if len(v) < k:
        return v
    return np.convolve(v, np.ones(k) / k, mode="valid")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--outdir", default=os.path.join(tempfile.gettempdir(), "graphc-optimizer-comparison"),
                    help="where the table and the plot go (default: a folder in the system's temp dir)")
    ap.add_argument("--quick", action="store_true", default=os.environ.get("GRAPHC_EXAMPLE_QUICK") == "1")
    args = ap.parse_args(argv)
    epochs = 1 if args.quick else args.epochs
    (x_tr, y_tr), (x_te, y_te), source = dataset()
    batch = 128
    steps = epochs * (len(x_tr) // batch)
    warm = min(30, steps // 2)
    print(f"{source}; MLP 784-64-10, batch {batch}, {epochs} epochs = {steps} updates, "
          f"warmup {warm} then cosine decay")

    # one model whose parameters are reset to the same start for each optimizer (so the evaluation
    # graph is the same each time and compiles once: the compiled-code cache finds it)
    model = gc.nn.MLP([784, 64, 10], seed=0, name="mlp")
    start_values = [p.value.copy() for p in model.params]
    rows, curves = [], {}
    for label, make, peak in OPTIMIZERS:
        for p, v in zip(model.params, start_values):
            p.value[...] = v
        sched = gc.optim.Warmup(gc.optim.CosineDecay(peak, max(steps - warm, 1), min_lr=peak / 20), warm)
        tr = gc.train.Trainer(model, model.params, make(sched), batch_size=batch, x_shape=(784,),
                              name="compare")  # one name: the evaluation graph is shared
        t0 = time.perf_counter()
        hist = tr.fit(x_tr, y_tr, epochs=epochs, seed=0, progress=False)
        seconds = time.perf_counter() - t0
        res = tr.evaluate(x_te, y_te)
        curves[label] = hist.losses
        rows.append((label, f"{peak:g}", hist.last["loss"], res["loss"], 100 * res["accuracy"], seconds))

    header = "| optimizer | peak lr | last-epoch train loss | test loss | test accuracy | seconds |"
    lines = [header, "|---|---|---|---|---|---|"]
    lines += [f"| {r[0]} | {r[1]} | {r[2]:.4f} | {r[3]:.4f} | {r[4]:.2f}% | {r[5]:.2f} |" for r in rows]
    table = "\n".join(lines)
    print(table)
    os.makedirs(args.outdir, exist_ok=True)
    md = os.path.join(args.outdir, "optimizer_comparison.md")
    with open(md, "w") as f:
        f.write(f"# Optimizer comparison\n\n{source}; {steps} updates, warmup {warm} + cosine decay.\n\n{table}\n")
    print(f"table written to {md}")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (pip install matplotlib)")
        return rows
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, losses in curves.items():
        s = smooth(losses)
        ax.plot(np.arange(len(s)) + (len(losses) - len(s)), s, label=label)
    ax.set_yscale("log")
    ax.set_xlabel("update")
    ax.set_ylabel("training loss (10-step moving average)")
    ax.set_title("784-64-10 MLP: optimizers with warmup + cosine decay")
    ax.legend()
    fig.tight_layout()
    png = os.path.join(args.outdir, "optimizer_comparison.png")
    fig.savefig(png, dpi=100)
    plt.close(fig)
    print(f"plot written to {png}")
    return rows


if __name__ == "__main__":
    main()
