"""Compile part of a program in a forked worker process, in parallel with this one.

LLVM's optimization and code generation take most of a cold compile (about
0.3 s of the W3 training step), and llvmlite runs one LLVM call at a time in
a process. So ``codegen.emit.emit_module`` spreads the kernel functions over
two modules, and while this process compiles the first, a child made with
``fork()`` compiles the second and sends back its object file through a pipe;
the engine links the two (``codegen.cache.load_objects``).

The child only prints, optimizes and compiles its module (memory it got from
the parent at the fork) and leaves with ``os._exit``: no Python clean-up, no
atexit handlers, nothing shared written. A fork is only made where that is
safe and worth it (:func:`available`): on Linux, with 2 or more CPUs, when no
other Python thread runs (another thread could hold a lock the child would
wait on forever; graphc's own worker threads and BLAS's are native threads
that never hold anything the child takes), and for programs big enough.
Whatever goes wrong in the child (an exception, a crash, a time-out) only
means the parent compiles that part itself.

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
# second module's fixed costs eat what parallel compilation saves
MIN_KERNELS = 6
# the parent waits this long for its child beyond its own compile time before compiling the
# child's part itself
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


class ForkedCompile:
    """A child process running ``work() -> list of object files``; :meth:`result` collects them."""

    def __init__(self, work: Callable[[], list[bytes]]):
        self.started = time.perf_counter()
        r, w = os.pipe()
        with warnings.catch_warnings():  # Python 3.12+ warns of fork with (native) threads; see the module doc
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # the child: never returns
            status = 1
            try:
                os.close(r)
                faulthandler.disable()  # a crash here is reported by the parent's own compile of the part
                data = pack(work())
                view = memoryview(data)
                while view:
                    view = view[os.write(w, view):]
                status = 0
            except BaseException:  # noqa: BLE001 - the parent compiles this part itself
                pass
            finally:
                os._exit(status)
        os.close(w)
        self.pid, self.fd = pid, r

    def result(self, timeout: float = TIMEOUT_SECONDS) -> list[bytes] | None:
        """The child's object files, or None if it failed or took longer than ``timeout`` s."""
        chunks, ok = [], False
        try:
            deadline = time.perf_counter() + timeout
            while True:
                left = deadline - time.perf_counter()
                if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                    break  # time-out
                chunk = os.read(self.fd, 1 << 20)
                if not chunk:
                    ok = True
                    break
                chunks.append(chunk)
        finally:
            self._reap(kill=not ok)
        return unpack(b"".join(chunks)) if ok and self.status == 0 else None

    def cancel(self) -> None:
        """Stop the child (the caller no longer needs its work)."""
        if self.fd is not None:
            self._reap(kill=True)

    def _reap(self, kill: bool) -> None:
        if kill:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except OSError:
                pass
        os.close(self.fd)
        self.fd = None
        _, status = os.waitpid(self.pid, 0)
        self.status = os.waitstatus_to_exitcode(status)
