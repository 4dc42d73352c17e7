"""The benchmark scripts run, and their implementations compute the same thing.

Not timings (those belong to the scripts, on a quiet machine): here each
implementation of bench_train's recipe is checked against the hand-written
numpy one on a few steps, and the scripts' tables are checked for the rows
and ratios they promise.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest

import graphc as gc

BENCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench")
sys.path.insert(0, BENCH)

import bench_tiny_step  # noqa: E402
import bench_train  # noqa: E402


def _small_set(n=1280, seed=0):
    """Pixels as the loader makes them (k / 255 in float32) and labels: exact in uint8 too."""
    rng = np.random.default_rng(seed)
    x = (rng.integers(0, 256, (n, 784)).astype(np.float32) / np.float32(255))
    return x, rng.integers(0, 10, n).astype(np.int64)


def _follows_numpy(impl: str, workload: str) -> None:
    x, y = _small_set()
    orders = bench_train.batch_orders(len(x), 2, seed=3)  # 2 epochs of 10 steps
    want, _ = bench_train.numpy_impl(workload, x, y)
    run, _ = bench_train.IMPLS[impl](workload, x, y)
    ref, got = want(orders), run(orders)
    assert len(got) == len(ref)
    for g, r in zip(got, ref):
        np.testing.assert_allclose(np.asarray(g), r, rtol=2e-4, atol=2e-5)
    assert not np.allclose(ref[0], bench_train.init_params(workload)[0])  # it did train


@pytest.mark.parametrize("workload", ["W5a", "W5b"])
@pytest.mark.parametrize("impl", ["graphc", "graphc-u8", "numpy-u8"])
def test_every_implementation_follows_the_numpy_recipe(workload, impl):
    _follows_numpy(impl, workload)


@pytest.mark.parametrize("peer, module", [("torch", "torch"), ("jax", "jax"), ("pytensor", "numba")])
def test_peers_follow_the_numpy_recipe(peer, module):
    """torch, JAX and PyTensor (where installed), in a subprocess: their thread pools must not
    outlive the test in this process (other tests fork)."""
    if importlib.util.find_spec(peer) is None or importlib.util.find_spec(module) is None:
        pytest.skip(f"{peer} is not installed")
    code = (f"import sys; sys.path[:0] = [{BENCH!r}, {os.path.dirname(os.path.abspath(__file__))!r}]\n"
            "import test_bench_scripts as t\n"
            f"for impl in ({peer!r}, {peer + '-u8'!r}):\n"
            "    for wl in ('W5a', 'W5b'):\n"
            "        t._follows_numpy(impl, wl)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]


def test_gemm_floor_makes_the_steps_products_only(monkeypatch):
    x, y = _small_set(256)
    calls = []
    real = np.matmul

    def counting(a, b, out=None):
        calls.append((a.shape, b.shape))
        return real(a, b, out=out)
    monkeypatch.setattr(np, "matmul", counting)
    run, _ = bench_train.gemm_floor_impl("W5b", x, y)
    assert run(bench_train.batch_orders(len(x), 1)) is None
    b, h = bench_train.BATCH, bench_train.HIDDEN
    assert calls == [((b, 784), (784, h)), ((b, h), (h, 10)), ((b, 10), (10, h)),
                     ((784, b), (b, h)), ((h, b), (b, 10))] * 2


def test_tiny_step_bench_prints_its_table(capsys):
    assert bench_tiny_step.main(["--steps", "200", "--repeats", "1", "--skip-peers"]) == 0
    out = capsys.readouterr().out
    for row in ("numpy (hand-written)", "graphc ", "graphc, Python call path"):
        assert row in out
    us = [float(line.split()[-2]) for line in out.splitlines() if line.startswith("graphc ")]
    assert len(us) == 1 and 0 < us[0] < 1000


@pytest.mark.skipif(not (os.path.isdir("/usr/share/datasets/fashion-mnist") or os.environ.get("GRAPHC_DATA_DIR")),
                    reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
def test_train_bench_table_on_one_epoch(capsys):
    try:
        gc.data.load_fashion_mnist("test")
    except gc.data.DatasetNotFoundError as e:
        pytest.skip(str(e))
    rows = bench_train.main(["--workloads", "W5a", "--impls", "graphc-u8,numpy,gemm-floor",
                             "--epochs", "1", "--repeats", "1", "--no-wait"])
    by = {r[1]: r for r in rows}
    assert set(by) == {"graphc-u8", "numpy", "gemm-floor"}
    assert by["graphc-u8"][4] == pytest.approx(by["numpy"][4], abs=0.002) and by["numpy"][4] > 0.75
    assert np.isnan(by["gemm-floor"][4])
    assert by["numpy"][6] == 1.0 and by["gemm-floor"][7] == 1.0  # vs numpy, vs floor
    out = capsys.readouterr().out
    assert "vs floor" in out and "gemm-floor" in out and "graphc-u8 W5a per step" in out
