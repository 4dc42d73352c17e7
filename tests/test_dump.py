"""IR dumps (graphc.dump), the forward/backward split, Graphviz pictures and GRAPHC_DEBUG."""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest

import graphc as gc
from graphc import debug, dump
from graphc.dump import Dumper, dump_requested, graph_to_dot, split_forward_backward
from graphc.interpreter import run_graph
from graphc.passes.fusion import kernels
from graphc.passes.pipeline import run_pipeline

STAGES = ["simplify", "cse", "fold", "dce", "fuse"]


def mlp(name="mlp"):
    rng = np.random.default_rng(0)
    x = gc.placeholder((8, 5), name="x")
    w1 = gc.parameter(rng.normal(size=(5, 16)).astype(np.float32), name="w1")
    b1 = gc.parameter(np.zeros(16, np.float32), name="b1")
    w2 = gc.parameter(rng.normal(size=(16, 3)).astype(np.float32), name="w2")
    h = gc.tanh(x @ w1 + b1)
    loss = gc.mean(gc.square(h @ w2 - 1.0))
    grads = gc.grad(loss, [w1, b1, w2])
    updates = [p - 0.05 * g for p, g in zip([w1, b1, w2], grads)]
    return x, loss, [w1, b1, w2], updates, gc.graph([loss] + updates, [x], name=name)


def apply_unified_diff(old: str, diff: str) -> str:
    """Apply a unified diff (as difflib writes it) to ``old``; the patched text."""
    old_lines = old.splitlines()
    out, pos = [], 0
    lines = diff.splitlines()
    assert lines[0].startswith("--- ") and lines[1].startswith("+++ ")
    i = 2
    while i < len(lines):
        m = re.match(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@", lines[i])
        assert m, lines[i]
        start = int(m.group(1)) - (0 if m.group(2) == "0" else 1)
        out.extend(old_lines[pos:start])
        pos = start
        i += 1
        while i < len(lines) and not lines[i].startswith("@@"):
            tag, text = lines[i][:1], lines[i][1:]
            if tag == " ":
                assert old_lines[pos] == text
                out.append(text)
                pos += 1
            elif tag == "-":
                assert old_lines[pos] == text
                pos += 1
            elif tag == "+":
                out.append(text)
            i += 1
    out.extend(old_lines[pos:])
    return "\n".join(out)


def test_numbered_files_diffs_and_pictures(tmp_path):
    *_, g = mlp()
    d = Dumper(tmp_path, svg=False)
    fused = run_pipeline(g, dump=d)
    names = sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("."))
    expected = ["00-forward.txt", "00-forward.dot", "01-backward.txt", "01-backward.dot"]
    for k, st in enumerate(STAGES, start=2):
        expected += [f"{k:02d}-{st}.txt", f"{k:02d}-{st}.diff"]
    expected.append("06-fuse.dot")
    assert sorted(expected) == names
    assert [p.name for p in d.files][:2] == ["00-forward.txt", "00-forward.dot"]
    # every stage is the printed graph, and each diff turns the previous stage into it
    previous = str(g)
    for k, st in enumerate(STAGES, start=2):
        text = (tmp_path / f"{k:02d}-{st}.txt").read_text()
        diff = (tmp_path / f"{k:02d}-{st}.diff").read_text()
        assert text.startswith(f"graph {g.name} {{")
        if diff.strip():
            assert diff.startswith("--- ") and "\n+++ " in diff and "\n@@ " in diff
            assert apply_unified_diff(previous, diff) == text.rstrip("\n")
        else:
            assert previous == text.rstrip("\n")
        previous = text.rstrip("\n")
    assert (tmp_path / "06-fuse.txt").read_text().rstrip("\n") == str(fused)
    assert (tmp_path / "02-simplify.diff").read_text().strip(), "simplify changes this graph"


def test_forward_backward_split_is_faithful():
    x, loss, params, updates, g = mlp()
    fwd, bwd = split_forward_backward(g)
    fwd.verify()
    bwd.verify()
    assert all(n.origin is None for n in fwd.nodes)
    assert any(n.origin == "autodiff" for n in bwd.ops)
    assert not any(n.origin == "autodiff" for n in fwd.nodes)
    assert fwd.output_names[0] == "out0" and all(nm.startswith("res.") for nm in fwd.output_names[1:])
    assert bwd.output_names == ["out1", "out2", "out3"]
    # backward(forward residuals) == the joint graph's outputs
    xv = np.random.default_rng(1).normal(size=(8, 5)).astype(np.float32)
    joint = run_graph(g, [xv])
    fvals = run_graph(fwd, [xv])
    res = dict(zip(fwd.output_names, fvals))
    feed = [res[n.name] if n.name.startswith("res.") else xv for n in bwd.inputs]
    for a, b in zip(run_graph(bwd, feed), joint[1:]):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(fvals[0], joint[0])
    text = str(bwd)
    assert "input  %res.0" in text and "param  %w1" in text
    # constant-only values (the learning rate) are shown in the backward part, not as residuals
    assert all(n.op != "constant" for n in fwd.outputs)


def test_graph_without_autodiff(tmp_path):
    x = gc.placeholder((4,), name="x")
    g = gc.graph([gc.exp(x) * 2.0])
    fwd, bwd = split_forward_backward(g)
    assert fwd is g and bwd is None
    d = Dumper(tmp_path, svg=False)
    run_pipeline(g, dump=d)
    assert "no nodes made by autodiff" in (tmp_path / "01-backward.txt").read_text()
    assert not (tmp_path / "01-backward.dot").exists()


def _dot_checks(text: str, n_clusters: int):
    assert text.startswith("digraph ")
    assert text.count("{") == text.count("}")
    depth = 0
    for ch in text:
        depth += {"{": 1, "}": -1}.get(ch, 0)
        assert depth >= 0
    assert len(re.findall(r"subgraph cluster_\d+ \{", text)) == n_clusters
    ids = set(re.findall(r"^\s*(\w+) \[label=", text, re.M))
    for a, b in re.findall(r"^\s*(\w+) -> (\w+);", text, re.M):
        assert a in ids and b in ids, (a, b)


def test_dot_has_a_cluster_per_kernel(tmp_path):
    *_, g = mlp()
    fused = run_pipeline(g)
    text = graph_to_dot(fused)
    _dot_checks(text, len(kernels(fused)))
    body_ops = sum(len(k.attrs["body"].ops) for k in kernels(fused))
    assert text.count("label=") >= body_ops
    _dot_checks(graph_to_dot(g), 0)
    assert 'fillcolor="#ffd8a8"' in graph_to_dot(g)  # autodiff nodes are shaded


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz 'dot' is not installed (apt-get install graphviz)")
def test_svg_pictures_when_dot_is_installed(tmp_path):
    *_, g = mlp()
    d = Dumper(tmp_path)
    run_pipeline(g, dump=d)
    for stem in ("00-forward", "01-backward", "06-fuse"):
        svg = (tmp_path / f"{stem}.svg").read_text()
        assert "<svg" in svg and "</svg>" in svg
    assert "cluster_0" in (tmp_path / "06-fuse.svg").read_text()
    subprocess.run(["dot", "-Tcanon", str(tmp_path / "06-fuse.dot")], check=True, capture_output=True)


def test_write_compiled(tmp_path):
    x, loss, params, updates, g = mlp("mlp_compiled")
    fn = gc.compile([x], [loss], updates=list(zip(params, updates)), name="mlp_compiled")
    d = Dumper(tmp_path, svg=False)
    run_pipeline(g, dump=d)
    d.write_compiled(fn)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert {"07-kernels.txt", "08-llvm.ll", "09-llvm-optimized.ll", "10-assembly.s"} <= set(names)
    kernels_text = (tmp_path / "07-kernels.txt").read_text()
    n = len(fn.plan.kernels)
    assert f"kernels of graph mlp_compiled: {n}" in kernels_text
    for i, k in enumerate(fn.plan.kernels):
        assert re.search(rf"^k{i}\s+{k.kind}\s", kernels_text, re.M)
    assert kernels_text.count("functions: ") == n and "chunk" in kernels_text
    assert "flops" in kernels_text and "peak" in kernels_text
    assert "define" in (tmp_path / "08-llvm.ll").read_text()
    assert "define" in (tmp_path / "09-llvm-optimized.ll").read_text()
    assert (tmp_path / "10-assembly.s").read_text().strip()


def test_kernel_costs_add_up():
    *_, g = mlp()
    fused = run_pipeline(g)
    infos = dump.kernel_infos(fused)
    assert len(infos) == len(kernels(fused))
    first = infos[0]  # x @ w1 + b1, tanh: 2·M·N·K for the product, then one per element and op
    assert first.ops == ["matmul", "broadcast_to", "add", "tanh"]
    assert first.flops == 2 * 8 * 16 * 5 + 2 * 8 * 16
    assert first.bytes_io == (8 * 5 + 5 * 16 + 16 + 8 * 16) * 4
    assert sum(k.flops for k in infos) > 2 * 8 * 5 * 16
    assert all(k.bytes_io <= k.bytes_unfused or len(k.ops) == 1 for k in infos)


def test_dump_requested(tmp_path, monkeypatch):
    monkeypatch.delenv("GRAPHC_DUMP", raising=False)
    assert dump_requested() is None and dump_requested(None, "g") is None
    assert dump_requested(tmp_path / "explicit") == tmp_path / "explicit"
    monkeypatch.setenv("GRAPHC_DUMP", str(tmp_path / "env"))
    a = dump_requested(None, "train step")
    b = dump_requested(None, "eval")
    assert a.name == "01-train_step" and b.name == "02-eval" and a.parent == b.parent == tmp_path / "env"
    monkeypatch.setenv("GRAPHC_DUMP", "0")
    assert dump_requested() is None


def test_dumper_replaces_an_earlier_dump_but_not_other_files(tmp_path):
    (tmp_path / "01-my-notes.txt").write_text("not a dump")
    x = gc.placeholder((3,), name="x")
    run_pipeline(gc.graph(gc.exp(x)), dump=Dumper(tmp_path, svg=False))
    assert (tmp_path / "01-my-notes.txt").exists(), "a folder graphc did not write keeps its files"
    (tmp_path / "13-old-stage.txt").write_text("old")
    (tmp_path / "notes.txt").write_text("mine")
    run_pipeline(gc.graph(gc.exp(x)), dump=Dumper(tmp_path, svg=False))
    assert not (tmp_path / "13-old-stage.txt").exists() and (tmp_path / "notes.txt").exists()
    assert (tmp_path / "06-fuse.txt").exists()


def test_debug_levels(monkeypatch, capsys, tmp_path):
    for raw, level in [("", 0), ("0", 0), ("2", 2), ("yes", 1), ("off", 0), ("-3", 0)]:
        monkeypatch.setenv("GRAPHC_DEBUG", raw)
        assert debug.debug_level() == level
    monkeypatch.delenv("GRAPHC_DEBUG")
    assert debug.debug_level() == 0
    x = gc.placeholder((3,), name="x")
    g = gc.graph(gc.exp(x * 1.0))
    run_pipeline(g)
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("GRAPHC_DEBUG", "1")
    run_pipeline(g)
    err = capsys.readouterr().err
    assert "simplify" in err and "fuse" in err and "graph graph {" not in err
    monkeypatch.setenv("GRAPHC_DEBUG", "2")
    run_pipeline(g)
    err = capsys.readouterr().err
    assert "--- after simplify" in err and "fused[kind=elementwise]" in err
    fn = gc.compile([x], gc.exp(x) + 1.0, name="dbg")
    capsys.readouterr()
    dump.after_compile(fn)
    err = capsys.readouterr().err
    assert "compiled 'dbg'" in err and "peak" in err and "define" not in err
    assert re.search(r"time: .*passes [0-9.]+ ms", err)
    monkeypatch.setenv("GRAPHC_DEBUG", "3")
    dump.after_compile(fn)
    assert "define" in capsys.readouterr().err
    assert dump.last_compiled() is fn and fn in dump.compiled_functions()


def test_memory_summary():
    x, loss, params, updates, g = mlp("mem")
    fn = gc.compile([x], [loss], updates=list(zip(params, updates)), name="mem")
    m = dump.memory_summary(fn.plan)
    assert m["inputs"] == 8 * 5 * 4
    assert m["parameters"] == (5 * 16 + 16 + 16 * 3) * 4
    assert m["outputs"] == 4
    assert m["scratch"] == fn.plan.arena_bytes
    assert m["peak"] == sum(v for k, v in m.items() if k != "peak")
