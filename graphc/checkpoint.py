"""Checkpoints: parameters and optimizer state in one ``.npz``, written atomically, loaded in place.

    gc.checkpoint.save("run.npz", params, optimizer=opt, metadata={"epoch": 3})
    meta = gc.checkpoint.load("run.npz", params, optimizer=opt)   # assigns INTO the live arrays

File layout (``np.load(path, allow_pickle=False)`` reads it): one array per
parameter under ``param/<name>``, one per optimizer buffer (step counter,
moments...) under ``optim/<name>``, and ``__graphc_checkpoint__``, a uint8
array holding UTF-8 JSON ``{"format": 1, "optimizer": ..., "metadata": ...}``.

Saving writes a temporary file in the target's folder, flushes it to disk
and renames it over the target (``os.replace``, atomic on POSIX and
Windows): a crash leaves the old checkpoint or the new one, never half a
file. Loading first checks every name, shape and dtype (a missing or extra
array, a wrong shape or dtype: one ``CheckpointError`` listing them all)
and only then assigns each array into the live parameter array
(``p.value[...] = saved``), so compiled steps see the loaded values and a
failed load changes nothing.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Mapping

import numpy as np

from .tensor import Tensor

__all__ = ["save", "load", "read", "CheckpointError", "FORMAT"]

FORMAT = 1
_META = "__graphc_checkpoint__"


class CheckpointError(ValueError):
    """A checkpoint does not match the parameters it is loaded into (or is not a graphc checkpoint)."""


def _targets(params, prefix: str) -> dict[str, np.ndarray]:
    """name -> live array, from parameter Tensors, a {name: Tensor or array} dict (e.g. a compiled
    step's ``parameters()``), or an object with ``.params`` (a layer)."""
    if params is None:
        return {}
    if hasattr(params, "params") and not isinstance(params, Mapping):
        params = params.params
    out: dict[str, np.ndarray] = {}
    items = params.items() if isinstance(params, Mapping) else ((None, p) for p in params)
    for name, p in items:
        if isinstance(p, Tensor):
            if p.op != "parameter":
                raise CheckpointError(f"only parameters are saved; {p!r} is a {p.op}")
            name = p.name if name is None else name
            arr = p.value
        elif isinstance(p, np.ndarray) and name is not None:
            arr = p
        else:
            raise CheckpointError(f"cannot checkpoint {type(p).__name__} {p!r}: pass parameter Tensors or a "
                                  "{name: array} dict")
        key = f"{prefix}/{name}"
        if key in out:
            raise CheckpointError(f"two arrays are named {name!r}: names must be unique in a checkpoint")
        out[key] = arr
    return out


def save(path, params, optimizer=None, metadata: dict | None = None) -> Path:
    """Write ``params`` (and ``optimizer.state``) to ``path`` atomically; returns the path.

    ``metadata``: any JSON-serializable dict (epoch, metrics...), returned by ``load``.
    """
    path = Path(path)
    arrays = _targets(params, "param")
    arrays.update(_targets(optimizer.state if optimizer is not None else None, "optim"))
    meta = {"format": FORMAT, "optimizer": None if optimizer is None else type(optimizer).__name__,
            "metadata": metadata or {}}
    try:
        blob = json.dumps(meta).encode()
    except TypeError as e:
        raise CheckpointError(f"metadata must be JSON-serializable: {e}") from None
    arrays[_META] = np.frombuffer(blob, np.uint8)
    folder = path.parent if str(path.parent) else Path(".")
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **{k: np.asarray(v) for k, v in arrays.items()})
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)
    try:  # make the rename itself durable (best effort: not every platform can open a folder)
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass
    return path


def read(path) -> tuple[dict[str, np.ndarray], dict]:
    """The arrays of a checkpoint by key (``param/...``, ``optim/...``) and its header dict."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise
    except (ValueError, OSError, EOFError) as e:
        raise CheckpointError(f"{path}: not a readable .npz checkpoint ({e})") from None
    if _META not in arrays:
        raise CheckpointError(f"{path}: not a graphc checkpoint (no {_META} entry)")
    try:
        meta = json.loads(arrays.pop(_META).tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: damaged checkpoint header ({e})") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: checkpoint format {meta.get('format')!r}, this graphc reads {FORMAT}")
    return arrays, meta


def load(path, params, optimizer=None, strict: bool = True) -> dict:
    """Load ``path`` into ``params`` (and ``optimizer``'s buffers) in place; returns the metadata.

    Every array must match by name, shape and dtype. With ``strict`` (the
    default) an array missing from the file, or one in the file that nothing
    here takes, is an error; ``strict=False`` loads the names both sides have
    (shapes and dtypes still must match).
    """
    arrays, meta = read(path)
    targets = _targets(params, "param")
    if optimizer is not None:
        if not optimizer.state:
            raise CheckpointError("the optimizer has no state yet: call optimizer.updates(loss, params) "
                                  "before loading its checkpoint")
        targets.update(_targets(optimizer.state, "optim"))
    problems = []
    missing = sorted(set(targets) - set(arrays))
    extra = sorted(set(arrays) - set(targets))
    if optimizer is None:  # not asked to restore the optimizer: its arrays are not "extra"
        extra = [k for k in extra if not k.startswith("optim/")]
    if strict and missing:
        problems.append("missing from the checkpoint: " + ", ".join(missing))
    if strict and extra:
        problems.append("in the checkpoint but not loaded into anything: " + ", ".join(extra))
    for key in sorted(set(targets) & set(arrays)):
        want, got = targets[key], arrays[key]
        if want.shape != got.shape:
            problems.append(f"{key}: shape {got.shape} in the checkpoint, {want.shape} here")
        elif want.dtype != got.dtype:
            problems.append(f"{key}: dtype {got.dtype} in the checkpoint, {want.dtype} here")
        elif not want.flags.writeable:
            problems.append(f"{key}: the array here is read-only")
    if problems:
        raise CheckpointError(f"{path} does not match:\n  " + "\n  ".join(problems))
    for key in set(targets) & set(arrays):
        targets[key][...] = arrays[key]
    return meta.get("metadata", {})
