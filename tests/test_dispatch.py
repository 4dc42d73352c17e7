"""The native call path (codegen/dispatch.py): same results as the Python path, its checks,
its slow path, output reuse, reference counts, parameter re-binding, threads."""

from __future__ import annotations

import sys
import threading

import numpy as np
import pytest

import graphc as gc
from graphc.codegen import dispatch
from graphc.errors import InputError


def logistic_step(seed=0, batch=16, features=10, lr=0.1):
    """A W4-like step: logistic regression, SGD, one native call; returns (step, params)."""
    rng = np.random.default_rng(seed)
    x = gc.placeholder((batch, features), gc.float32, "x")
    y = gc.placeholder((batch,), gc.float32, "y")
    w = gc.parameter(rng.standard_normal(features).astype(np.float32) * 0.1, name="w")
    b = gc.parameter(np.zeros((), np.float32), name="b")
    loss = gc.nn.binary_cross_entropy_with_logits(x @ w + b, y)
    step = gc.compile([x, y], loss, updates=gc.optim.SGD(lr).updates(loss, [w, b]))
    return step, (w, b)


def batches(n, batch=16, features=10, seed=1):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal((batch, features)).astype(np.float32),
             (rng.random(batch) > 0.5).astype(np.float32)) for _ in range(n)]


def test_native_path_is_used_here():
    assert dispatch.layout_ok()
    step, _ = logistic_step()
    assert step._native_call is not None


def test_native_and_python_paths_agree_over_training(monkeypatch):
    data = batches(20)
    fast, (wf, bf) = logistic_step()
    monkeypatch.setenv("GRAPHC_PYTHON_CALLS", "1")
    slow, (ws, bs) = logistic_step()
    assert slow._native_call is None and fast._native_call is not None
    for xb, yb in data:
        lf, ls = fast(xb, yb), slow(xb, yb)
        assert lf.shape == () and lf.dtype == np.float32
        np.testing.assert_array_equal(lf, ls)
    np.testing.assert_array_equal(wf.value, ws.value)
    np.testing.assert_array_equal(bf.value, bs.value)


def test_matches_numpy_reference():
    step, (w, b) = logistic_step()
    wv, bv = w.value.astype(np.float64), float(b.value)
    for xb, yb in batches(5):
        z = xb.astype(np.float64) @ wv + bv
        loss = np.mean(np.logaddexp(0, z) - yb * z)
        got = step(xb, yb)
        np.testing.assert_allclose(got, loss, rtol=1e-5)
        g = (1 / (1 + np.exp(-z)) - yb) / len(yb)
        wv, bv = wv - 0.1 * xb.T.astype(np.float64) @ g, bv - 0.1 * g.sum()
        np.testing.assert_allclose(w.value, wv, rtol=1e-4, atol=1e-6)


def test_returned_output_is_never_overwritten():
    x = gc.placeholder((4,), gc.float32, "x")
    f = gc.compile([x], x * 2.0)
    a = f(np.ones(4, np.float32))
    b = f(np.full(4, 3, np.float32))
    assert a is not b
    np.testing.assert_array_equal(a, 2)
    np.testing.assert_array_equal(b, 6)
    view = b[1:]
    del b
    c = f(np.full(4, 5, np.float32))  # the view keeps b alive: not reused
    np.testing.assert_array_equal(view, 6)
    np.testing.assert_array_equal(c, 10)


def test_unreferenced_output_is_reused():
    x = gc.placeholder((1000,), gc.float32, "x")
    f = gc.compile([x], x + 1.0)
    f(np.zeros(1000, np.float32))  # the first call takes the slow path (fills in the parameters)
    first = id(f(np.zeros(1000, np.float32)))
    assert id(f(np.zeros(1000, np.float32))) == first  # the list held the only reference


def test_reference_counts_do_not_drift():
    step, _ = logistic_step()
    xb, yb = batches(1)[0]
    before = sys.getrefcount(xb), sys.getrefcount(yb)
    outs = [step(xb, yb) for _ in range(1000)]
    assert (sys.getrefcount(xb), sys.getrefcount(yb)) == before
    # each: our list, the loop name, getrefcount's argument; the last one also the dispatcher's list
    assert [sys.getrefcount(o) for o in outs] == [3] * 999 + [4]


def test_multiple_outputs_come_as_a_list():
    x = gc.placeholder((3,), gc.float64, "x")
    f = gc.compile([x], [x + 1.0, gc.sum(x)])
    out = f(np.arange(3.0))
    assert isinstance(out, list) and len(out) == 2
    np.testing.assert_array_equal(out[0], [1, 2, 3])
    assert out[1] == 3


@pytest.mark.parametrize("bad, message", [
    (np.zeros((16, 9), np.float32), r"input 0 \('x', expected f32\[16,10\]\): got shape \(16, 9\)"),
    (np.zeros((16, 10), np.float64), r"input 0 \('x', expected f32\[16,10\]\): got dtype float64"),
    ("text", r"input 0 \('x', expected f32\[16,10\]\): cannot convert str"),
])
def test_bad_inputs_get_the_descriptive_errors(bad, message):
    step, _ = logistic_step()
    with pytest.raises(InputError, match=message):
        step(bad, np.zeros(16, np.float32))
    with pytest.raises(InputError, match="takes 2 inputs"):
        step(np.zeros((16, 10), np.float32))


def test_slow_path_converts_what_it_documents():
    x = gc.placeholder((2, 3), gc.float32, "x")
    f = gc.compile([x], x * 2.0)
    base = np.arange(12, dtype=np.float32).reshape(2, 6)
    np.testing.assert_array_equal(f(base[:, ::2]), base[:, ::2] * 2)          # strided view: copied
    np.testing.assert_array_equal(f([[1, 2, 3], [4, 5, 6]]), [[2, 4, 6], [8, 10, 12]])  # a list
    sub = np.arange(6, dtype=np.float32).reshape(2, 3).view(np.recarray)      # a subclass
    np.testing.assert_array_equal(f(sub), np.arange(6).reshape(2, 3) * 2)
    raw = np.frombuffer(bytearray(25), np.uint8)[1:].view(np.float32).reshape(2, 3)  # misaligned
    assert not raw.flags.aligned
    np.testing.assert_array_equal(f(raw), np.zeros((2, 3)))


def test_rebinding_a_parameter_is_seen():
    x = gc.placeholder((3,), gc.float32, "x")
    w = gc.parameter(np.ones(3, np.float32), name="w")
    f = gc.compile([x], x * w)
    np.testing.assert_array_equal(f(np.ones(3, np.float32)), 1)
    w.node.value = np.full(3, 4, np.float32)
    np.testing.assert_array_equal(f(np.ones(3, np.float32)), 4)
    w.value[...] = 7  # in place: same address
    np.testing.assert_array_equal(f(np.ones(3, np.float32)), 7)
    w.node.value = np.ones(4, np.float32)
    with pytest.raises(ValueError, match="parameter 'w' was replaced by an array of float32\\[4\\]"):
        f(np.ones(3, np.float32))


def test_read_only_parameter_of_a_step_is_refused():
    step, (w, _) = logistic_step()
    frozen = w.value.copy()
    frozen.flags.writeable = False
    w.node.value = frozen
    with pytest.raises(ValueError, match="parameter 'w' is read-only"):
        step(*batches(1)[0])


def test_index_error_through_the_native_path():
    table = gc.placeholder((5, 2), gc.float32, "t")
    idx = gc.placeholder((3,), gc.int64, "i")
    f = gc.compile([table, idx], gc.take(table, idx, axis=0))
    t = np.arange(10, dtype=np.float32).reshape(5, 2)
    with pytest.raises(IndexError, match="out of range"):
        f(t, np.array([0, 5, 1]))
    np.testing.assert_array_equal(f(t, np.array([4, 0, 1])), t[[4, 0, 1]])


@pytest.mark.parametrize("size", [16, 1 << 16])  # a tiny step keeps the GIL; a bigger one releases it
def test_concurrent_training_calls_serialize(size):
    x = gc.placeholder((size,), gc.float32, "x")
    count = gc.parameter(np.zeros((), np.int64), name="count")
    acc = gc.parameter(np.zeros(size, np.float32), name="acc")
    f = gc.compile([x], gc.sum(x), updates=[(count, count + 1), (acc, acc + x)])
    assert f._table[dispatch.RELEASE_GIL] == int(size > 16)
    ones = np.ones(size, np.float32)
    n_threads, calls = 4, 500

    def work():
        for _ in range(calls):
            f(ones)
    threads = [threading.Thread(target=work) for _ in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert int(count.value) == n_threads * calls
    np.testing.assert_array_equal(acc.value, n_threads * calls)


def test_forked_child_can_call_while_parent_thread_held_the_lock():
    import os
    if not hasattr(os, "fork"):
        pytest.skip("no fork on this platform")
    x = gc.placeholder((4,), gc.float32, "x")
    f = gc.compile([x], x + 1.0)
    f._table[dispatch.LOCK] = 1  # as if another thread were inside a call at fork time
    pid = os.fork()
    if pid == 0:
        ok = bool(np.array_equal(f(np.zeros(4, np.float32)), np.ones(4)))
        os._exit(0 if ok else 1)
    f._table[dispatch.LOCK] = 0
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0


def test_equal_but_not_builtin_dtypes_are_accepted():
    """A pickled array's dtype equals numpy's float32 but is another object; 'q' is int64."""
    import pickle
    x = gc.placeholder((3,), gc.float32, "x")
    i = gc.placeholder((2,), gc.int64, "i")
    f = gc.compile([x, i], gc.take(x, i) * 2.0)
    xv = pickle.loads(pickle.dumps(np.arange(3, dtype=np.float32)))
    assert xv.dtype is not np.dtype(np.float32)
    for _ in range(3):
        np.testing.assert_array_equal(f(xv, np.array([2, 0], dtype="q")), [4.0, 0.0])
    meta = np.arange(3, dtype=np.dtype(np.float32, metadata={"unit": "m"}))
    np.testing.assert_array_equal(f(meta, np.array([1, 1])), [2.0, 2.0])


def test_rebinding_from_another_thread_never_fails_a_call():
    size = 1 << 16  # big enough to release the GIL during the call
    x = gc.placeholder((size,), gc.float32, "x")
    w = gc.parameter(np.ones(size, np.float32), name="w")
    count = gc.parameter(np.zeros((), np.int64), name="count")
    f = gc.compile([x], gc.sum(x * w), updates=[(w, w * 1.0), (count, count + 1)])
    ones = np.ones(size, np.float32)
    errors, done = [], threading.Event()
    calls = [0, 0]

    def caller(k):
        while not done.is_set():
            try:
                assert float(f(ones)) == size
                calls[k] += 1
            except Exception as e:  # noqa: BLE001 - collected and asserted below
                errors.append(repr(e))

    def rebinder():
        while not done.is_set():
            w.node.value = np.ones(size, np.float32)

    threads = [threading.Thread(target=caller, args=(k,)) for k in range(2)] + [threading.Thread(target=rebinder)]
    for t in threads:
        t.start()
    done.wait(1.5)
    done.set()
    for t in threads:
        t.join()
    assert errors == []
    assert int(count.value) == sum(calls) > 0


def test_a_finalizer_calling_the_function_during_its_slow_path_does_not_deadlock():
    import subprocess
    import textwrap
    script = textwrap.dedent("""
        import numpy as np, graphc as gc
        x = gc.placeholder((3,), gc.float32, "x")
        w = gc.parameter(np.ones(3, np.float32), name="w")
        f = gc.compile([x], x * w)
        xv = np.ones(3, np.float32)
        class Buf(bytearray):
            def __del__(self):
                f(xv)
        w.node.value = np.frombuffer(Buf(12), np.float32)
        f(xv)                                  # the function now holds that array
        w.node.value = np.ones(3, np.float32)  # its last owner is the function
        print(f(xv))                           # the slow path drops it: the finalizer calls f
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[1. 1. 1.]"


def test_without_a_pool_split_gemms_leave_blas_its_threads():
    import subprocess
    import textwrap
    script = textwrap.dedent("""
        from graphc.codegen.compiler import runtime_table
        from graphc.codegen.abi import RT_BLAS_SERIAL, RT_PARALLEL_FOR
        t = runtime_table()
        print(int(t[RT_PARALLEL_FOR]), int(t[RT_BLAS_SERIAL]))
    """)
    import os
    env = dict(os.environ, GRAPHC_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["0", "0"]


def test_builtins_outlive_the_dispatch_module_state():
    """At interpreter exit the module dicts are cleared before the cycle collector frees the
    compiled functions still in cycles. The builtins' PyMethodDef and the dispatcher's code must
    outlive ``dispatch``'s globals: freeing them crashed some test-suite runs at exit, in
    ``meth_dealloc``. ``PYTHONMALLOC=debug`` overwrites freed memory, so a use after free is
    caught here every time."""
    import os
    import subprocess
    import textwrap
    script = textwrap.dedent("""
        import ctypes, gc
        import numpy as np, graphc
        from graphc.codegen import dispatch
        x = graphc.placeholder((4,), graphc.float32, "x")
        f = graphc.compile([x], graphc.sum(x * 2.0))
        assert f._native_call is not None
        ml = ctypes.c_void_p.from_address(id(f._native_call) + 16).value  # PyCFunctionObject.m_ml
        before = ctypes.string_at(ml, 32)
        dispatch._STATE.clear()  # as finalize_modules clears the module's globals
        gc.collect()
        assert ctypes.string_at(ml, 32) == before, "the PyMethodDef was freed"
        print(float(f(np.ones(4, np.float32))))  # the dispatcher's code is still mapped
        cycle = [f]
        cycle.append(cycle)
        del f, cycle
        gc.collect()  # meth_dealloc reads the PyMethodDef
        print("freed")
    """)
    env = dict(os.environ, PYTHONMALLOC="debug")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, (out.returncode, out.stderr)
    assert out.stdout.split() == ["8.0", "freed"]
