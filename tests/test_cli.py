"""The ``graphc`` command line: dump, stats (run in a subprocess on a small script) and verify."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np

import graphc as gc
from graphc.cli import main

SCRIPT = textwrap.dedent("""
    import numpy as np
    import graphc as gc

    rng = np.random.default_rng(0)
    x = gc.placeholder((8, 5), name="x")
    w = gc.parameter(rng.normal(size=(5, 3)).astype(np.float32), name="w")
    b = gc.parameter(np.zeros(3, np.float32), name="b")
    loss = gc.mean(gc.square(gc.tanh(x @ w + b) * 1.0 - 0.5))
    gw, gb = gc.grad(loss, [w, b])
    step = gc.compile([x], loss, updates=[(w, w - 0.1 * gw), (b, b - 0.1 * gb)], name="train_step")
    predict = gc.compile([x], gc.tanh(x @ w + b), name="predict")
    print("loss", step(np.ones((8, 5), np.float32)))
""")


def graphc(*args, cwd):
    env = dict(os.environ)
    env.pop("GRAPHC_DUMP", None)
    env.pop("GRAPHC_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "graphc.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_dump_writes_a_numbered_folder_per_compile(tmp_path):
    (tmp_path / "train.py").write_text(SCRIPT)
    r = graphc("dump", "train.py", "--out", "dumps", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "loss" in r.stdout and "dumps of 2 compiles" in r.stdout
    folders = sorted(p.name for p in (tmp_path / "dumps").iterdir())
    assert folders == ["01-train_step", "02-predict"]
    train = {p.name for p in (tmp_path / "dumps" / "01-train_step").iterdir()}
    for f in ["00-forward.txt", "01-backward.txt", "02-simplify.txt", "02-simplify.diff", "03-cse.txt",
              "04-fold.txt", "05-dce.txt", "06-fuse.txt", "06-fuse.dot", "07-kernels.txt", "08-llvm.ll",
              "09-llvm-optimized.ll", "10-assembly.s"]:
        assert f in train, f
    backward = (tmp_path / "dumps" / "01-train_step" / "01-backward.txt").read_text()
    assert backward.startswith("graph train_step_backward {")
    predict_bwd = (tmp_path / "dumps" / "02-predict" / "01-backward.txt").read_text()
    assert "no nodes made by autodiff" in predict_bwd


def test_dump_prints_chosen_stages_and_stats(tmp_path):
    (tmp_path / "train.py").write_text(SCRIPT)
    r = graphc("dump", "train.py", "--stage", "fuse", "--stage", "kernels", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "loss" in r.stderr and "loss" not in r.stdout  # the script's prints go to stderr
    assert "==> 01-train_step/06-fuse.txt <==" in r.stdout
    assert "==> 02-predict/07-kernels.txt <==" in r.stdout
    assert "fused[kind=matmul]" in r.stdout and "kernels of graph predict" in r.stdout
    assert not (tmp_path / "graphc-dump").exists(), "--stage without --out leaves no folder behind"

    r = graphc("dump", "train.py", "--stage", "simplify.diff", "--out", "d", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("\n--- ") + r.stdout.startswith("--- ") >= 1 and "+++ 02-simplify.txt" in r.stdout

    r = graphc("dump", "train.py", "--stage", "nonsense", cwd=tmp_path)
    assert r.returncode == 1 and "no stage 'nonsense'" in r.stderr and "simplify" in r.stderr

    r = graphc("stats", "train.py", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert out.startswith("graph 'predict': 1 kernels")
    assert "k0 " in out and "total" in out and "matmul, broadcast_to, add, tanh" in out
    assert "peak (sum)" in out and "scratch arena" in out
    # predict: x f32[8,5] in, w and b params, f32[8,3] out; flops 2·8·3·5 + 2·8·3
    assert "160 bytes" in out and "72 bytes" in out and "96 bytes" in out
    assert " 288 " in out


def test_stats_all_and_errors(tmp_path):
    (tmp_path / "train.py").write_text(SCRIPT)
    (tmp_path / "nothing.py").write_text("print('no compile here')\n")
    (tmp_path / "fails.py").write_text("import sys\nsys.exit(3)\n")
    r = graphc("stats", "train.py", "--all", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "graph 'train_step'" in r.stdout and "graph 'predict'" in r.stdout
    r = graphc("stats", "nothing.py", cwd=tmp_path)
    assert r.returncode == 1 and "compiled nothing" in r.stderr
    r = graphc("dump", "fails.py", cwd=tmp_path)
    assert r.returncode == 3
    r = graphc("dump", "missing.py", cwd=tmp_path)
    assert r.returncode == 2 and "no such file" in r.stderr


def test_dump_of_a_saved_graph(tmp_path):
    x = gc.placeholder((4, 3), name="x")
    w = gc.parameter(np.ones((3, 2), np.float32), name="w")
    gc.save_graph(gc.graph([gc.relu(x @ w) * 1.0], name="saved"), str(tmp_path / "model"))
    r = graphc("dump", "model.json", "--stage", "fuse", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("graph saved {") and "fused[kind=matmul]" in r.stdout


def test_verify_subcommand_still_works(capsys):
    assert main(["verify", "add", "--numeric-only"]) == 0
    assert "add" in capsys.readouterr().out
