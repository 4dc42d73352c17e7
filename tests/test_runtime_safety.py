"""Bad input to a compiled function raises a Python exception naming the input; nothing crashes."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

import graphc as gc


@pytest.fixture(scope="module")
def fn():
    x = gc.placeholder((3, 4), gc.float32, name="x")
    i = gc.placeholder((2,), gc.int64, name="idx")
    w = gc.parameter(np.ones(4, np.float32), name="w")
    y = gc.take(x * w, i, axis=0)
    return gc.compile([x, i], y, updates=[(w, w * 0.5)])


GOOD_X = np.arange(12, dtype=np.float32).reshape(3, 4)
GOOD_I = np.array([0, 2])


@pytest.mark.parametrize("args,match", [
    ((GOOD_X,), r"takes 2 inputs \['x', 'idx'\], got 1"),
    ((GOOD_X, GOOD_I, GOOD_I), "takes 2 inputs"),
    ((GOOD_X.reshape(4, 3), GOOD_I), r"input 0 \('x', expected f32\[3,4\]\): got shape \(4, 3\)"),
    ((GOOD_X[None], GOOD_I), "got shape"),
    ((GOOD_X.astype(np.float64), GOOD_I), "got dtype float64"),
    ((GOOD_X, GOOD_I.astype(np.int32)), r"input 1 \('idx'.*got dtype int32"),
    ((GOOD_X, "ab"), "cannot convert"),
    ((GOOD_X, [0.5, 1.5]), "cannot convert"),
    ((object(), GOOD_I), "cannot convert"),
])
def test_bad_inputs_raise(fn, args, match):
    with pytest.raises(gc.InputError, match=match):
        fn(*args)


def test_noncontiguous_negative_stride_readonly_and_lists_work(fn):
    w0 = fn.parameters()["w"].copy()
    big = np.arange(24, dtype=np.float32).reshape(3, 8)
    x_strided = big[:, ::2]
    x_reversed = GOOD_X[::-1]
    x_ro = GOOD_X.copy()
    x_ro.flags.writeable = False
    for x in (x_strided, x_reversed, x_ro, GOOD_X.T.copy().T, x_ro.tolist()):
        w = fn.parameters()["w"].copy()
        out = fn(x, [2, 0])
        np.testing.assert_allclose(out, (np.asarray(x, np.float32) * w)[[2, 0]])
    assert not np.allclose(fn.parameters()["w"], w0)  # updates applied


def test_out_of_range_index_raises(fn):
    with pytest.raises(IndexError):
        fn(GOOD_X, np.array([0, 3]))


def test_read_only_parameter_is_refused():
    w = gc.parameter(np.ones(3, np.float32), name="w")
    x = gc.placeholder((3,), name="x")
    f = gc.compile([x], gc.sum(x * w), updates=[(w, w + 1)])
    f.parameters()["w"].flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        f(np.ones(3, np.float32))


RISKY = {
    "wrong_shapes_many": """
        x = gc.placeholder((1000,), name="x")
        f = gc.compile([x], gc.exp(x) * 2)
        for bad in [np.ones(999, np.float32), np.ones((1000, 1), np.float32), np.ones(0, np.float32),
                    np.ones(10**6, np.float32), None, 3.0, np.ones(1000, np.float16)]:
            try:
                f(bad)
            except (gc.InputError, TypeError, ValueError):
                pass
            else:
                raise SystemExit(f"accepted {bad!r}")
    """,
    "huge_output": """
        x = gc.placeholder((1,), name="x")
        y = gc.broadcast_to(x, (1 << 22, 1 << 22)) + 1.0
        f = gc.compile([x], y)
        try:
            f(np.ones(1, np.float32))
        except MemoryError:
            pass
        else:
            raise SystemExit("no MemoryError")
    """,
    "gather_out_of_range": """
        x = gc.placeholder((4, 4), name="x")
        i = gc.placeholder((3,), gc.int64, name="i")
        f = gc.compile([x, i], gc.take(x, i, axis=1) + 1)
        for bad in ([0, 1, 1 << 40], [-(1 << 40), 0, 0], [4, 4, 4]):
            try:
                f(np.ones((4, 4), np.float32), np.array(bad))
            except IndexError:
                pass
            else:
                raise SystemExit("no IndexError")
        u = gc.placeholder((3,), name="u")
        g = gc.compile([u, i], gc.scatter_add(u, i, 0, 2))
        try:
            g(np.ones(3, np.float32), np.array([0, 1, 99]))
        except IndexError:
            pass
        else:
            raise SystemExit("no IndexError from scatter")
    """,
}


@pytest.mark.parametrize("name", sorted(RISKY))
def test_risky_calls_exit_cleanly_in_a_subprocess(name):
    code = "import numpy as np, graphc as gc\n" + textwrap.dedent(RISKY[name]) + "\nprint('clean')\n"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"exit {r.returncode}: {r.stderr[-2000:]}"
    assert r.stdout.strip().endswith("clean")
