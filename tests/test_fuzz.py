"""A short run of the graph fuzzer (tests/fuzz_graphs.py) in the default suite.

150 random forward graphs and 40 random gradient graphs, one test per seed,
so a failure names its seed: reproduce it with

    python tests/fuzz_graphs.py SEED          # forward graph: prints the IR and the result
    python tests/fuzz_graphs.py SEED grad     # gradient graph

The long run is ``python bench/fuzz.py --graphs 10000``. Seeds that hit a
bug already reproduced in tests/test_fuzz_regressions.py are listed in
``KNOWN`` and marked xfail (not strict: they pass once the bug is fixed,
and can then be removed from the list).
"""

from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
import fuzz_graphs as F

N_FORWARD = 150
N_GRAD = 40

# seed -> bug number in tests/test_fuzz_regressions.py
# (empty: every seed of the short run passes with today's compiler; when a seed fails on a bug that
# has its reproduction in test_fuzz_regressions.py, list it here, e.g. {2: 11})
KNOWN_FORWARD: dict[int, int] = {}
KNOWN_GRAD: dict[int, int] = {}


def _params(n, known, grad):
    out = []
    for s in range(n):
        marks = ()
        if s in known:
            marks = (pytest.mark.xfail(strict=False, reason=f"fuzz bug #{known[s]} (tests/test_fuzz_regressions.py)"),)
        out.append(pytest.param(s, marks=marks, id=f"seed{s}{'-grad' if grad else ''}"))
    return out


@pytest.mark.parametrize("seed", _params(N_FORWARD, KNOWN_FORWARD, False))
def test_fuzz_forward(seed):
    F.check(seed)


@pytest.mark.parametrize("seed", _params(N_GRAD, KNOWN_GRAD, True))
def test_fuzz_grad(seed):
    F.check_grad(seed)


# ---------------------------------------------------------------- the fuzzer itself

def test_generator_is_deterministic():
    for seed in (0, 7, 123):
        assert F.describe(seed) == F.describe(seed)
        assert F.describe(seed, grad=True) == F.describe(seed, grad=True)


def test_generator_covers_the_registry():
    """Every op of the registry (except compiler-internal ones) appears in the first 300 graphs."""
    seen = set()
    for seed in range(300):
        seen |= F.ops_in(seed)
    internal = {op.name for op in gc.all_ops() if op.kind == "fused" or op.api is None and op.kind != "leaf"}
    missing = {op.name for op in gc.all_ops()} - seen - internal
    assert not missing, f"the generator never emits {sorted(missing)}: add a builder to tests/fuzz_graphs.py"


def test_generator_features():
    """The features the fuzzer promises show up: size-0 and size-1 dims, negative-step slices,
    broadcasting, several outputs, shared values, every dtype, parameter updates."""
    zero = one = neg = multi = shared = updates = 0
    dtypes = set()
    for seed in range(200):
        g = F.Gen(seed)
        inputs, outs, feed = F._random_forward(g)
        graph = gc.graph(list(outs), inputs)
        users = graph.users()
        for n in graph.nodes:
            dtypes.add(n.dtype.name)
            zero += 0 in n.shape
            one += 1 in n.shape
            neg += n.op == "slice" and any(c < 0 for c in n.attrs["steps"])
            shared += (not n.is_leaf) and len(users[id(n)]) > 1
        multi += len(outs) > 1
        updates += bool(g.updates)
    assert zero and one and neg and multi > 50 and shared > 50 and updates > 10
    assert dtypes == {"float32", "float64", "int32", "int64", "bool"}


def test_checker_catches_wrong_values():
    """The comparison flags one wrong element, a wrong exact value, and a nan where a number is due."""
    x = gc.placeholder((3,), gc.float32, name="x")
    node = gc.exp(x).node
    want = np.array([1.0, 2.0, 3.0], np.float32)
    cone = (3.0, 1, True)
    F.compare_output(0, node, want * (1 + 1e-7), want, False, [], cone)  # within tolerance
    for bad in (np.array([1.0, 2.5, 3.0], np.float32), np.array([1.0, np.nan, 3.0], np.float32)):
        with pytest.raises(F.Mismatch):
            F.compare_output(0, node, bad, want, False, [], cone)
    with pytest.raises(F.Mismatch):  # exact values must be bit-identical
        F.compare_output(0, node, np.nextafter(want, np.float32(9)), want, True, [], cone)
    with pytest.raises(F.Mismatch):  # dtype
        F.compare_output(0, node, want.astype(np.float64), want, False, [], cone)
