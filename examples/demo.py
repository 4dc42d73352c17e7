"""The seed's two-layer linear model, as a graphc graph: build it, print it, evaluate it.

    y1 = x · w1 + b1
    y2 = y1 · w2 + b2

Run: python examples/demo.py
"""

import os
import tempfile

import numpy as np

import graphc as gc


def build():
    rng = np.random.default_rng(0)
    x = gc.placeholder((4, 3), gc.float32, name="x")
    w1 = gc.parameter(rng.normal(size=(3, 5)).astype(np.float32), name="w1")
    b1 = gc.parameter(np.zeros(5, np.float32), name="b1")
    w2 = gc.parameter(rng.normal(size=(5, 2)).astype(np.float32), name="w2")
    b2 = gc.parameter(np.full(2, 0.5, np.float32), name="b2")
    y1 = x @ w1 + b1
    y2 = y1 @ w2 + b2
    return x, gc.graph([y1, y2], name="seed_model", output_names=["y1", "y2"])


def main():
    x, graph = build()
    graph.verify()
    print(graph)
    xs = np.arange(12, dtype=np.float32).reshape(4, 3) / 10
    y1, y2 = gc.run_graph(graph, [xs])
    p = graph.param_values()
    expected = (xs @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]
    print("\ny2 =\n", y2)
    assert np.allclose(y2, expected, rtol=1e-6), "interpreter disagrees with numpy"

    with tempfile.TemporaryDirectory() as d:
        path, _ = gc.save_graph(graph, os.path.join(d, "seed_model"))
        loaded = gc.load_graph(path)
        assert str(loaded) == str(graph)
        assert np.array_equal(gc.run_graph(loaded, [xs])[1], y2)
    print("\nsaved to JSON + npz and loaded back: identical print and results")


if __name__ == "__main__":
    main()
