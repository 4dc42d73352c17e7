"""Every training example runs as `python examples/NAME.py` (in quick mode where it has one) and reports
sensible numbers. Examples needing a dataset skip (or fall back) when it is absent."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import graphc as gc

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def run(name, *args, timeout=180):
    env = dict(os.environ, GRAPHC_EXAMPLE_QUICK="0", PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, str(EXAMPLES / name), *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT)
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def _have(name, split="test"):
    try:
        gc.data.find_dataset(name, split)
        return True
    except gc.data.DatasetNotFoundError:
        return False


def test_linear_regression_views():
    out = run("linear_regression.py", "--quick")
    m = re.search(r"cuts the test error from (\d+) to (\d+) views/day", out)
    assert m, out
    one_day, week = int(m.group(1)), int(m.group(2))
    assert week < 0.5 * one_day
    # gradient descent reached the least-squares solution
    for line in [ln for ln in out.splitlines() if "MAE train" in ln]:
        got, exact = re.search(r"test\s+([\d.]+)\s+\(least-squares test MAE\s+([\d.]+)\)", line).groups()
        assert abs(float(got) - float(exact)) <= 0.02 * float(exact) + 1


def test_piecewise_sigmoid_and_relu_fit_the_curve():
    out = run("piecewise_curve.py", "--quick")
    mses = dict(re.findall(r"^(sigmoid|relu) form, .*MSE ([\d.]+)", out, re.M))
    assert set(mses) == {"sigmoid", "relu"}, out
    line = float(re.search(r"best straight line MSE ([\d.]+)", out).group(1))
    assert all(float(v) < 0.02 for v in mses.values()) and line > 0.4


def test_logistic_regression_reaches_bayes_error():
    out = run("logistic_regression.py", "--quick")
    got, bayes = map(float, re.search(r"test error ([\d.]+)% \(Bayes-optimal: ([\d.]+)%\)", out).groups())
    assert got <= bayes + 1.5, out
    loss, manual = map(float, re.search(r"test log-loss ([\d.]+) \(numpy: ([\d.]+)\)", out).groups())
    assert abs(loss - manual) < 1e-3


@pytest.mark.skipif(not _have("mnist"), reason="MNIST test set not found (shared/data/mnist or $GRAPHC_MNIST_DIR)")
def test_mnist_softmax_regression_under_8_percent_error():
    out = run("mnist_softmax.py")  # the full recipe: 10 epochs, batch 128, lr 0.1
    err = float(re.search(r"error ([\d.]+)%", out).group(1))
    assert err < 8.0, out


@pytest.mark.skipif(not (_have("fashion-mnist") and _have("fashion-mnist", "train")),
                    reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
def test_fashion_mlp_on_real_data_quick():
    out = run("fashion_mlp.py", "--quick")
    assert "on Fashion-MNIST" in out
    acc = float(re.search(r"accuracy ([\d.]+)%", out).group(1))
    assert acc > 70.0, out  # one epoch on 12k images; the full recipe reaches about 85 %


def test_fashion_mlp_falls_back_to_generated_data(tmp_path):
    out = run("fashion_mlp.py", "--quick", "--data", str(tmp_path / "empty"))
    assert "Fashion-MNIST not found" in out and "apt-get install dataset-fashion-mnist" in out
    assert "on generated (Fashion-MNIST missing)" in out
    assert float(re.search(r"accuracy ([\d.]+)%", out).group(1)) > 40.0


def test_optimizer_comparison_writes_table_and_plot(tmp_path):
    out = run("optimizer_comparison.py", "--quick", "--outdir", str(tmp_path))
    table = (tmp_path / "optimizer_comparison.md").read_text()
    rows = [ln for ln in table.splitlines() if ln.startswith("| ") and not ln.startswith("| optimizer")]
    assert [r.split("|")[1].strip() for r in rows] == ["SGD", "momentum", "AdaGrad", "RMSProp", "Adam"]
    for r in rows:
        acc = float(r.split("|")[5].strip().rstrip("%"))
        assert acc > 60.0, table
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "no plot" in out
    else:
        png = tmp_path / "optimizer_comparison.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_hessian_classifies_minimum_and_saddle():
    out = run("hessian_critical_points.py")
    assert re.search(r"\(\s*1\.0000,\s*0\.0000\)\s+-2\.0000\s+\[\s*2\.0000,\s*6\.0000\]\s+minimum", out), out
    assert re.search(r"\(\s*-1\.0000,\s*0\.0000\)\s+2\.0000\s+\[\s*-6\.0000,\s*2\.0000\]\s+saddle", out), out
    assert re.search(r"\(\s*0\.0000,\s*0\.0000\)\s+1\.0000\s+\[\s*-2\.0000,\s*2\.0000\]\s+saddle", out), out
    assert "degenerate" in out and "matched its closed form" in out
