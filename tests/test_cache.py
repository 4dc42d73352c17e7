"""The compiled-code cache: hits across processes, verified entries, corrupted files rebuilt."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = """
import numpy as np, graphc as gc
x = gc.placeholder((64, 32), gc.float32, name="x")
w = gc.parameter(np.linspace(-1, 1, 32 * 8, dtype=np.float32).reshape(32, 8), name="w")
y = gc.log_softmax(gc.tanh(x @ w) * 3.0, axis=-1)
f = gc.compile([x], y)
out = f(np.ones((64, 32), np.float32))
print(int(f.cache_hit), float(out.sum()), f.cache_key)
"""
KEYS: dict = {}


def _run(cache_dir: Path) -> tuple[int, float]:
    env = dict(os.environ, GRAPHC_CACHE_DIR=str(cache_dir))
    r = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    hit, total, key = r.stdout.split()
    KEYS[cache_dir] = key
    return int(hit), float(total)


def _entries(cache_dir: Path) -> list[Path]:
    """The cache file of the test's graph (the thread pool's code is cached there too)."""
    key = KEYS[cache_dir]
    return sorted(p for p in cache_dir.rglob("*.obj") if p.stem == key)


def test_second_process_hits_the_disk_cache(tmp_path):
    hit1, v1 = _run(tmp_path)
    hit2, v2 = _run(tmp_path)
    assert (hit1, hit2) == (0, 1)
    assert v1 == v2
    assert len(_entries(tmp_path)) == 1
    assert len(list(tmp_path.rglob("*.obj"))) == 3  # the graph's code, the thread pool's, the call dispatcher's


@pytest.mark.parametrize("damage", ["truncate", "flip_byte", "zero_length", "wrong_version", "garbage"])
def test_damaged_entries_are_rebuilt_never_loaded(tmp_path, damage):
    _, good = _run(tmp_path)
    (entry,) = _entries(tmp_path)
    data = entry.read_bytes()
    if damage == "truncate":
        entry.write_bytes(data[: len(data) // 2])
    elif damage == "flip_byte":
        b = bytearray(data)
        b[-100] ^= 0xFF
        entry.write_bytes(bytes(b))
    elif damage == "zero_length":
        entry.write_bytes(b"")
    elif damage == "wrong_version":
        entry.write_bytes(data.replace(b"GRAPHC-OBJ\n", b"GRAPHC-OBX\n", 1))
    else:
        entry.write_bytes(os.urandom(len(data)))
    hit, value = _run(tmp_path)
    assert hit == 0, "a damaged entry was loaded"
    assert value == good
    assert _entries(tmp_path)[0].read_bytes() == data  # rebuilt and stored again
    assert _run(tmp_path)[0] == 1


def test_in_memory_cache_reuses_code():
    import graphc as gc
    x = gc.placeholder((16,), name="x")
    f1 = gc.compile([x], gc.exp(x) + 1)
    x2 = gc.placeholder((16,), name="x")
    f2 = gc.compile([x2], gc.exp(x2) + 1)
    assert f2.cache_hit and f1.cache_key == f2.cache_key
    v = np.arange(16, dtype=np.float32)
    np.testing.assert_array_equal(f1(v), f2(v))


def test_the_source_digest_covers_the_whole_compiler_and_sees_edits(tmp_path, monkeypatch):
    from graphc.codegen import cache
    names = {(f.parent.name, f.name) for f in cache.source_files()}
    for want in [("ops", "elementwise.py"), ("graphc", "dtypes.py"), ("passes", "fusion.py"),
                 ("codegen", "emit.py")]:
        assert want in names, want
    src = tmp_path / "mod.py"
    src.write_text("x = 1\n")
    monkeypatch.setattr(cache, "source_files", lambda: [src])

    def digest():
        cache._SOURCE_DIGEST.clear()
        return cache.source_digest()
    try:
        first = digest()
        assert digest() == first
        src.write_text("x = 22\n")  # another size
        second = digest()
        assert second != first
        st = src.stat()
        os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # same size, newer
        assert digest() != second
    finally:
        cache._SOURCE_DIGEST.clear()
