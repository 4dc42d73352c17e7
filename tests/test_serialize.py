"""Graphs survive JSON + npz exactly: same printed form, same results; files never need pickle."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import graphc as gc
from graphc.serialize import GraphFormatError, dumps, loads
from registry_cases import build, example_params


def _round_trip(g):
    text, npz = dumps(g)
    return loads(text, npz)


@pytest.mark.parametrize("op,ex", example_params()[::3])
def test_every_op_round_trips(op, ex):
    args, feed, raw = build(ex)
    out = op.api(*args, **ex.kwargs)
    g = gc.graph(out)
    g2 = _round_trip(g)
    assert str(g2) == str(g)
    by_node = {t.node: v for t, v in feed.items()}
    values = [by_node[n] for n in g.inputs]
    a, = gc.run_graph(g, values)
    b, = gc.run_graph(g2, values)
    np.testing.assert_array_equal(a, b)
    assert a.dtype == b.dtype


def _mlp():
    rng = np.random.default_rng(0)
    x = gc.placeholder((4, 3), name="x")
    w1 = gc.parameter(rng.normal(size=(3, 5)).astype(np.float32), name="w1")
    b1 = gc.parameter(np.zeros(5, np.float32), name="b1")
    h = gc.relu(x @ w1 + b1)
    y = gc.log_softmax(h * 0.1 + float("nan") * 0 + 1e-3, axis=-1)
    z = gc.where(y > -1.0, y, float("-inf"))
    return gc.graph([y, gc.sum(z, axis=1)], name="mlp", output_names=["logp", "s"]), x


def test_files_round_trip(tmp_path):
    g, x = _mlp()
    jpath, npath = gc.save_graph(g, str(tmp_path / "mlp"))
    assert jpath.endswith(".json") and os.path.exists(npath)
    g2 = gc.load_graph(jpath)
    assert str(g2) == str(g)
    feed = np.random.default_rng(1).normal(size=(4, 3)).astype(np.float32)
    for a, b in zip(gc.run_graph(g, [feed]), gc.run_graph(g2, [feed])):
        np.testing.assert_array_equal(a, b)
    assert g2.param_values().keys() == {"w1", "b1"}
    np.testing.assert_array_equal(g2.param_values()["w1"], g.param_values()["w1"])
    # the arrays file holds plain arrays only
    with np.load(npath, allow_pickle=False) as z:
        assert all(z[k].dtype != object for k in z.files)


def test_nan_and_inf_attributes_round_trip():
    x = gc.placeholder((2,))
    y = gc.pad(x, 1, constant_values=float("nan"))
    g = _round_trip(gc.graph(y))
    assert np.isnan(g.outputs[0].attrs["value"])
    text, _ = dumps(gc.graph(y))
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))


def test_malformed_files_raise_clear_errors(tmp_path):
    g, _ = _mlp()
    text, npz = dumps(g)
    with pytest.raises(GraphFormatError, match="malformed"):
        loads(text[: len(text) // 2], npz)
    doc = json.loads(text)
    doc["nodes"][5]["inputs"] = [99]
    with pytest.raises(GraphFormatError, match="not an earlier node"):
        loads(json.dumps(doc), npz)
    doc = json.loads(text)
    doc["nodes"][-1]["shape"] = [7, 7]
    with pytest.raises(GraphFormatError, match="not well formed"):
        loads(json.dumps(doc), npz)
    doc = json.loads(text)
    doc["version"] = 99
    with pytest.raises(GraphFormatError, match="version"):
        loads(json.dumps(doc), npz)
    with pytest.raises(GraphFormatError, match="missing"):
        loads(text, None)
    with pytest.raises(GraphFormatError, match="unreadable"):
        loads(text, npz[:40])
    doc = json.loads(text)
    doc["nodes"][5]["op"] = "os.system"
    with pytest.raises(GraphFormatError, match="unknown op"):
        loads(json.dumps(doc), npz)
