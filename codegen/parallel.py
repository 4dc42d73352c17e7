"""Compile the parts of a program in this process and a forked worker, sharing the work.

LLVM's optimization and code generation take most of a cold compile (about
0.3 s of the W3 training step), and llvmlite runs one LLVM call at a time in
a process. So ``codegen.emit.emit_module`` spreads the kernel functions over
a few modules, and :func:`run_shared` compiles them here and in a child made
with ``fork()``: each process takes the next module from a queue (a pipe
holding one byte per module, costliest first; a 1-byte read is atomic), so
neither waits long for the other whatever the estimates' errors. The child
sends its object files back through a second pipe; the engine links all
objects by their symbols (``codegen.cache.load_objects``).

The child only prints, optimizes and compiles modules (memory it got from the
parent at the fork) and leaves with ``os._exit``: no Python clean-up, no
atexit handlers, nothing shared written. A fork is only made where that is
safe and worth it (:func:`available`): on Linux, with 2 or more CPUs, when no
other Python thread runs (another thread could hold a lock the child would
wait on forever; graphc's own worker threads and BLAS's are native threads
that never hold anything the child takes), and for programs big enough.
Whatever goes wrong in the child (an exception, a crash, a time-out) only
means the parent compiles those modules itself.

``GRAPHC_PARALLEL_COMPILE=0`` turns it off.
"""

from __future__ import annotations

import faulthandler
import os
import select
import signal
import struct
import sys
import threading
import time
import warnings
from typing import Callable

# a compile is split only with at least this many kernels: below it the fork (~3 ms) and the
# extra modules' fixed costs (~3 ms each) eat what parallel compilation saves
MIN_KERNELS = 6
# modules a split program is emitted as: more balance the two processes better, each costs ~3 ms
PARTS = 4
# the parent waits this long for its child after finishing its own share, then compiles the rest
TIMEOUT_SECONDS = 60.0


def available(kernels: int) -> bool:
    """Whether a compile of ``kernels`` kernels should fork a worker (see the module doc)."""
    if os.environ.get("GRAPHC_PARALLEL_COMPILE", "1").lower() in ("0", "off", "no", "false"):
        return False
    return (kernels >= MIN_KERNELS and sys.platform.startswith("linux") and hasattr(os, "fork")
            and (os.cpu_count() or 1) >= 2 and threading.active_count() == 1)


def pack(objects: list[bytes]) -> bytes:
    """Object files as one byte string: for each, its length (8 bytes, little-endian) then it."""
    return b"".join(struct.pack("<Q", len(o)) + o for o in objects)


def unpack(data: bytes) -> list[bytes] | None:
    """The objects of :func:`pack`'s output, or None if it is not one."""
    objects, p = [], 0
    while p < len(data):
        if p + 8 > len(data):
            return None
        (n,) = struct.unpack_from("<Q", data, p)
        p += 8
        if p + n > len(data):
            return None
        objects.append(data[p:p + n])
        p += n
    return objects


def run_shared(jobs: list[Callable[[], bytes]], timeout: float = TIMEOUT_SECONDS) -> list[bytes]:
    """``[job() for job in jobs]``, computed here and in a forked child; each process takes
    the next job in order (put the longest first). Jobs the child did not deliver within
    ``timeout`` s of the queue's end (or at all: it failed or crashed) are run here."""
    if len(jobs) > 255:
        raise ValueError("run_shared: at most 255 jobs (one byte each in the queue)")
    results: list[bytes | None] = [None] * len(jobs)
    queue_r, queue_w = os.pipe()
    os.write(queue_w, bytes(range(len(jobs))))
    os.close(queue_w)  # empty queue = end of file for both processes
    out_r, out_w = os.pipe()
    with warnings.catch_warnings():
        # Python 3.12+ warns of a fork with (native) threads, and JAX's fork hook warns that
        # JAX is multithreaded: the child never calls into either (see the module doc)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called", category=RuntimeWarning)
        pid = os.fork()
    if pid == 0:  # the child: never returns
        status = 1
        try:
            os.close(out_r)
            faulthandler.disable()  # a crash here is reported by the parent's own run of the job
            done = [(i, jobs[i]()) for i in _take(queue_r)]
            _write_all(out_w, b"".join(struct.pack("<QQ", i, len(obj)) + obj for i, obj in done))
            os.close(out_w)  # end of file for the parent now, not after this process's teardown (~5-10 ms)
            status = 0
        except BaseException:  # noqa: BLE001 - the parent runs these jobs itself
            pass
        finally:
            os._exit(status)
    os.close(out_w)
    try:
        for i in _take(queue_r):
            results[i] = jobs[i]()
        data = _read_until_eof(out_r, timeout)
    finally:
        _reap(pid, out_r, queue_r)
    for i, obj in _records(data):
        if 0 <= i < len(jobs) and results[i] is None:
            results[i] = obj
    return [r if r is not None else jobs[i]() for i, r in enumerate(results)]


def _take(queue_fd: int):
    """The indices of the jobs this process takes from the queue, one at a time."""
    while True:
        b = os.read(queue_fd, 1)
        if not b:
            return
        yield b[0]


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _read_until_eof(fd: int, timeout: float) -> bytes:
    """What the child wrote, up to its exit, or up to the time-out (then possibly torn)."""
    chunks = []
    deadline = time.perf_counter() + timeout
    while True:
        left = deadline - time.perf_counter()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            break
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def _records(data: bytes):
    """``(job index, object)`` pairs of the child's output; a torn tail is dropped."""
    p = 0
    while p + 16 <= len(data):
        i, n = struct.unpack_from("<QQ", data, p)
        if p + 16 + n > len(data):
            return
        yield i, data[p + 16:p + 16 + n]
        p += 16 + n


# Children stopped but not yet gone (the kernel tears a forked copy of this process down in
# milliseconds, after its results are in): reaped without waiting by the next ``_reap``.
_exiting: list[int] = []


def _reap(pid: int, *fds: int) -> None:
    """Stop the child if it still runs (its work is no longer awaited), close fds, and reap it
    and earlier children that have exited, without waiting for any."""
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass
    for fd in fds:
        os.close(fd)
    _exiting.append(pid)
    reap_exited()


def reap_exited() -> None:
    """Reap the children of ``_reap`` that have exited by now (never waits)."""
    for p in list(_exiting):
        try:
            done, _ = os.waitpid(p, os.WNOHANG)
        except ChildProcessError:  # SIGCHLD ignored: the system reaped it already
            done = p
        if done:
            _exiting.remove(p)
