"""Compiled-code cache: in memory and on disk, keyed by the printed IR, target and version.

The key is a SHA-256 of: the graph as printed (without source locations),
the parameter updates, the optimization level, graphc's and llvmlite's
versions, a hash of graphc's own source files, and the host target
(triple, CPU, features). The machine code
refers to nothing outside itself by address (BLAS and the thread pool are
reached through a table passed at each call), so an object file made by one
process runs in another.

On disk (``$GRAPHC_CACHE_DIR``, else ``$XDG_CACHE_HOME/graphc``, else
``~/.cache/graphc``), each entry is one file::

    b"GRAPHC-OBJ\\n" | key (64 hex) | sha256(payload) (64 hex) | payload length (16 hex) | payload

written to a temporary file in the same folder and renamed (atomic), and
verified on load: a truncated, corrupted, zero-length or foreign file is
ignored (and replaced by the rebuilt entry), never loaded. Because of that
check, files are not fsync'ed: a file torn by an OS crash is just a miss.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

MAGIC = b"GRAPHC-OBJ\n"
_HEADER = len(MAGIC) + 64 + 64 + 16

_memory: dict[str, object] = {}
_memory_lock = threading.Lock()


def cache_dir() -> Path:
    """The on-disk cache folder (not created until something is stored)."""
    env = os.environ.get("GRAPHC_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "graphc"


def disabled() -> bool:
    return os.environ.get("GRAPHC_CACHE", "1").lower() in ("0", "off", "no", "false")


_SOURCE_DIGEST: list[str] = []


def source_files() -> list[Path]:
    """The compiler's own source files: every .py of the graphc, graphc.passes and graphc.codegen
    packages, wherever they are installed (in a checkout they are three folders; installed,
    passes and codegen sit inside graphc's folder)."""
    import graphc
    import graphc.codegen
    import graphc.passes
    files = set()
    for pkg in (graphc, graphc.passes, graphc.codegen):
        files.update(Path(pkg.__file__).resolve().parent.rglob("*.py"))
    return sorted(files)


def source_digest() -> str:
    """A hash of the compiler's own source (ops, passes, codegen): a changed compiler never
    reuses old code, even at the same version number.

    Each file counts by its name, size and modification time, as Python's own .pyc
    validation does: a stat per file instead of reading and hashing ~1 MB of source on
    every process's first compile (3-6 ms, on the path of a warm start)."""
    if not _SOURCE_DIGEST:
        h = hashlib.sha256()
        for f in source_files():
            st = f.stat()
            h.update(f"{f.name} {st.st_size} {st.st_mtime_ns}\n".encode())
        _SOURCE_DIGEST.append(h.hexdigest())
    return _SOURCE_DIGEST[0]


def make_key(graph_text: str, extra: str, target: str) -> str:
    import llvmlite

    from graphc import __version__
    h = hashlib.sha256()
    for part in (f"graphc {__version__}", source_digest(), f"llvmlite {llvmlite.__version__}", target, extra,
                 graph_text):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


def memory_get(key: str):
    with _memory_lock:
        return _memory.get(key)


def memory_put(key: str, value) -> None:
    with _memory_lock:
        _memory[key] = value


def _path(key: str) -> Path:
    return cache_dir() / key[:2] / f"{key}.obj"


def disk_get(key: str) -> bytes | None:
    """The verified payload for ``key``, or None (missing, or fails verification)."""
    if disabled():
        return None
    try:
        data = _path(key).read_bytes()
    except OSError:
        return None
    if len(data) < _HEADER or not data.startswith(MAGIC):
        return None
    p = len(MAGIC)
    k = data[p:p + 64].decode("ascii", "replace")
    digest = data[p + 64:p + 128].decode("ascii", "replace")
    try:
        length = int(data[p + 128:p + 144], 16)
    except ValueError:
        return None
    payload = data[_HEADER:]
    if k != key or len(payload) != length or hashlib.sha256(payload).hexdigest() != digest:
        return None
    return payload


def disk_put(key: str, payload: bytes) -> None:
    """Store atomically; failures (read-only folder, full disk) are ignored: the cache is optional."""
    if disabled():
        return
    import tempfile  # ~5 ms of imports (random, shutil): not before the first store

    path = _path(key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        header = MAGIC + key.encode() + hashlib.sha256(payload).hexdigest().encode() + f"{len(payload):016x}".encode()
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            # no fsync: after an OS crash a renamed file may be empty or torn, but disk_get
            # verifies length and checksum and treats it as a miss (fsync cost ~5 ms per entry)
            with os.fdopen(fd, "wb") as f:
                f.write(header + payload)
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
    except OSError:
        pass



def load_object(obj: bytes):
    """An MCJIT engine holding a cached object file, or None if it cannot be loaded."""
    return load_objects([obj])


def load_objects(objects: list[bytes]):
    """An MCJIT engine holding these object files, linked to each other by their symbols
    (the parts of a program compiled apart, see ``codegen.parallel``), or None."""
    import llvmlite.binding as llvm

    from . import llvm_target
    llvm_target.init()
    try:
        engine = llvm.create_mcjit_compiler(llvm.parse_assembly(""), llvm_target._new_target_machine())
        for obj in objects:
            engine.add_object_file(llvm.ObjectFileRef.from_data(obj))
        engine.finalize_object()
        return engine
    except Exception:  # noqa: BLE001 - an unusable object is a cache miss
        return None


def compile_object(mod, codegen_level: int = 3) -> bytes:
    """The object file of an optimized module (code generation only: no loading, no linking)."""
    from . import llvm_target
    return llvm_target._new_target_machine(codegen_level).emit_object(mod)


def jit_with_object(mod, codegen_level: int = 3):
    """JIT an optimized module; returns (engine, its object file bytes for the disk cache).

    ``codegen_level``: the code generator's optimization level; 0 selects
    instructions one by one (FastISel) and schedules nothing, at a quarter of the
    time, for code whose speed is in its algorithm (locks, atomics, calls)."""
    import llvmlite.binding as llvm

    from . import llvm_target
    engine = llvm.create_mcjit_compiler(mod, llvm_target._new_target_machine(codegen_level))
    objects: list[bytes] = []
    engine.set_object_cache(lambda _m, buf: objects.append(bytes(buf)), lambda _m: None)
    engine.finalize_object()
    return engine, (objects[0] if objects else b"")


def _host_target() -> str:
    """Triple, CPU and features of this host: part of every key (machine code is host-specific)."""
    from . import llvm_target
    return llvm_target.host_description()


def jit_cached(ir_text: str, label: str, level: int = 3, codegen_level: int = 3):
    """An MCJIT engine for ``ir_text``, from the disk cache when possible (for runtime
    modules such as the thread pool that every process needs at start-up)."""
    return jit_recipe(ir_text, label, lambda: ir_text, level, codegen_level)


def _recipe_key(recipe: str, label: str, level: int, codegen_level: int) -> str:
    return make_key(recipe, f"{label} opt={level} codegen={codegen_level}", _host_target())


# Objects compiled ahead of their first use (by another process, see ``recipe_job``),
# taken by ``jit_recipe``: they need no disk cache to be reused.
_prefetched: dict[str, bytes] = {}


def jit_recipe(recipe: str, label: str, build, level: int = 3, codegen_level: int = 3):
    """An MCJIT engine for the module ``build()`` returns (IR text), keyed by ``recipe``.

    ``recipe`` must determine the IR completely together with the compiler's source
    (which every key includes): a text naming every input of ``build``. A disk-cache
    hit then needs neither building the IR nor printing it (the thread pool's IR
    takes milliseconds to build, its object loads in less than one)."""
    from . import llvm_target
    llvm_target.init()
    key = _recipe_key(recipe, label, level, codegen_level)
    obj = _prefetched.pop(key, None) or disk_get(key)
    engine = load_object(obj) if obj is not None else None
    if engine is None:
        engine, obj = jit_with_object(llvm_target.optimize(llvm_target.parse(build()), level), codegen_level)
        if obj:
            disk_put(key, obj)
    return engine


def recipe_job(recipe: str, label: str, build, level: int = 3, codegen_level: int = 3):
    """``(key, job)``: ``job()`` compiles what ``jit_recipe`` with these arguments would and
    returns the object file (it may run in another process, see ``codegen.parallel``); hand
    it to ``prefetched(key, obj)``. None if the object is already on disk or prefetched."""
    from . import llvm_target
    llvm_target.init()
    key = _recipe_key(recipe, label, level, codegen_level)
    if key in _prefetched or disk_get(key) is not None:
        return None
    return key, lambda: compile_object(llvm_target.optimize(llvm_target.parse(build()), level), codegen_level)


def prefetched(key: str, obj: bytes) -> None:
    """Keep an object of a ``recipe_job`` for ``jit_recipe`` (in this process, and on disk)."""
    if obj:
        _prefetched[key] = obj
        disk_put(key, obj)
