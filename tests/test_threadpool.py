"""The native thread pool (``graphc.codegen.threadpool``) driven from JIT code.

A JIT-compiled driver calls ``gc_parallel_for`` with a JIT-compiled task that
fills its chunk of an array; no Python runs between the driver and the
tasks.  Checks the result, many repeated calls (no thread leak), concurrent
callers from several Python threads, nested calls, resizing, and fork.
Timing lives in ``bench/bench_threadpool.py``, not here.
"""

import ctypes
import os
import time
import sys
import threading

import numpy as np
import pytest
from llvmlite import ir
import llvmlite.binding as llvm

from graphc.codegen import threadpool as tp
from graphc.codegen.loops import for_range

I32 = ir.IntType(32)
I64 = ir.IntType(64)
F32 = ir.FloatType()
I8P = ir.IntType(8).as_pointer()
CTX = ir.LiteralStructType([F32.as_pointer(), I64, I64, I64.as_pointer()])


class Ctx(ctypes.Structure):
    _fields_ = [("out", ctypes.c_void_p), ("total", ctypes.c_int64),
                ("chunk", ctypes.c_int64), ("tids", ctypes.c_void_p)]


def _field(b, st, k):
    return b.load(b.gep(st, [ir.Constant(I32, 0), ir.Constant(I32, k)]))


def _build(nested=False, by_symbol=False):
    """task(ctx, c): out[j] = 2*j + 1 for j in chunk c; tids[c] = thread id.

    ``driver(ctx, n)`` calls gc_parallel_for(task, ctx, n).  With ``nested``
    the task itself calls gc_parallel_for on a sub-task (must not deadlock).
    """
    m = ir.Module(name="tp_test")
    m.triple = llvm.get_process_triple()
    pf_decl = tp.declare_parallel_for(m) if by_symbol else None

    def call_pf(b, task, ctx, n):
        if by_symbol:
            return tp._emit_call(b, pf_decl, task, ctx, n)
        return tp.emit_parallel_for(b, task, ctx, n)

    def fill_task(name, record_tid):
        f = ir.Function(m, tp.TASK_TYPE, name)
        ctx, c = f.args
        b = ir.IRBuilder(f.append_basic_block("entry"))
        st = b.bitcast(ctx, CTX.as_pointer())
        out, total, chunk, tids = (_field(b, st, k) for k in range(4))
        start = b.mul(c, chunk)
        end = b.add(start, chunk)
        end = b.select(b.icmp_signed("<", end, total), end, total)
        if record_tid:  # pthread_self() via its libc address
            addr = ctypes.cast(ctypes.CDLL(None).pthread_self, ctypes.c_void_p).value
            self_fn = b.inttoptr(ir.Constant(I64, addr), ir.FunctionType(I64, []).as_pointer())
            b.store(b.call(self_fn, []), b.gep(tids, [c]))
        with for_range(b, start, end) as j:
            v = b.sitofp(b.add(b.mul(j, ir.Constant(I64, 2)), ir.Constant(I64, 1)), F32)
            b.store(v, b.gep(out, [j]))
        return f, b, ctx

    inner, b, _ = fill_task("inner_task", False)
    b.ret_void()
    if nested:
        # outer task: the chunk's own work is done by an inner parallel_for
        # over a sub-context covering this chunk only.
        outer = ir.Function(m, tp.TASK_TYPE, "task")
        ctx, c = outer.args
        b = ir.IRBuilder(outer.append_basic_block("entry"))
        st = b.bitcast(ctx, CTX.as_pointer())
        out, total, chunk, tids = (_field(b, st, k) for k in range(4))
        sub = b.alloca(CTX)
        start = b.mul(c, chunk)
        rem = b.sub(total, start)
        size = b.select(b.icmp_signed("<", chunk, rem), chunk, rem)
        # sub-array out + start, in 4 sub-chunks; values shifted by 2*start
        b.store(b.gep(out, [start]), b.gep(sub, [ir.Constant(I32, 0), ir.Constant(I32, 0)]))
        b.store(size, b.gep(sub, [ir.Constant(I32, 0), ir.Constant(I32, 1)]))
        sub_chunk = b.add(b.sdiv(size, ir.Constant(I64, 4)), ir.Constant(I64, 1))
        b.store(sub_chunk, b.gep(sub, [ir.Constant(I32, 0), ir.Constant(I32, 2)]))
        b.store(tids, b.gep(sub, [ir.Constant(I32, 0), ir.Constant(I32, 3)]))
        call_pf(b, inner, sub, ir.Constant(I64, 4))
        b.ret_void()
    else:
        outer, b, _ = fill_task("task", True)
        b.ret_void()

    drv = ir.Function(m, ir.FunctionType(ir.VoidType(), [I8P, I64]), "driver")
    b = ir.IRBuilder(drv.append_basic_block("entry"))
    call_pf(b, outer, drv.args[0], drv.args[1])
    b.ret_void()
    ee = tp._compile(m)
    _ENGINES.append(ee)
    return ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int64)(
        ee.get_function_address("driver"))


_ENGINES = []


def _threads():
    return len(os.listdir("/proc/self/task"))


def _run(driver, total, n_chunks, nested=False):
    out = np.zeros(total, np.float32)
    tids = np.zeros(max(n_chunks, 1), np.int64)
    chunk = -(-total // n_chunks) if n_chunks > 0 else 0
    ctx = Ctx(out.ctypes.data, total, chunk, tids.ctypes.data)
    driver(ctypes.addressof(ctx), n_chunks)
    return out, tids


def _expected(total):
    return (2 * np.arange(total) + 1).astype(np.float32)


@pytest.fixture(scope="module")
def pool():
    p = tp.get_pool()
    if p.num_threads < 2:  # make sure the parallel path is exercised
        p.set_num_threads(2)
    return p


def test_fill_parallel(pool):
    driver = _build()
    for total, n_chunks in [(1000, 8), (1 << 20, 16), (7, 7), (10, 1), (5, 0), (3, 64)]:
        out, tids = _run(driver, total, n_chunks)
        np.testing.assert_array_equal(out, _expected(total) if n_chunks else np.zeros(total))
    assert pool.num_workers_running == pool.num_threads - 1


def test_work_is_shared_between_threads(pool):
    """Over a few calls with slow-ish chunks, more than one thread ran chunks."""
    import time

    driver = _build()
    seen = set()
    deadline = time.monotonic() + 10  # generous: other processes may hog the cores
    while len(seen) < 2 and time.monotonic() < deadline:
        _, tids = _run(driver, 1 << 21, 32)
        seen |= set(tids.tolist())
    assert len(seen) > 1


def test_declared_by_symbol(pool):
    driver = _build(by_symbol=True)
    out, _ = _run(driver, 12345, 10)
    np.testing.assert_array_equal(out, _expected(12345))


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs /proc")
def test_many_small_calls_no_thread_leak(pool):
    driver = _build()
    _run(driver, 64, 4)  # workers started
    before = _threads()
    out = np.zeros(64, np.float32)
    tids = np.zeros(4, np.int64)
    ctx = Ctx(out.ctypes.data, 64, 16, tids.ctypes.data)
    addr = ctypes.addressof(ctx)
    for _ in range(10_000):
        driver(addr, 4)
    np.testing.assert_array_equal(out, _expected(64))
    assert _threads() == before


def test_nested_calls_run_serially(pool):
    driver = _build(nested=True)
    for total, n in [(1000, 4), (100003, 9)]:
        out, _ = _run(driver, total, n)
        chunk = -(-total // n)
        # each outer chunk is filled by the inner task with local indices
        want = np.concatenate([_expected(min(chunk, total - s)) for s in range(0, total, chunk)])
        np.testing.assert_array_equal(out, want)


def test_concurrent_python_callers(pool):
    driver = _build()
    errors = []

    def worker(seed):
        rng = np.random.default_rng(seed)
        for _ in range(200):
            total = int(rng.integers(1, 5000))
            n = int(rng.integers(1, 20))
            out, _ = _run(driver, total, n)
            if not np.array_equal(out, _expected(total)):
                errors.append((total, n))

    ts = [threading.Thread(target=worker, args=(s,)) for s in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs /proc")
def _settled_threads():
    """The process's thread count once it stops changing (other libraries' threads, e.g. a
    progress bar's monitor, come and go on their own schedule)."""
    last = _threads()
    for _ in range(40):
        time.sleep(0.025)
        now = _threads()
        if now == last:
            return now
        last = now
    return last


def test_resize_and_shutdown(pool):
    driver = _build()
    old = pool.num_threads
    try:
        pool.set_num_threads(3)
        _run(driver, 1000, 8)
        assert pool.num_workers_running == 2
        running = _settled_threads()
        assert pool.shutdown()
        assert pool.num_workers_running == 0
        base = _settled_threads()
        assert running - base == 2
        out, _ = _run(driver, 1000, 8)  # serial after shutdown, still correct
        np.testing.assert_array_equal(out, _expected(1000))
        assert _settled_threads() == base
    finally:
        pool.set_num_threads(old)
    _run(driver, 1000, 8)
    assert _settled_threads() == base + old - 1


def test_default_num_threads(monkeypatch):
    monkeypatch.setenv("GRAPHC_NUM_THREADS", "3")
    assert tp.default_num_threads() == 3
    monkeypatch.setenv("GRAPHC_NUM_THREADS", "100000")
    assert tp.default_num_threads() == tp.MAX_THREADS
    monkeypatch.setenv("GRAPHC_NUM_THREADS", "0")
    assert tp.default_num_threads() == 1
    monkeypatch.delenv("GRAPHC_NUM_THREADS")
    assert 1 <= tp.default_num_threads() <= tp.MAX_THREADS


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_fork_child_gets_fresh_workers(pool):
    driver = _build()
    _run(driver, 1000, 8)  # parent workers running
    pid = os.fork()
    if pid == 0:  # child: must not hang waiting for the parent's workers
        code = 1
        try:
            out, _ = _run(driver, 100000, 8)
            ok = np.array_equal(out, _expected(100000))
            code = 0 if ok and tp.get_pool().num_workers_running == pool.num_threads - 1 else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0


def test_interpreter_exit_does_not_hang(tmp_path):
    """A process that used the pool (and has a daemon thread inside it) exits."""
    import subprocess

    script = tmp_path / "exit_check.py"
    script.write_text(
        "import sys, threading, ctypes\n"
        f"sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r})\n"
        "import test_threadpool as t\n"
        "d = t._build()\n"
        "t._run(d, 100000, 8)\n"
        "def spin():\n"
        "    while True: t._run(d, 10000, 4)\n"
        "threading.Thread(target=spin, daemon=True).start()\n"
        "print('ok')\n")
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                       timeout=60, env={**os.environ, "GRAPHC_NUM_THREADS": "2"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"
