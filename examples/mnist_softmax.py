"""Softmax regression on MNIST: logits z = x W + b, cross-entropy loss, SGD — test error under 8 %.

The project's MNIST is the official 10k test set (shared/data/mnist); the
protocol trains on its first 8,000 images and tests on the last 2,000.
Pixels are scaled to [0, 1]; the 784 x 10 weights start at zero.

    loss = (1/B) Σ_i [logsumexp(z_i) - z_i,y_i]        (cross-entropy from logits)
    W ← W - η ∂loss/∂W,  b ← b - η ∂loss/∂b            (η = 0.1, batch 128, 10 epochs)

The whole step — forward, backward, update — is one native call per batch.
A hand-written numpy version of the same training reaches 92.4 % accuracy.

Run: python examples/mnist_softmax.py [--epochs 10] [--quick] [--progress]
"""

import argparse
import os
import sys
import time

import numpy as np

import graphc as gc


def load(folder=None):
    x, y = gc.data.load_mnist("test", folder=folder, flatten=True, normalize=True)
    return (x[:8000], y[:8000]), (x[8000:], y[8000:])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--data", default=None, help="folder with t10k-images-idx3-ubyte.gz and t10k-labels...")
    ap.add_argument("--quick", action="store_true", default=os.environ.get("GRAPHC_EXAMPLE_QUICK") == "1")
    ap.add_argument("--progress", action="store_true", help="show the tqdm progress bar")
    args = ap.parse_args(argv)
    epochs = min(args.epochs, 3) if args.quick else args.epochs
    try:
        (x_tr, y_tr), (x_te, y_te) = load(args.data)
    except gc.data.DatasetNotFoundError as e:
        print(f"MNIST is not available here, nothing to do.\n{e}")
        return None

    W = gc.parameter(np.zeros((784, 10), np.float32), "softmax.W")
    b = gc.parameter(np.zeros(10, np.float32), "softmax.b")
    tr = gc.train.Trainer(lambda x: x @ W + b, [W, b], gc.optim.SGD(args.lr), batch_size=128, x_shape=(784,),
                          metrics={"error": gc.nn.zero_one_error}, name="mnist_softmax")
    start = time.perf_counter()
    hist = tr.fit(x_tr, y_tr, epochs=epochs, seed=0, progress=args.progress)
    seconds = time.perf_counter() - start
    res = tr.evaluate(x_te, y_te)
    print(f"softmax regression, {epochs} epochs x {hist.last['steps']} steps of batch 128 on 8,000 MNIST images: "
          f"{seconds:.2f} s ({hist.last['steps_per_s']:.0f} steps/s)")
    print(f"  train loss by epoch: {[round(v, 4) for v in hist['loss']]}")
    print(f"  test (last 2,000): loss {res['loss']:.4f}, error {100 * res['error']:.2f}%, "
          f"accuracy {100 * (1 - res['error']):.2f}%")
    if not args.quick and res["error"] >= 0.08:
        print("FAILED: the test error should be under 8 %")
        sys.exit(1)
    return res


if __name__ == "__main__":
    main()
