"""W3 and W6: one MLP training step (784-512-512-10, batch 128, ReLU, softmax cross-entropy, SGD).

    python bench/bench_step.py [--repeat 200] [--skip-peers]

W3: median time of one step (forward + backward + update, one native call for
graphc), against a hand-written numpy step and, when installed, JAX (jit),
PyTorch (eager and torch.compile) and PyTensor (Numba backend); peak RSS of
a process that only runs the graphc step.
W6: time from an empty process to the first finished step, cold (empty
compile cache) and warm (second process), split into import, graph build,
autodiff, compile and the first call, and the compile itself into loading
LLVM, cache key, passes, emission of LLVM IR, LLVM (optimization and code
generation) and loading the code (``CompiledFunction.compile_times``); medians
of ``--w6-repeat`` runs. "to step" ends when the first step has returned (wall
clock, from just before the process is started); "process" adds the
interpreter's exit (its garbage collections and module teardown, 15 ms for
numpy alone, ~50 ms with a compiled graph alive), which comes after the step
and is reported apart.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

SIZES = (784, 512, 512, 10)
BATCH = 128
LR = 0.05


def init_params(seed=0):
    rng = np.random.default_rng(seed)
    params = []
    for n_in, n_out in zip(SIZES[:-1], SIZES[1:]):
        params.append((rng.normal(size=(n_in, n_out)) * np.sqrt(2 / n_in)).astype(np.float32))
        params.append(np.zeros(n_out, np.float32))
    return params


def data(seed=1):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(BATCH, SIZES[0])).astype(np.float32), rng.integers(0, SIZES[-1], BATCH)


def median_ms(fn, repeat, warmup=10):
    """Median wall time of ``fn()`` in ms, after ``warmup`` calls (shared with bench_codegen)."""
    from bench_codegen import median_ms as timed
    return timed(fn, repeat, warmup)


def numpy_step(params, x, y):
    w1, b1, w2, b2, w3, b3 = params
    a1 = x @ w1 + b1
    h1 = np.maximum(a1, 0)
    a2 = h1 @ w2 + b2
    h2 = np.maximum(a2, 0)
    z = h2 @ w3 + b3
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    p = e / e.sum(1, keepdims=True)
    loss = -np.mean(np.log(p[np.arange(BATCH), y]))
    dz = p
    dz[np.arange(BATCH), y] -= 1
    dz /= BATCH
    dw3, db3 = h2.T @ dz, dz.sum(0)
    dh2 = (dz @ w3.T) * (a2 > 0)
    dw2, db2 = h1.T @ dh2, dh2.sum(0)
    dh1 = (dh2 @ w2.T) * (a1 > 0)
    dw1, db1 = x.T @ dh1, dh1.sum(0)
    for prm, g in zip(params, (dw1, db1, dw2, db2, dw3, db3)):
        prm -= LR * g
    return loss


def graphc_step():
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "examples"))
    import mlp_step
    step, _ = mlp_step.build(BATCH, SIZES, LR)
    return step


def jax_step():
    import jax
    import jax.numpy as jnp

    def loss_fn(params, x, y):
        h = x
        for k in range(0, len(params) - 2, 2):
            h = jax.nn.relu(h @ params[k] + params[k + 1])
        z = h @ params[-2] + params[-1]
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(z), y[:, None], axis=1))

    @jax.jit
    def step(params, x, y):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        return loss, [p - LR * g for p, g in zip(params, grads)]
    return step


def pytensor_step():
    """PyTensor with its Numba backend: parameters in shared variables, updated by the function."""
    import pytensor
    import pytensor.tensor as pt
    params = [pytensor.shared(p) for p in init_params()]
    x, y = pt.matrix("x", dtype="float32"), pt.lvector("y")
    h = x
    for k in range(0, len(params) - 2, 2):
        h = pt.maximum(h @ params[k] + params[k + 1], 0)
    z = h @ params[-2] + params[-1]
    loss = pt.mean(pt.logsumexp(z, axis=1) - z[pt.arange(BATCH), y])
    grads = pytensor.grad(loss, params)
    step = pytensor.function([x, y], loss, mode="NUMBA",
                             updates=[(p, p - np.float32(LR) * g) for p, g in zip(params, grads)])
    return step


def torch_model():
    import torch
    torch.set_num_threads(os.cpu_count() or 1)
    layers = []
    for k, (n_in, n_out) in enumerate(zip(SIZES[:-1], SIZES[1:])):
        layers.append(torch.nn.Linear(n_in, n_out))
        if k < len(SIZES) - 2:
            layers.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*layers)
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    lossf = torch.nn.CrossEntropyLoss()

    def step(x, y):
        opt.zero_grad(set_to_none=True)
        loss = lossf(model(x), y)
        loss.backward()
        opt.step()
        return loss
    return step


def w3(repeat: int, peers: bool):
    x, y = data()
    rows = []
    params = init_params()
    rows.append(("numpy (hand-written)", median_ms(lambda: numpy_step(params, x, y), repeat)))
    step = graphc_step()
    rows.append(("graphc", median_ms(lambda: step(x, y), repeat)))
    if peers:
        try:
            import jax.numpy as jnp
            js = jax_step()
            state = {"p": [jnp.asarray(p) for p in init_params()]}
            xj, yj = jnp.asarray(x), jnp.asarray(y)

            def run():
                loss, state["p"] = js(state["p"], xj, yj)
                loss.block_until_ready()
            rows.append(("jax.jit", median_ms(run, repeat)))
        except ImportError:
            pass
        try:
            import torch
            xt, yt = torch.from_numpy(x), torch.from_numpy(y)
            ts = torch_model()
            rows.append(("torch eager", median_ms(lambda: ts(xt, yt), repeat)))
            try:
                tc = torch.compile(torch_model())
                rows.append(("torch.compile", median_ms(lambda: tc(xt, yt), repeat, warmup=5)))
            except Exception as e:  # noqa: BLE001 - report, do not fail the benchmark
                print(f"torch.compile unavailable: {e}")
        except ImportError:
            pass
        try:
            ps = pytensor_step()
            rows.append(("pytensor (numba)", median_ms(lambda: ps(x, y), repeat)))
        except ImportError:
            pass
    return rows


_RSS_SCRIPT = """
import sys, numpy as np
sys.path.insert(0, {examples!r})
import mlp_step
step, _ = mlp_step.build()
rng = np.random.default_rng(1)
x = rng.normal(size=(128, 784)).astype(np.float32); y = rng.integers(0, 10, 128)
for _ in range(50):
    step(x, y)
# VmHWM, not ru_maxrss: ru_maxrss keeps the parent's size across fork + exec
print(next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) / 1024)
"""

_W6_SCRIPT = """
import time
t0 = time.perf_counter()
import numpy as np
import graphc as gc
t1 = time.perf_counter()
rng = np.random.default_rng(0)
x = gc.placeholder((128, 784), gc.float32, name="x")
labels = gc.placeholder((128,), gc.int64, name="labels")
params, h = [], x
sizes = (784, 512, 512, 10)
for k, (i, o) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
    w = gc.parameter((rng.normal(size=(i, o)) * np.sqrt(2 / i)).astype(np.float32), name=f"w{k}")
    b = gc.parameter(np.zeros(o, np.float32), name=f"b{k}")
    params += [w, b]
    h = h @ w + b
    if k < 3:
        h = gc.relu(h)
loss = -gc.mean(gc.sum(gc.one_hot(labels, 10) * gc.log_softmax(h), axis=1))
t2 = time.perf_counter()
grads = gc.grad(loss, params)
t3 = time.perf_counter()
step = gc.compile([x, labels], loss, updates=[(p, p - 0.05 * g) for p, g in zip(params, grads)])
t4 = time.perf_counter()
step(np.ones((128, 784), np.float32), np.zeros(128, np.int64))
t5 = time.perf_counter()
print(json.dumps({"done": time.time(), "import": t1 - t0, "build": t2 - t1, "autodiff": t3 - t2, "compile": t4 - t3,
                  "first call": t5 - t4, "hit": step.cache_hit,
                  **{"compile: " + k: v for k, v in step.compile_times.items()}}))
""".replace("import time\n", "import time, json\n", 1)


def w6(repeat: int = 5):
    """[(label, split)] for a cold and a warm start: medians over ``repeat`` pairs of processes,
    each pair with its own empty cache folder. ``split`` has "to step" and "process" (s) and
    the script's own split (import, build, autodiff, compile, first call)."""
    runs = {"cold": [], "warm": []}
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as d:
            env = dict(os.environ, GRAPHC_CACHE_DIR=d)
            for label in runs:
                start = time.time()
                out = subprocess.run([sys.executable, "-c", _W6_SCRIPT], env=env, capture_output=True, text=True,
                                     check=True).stdout
                total = time.time() - start
                d_ = json.loads(out.strip().splitlines()[-1])
                d_.update({"to step": d_.pop("done") - start, "process": total})
                runs[label].append(d_)
    rows = []
    for label, ds in runs.items():
        split = {k: statistics.median(d_.get(k, 0.0) for d_ in ds) for k in ds[0] if k != "hit"}
        split["hit"] = all(d_["hit"] for d_ in ds) if label == "warm" else any(d_["hit"] for d_ in ds)
        rows.append((label, split))
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--repeat", type=int, default=200)
    p.add_argument("--skip-peers", action="store_true")
    p.add_argument("--w6-repeat", type=int, default=5, help="cold/warm process pairs for W6 (medians)")
    args = p.parse_args(argv)
    rows = w3(args.repeat, not args.skip_peers)
    base = rows[0][1]
    print(f"W3: MLP step {SIZES}, batch {BATCH}, SGD; median of {args.repeat}")
    print(f"{'impl':<22} {'median ms':>10} {'vs numpy':>9}")
    for name, ms in rows:
        print(f"{name:<22} {ms:>10.3f} {base / ms:>8.2f}x")
    examples = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples")
    rss = subprocess.run([sys.executable, "-c", _RSS_SCRIPT.format(examples=examples)], capture_output=True,
                         text=True, check=True).stdout.strip()
    print(f"peak RSS of a process running the graphc step: {float(rss):.0f} MB")
    print(f"\nW6: empty process -> first finished step (s), medians of {args.w6_repeat}")
    print(f"{'cache':<6} {'to step':>8} {'import':>7} {'build':>7} {'autodiff':>9} {'compile':>8} {'1st call':>9}"
          f" {'process':>8}")
    for label, d in w6(args.w6_repeat):
        print(f"{label:<6} {d['to step']:>8.3f} {d['import']:>7.3f} {d['build']:>7.3f} {d['autodiff']:>9.3f} "
              f"{d['compile']:>8.3f} {d['first call']:>9.3f} {d['process']:>8.3f}   (cache hit: {d['hit']})")
        phases = [(k.split(": ", 1)[1], v) for k, v in d.items() if k.startswith("compile: ")]
        print(f"{'':<6} compile = " + ", ".join(f"{name} {v:.3f}" for name, v in phases))
    return 0


if __name__ == "__main__":
    sys.exit(main())
