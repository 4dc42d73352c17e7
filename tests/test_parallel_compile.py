"""Parallel compilation (codegen.parallel): a big program is emitted as a few modules, compiled
by this process and a forked worker taking turns from one queue; the engine links the objects.
The code must be the same as a compile in one piece, and any failure of the worker must only
cost time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import graphc as gc
from graphc.codegen import cache, compiler, parallel

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux") or (os.cpu_count() or 1) < 2,
                                reason="parallel compilation forks workers on Linux with 2+ CPUs only")

MARK = "; ---- graphc: next module"
EXAMPLES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples")


def _mlp_step(seed=0, lr=0.05):
    """A training step of 20+ kernel functions: examples/mlp_step.py's, 784-64-32-10, batch 32."""
    sys.path.insert(0, EXAMPLES)
    import mlp_step
    return mlp_step.build(batch=32, sizes=(784, 64, 32, 10), lr=lr, seed=seed)


def _data():
    rng = np.random.default_rng(1)
    return rng.normal(size=(32, 784)).astype(np.float32), rng.integers(0, 10, 32)


def _compile(monkeypatch, tmp_path, parallel_on: bool, name: str):
    monkeypatch.setenv("GRAPHC_PARALLEL_COMPILE", "1" if parallel_on else "0")
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / name))
    monkeypatch.setattr(cache, "_memory", {})
    return _mlp_step()


def _train(step, params, steps=5):
    x, y = _data()
    losses = [float(step(x, y)) for _ in range(steps)]
    return losses, [p.node.value.copy() for p in params]


def test_two_parts_give_the_same_results_as_one(monkeypatch, tmp_path):
    one, p1 = _compile(monkeypatch, tmp_path, False, "one")
    two, p2 = _compile(monkeypatch, tmp_path, True, "two")
    assert MARK not in one.llvm_ir
    assert two.llvm_ir.count(MARK) == parallel.PARTS  # each module headed by the mark
    assert {k.part for k in two.native.kernels} == set(range(parallel.PARTS))
    l1, w1 = _train(one, p1)
    l2, w2 = _train(two, p2)
    np.testing.assert_array_equal(l1, l2)
    for a, b in zip(w1, w2):
        np.testing.assert_array_equal(a, b)


def test_parts_are_balanced(monkeypatch, tmp_path):
    """Each function goes to the least loaded module: they differ by at most one function."""
    step, _ = _compile(monkeypatch, tmp_path, True, "bal")
    from graphc.codegen.emit import _compile_cost
    modules, _ = compiler._emit(step.plan, "bal", parallel.PARTS)
    sizes = [[_compile_cost(f) for f in m.functions if f.blocks and "alwaysinline" not in f.attributes
              and f.name != "graphc_run"] for m in modules]
    loads = [sum(s) for s in sizes]
    loads[0] += 3 + len(step.plan.kernels)  # the entry's estimate
    assert max(loads) - min(loads) <= max(max(s) for s in sizes), loads


def test_optimized_ir_assembly_and_profile_cover_both_parts(monkeypatch, tmp_path):
    step, _ = _compile(monkeypatch, tmp_path, True, "stages")
    names = [k.name for k in step.native.kernels]
    opt = step.optimized_llvm_ir
    asm = step.assembly
    assert opt.count(MARK) == parallel.PARTS
    for n in names:
        assert f"@{n}(" in opt
        assert f"{n}:" in asm
    x, y = _data()
    rows = step.profile(x, y, repeat=3)
    assert [r[0] for r in rows] == names
    assert all(us > 0 for _, chunks, us in rows if chunks)


def _fail_in_child(real):
    parent = os.getpid()

    def compile_part(module, opt_level):
        if os.getpid() != parent:
            raise RuntimeError("worker fails")
        return real(module, opt_level)
    return compile_part


def test_a_failing_worker_only_costs_time(monkeypatch, tmp_path):
    monkeypatch.setattr(compiler, "_compile_part", _fail_in_child(compiler._compile_part))
    step, params = _compile(monkeypatch, tmp_path, True, "fail")
    assert step.llvm_ir.count(MARK) == parallel.PARTS
    monkeypatch.undo()
    ref, rparams = _compile(monkeypatch, tmp_path, False, "ref")
    np.testing.assert_array_equal(_train(step, params)[0], _train(ref, rparams)[0])


def test_a_crashing_worker_only_costs_time(monkeypatch, tmp_path):
    parent = os.getpid()
    real = compiler._compile_part

    def crash(module, opt_level):
        if os.getpid() != parent:
            os.abort()  # as a fatal LLVM error would
        return real(module, opt_level)
    monkeypatch.setattr(compiler, "_compile_part", crash)
    step, params = _compile(monkeypatch, tmp_path, True, "crash")
    x, y = _data()
    assert np.isfinite(step(x, y))


def test_a_stuck_worker_is_killed_after_the_timeout():
    parent = os.getpid()

    def job():
        if os.getpid() != parent:
            time.sleep(30)
        return b"here"
    t = time.perf_counter()
    assert parallel.run_shared([job] * 4, timeout=0.3) == [b"here"] * 4
    assert time.perf_counter() - t < 5
    deadline = time.perf_counter() + 5  # killed, not left sleeping: reaped within moments
    while parallel._exiting and time.perf_counter() < deadline:
        time.sleep(0.01)
        parallel.reap_exited()
    assert not parallel._exiting
    with pytest.raises(ChildProcessError):  # no child left
        os.waitpid(-1, os.WNOHANG)


def test_jobs_are_shared_and_results_kept_in_order():
    parent = os.getpid()

    def job(i):
        time.sleep(0.05)  # long enough for both processes to take some
        return bytes([i]) * (i * 1000) + (b"P" if os.getpid() == parent else b"C")
    out = parallel.run_shared([lambda i=i: job(i) for i in range(8)])
    assert [o[:-1] for o in out] == [bytes([i]) * (i * 1000) for i in range(8)]
    assert {o[-1:] for o in out} == {b"P", b"C"}  # both processes did some


def test_children_reaped_by_the_system_are_fine(monkeypatch):
    """With SIGCHLD ignored (as daemons do) the kernel reaps the child itself: no error."""
    import signal
    old = signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    try:
        assert parallel.run_shared([lambda: b"a", lambda: b"b"]) == [b"a", b"b"]
    finally:
        signal.signal(signal.SIGCHLD, old)


@pytest.mark.parametrize("objs", [[], [b""], [b"x" * 10, b"y"]])
def test_pack_unpack(objs):
    assert parallel.unpack(parallel.pack(objs)) == objs


@pytest.mark.parametrize("bad", [b"\x05\x00\x00", b"\x09\x00\x00\x00\x00\x00\x00\x00abc"])
def test_unpack_rejects_torn_data(bad):
    assert parallel.unpack(bad) is None


def test_no_fork_with_another_python_thread_or_when_turned_off(monkeypatch):
    monkeypatch.setenv("GRAPHC_PARALLEL_COMPILE", "1")
    assert parallel.available(parallel.MIN_KERNELS)
    assert not parallel.available(parallel.MIN_KERNELS - 1)
    stop = threading.Event()
    t = threading.Thread(target=stop.wait)
    t.start()
    try:
        assert not parallel.available(100)
    finally:
        stop.set()
        t.join()
    monkeypatch.setenv("GRAPHC_PARALLEL_COMPILE", "0")
    assert not parallel.available(100)


SCRIPT = """
import sys, numpy as np
sys.path.insert(0, {tests!r})
from test_parallel_compile import _mlp_step, _data, MARK
step, _ = _mlp_step()
x, y = _data()
print(int(step.cache_hit), step.llvm_ir.count(MARK), repr(float(step(x, y))))
"""


def test_both_parts_are_cached_on_disk(tmp_path):
    env = dict(os.environ, GRAPHC_CACHE_DIR=str(tmp_path), GRAPHC_PARALLEL_COMPILE="1")
    script = SCRIPT.format(tests=os.path.dirname(__file__))
    outs = [subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                           timeout=300) for _ in range(2)]
    for r in outs:
        assert r.returncode == 0, r.stderr[-2000:]
    (hit1, parts1, loss1), (hit2, parts2, loss2) = (r.stdout.split() for r in outs)
    assert (hit1, hit2) == ("0", "1")
    assert parts1 == parts2 == str(parallel.PARTS)  # compiled in parts, cached as that many objects
    assert loss1 == loss2


RUNTIME_SCRIPT = """
import sys, json, numpy as np
sys.path.insert(0, {tests!r})
from graphc.codegen import cache
built = []  # modules JIT-compiled from IR in this process (a prefetched object is only loaded)
jit = cache.jit_with_object
cache.jit_with_object = lambda *a, **k: (built.append(1), jit(*a, **k))[1]
from test_parallel_compile import _mlp_step, _data
step, _ = _mlp_step()
x, y = _data()
loss = float(step(x, y))
print(json.dumps({{"built": len(built), "left": len(cache._prefetched), "loss": loss}}))
"""


@pytest.mark.parametrize("parallel_on", ["1", "0"])
def test_runtime_modules_compile_in_the_queue(tmp_path, parallel_on):
    """A fresh process's first parallel compile makes the thread pool's and the dispatcher's
    objects in the same queue as the program's parts: the process loads them, builds none."""
    env = dict(os.environ, GRAPHC_CACHE_DIR=str(tmp_path), GRAPHC_PARALLEL_COMPILE=parallel_on)
    r = subprocess.run([sys.executable, "-c", RUNTIME_SCRIPT.format(tests=os.path.dirname(__file__))], env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert np.isfinite(out["loss"])
    assert out["left"] == 0  # every prefetched object was taken
    assert out["built"] == (0 if parallel_on == "1" else 2)  # serially: pool and dispatcher JIT-built


def test_recipe_job_and_prefetched(tmp_path, monkeypatch):
    """``recipe_job`` compiles what ``jit_recipe`` would; ``jit_recipe`` then loads that object
    without building the IR, and the object is on disk for the next process."""
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    text = "define i64 @graphc_test_answer() {\n  ret i64 42\n}\n"
    key, job = cache.recipe_job(f"test answer {tmp_path}", "test", lambda: text, level=0, codegen_level=0)
    cache.prefetched(key, job())
    assert cache.recipe_job(f"test answer {tmp_path}", "test", lambda: text, level=0, codegen_level=0) is None

    def no_build():
        raise AssertionError("a prefetched object must not be built again")
    engine = cache.jit_recipe(f"test answer {tmp_path}", "test", no_build, level=0, codegen_level=0)
    import ctypes
    assert ctypes.CFUNCTYPE(ctypes.c_int64)(engine.get_function_address("graphc_test_answer"))() == 42
    assert key not in cache._prefetched and cache.disk_get(key) is not None


def test_no_fork_warning_with_jax_running(tmp_path):
    """JAX warns at any fork that it is multithreaded; the worker never calls into JAX, so a
    parallel compile in a process that runs JAX stays silent (warnings as errors here)."""
    pytest.importorskip("jax")
    script = ("import jax, jax.numpy as jnp, sys\n"
              "assert float(jax.jit(lambda v: v * 2)(jnp.ones(3)).sum()) == 6.0\n"
              f"sys.path.insert(0, {os.path.dirname(__file__)!r})\n"
              "from test_parallel_compile import _mlp_step, MARK\n"
              "step, _ = _mlp_step()\n"
              "print(step.llvm_ir.count(MARK))\n")
    env = dict(os.environ, GRAPHC_CACHE_DIR=str(tmp_path), GRAPHC_PARALLEL_COMPILE="1")
    r = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-c", script], env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split()[-1] == str(parallel.PARTS)
    assert "fork" not in r.stderr


FAILING_RUNTIME_SCRIPT = """
import sys, os, numpy as np
sys.path.insert(0, {tests!r})
from graphc.codegen import dispatch
def broken():
    raise RuntimeError("no dispatcher today")
dispatch.build_module = broken
from test_parallel_compile import _mlp_step, _data
step, _ = _mlp_step()
x, y = _data()
print(repr(float(step(x, y))))
import time, graphc as gc
time.sleep(0.5)  # the worker is gone by now; the next compile reaps it
a = gc.placeholder((3,), gc.float32, "a")
gc.compile([a], a + 1.0)
try:
    os.waitpid(-1, os.WNOHANG)
    print("child left")
except ChildProcessError:
    print("no child left")
"""


def test_a_failing_runtime_module_only_costs_its_fast_path(tmp_path):
    """A runtime module that cannot be built in the queue leaves it to its first use, where its
    failure is handled (here: calls go through Python); the worker is reaped by later compiles."""
    env = dict(os.environ, GRAPHC_CACHE_DIR=str(tmp_path), GRAPHC_PARALLEL_COMPILE="1")
    r = subprocess.run([sys.executable, "-c", FAILING_RUNTIME_SCRIPT.format(tests=os.path.dirname(__file__))],
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    loss, reaped = r.stdout.strip().splitlines()[-2:]
    assert np.isfinite(float(loss))
    assert reaped == "no child left"


def test_compile_times_split_the_compile(tmp_path, monkeypatch):
    """``compile_times``: the phases of a compile, adding up to ``compile_seconds``; a cache hit
    has neither emission nor LLVM."""
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(cache, "_memory", {})
    step, _ = _mlp_step(seed=5)
    t = step.compile_times
    assert {"key", "passes", "emit", "llvm", "load"} <= set(t) and all(v >= 0 for v in t.values())
    assert t["llvm"] > t["passes"]  # LLVM is most of a compile
    assert sum(t.values()) <= step.compile_seconds * 1.01 + 1e-4
    assert sum(t.values()) >= 0.8 * step.compile_seconds
    monkeypatch.setattr(cache, "_memory", {})
    again, _ = _mlp_step(seed=5)  # same graph: from the disk cache
    assert again.cache_hit and "llvm" not in again.compile_times and "emit" not in again.compile_times
