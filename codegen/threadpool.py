"""Persistent native thread pool for JIT code: ``gc_parallel_for``.

A compiled graphc step splits big loops into chunks and calls::

    void gc_parallel_for(void (*task)(i8* ctx, i64 chunk), i8* ctx, i64 n_chunks)

which runs ``task(ctx, i)`` for every ``i`` in ``[0, n_chunks)`` on the
pool's worker threads *and* the calling thread, and returns when all chunks
are done.  No Python is involved in a call, and no thread is created per call.

Functions of the JIT module (C ABI; addresses via :class:`ThreadPool`)
---------------------------------------------------------------------
* ``void gc_parallel_for(task, ctx, n_chunks)`` -- the above.  Also
  registered with ``llvm.add_symbol`` so other JIT modules may just declare
  it (:func:`declare_parallel_for`), or call it through its address
  (:func:`emit_parallel_for`).
* ``i64 gc_pool_init(i64 num_threads)`` -- if no workers run, spawn
  ``num_threads - 1``; returns the number of running workers.
* ``i64 gc_pool_start()`` -- spawn the configured workers if none run
  (``gc_parallel_for`` does this lazily on first use).
* ``i32 gc_pool_try_shutdown()`` -- stop and join all workers; 0 if a job
  holds the pool (retry later), 1 when done.
* ``void gc_pool_configure(i64 workers)``, ``i64 gc_pool_num_workers()``,
  ``void gc_pool_after_fork_child()``, ``void gc_pool_spin_test(i64)``.

Why LLVM IR (and not C, OpenMP or Python threads)
--------------------------------------------------
graphc must install with pip alone, so there is no C compiler and no
compiled extension.  The pool is therefore written in LLVM IR with llvmlite
and JIT-compiled (about 40 ms, once: the object file is cached on disk, see
``codegen.cache.jit_recipe``, and a later process loads it in about a
millisecond without building the IR).  It calls libc directly
(``pthread_create``, ``pthread_join``, ``pthread_sigmask``, ``syscall`` for
futex, ``sched_yield``, ``usleep``), declared by name and resolved by the JIT
when the code is loaded, so the machine code holds no process-specific
address (libc moves with ASLR).  ``ctypes`` only checks which of them exist.
numpy's OpenBLAS pool is not reusable (internal API), there is no OpenMP
runtime we can count on, and Python threads would need the GIL.

Protocol and memory ordering
----------------------------
Shared state (separate 64-byte-aligned globals, to avoid false sharing):
``lock`` (callers' try-lock), ``gen`` (generation counter; also the futex
word), ``sleepers``, the job ``task/ctx/n``, ``next`` (chunk counter),
``state`` = ``(gen << 32) | CLOSED | joined`` (one 64-bit word: the job's
generation, a closed bit and the number of workers inside the job),
``nworkers``.  Only the ``lock`` holder writes ``gen``, the job fields and
``next = 0``.

* Caller, holding ``lock``: plain stores of ``task, ctx, n``, ``next = 0``;
  ``state = (g+1) << 32`` (open, nobody joined; release); then
  ``gen.fetch_add(1, seq_cst)`` -- a release that publishes all of it; then
  ``if sleepers.load(seq_cst): futex_wake(gen)``.
* Worker: waits until ``gen.load(acquire) != my_gen`` and remembers the new
  ``g``.  That acquire synchronizes-with the caller's RMW on ``gen``, so the
  ``state`` store (and everything before it) is visible.  It *joins* with
  ``state.cmpxchg(s, s + 1, acquire)`` only if ``s`` is generation ``g`` and
  not closed (else it goes back to waiting: the job is over).  The acquire
  CAS reads from the release sequence headed by the caller's ``state``
  store (other workers' CASes are RMWs and extend it), so after joining it
  reads ``task/ctx/n`` of *this* job.  It claims chunks with
  ``next.fetch_add(1, monotonic)`` -- atomicity alone hands every index out
  exactly once -- runs them, and *leaves* with ``state.fetch_sub(1, release)``.
* The caller claims chunks the same way.  When ``next`` runs past ``n``,
  every chunk has been claimed; it *closes* the job with
  ``state.fetch_or(CLOSED, acq_rel)`` and spins until
  ``state.load(acquire)`` shows 0 joined workers.  All writes to ``state``
  after the caller's store are RMWs, so that load synchronizes-with every
  worker's leave: the side effects of all chunks happen-before
  ``gc_parallel_for`` returns.  A worker that wakes late finds the job
  closed (or a newer generation) and never touches ``next``/job fields, so
  the next caller may overwrite them; and the caller never waits for a
  worker that is asleep or descheduled, only for those inside the job
  (each is finishing a chunk).  A worker that stalls between reading
  ``gen`` and its CAS is harmless even across a 2**32 wrap of ``gen``: it
  can only join a job that is open, and reads that job's fields after
  joining.
* Sleeping without lost wake-ups: an idle worker spins ``spin_iters``
  ``pause`` iterations (with a ``sched_yield`` every 256, so a spinning
  thread never starves a caller that shares its core), then
  ``sleepers.fetch_add(1, seq_cst)``, re-reads ``gen`` (seq_cst) and only
  then ``futex_wait(&gen, my_gen)``.  The caller
  does ``gen`` RMW then ``sleepers`` load, both seq_cst: in the single total
  order either the worker's re-read sees the new ``gen`` or the caller sees
  ``sleepers > 0`` and wakes.  FUTEX_WAIT itself rechecks ``gen == my_gen``
  atomically in the kernel, closing the gap between re-read and sleep.
  Off Linux (no futex) the worker polls with ``usleep(50)`` instead.
* ``lock`` is taken with ``cmpxchg(0 -> 1, acquire)`` and released with a
  ``release`` store.

Concurrency policy: the pool runs one job at a time.  If ``lock`` is busy --
another Python thread is in ``gc_parallel_for``, or this is a nested call
from inside a task -- the call does **not** wait: it runs all its chunks
serially on the calling thread.  That is always correct, never deadlocks
(nesting), and on a machine whose cores are already busy loses nothing.
``n_chunks == 1`` (or a pool with no workers) also runs inline.

Lifetime: workers start lazily on the first call that can use them.
``atexit`` stops and joins them (each worker is spinning, asleep or
finishing a chunk, so this is prompt; a bounded wait, so exit never hangs).
The JIT engine holding the code is deliberately never freed, so a thread
still inside pool code during interpreter teardown cannot jump into freed
memory.  After ``fork()`` the child has no workers: a fork handler resets
the state and the child's first parallel call spawns fresh workers.
Workers block all asynchronous signals (Linux), so signals such as SIGINT
reach Python's main thread.

Thread count: ``GRAPHC_NUM_THREADS`` if set, else the CPUs this process may
run on (``os.sched_getaffinity``, else ``os.cpu_count()``), capped at
:data:`MAX_THREADS`.  The count includes the calling thread, so the pool
has ``n - 1`` workers (none when ``n == 1``).

Idle workers spin about ``GRAPHC_POOL_SPIN_US`` microseconds (default 50)
before sleeping; see :meth:`ThreadPool.set_spin_us`.

Interplay with BLAS: numpy's OpenBLAS keeps its own threads, which also
spin/yield for a while after each GEMM, so alternating small GEMMs with
parallel loops makes the two pools compete for the cores (measured: a
256^3 sgemm followed by a 1M-element parallel loop took ~0.94 ms vs 0.67 ms
for the two separately).  Inside a ``gc_parallel_for`` task, BLAS should
run single-threaded (see ``blas.py``, ``set_num_threads``).
"""

from __future__ import annotations

import atexit
import ctypes
import os
import platform
import sys
import threading
import time
import warnings

from llvmlite import ir
import llvmlite.binding as llvm

__all__ = ["MAX_THREADS", "ThreadPool", "get_pool", "default_num_threads",
           "emit_parallel_for", "declare_parallel_for", "PARALLEL_FOR_NAME"]

MAX_THREADS = 64  # total threads including the caller
PARALLEL_FOR_NAME = "gc_parallel_for"
DEFAULT_SPIN_US = 50.0  # how long an idle worker spins before sleeping

_I8 = ir.IntType(8)
_I32 = ir.IntType(32)
_I64 = ir.IntType(64)
_I8P = _I8.as_pointer()
_VOID = ir.VoidType()
TASK_TYPE = ir.FunctionType(_VOID, [_I8P, _I64])
PARALLEL_FOR_TYPE = ir.FunctionType(_VOID, [TASK_TYPE.as_pointer(), _I8P, _I64])

_CLOSED = 1 << 31  # job-state bit: no more workers may join
_COUNT_MASK = _CLOSED - 1
_FUTEX_WAIT_PRIVATE = 128
_FUTEX_WAKE_PRIVATE = 129
_SYS_FUTEX = {"x86_64": 202, "amd64": 202, "aarch64": 98, "arm64": 98, "riscv64": 98,
              "ppc64le": 221, "ppc64": 221, "s390x": 238}


def default_num_threads() -> int:
    """Threads (including the caller) the pool uses by default."""
    env = os.environ.get("GRAPHC_NUM_THREADS", "").strip()
    if env:
        try:
            n = int(env)
        except ValueError:
            raise ValueError(f"GRAPHC_NUM_THREADS must be an integer, got {env!r}") from None
        return max(1, min(n, MAX_THREADS))
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    return max(1, min(n, MAX_THREADS))


# --------------------------------------------------------------------------
# JIT helper (uses codegen.llvm_target when available)
# --------------------------------------------------------------------------

_private_tm = None


def _compile(module: ir.Module):
    """JIT ``module``; returns an ``ExecutionEngine`` (caller keeps it alive)."""
    try:
        from . import cache

        return cache.jit_cached(str(module), "threadpool", level=2)  # cached on disk across processes
    except (ImportError, AttributeError, TypeError):  # absent / API changed
        pass
    return _compile_uncached(module)


# unoptimized IR, FastISel: 6 instead of ~50 ms of a cold start; the pool's cost is in its
# atomics and cache-line transfers (bench_threadpool: the same 0.05-0.19 us per hot call,
# 14-16 us cold, at O0 as at O2)
_POOL_CODE = dict(label="threadpool", level=0, codegen_level=0)


def _compile_pool(pool_ir: "_PoolIR"):
    """The pool's engine, from the disk cache keyed by ``pool_ir.recipe`` when possible: a warm
    process loads the object without building the IR."""
    try:
        from . import cache

        return cache.jit_recipe(pool_ir.recipe, build=lambda: str(pool_ir.build()), **_POOL_CODE)
    except (ImportError, AttributeError, TypeError):  # absent / API changed
        pass
    return _compile_uncached(pool_ir.build())


def pool_object_job():
    """``cache.recipe_job`` of the pool's module before the pool exists (a parallel compile
    makes its object alongside the program's, see ``codegen.compiler``); None once it exists
    or when its object is cached."""
    if _pool is not None:
        return None
    from . import cache

    pool_ir = _PoolIR(_libc_addresses() or _SERIAL_LIBC)
    return cache.recipe_job(pool_ir.recipe, build=lambda: str(pool_ir.build()), **_POOL_CODE)


def _compile_uncached(module: ir.Module):
    global _private_tm
    if _private_tm is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:  # needed on llvmlite < 0.45, deprecated/raising later
                llvm.initialize()
            except Exception:
                pass
        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        _private_tm = llvm.Target.from_default_triple().create_target_machine(opt=2)
    mod = llvm.parse_assembly(str(module))
    mod.verify()
    engine = llvm.create_mcjit_compiler(mod, _private_tm)
    engine.finalize_object()
    return engine


# --------------------------------------------------------------------------
# IR of the pool
# --------------------------------------------------------------------------


def _libc_addresses():
    """Addresses of the libc functions the pool calls, or None if unsupported."""
    if os.name != "posix":
        return None
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    out = {}
    for name in ("pthread_create", "pthread_join", "sched_yield", "usleep"):
        try:
            out[name] = ctypes.cast(getattr(libc, name), ctypes.c_void_p).value
        except AttributeError:
            return None
    for name in ("syscall", "pthread_sigmask"):
        try:
            out[name] = ctypes.cast(getattr(libc, name), ctypes.c_void_p).value
        except AttributeError:
            out[name] = None
    return out


# The libc of a serial-only pool (where ``_libc_addresses`` finds none): same API, no threads.
_SERIAL_LIBC = {k: 0 for k in ("pthread_create", "pthread_join", "sched_yield", "usleep", "syscall",
                               "pthread_sigmask")}


class _PoolIR:
    """Builds the pool module (see the module docstring for the protocol)."""

    def __init__(self, libc):
        self.libc = libc
        arch = platform.machine().lower()
        self.is_linux = sys.platform.startswith("linux")
        self.sys_futex = _SYS_FUTEX.get(arch) if self.is_linux and libc.get("syscall") else None
        self.sigmask = bool(self.is_linux and libc.get("pthread_sigmask"))
        # everything the IR depends on besides this file's source and the target (both in every
        # cache key): the disk cache is keyed by it, so a warm process never builds the IR
        self.recipe = (f"graphc threadpool arch={arch} linux={self.is_linux} futex={self.sys_futex} "
                       f"sigmask={self.sigmask} max_threads={MAX_THREADS}")
        m = self.m = ir.Module(name="graphc_threadpool")
        m.triple = llvm.get_process_triple()
        self.pause = None
        if arch in ("x86_64", "amd64", "i686", "x86"):
            self.pause = ir.Function(m, ir.FunctionType(_VOID, []), "llvm.x86.sse2.pause")
        elif arch in ("aarch64", "arm64"):
            self.pause = ir.Function(m, ir.FunctionType(_VOID, [_I32]), "llvm.aarch64.hint")

        def g(name, ty, init=0, align=64):
            v = ir.GlobalVariable(m, ty, name)
            v.initializer = ir.Constant(ty, init)
            v.align = align
            v.linkage = "internal"
            return v

        self.lock = g("gc_pool_lock", _I32)
        self.gen = g("gc_pool_gen", _I32)
        self.sleepers = g("gc_pool_sleepers", _I32)
        self.shutdown = g("gc_pool_shutdown_flag", _I32)
        self.job_task = g("gc_job_task", _I8P, None)
        self.job_ctx = g("gc_job_ctx", _I8P, None, align=8)
        self.job_n = g("gc_job_n", _I64, 0, align=8)
        self.next = g("gc_job_next", _I64)
        # job state: (gen << 32) | CLOSED bit | joined-worker count
        self.state = g("gc_job_state", _I64, _CLOSED)
        self.nworkers = g("gc_pool_nworkers", _I64)
        self.want = g("gc_pool_want", _I64, 0, align=8)
        self.threads = g("gc_pool_threads", ir.ArrayType(_I64, MAX_THREADS), None)
        # externally writable tuning knob (not internal: Python pokes it)
        self.spin_iters = ir.GlobalVariable(m, _I64, "gc_pool_spin_iters")
        self.spin_iters.initializer = ir.Constant(_I64, 2000)
        self.spin_iters.align = 8

    # ---- helpers --------------------------------------------------------
    def libc_fn(self, b, name, fnty):
        """A libc function, declared by name: the JIT resolves it in this process when it loads
        the code, so the machine code holds no addresses and can be cached on disk."""
        fn = self.m.globals.get(name)
        if fn is None:
            fn = ir.Function(self.m, fnty, name)
        return fn

    def emit_pause(self, b):
        if self.pause is None:
            return
        if self.pause.args:
            b.call(self.pause, [ir.Constant(_I32, 1)])  # YIELD hint
        else:
            b.call(self.pause, [])

    def pause_or_yield(self, b, count):
        """``pause``, but every 256th spin ``sched_yield()``: if the thread we
        wait for shares our core (machine oversubscribed), let it run
        instead of burning a whole time slice."""
        low = b.and_(count, ir.Constant(_I64, 255))
        with b.if_else(b.icmp_unsigned("==", low, ir.Constant(_I64, 0))) as (then, other):
            with then:
                self.sched_yield(b)
            with other:
                self.emit_pause(b)

    def sched_yield(self, b):
        b.call(self.libc_fn(b, "sched_yield", ir.FunctionType(_I32, [])), [])

    def futex(self, b, op, val):
        fnty = ir.FunctionType(_I64, [_I64], var_arg=True)
        addr = b.ptrtoint(self.gen, _I64)
        b.call(self.libc_fn(b, "syscall", fnty),
               [ir.Constant(_I64, self.sys_futex), addr, ir.Constant(_I64, op), val,
                ir.Constant(_I64, 0), ir.Constant(_I64, 0), ir.Constant(_I64, 0)])

    def wake_all(self, b):
        if self.sys_futex is not None:
            self.futex(b, _FUTEX_WAKE_PRIVATE, ir.Constant(_I64, 0x7FFFFFFF))

    def try_lock(self, b):
        res = b.cmpxchg(self.lock, ir.Constant(_I32, 0), ir.Constant(_I32, 1),
                        "acquire", "monotonic")
        return b.extract_value(res, 1)

    def unlock(self, b):
        b.store_atomic(ir.Constant(_I32, 0), self.lock, "release", 4)

    def call_task(self, b, task, ctx, i):
        b.call(task, [ctx, i])

    def serial_loop(self, f, b, task, ctx, n, exit_block):
        """for i in [0, n): task(ctx, i); then branch to exit_block."""
        pre = b.block
        loop = f.append_basic_block("serial.loop")
        body = f.append_basic_block("serial.body")
        b.branch(loop)
        b.position_at_end(loop)
        i = b.phi(_I64, name="i")
        i.add_incoming(ir.Constant(_I64, 0), pre)
        b.cbranch(b.icmp_signed("<", i, n), body, exit_block)
        b.position_at_end(body)
        self.call_task(b, task, ctx, i)
        i.add_incoming(b.add(i, ir.Constant(_I64, 1)), body)
        b.branch(loop)

    def claim_loop(self, f, b, task, ctx, n, exit_block):
        """while (i = next++) < n: task(ctx, i); then branch to exit_block."""
        loop = f.append_basic_block("claim.loop")
        body = f.append_basic_block("claim.body")
        b.branch(loop)
        b.position_at_end(loop)
        i = b.atomic_rmw("add", self.next, ir.Constant(_I64, 1), "monotonic", name="chunk")
        b.cbranch(b.icmp_signed("<", i, n), body, exit_block)
        b.position_at_end(body)
        self.call_task(b, task, ctx, i)
        b.branch(loop)

    # ---- functions ------------------------------------------------------
    def build(self):
        self.worker = self.build_worker()
        self.start = self.build_start()
        self.build_parallel_for()
        self.build_try_shutdown()
        self.build_small()
        return self.m

    def build_worker(self):
        f = ir.Function(self.m, ir.FunctionType(_I8P, [_I8P]), "gc_pool_worker")
        f.linkage = "internal"
        b = ir.IRBuilder(f.append_basic_block("entry"))
        my_gen = b.alloca(_I32, name="my_gen")
        spins = b.alloca(_I64, name="spins")
        b.store(ir.Constant(_I32, 0), my_gen)  # gc_pool_start resets gen to 0
        if self.sigmask:
            # block every async signal: they go to Python's threads instead
            mask = b.alloca(ir.ArrayType(_I64, 16), name="sigset")
            b.store(ir.Constant(ir.ArrayType(_I64, 16), [-1] * 16), mask)
            fnty = ir.FunctionType(_I32, [_I32, _I8P, _I8P])
            b.call(self.libc_fn(b, "pthread_sigmask", fnty),
                   [ir.Constant(_I32, 0), b.bitcast(mask, _I8P), ir.Constant(_I8P, None)])
        wait_top = f.append_basic_block("wait.top")
        spin = f.append_basic_block("wait.spin")
        spin_more = f.append_basic_block("wait.spin_more")
        sleep = f.append_basic_block("wait.sleep")
        got = f.append_basic_block("got")
        join = f.append_basic_block("join")
        try_join = f.append_basic_block("join.try")
        run = f.append_basic_block("run")
        leave = f.append_basic_block("leave")
        exit_ = f.append_basic_block("exit")
        b.branch(wait_top)

        b.position_at_end(wait_top)
        b.store(ir.Constant(_I64, 0), spins)
        b.branch(spin)

        b.position_at_end(spin)
        gv = b.load_atomic(self.gen, "acquire", 4, name="g")
        mine = b.load(my_gen)
        b.cbranch(b.icmp_unsigned("!=", gv, mine), got, spin_more)

        b.position_at_end(spin_more)
        s = b.add(b.load(spins), ir.Constant(_I64, 1))
        b.store(s, spins)
        self.pause_or_yield(b, s)
        limit = b.load_atomic(self.spin_iters, "monotonic", 8)
        b.cbranch(b.icmp_signed("<", s, limit), spin, sleep)

        b.position_at_end(sleep)
        b.atomic_rmw("add", self.sleepers, ir.Constant(_I32, 1), "seq_cst")
        g2 = b.load_atomic(self.gen, "seq_cst", 4, name="g2")
        still = b.icmp_unsigned("==", g2, b.load(my_gen))
        with b.if_then(still):
            if self.sys_futex is not None:
                self.futex(b, _FUTEX_WAIT_PRIVATE, b.zext(b.load(my_gen), _I64))
            else:
                b.call(self.libc_fn(b, "usleep", ir.FunctionType(_I32, [_I32])),
                       [ir.Constant(_I32, 50)])
        b.atomic_rmw("sub", self.sleepers, ir.Constant(_I32, 1), "seq_cst")
        b.branch(wait_top)

        b.position_at_end(got)
        b.store(gv, my_gen)
        sd = b.load_atomic(self.shutdown, "acquire", 4)
        b.cbranch(b.icmp_unsigned("!=", sd, ir.Constant(_I32, 0)), exit_, join)

        # join: CAS state -> state + 1 iff it is generation g and still open;
        # otherwise (closed, or already a newer job) go back to waiting.
        b.position_at_end(join)
        st = b.load_atomic(self.state, "monotonic", 8, name="state")
        st_gen = b.trunc(b.lshr(st, ir.Constant(_I64, 32)), _I32)
        closed = b.icmp_unsigned("!=", b.and_(st, ir.Constant(_I64, _CLOSED)),
                                 ir.Constant(_I64, 0))
        stale = b.or_(closed, b.icmp_unsigned("!=", st_gen, gv))
        b.cbranch(stale, wait_top, try_join)

        b.position_at_end(try_join)
        res = b.cmpxchg(self.state, st, b.add(st, ir.Constant(_I64, 1)), "acquire", "monotonic")
        b.cbranch(b.extract_value(res, 1), run, join)

        b.position_at_end(run)
        task = b.bitcast(b.load(self.job_task), TASK_TYPE.as_pointer(), name="task")
        ctx = b.load(self.job_ctx, name="ctx")
        n = b.load(self.job_n, name="n")
        self.claim_loop(f, b, task, ctx, n, leave)

        b.position_at_end(leave)
        b.atomic_rmw("sub", self.state, ir.Constant(_I64, 1), "release")
        b.branch(wait_top)

        b.position_at_end(exit_)
        b.ret(ir.Constant(_I8P, None))
        return f

    def build_start(self):
        """i64 gc_pool_start(): spawn ``want`` workers if none; returns nworkers."""
        f = ir.Function(self.m, ir.FunctionType(_I64, []), "gc_pool_start")
        b = ir.IRBuilder(f.append_basic_block("entry"))
        locked = f.append_basic_block("locked")
        spawn = f.append_basic_block("spawn")
        loop = f.append_basic_block("spawn.loop")
        body = f.append_basic_block("spawn.body")
        done = f.append_basic_block("spawn.done")
        out = f.append_basic_block("out")
        busy = f.append_basic_block("busy")
        b.cbranch(self.try_lock(b), locked, busy)

        b.position_at_end(busy)
        b.ret(b.load_atomic(self.nworkers, "monotonic", 8))

        b.position_at_end(locked)
        have = b.load_atomic(self.nworkers, "monotonic", 8)
        want = b.load_atomic(self.want, "monotonic", 8)
        cond = b.and_(b.icmp_signed("==", have, ir.Constant(_I64, 0)),
                      b.icmp_signed(">", want, ir.Constant(_I64, 0)))
        b.cbranch(cond, spawn, out)

        b.position_at_end(spawn)
        # no workers alive: reset the shared state (workers start at gen 0)
        b.store_atomic(ir.Constant(_I32, 0), self.shutdown, "monotonic", 4)
        b.store_atomic(ir.Constant(_I32, 0), self.gen, "monotonic", 4)
        b.store_atomic(ir.Constant(_I32, 0), self.sleepers, "monotonic", 4)
        b.store_atomic(ir.Constant(_I64, 0), self.next, "monotonic", 8)
        b.store_atomic(ir.Constant(_I64, _CLOSED), self.state, "monotonic", 8)
        wcap = b.select(b.icmp_signed(">", want, ir.Constant(_I64, MAX_THREADS - 1)),
                        ir.Constant(_I64, MAX_THREADS - 1), want)
        b.branch(loop)

        b.position_at_end(loop)
        i = b.phi(_I64, name="i")
        i.add_incoming(ir.Constant(_I64, 0), spawn)
        b.cbranch(b.icmp_signed("<", i, wcap), body, done)

        b.position_at_end(body)
        slot = b.gep(self.threads, [ir.Constant(_I32, 0), i])
        fnty = ir.FunctionType(_I32, [_I8P, _I8P, _I8P, _I8P])
        rc = b.call(self.libc_fn(b, "pthread_create", fnty),
                    [b.bitcast(slot, _I8P), ir.Constant(_I8P, None),
                     b.bitcast(self.worker, _I8P), ir.Constant(_I8P, None)])
        i.add_incoming(b.add(i, ir.Constant(_I64, 1)), body)
        b.cbranch(b.icmp_signed("==", rc, ir.Constant(_I32, 0)), loop, done)

        b.position_at_end(done)
        created = b.phi(_I64, name="created")
        created.add_incoming(i, loop)
        created.add_incoming(i, body)  # pthread_create failed: i workers exist
        b.store_atomic(created, self.nworkers, "release", 8)
        b.store_atomic(created, self.want, "monotonic", 8)  # don't retry on failure
        b.branch(out)

        b.position_at_end(out)
        self.unlock(b)
        b.ret(b.load_atomic(self.nworkers, "monotonic", 8))
        return f

    def build_parallel_for(self):
        f = ir.Function(self.m, PARALLEL_FOR_TYPE, PARALLEL_FOR_NAME)
        task, ctx, n = f.args
        task.name, ctx.name, n.name = "task", "ctx", "n_chunks"
        b = ir.IRBuilder(f.append_basic_block("entry"))
        ret = f.append_basic_block("ret")
        serial = f.append_basic_block("serial")
        maybe_start = f.append_basic_block("maybe_start")
        try_pool = f.append_basic_block("try_pool")
        locked = f.append_basic_block("locked")
        unlock_serial = f.append_basic_block("unlock_serial")
        publish = f.append_basic_block("publish")
        close = f.append_basic_block("close")
        wait = f.append_basic_block("wait")
        wait_more = f.append_basic_block("wait.more")
        finish = f.append_basic_block("finish")

        one = ir.Constant(_I64, 1)
        zero = ir.Constant(_I64, 0)
        b.cbranch(b.icmp_signed("<=", n, zero), ret, maybe_start)

        b.position_at_end(maybe_start)
        with b.if_then(b.icmp_signed("==", n, one)):
            b.branch(serial)
        nw0 = b.load_atomic(self.nworkers, "monotonic", 8)
        with b.if_then(b.icmp_signed("==", nw0, zero)):
            want = b.load_atomic(self.want, "monotonic", 8)
            with b.if_then(b.icmp_signed(">", want, zero)):
                b.call(self.start, [])
        b.branch(try_pool)

        b.position_at_end(try_pool)
        b.cbranch(self.try_lock(b), locked, serial)

        b.position_at_end(locked)
        nw = b.load_atomic(self.nworkers, "monotonic", 8, name="nw")
        b.cbranch(b.icmp_signed("==", nw, zero), unlock_serial, publish)

        b.position_at_end(unlock_serial)
        self.unlock(b)
        b.branch(serial)

        b.position_at_end(publish)
        b.store(b.bitcast(task, _I8P), self.job_task)
        b.store(ctx, self.job_ctx)
        b.store(n, self.job_n)
        b.store_atomic(zero, self.next, "monotonic", 8)
        # open the job for generation g+1 (only the lock holder writes gen)
        new_gen = b.add(b.load_atomic(self.gen, "monotonic", 4), ir.Constant(_I32, 1))
        b.store_atomic(b.shl(b.zext(new_gen, _I64), ir.Constant(_I64, 32)), self.state,
                       "release", 8)
        b.atomic_rmw("add", self.gen, ir.Constant(_I32, 1), "seq_cst")
        sl = b.load_atomic(self.sleepers, "seq_cst", 4)
        with b.if_then(b.icmp_unsigned("!=", sl, ir.Constant(_I32, 0))):
            self.wake_all(b)
        with b.goto_entry_block():
            spins = b.alloca(_I64, name="spins")
        b.store(zero, spins)
        self.claim_loop(f, b, task, ctx, n, close)

        # every chunk is claimed: close the job (late workers no longer
        # join) and wait only for the workers that did join to leave.
        b.position_at_end(close)
        b.atomic_rmw("or", self.state, ir.Constant(_I64, _CLOSED), "acq_rel")
        b.branch(wait)

        b.position_at_end(wait)
        c = b.load_atomic(self.state, "acquire", 8)
        joined = b.and_(c, ir.Constant(_I64, _COUNT_MASK))
        b.cbranch(b.icmp_unsigned("==", joined, zero), finish, wait_more)

        b.position_at_end(wait_more)
        s = b.add(b.load(spins), one)
        b.store(s, spins)
        self.pause_or_yield(b, s)
        b.branch(wait)

        b.position_at_end(finish)
        self.unlock(b)
        b.branch(ret)

        b.position_at_end(serial)
        self.serial_loop(f, b, task, ctx, n, ret)

        b.position_at_end(ret)
        b.ret_void()
        return f

    def build_try_shutdown(self):
        """i32 gc_pool_try_shutdown(): 1 = workers stopped and joined, 0 = busy."""
        f = ir.Function(self.m, ir.FunctionType(_I32, []), "gc_pool_try_shutdown")
        b = ir.IRBuilder(f.append_basic_block("entry"))
        locked = f.append_basic_block("locked")
        busy = f.append_basic_block("busy")
        loop = f.append_basic_block("join.loop")
        body = f.append_basic_block("join.body")
        done = f.append_basic_block("join.done")
        b.cbranch(self.try_lock(b), locked, busy)

        b.position_at_end(busy)
        b.ret(ir.Constant(_I32, 0))

        b.position_at_end(locked)
        nw = b.load_atomic(self.nworkers, "monotonic", 8)
        b.store_atomic(ir.Constant(_I64, 0), self.want, "monotonic", 8)
        b.store_atomic(ir.Constant(_I32, 1), self.shutdown, "monotonic", 4)
        b.atomic_rmw("add", self.gen, ir.Constant(_I32, 1), "seq_cst")
        self.wake_all(b)
        entry = b.block
        b.branch(loop)

        b.position_at_end(loop)
        i = b.phi(_I64, name="i")
        i.add_incoming(ir.Constant(_I64, 0), entry)
        b.cbranch(b.icmp_signed("<", i, nw), body, done)

        b.position_at_end(body)
        tid = b.load(b.gep(self.threads, [ir.Constant(_I32, 0), i]))
        fnty = ir.FunctionType(_I32, [_I64, _I8P])
        b.call(self.libc_fn(b, "pthread_join", fnty), [tid, ir.Constant(_I8P, None)])
        i.add_incoming(b.add(i, ir.Constant(_I64, 1)), body)
        b.branch(loop)

        b.position_at_end(done)
        b.store_atomic(ir.Constant(_I64, 0), self.nworkers, "release", 8)
        self.unlock(b)
        b.ret(ir.Constant(_I32, 1))
        return f

    def build_small(self):
        # void gc_pool_spin_test(i64 n): the idle-spin loop body n times
        # (pause + acquire load of gen), timed from Python to calibrate.
        f = ir.Function(self.m, ir.FunctionType(_VOID, [_I64]), "gc_pool_spin_test")
        b = ir.IRBuilder(f.append_basic_block("entry"))
        loop = f.append_basic_block("loop")
        body = f.append_basic_block("body")
        out = f.append_basic_block("out")
        entry = b.block
        b.branch(loop)
        b.position_at_end(loop)
        i = b.phi(_I64)
        i.add_incoming(ir.Constant(_I64, 0), entry)
        b.cbranch(b.icmp_signed("<", i, f.args[0]), body, out)
        b.position_at_end(body)
        b.load_atomic(self.gen, "acquire", 4)
        self.emit_pause(b)
        i.add_incoming(b.add(i, ir.Constant(_I64, 1)), body)
        b.branch(loop)
        b.position_at_end(out)
        b.ret_void()

        # void gc_pool_configure(i64 want_workers): used by the next lazy start
        f = ir.Function(self.m, ir.FunctionType(_VOID, [_I64]), "gc_pool_configure")
        b = ir.IRBuilder(f.append_basic_block("entry"))
        b.store_atomic(f.args[0], self.want, "monotonic", 8)
        b.ret_void()
        # i64 gc_pool_init(i64 num_threads): if no workers run, spawn
        # num_threads - 1 of them now; returns the number of running workers
        f = ir.Function(self.m, ir.FunctionType(_I64, [_I64]), "gc_pool_init")
        b = ir.IRBuilder(f.append_basic_block("entry"))
        with b.if_then(b.icmp_signed("==", b.load_atomic(self.nworkers, "monotonic", 8),
                                     ir.Constant(_I64, 0))):
            w = b.sub(f.args[0], ir.Constant(_I64, 1))
            w = b.select(b.icmp_signed("<", w, ir.Constant(_I64, 0)), ir.Constant(_I64, 0), w)
            b.store_atomic(w, self.want, "monotonic", 8)
        b.ret(b.call(self.start, []))
        # i64 gc_pool_num_workers()
        f = ir.Function(self.m, ir.FunctionType(_I64, []), "gc_pool_num_workers")
        b = ir.IRBuilder(f.append_basic_block("entry"))
        b.ret(b.load_atomic(self.nworkers, "monotonic", 8))
        # void gc_pool_after_fork_child(): the child has no workers; forget them
        f = ir.Function(self.m, ir.FunctionType(_VOID, []), "gc_pool_after_fork_child")
        b = ir.IRBuilder(f.append_basic_block("entry"))
        b.store_atomic(ir.Constant(_I64, 0), self.nworkers, "monotonic", 8)
        b.store_atomic(ir.Constant(_I32, 0), self.sleepers, "monotonic", 4)
        b.store_atomic(ir.Constant(_I32, 0), self.lock, "monotonic", 4)
        b.ret_void()


# --------------------------------------------------------------------------
# Python-side handle
# --------------------------------------------------------------------------

_PF_CTYPE = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)


class ThreadPool:
    """Handle on the process-wide pool (get it with :func:`get_pool`).

    ``parallel_for_address`` is what JIT code calls (see
    :func:`emit_parallel_for`); it is also registered with LLVM under the
    symbol name ``gc_parallel_for`` so modules may simply declare it.
    """

    def __init__(self, num_threads: int):
        libc = _libc_addresses()
        self.supported = libc is not None
        pool_ir = _PoolIR(libc or _SERIAL_LIBC)
        self.uses_futex = pool_ir.sys_futex is not None
        self.engine = _compile_pool(pool_ir)
        # Never free the engine: threads may run its code until process exit.
        ctypes.pythonapi.Py_IncRef(ctypes.py_object(self.engine))
        addr = self.engine.get_function_address
        self.parallel_for_address = addr(PARALLEL_FOR_NAME)
        self._pf = _PF_CTYPE(self.parallel_for_address)
        self._start = ctypes.CFUNCTYPE(ctypes.c_int64)(addr("gc_pool_start"))
        self._try_shutdown = ctypes.CFUNCTYPE(ctypes.c_int32)(addr("gc_pool_try_shutdown"))
        self._configure = ctypes.CFUNCTYPE(None, ctypes.c_int64)(addr("gc_pool_configure"))
        self._nworkers = ctypes.CFUNCTYPE(ctypes.c_int64)(addr("gc_pool_num_workers"))
        self._after_fork = ctypes.CFUNCTYPE(None)(addr("gc_pool_after_fork_child"))
        self._spin = ctypes.c_int64.from_address(
            self.engine.get_global_value_address("gc_pool_spin_iters"))
        self._spin_test = ctypes.CFUNCTYPE(None, ctypes.c_int64)(addr("gc_pool_spin_test"))
        self._lock = threading.Lock()
        self._num_threads = 1
        self.spin_iters_per_us = self._calibrate_spin()
        self.set_spin_us(float(os.environ.get("GRAPHC_POOL_SPIN_US", DEFAULT_SPIN_US)))
        self.set_num_threads(num_threads)
        llvm.add_symbol(PARALLEL_FOR_NAME, self.parallel_for_address)

    # -- configuration ----------------------------------------------------
    @property
    def num_threads(self) -> int:
        """Threads a parallel_for may use, including the caller."""
        return self._num_threads

    @property
    def num_workers_running(self) -> int:
        return int(self._nworkers())

    def set_num_threads(self, n: int) -> None:
        """Resize the pool (stops current workers; new ones start lazily)."""
        n = max(1, min(int(n), MAX_THREADS))
        if not self.supported:
            n = 1
        with self._lock:
            self._shutdown_locked(timeout=None)
            self._num_threads = n
            self._configure(n - 1)

    def start(self) -> int:
        """Spawn the workers now instead of at the first parallel call."""
        return int(self._start())

    def _calibrate_spin(self) -> float:
        """Spin-loop iterations per microsecond (best of 3 short runs, ~1 ms)."""
        n = 20000
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            self._spin_test(n)
            best = min(best, time.perf_counter() - t0)
        return max(1.0, n / (best * 1e6))

    def set_spin_us(self, us: float) -> None:
        """How long idle workers spin (``pause``) before sleeping on the futex
        (``GRAPHC_POOL_SPIN_US``, default 50 us).  Longer: lower latency for
        back-to-back parallel calls; shorter: less CPU burnt while idle."""
        self.spin_us = float(us)
        self._spin.value = max(0, int(us * self.spin_iters_per_us))

    # -- shutdown -----------------------------------------------------------
    def _shutdown_locked(self, timeout):
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._try_shutdown():  # a job is running: wait for it
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(0.0005)
        return True

    def shutdown(self, timeout: float | None = 5.0) -> bool:
        """Stop and join the workers.  False if a job kept the pool busy past
        ``timeout`` (workers then stay; the code is never unmapped).  Later
        parallel calls run serially until :meth:`set_num_threads`."""
        t0 = time.monotonic()
        if not self._lock.acquire(timeout=-1 if timeout is None else timeout):
            return False
        try:
            left = None if timeout is None else max(0.0, timeout - (time.monotonic() - t0))
            return self._shutdown_locked(left)
        finally:
            self._lock.release()

    def _after_fork_child(self):
        self._lock = threading.Lock()
        self._after_fork()

    # -- calling from Python (tests, debugging) -----------------------------
    def parallel_for(self, task_address: int, ctx_address: int, n_chunks: int) -> None:
        """Call ``gc_parallel_for`` through ctypes (releases the GIL)."""
        self._pf(task_address, ctx_address, n_chunks)


_pool = None
_pool_lock = threading.Lock()


def get_pool() -> ThreadPool:
    """The process-wide pool (compiled on first use; workers start lazily)."""
    global _pool
    if _pool is None:
        with _pool_lock:
            if _pool is None:
                _pool = ThreadPool(default_num_threads())
                atexit.register(_atexit_shutdown)
                if hasattr(os, "register_at_fork"):
                    os.register_at_fork(after_in_child=_fork_child)
    return _pool


def _atexit_shutdown():
    if _pool is not None:
        # bounded: never hang interpreter exit on a stuck job
        _pool.shutdown(timeout=2.0)


def _fork_child():
    if _pool is not None:
        _pool._after_fork_child()


# --------------------------------------------------------------------------
# Emitting calls from generated code
# --------------------------------------------------------------------------


def emit_parallel_for(builder, task, ctx, n_chunks, pool: ThreadPool | None = None):
    """Emit ``gc_parallel_for(task, ctx, n_chunks)`` through the pool's address.

    ``task`` is an ``ir.Function`` of type ``void (i8*, i64)`` (or a pointer
    to one), ``ctx`` any pointer (bitcast to ``i8*``), ``n_chunks`` an i64
    value or Python int.  The address is baked in, so the emitted code is
    only valid in this process (do not cache its object code across runs;
    use :func:`declare_parallel_for` for that).
    """
    pool = pool or get_pool()
    fn = builder.inttoptr(ir.Constant(_I64, pool.parallel_for_address),
                          PARALLEL_FOR_TYPE.as_pointer(), name="gc_parallel_for.ptr")
    return _emit_call(builder, fn, task, ctx, n_chunks)


def declare_parallel_for(module: ir.Module) -> ir.Function:
    """Declare ``gc_parallel_for`` in ``module``; MCJIT resolves it by name
    (``get_pool()`` registers the symbol with ``llvm.add_symbol``)."""
    get_pool()
    if PARALLEL_FOR_NAME in module.globals:
        return module.globals[PARALLEL_FOR_NAME]
    return ir.Function(module, PARALLEL_FOR_TYPE, PARALLEL_FOR_NAME)


def _emit_call(builder, fn, task, ctx, n_chunks):
    tptr = TASK_TYPE.as_pointer()
    if task.type != tptr:
        task = builder.bitcast(task, tptr)
    if ctx.type != _I8P:
        ctx = builder.bitcast(ctx, _I8P)
    if isinstance(n_chunks, int):
        n_chunks = ir.Constant(_I64, n_chunks)
    elif n_chunks.type.width < 64:
        n_chunks = builder.sext(n_chunks, _I64)
    return builder.call(fn, [task, ctx, n_chunks])
