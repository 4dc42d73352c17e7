"""Training loops: a progress bar, evaluation, and an early exit when the loss stops being finite.

Two levels:

* ``fit(step, batches, epochs)`` drives any compiled step (``outs = step(*batch)``,
  ``outs[0]`` the loss) over an iterable of batches, with a tqdm progress bar
  (running loss and metrics, steps/s), an optional ``evaluate()`` after each
  epoch, and a stop at the first nan/inf loss;
* ``Trainer`` builds the step itself from a model function, a loss, a metric
  dict and an optimizer, and evaluates exactly on any number of examples
  (the last batch is padded and masked)::

      model = gc.nn.MLP([784, 256, 10], seed=0)
      tr = gc.train.Trainer(model, model.params, gc.optim.SGD(0.1), batch_size=128, x_shape=(784,))
      history = tr.fit(x_train, y_train, epochs=5, eval_data=(x_test, y_test))
      tr.evaluate(x_test, y_test)        # {'loss': ..., 'accuracy': ...}

tqdm is optional: without it the loop prints one line per epoch.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

import numpy as np

from .compile import compile as _compile
from .dtypes import as_dtype, float32, int64
from .ops.reduce import sum as _sum
from .tensor import Tensor, placeholder

__all__ = ["fit", "Trainer", "History", "DivergedError", "progress_available"]


class _RowBatches:
    """``(x, y, idx)`` per batch of row indices ``idx`` (for ``Trainer.gather_step``)."""

    def __init__(self, x, y, order):
        self.x, self.y, self.order = x, y, order

    def __len__(self) -> int:
        return len(self.order)

    def __iter__(self):
        for (idx,) in self.order:
            yield self.x, self.y, idx


class DivergedError(FloatingPointError):
    """The training loss became nan or inf (the message says when, and what to try)."""


def progress_available() -> bool:
    """Whether tqdm is installed (the progress bar needs it)."""
    try:
        import tqdm  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass
class History:
    """Per-epoch records: ``epochs[k]`` is a dict with the epoch's mean training outputs (by name),
    ``steps``, ``seconds``, ``steps_per_s`` and the evaluation results (prefixed ``eval_``).
    ``losses`` holds every step's loss; ``stopped`` says why training ended early (or is None)."""

    epochs: list = field(default_factory=list)
    losses: list = field(default_factory=list)
    stopped: str | None = None
    seconds: float = 0.0

    def __getitem__(self, key: str) -> list:
        """``history["loss"]``: that record of each epoch."""
        return [e.get(key) for e in self.epochs]

    @property
    def last(self) -> dict:
        return self.epochs[-1] if self.epochs else {}


def _fmt(v: float) -> str:
    return f"{v:.4f}" if 1e-3 <= abs(v) < 1e4 else f"{v:.3e}"


class _Progress:
    """A tqdm bar when tqdm is importable and wanted, else one printed line per epoch."""

    def __init__(self, enabled: bool, total: int | None, desc: str, file):
        self.bar = None
        self.file = file if file is not None else sys.stderr
        self.enabled = enabled
        if enabled:
            try:
                from tqdm.auto import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self.bar = tqdm(total=total, desc=desc, unit="step", file=self.file, dynamic_ncols=True,
                                leave=True, mininterval=0.25)

    def step(self, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def postfix(self, values: dict) -> None:
        if self.bar is not None:
            self.bar.set_postfix({k: (f"{v:.0f}" if k == "steps/s" else _fmt(v)) for k, v in values.items()},
                                 refresh=False)

    def describe(self, desc: str) -> None:
        if self.bar is not None:
            self.bar.set_description(desc, refresh=False)

    def epoch_done(self, epoch: int, record: dict) -> None:
        if self.bar is None and self.enabled:
            items = "  ".join(f"{k}={_fmt(v)}" for k, v in record.items() if isinstance(v, (int, float)))
            print(f"epoch {epoch}: {items}", file=self.file, flush=True)

    def write(self, msg: str) -> None:
        if self.bar is not None:
            self.bar.write(msg, file=self.file)
        elif self.enabled:
            print(msg, file=self.file, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def fit(step: Callable, batches: Iterable, epochs: int = 1, names: Sequence[str] = ("loss",),
        evaluate: Callable[[], dict] | None = None, progress: bool = True, on_nan: str = "raise",
        desc: str = "train", refresh_every: int = 10, file=None) -> History:
    """Run ``outs = step(*batch)`` for every batch of ``batches`` (re-iterated each epoch).

    ``outs[k]`` is named ``names[k]``; ``outs[0]`` is the loss (a scalar).
    After each epoch ``evaluate()`` (if given) returns a dict recorded with
    an ``eval_`` prefix. A nan/inf loss stops training at once: ``on_nan=
    "raise"`` raises ``DivergedError``, ``"stop"`` returns the history with
    ``history.stopped`` set. The update of the diverged step has already
    been applied: the parameters hold non-finite values then.
    """
    if on_nan not in ("raise", "stop"):
        raise ValueError("on_nan must be 'raise' or 'stop'")
    names = list(names)
    try:
        per_epoch = len(batches)  # type: ignore[arg-type]
    except TypeError:
        per_epoch = None
    bar = _Progress(progress, per_epoch * epochs if per_epoch is not None else None, desc, file)
    hist = History()
    start_all = time.perf_counter()
    global_step = 0
    last_finite = None
    try:
        for epoch in range(1, epochs + 1):
            if epochs > 1:
                bar.describe(f"{desc} {epoch}/{epochs}")
            sums = np.zeros(len(names))
            count = 0
            t0 = time.perf_counter()
            for batch in batches:
                outs = step(*batch)
                if isinstance(outs, np.ndarray):
                    outs = [outs]
                loss = float(outs[0])
                global_step += 1
                count += 1
                if not math.isfinite(loss):
                    msg = (f"training stopped: the loss is {loss} at epoch {epoch}, step {count} (update "
                           f"{global_step}); the last finite loss was "
                           f"{'none' if last_finite is None else f'{last_finite:.6g}'}. This step's update was "
                           "applied, so the parameters now hold non-finite values: restore a checkpoint, "
                           "lower the learning rate (or add warmup), and check the inputs for nan/inf.")
                    hist.stopped = msg
                    hist.seconds = time.perf_counter() - start_all
                    if on_nan == "raise":
                        raise DivergedError(msg)
                    bar.write(msg)
                    return hist
                last_finite = loss
                hist.losses.append(loss)
                for k in range(min(len(names), len(outs))):
                    sums[k] += float(outs[k]) if k else loss
                bar.step()
                if count % refresh_every == 0:
                    dt = time.perf_counter() - t0
                    bar.postfix({**{n: s / count for n, s in zip(names, sums)}, "steps/s": count / max(dt, 1e-9)})
            dt = time.perf_counter() - t0
            record = {n: (float(s) / count if count else float("nan")) for n, s in zip(names, sums)}
            record.update(epoch=epoch, steps=count, seconds=dt, steps_per_s=count / dt if dt > 0 else 0.0)
            if evaluate is not None:
                record.update({f"eval_{k}": v for k, v in evaluate().items()})
            hist.epochs.append(record)
            bar.postfix({("steps/s" if k == "steps_per_s" else k): v for k, v in record.items()
                         if k not in ("epoch", "steps", "seconds")})
            bar.epoch_done(epoch, record)
    finally:
        bar.close()
    hist.seconds = time.perf_counter() - start_all
    return hist


def _converts_exactly(a: np.ndarray, out: np.ndarray, rows: int = 4096) -> bool:
    """Whether ``out`` (``a`` converted) holds the same values, compared a block of rows at a time
    (no copy of a whole training set)."""
    if a.ndim == 0:
        return bool(out == a)
    with np.errstate(invalid="ignore"):
        return all(np.array_equal(out[i:i + rows], a[i:i + rows]) for i in range(0, len(a), rows))


class Trainer:
    """A compiled training step and exact evaluation for ``loss(model(x), y)``.

    ``model``: a function of the input tensor ``x`` [B, *x_shape] returning
    predictions; ``params``: the parameters to train; ``loss`` and each
    metric: functions ``f(pred, y, reduction=...)`` from ``gc.nn`` (they must
    support ``reduction="none"``). The training step is
    ``[loss, *metrics] = step(xb, yb)`` with the optimizer's updates, one
    native call per batch (compiled on first use).

    ``fit`` uses a second form of the same step that takes the whole
    training set and a batch of row indices, ``step(x, y, idx)``, and gathers
    the rows inside the compiled code: the batch never exists as a numpy
    array, which for small models costs more than the step itself (numpy's
    ``x[idx]`` of 128 rows of 784 floats: 60-90 µs; the step of a softmax
    regression: ~60 µs). Both forms share the parameters and the optimizer's
    state.
    """

    def __init__(self, model: Callable[[Tensor], Tensor], params: Sequence[Tensor], optimizer, batch_size: int,
                 x_shape: Sequence[int], y_shape: Sequence[int] = (), loss: Callable | None = None,
                 metrics: dict | None = None, x_dtype=float32, y_dtype=int64, name: str = "train"):
        from . import nn
        self.model = model
        self.params = list(params)
        self.optimizer = optimizer
        self.batch_size = int(batch_size)
        self.x_shape, self.y_shape = tuple(x_shape), tuple(y_shape)
        self.x_dtype, self.y_dtype = as_dtype(x_dtype), as_dtype(y_dtype)
        self.loss_fn = loss if loss is not None else nn.cross_entropy
        self.metrics = dict(metrics) if metrics is not None else {"accuracy": nn.accuracy}
        self.name = name
        self.names = ["loss", *self.metrics]
        self._step = None
        self._gather_steps: dict[int, Callable] = {}
        self._eval_fns: dict[int, Callable] = {}
        self._predict_fns: dict[int, Callable] = {}

    def _compile_step(self, inputs, xb, yb, name):
        pred = self.model(xb)
        loss_t = self.loss_fn(pred, yb)
        outs = [loss_t] + [m(pred, yb) for m in self.metrics.values()]
        return _compile(inputs, outs, updates=self.optimizer.updates(loss_t, self.params), name=name)

    @property
    def step(self) -> Callable:
        """``[loss, *metrics] = step(xb, yb)`` on one batch, with the updates (compiled on first use)."""
        if self._step is None:
            x = placeholder((self.batch_size, *self.x_shape), self.x_dtype, name="x")
            y = placeholder((self.batch_size, *self.y_shape), self.y_dtype, name="y")
            self._step = self._compile_step([x, y], x, y, self.name)
        return self._step

    def gather_step(self, n: int) -> Callable:
        """``[loss, *metrics] = step(x, y, idx)``: the step on rows ``idx`` (``batch_size`` of them)
        of a training set of ``n`` examples, gathered inside the compiled code."""
        fn = self._gather_steps.get(n)
        if fn is None:
            from .ops.index import take
            xs = placeholder((n, *self.x_shape), self.x_dtype, name="x_all")
            ys = placeholder((n, *self.y_shape), self.y_dtype, name="y_all")
            idx = placeholder((self.batch_size,), int64, name="batch")
            fn = self._compile_step([xs, ys, idx], take(xs, idx, axis=0), take(ys, idx, axis=0), self.name)
            self._gather_steps[n] = fn
        return fn

    def _examples(self, a, which: str) -> np.ndarray:
        """``a`` as a contiguous array of this trainer's dtype for ``which`` ("x" or "y").

        Converting fractions to an integer type would silently truncate them (float
        pixels in [0, 1] given to a uint8 trainer would all become 0): that is an error.
        """
        dtype = self.x_dtype if which == "x" else self.y_dtype
        a = np.asarray(a)
        with np.errstate(invalid="ignore"):  # nan / inf to an integer type: checked just below
            out = np.ascontiguousarray(a, dtype=dtype.np_dtype)
        if out is not a and not dtype.is_float and not _converts_exactly(a, out):
            raise TypeError(f"Trainer {self.name!r}: {which} has {a.dtype} values that {dtype.name} cannot hold "
                            f"(fractions, out of range, nan or inf) and this trainer takes {dtype.name} {which} "
                            f"({which}_dtype); convert them, e.g. np.rint(x * 255).astype(np.uint8) for pixels "
                            f"in [0, 1], or build the trainer with {which}_dtype=gc.float32")
        return out

    # ----- training
    def fit(self, x, y, epochs: int = 1, seed=0, shuffle: bool = True, eval_data=None, progress: bool = True,
            on_nan: str = "raise", file=None) -> History:
        """Train on ``(x, y)`` in seeded shuffled batches (a last partial batch is dropped each epoch:
        the step has a fixed batch size); after each epoch evaluate on ``eval_data`` if given."""
        from .data import Batches
        x, y = self._examples(x, "x"), self._examples(y, "y")
        if len(x) != len(y):
            raise ValueError(f"x and y differ in length: {len(x)} and {len(y)}")
        if x.shape[1:] != self.x_shape or y.shape[1:] != self.y_shape:
            raise ValueError(f"examples of shape {x.shape[1:]} / labels {y.shape[1:]}; this trainer takes "
                             f"{self.x_shape} / {self.y_shape}")
        # the same seeded batch order as Batches(x, y): the indices of those rows
        order = Batches(np.arange(len(x)), batch_size=self.batch_size, shuffle=shuffle, seed=seed, drop_last=True)
        evaluate = None
        if eval_data is not None:
            ex, ey = eval_data
            evaluate = lambda: self.evaluate(ex, ey)  # noqa: E731
        return fit(self.gather_step(len(x)), _RowBatches(x, y, order), epochs, names=self.names,
                   evaluate=evaluate, progress=progress, on_nan=on_nan, desc=self.name, file=file)

    # ----- checkpoints
    def save(self, path, metadata: dict | None = None):
        """``gc.checkpoint.save`` of the parameters and the optimizer's state."""
        from . import checkpoint
        return checkpoint.save(path, self.params, optimizer=self.optimizer, metadata=metadata)

    def load(self, path) -> dict:
        """``gc.checkpoint.load`` into the live parameters and optimizer buffers; returns the metadata."""
        from . import checkpoint
        return checkpoint.load(path, self.params, optimizer=self.optimizer)

    # ----- evaluation
    def _eval_fn(self, n: int):
        fn = self._eval_fns.get(n)
        if fn is None:
            x = placeholder((n, *self.x_shape), self.x_dtype, name="x")
            y = placeholder((n, *self.y_shape), self.y_dtype, name="y")
            w = placeholder((n,), float32, name="weight")
            pred = self.model(x)
            outs = []
            for f in [self.loss_fn, *self.metrics.values()]:
                per = f(pred, y, reduction="none")
                outs.append(_sum(per * (w if per.dtype == float32 else w.astype(per.dtype))))
            fn = self._eval_fns[n] = _compile([x, y, w], outs, name=f"{self.name}_eval")
        return fn

    def evaluate(self, x, y, batch_size: int = 2048) -> dict:
        """The mean loss and metrics over every example of ``(x, y)`` (the last batch is padded with
        zero-weight rows, so nothing is dropped)."""
        x, y = self._examples(x, "x"), self._examples(y, "y")
        n = len(x)
        if n == 0:
            raise ValueError("nothing to evaluate")
        b = min(batch_size, n)
        fn = self._eval_fn(b)
        totals = np.zeros(len(self.names))
        for start in range(0, n, b):
            xb, yb = x[start:start + b], y[start:start + b]
            k = len(xb)
            wb = np.ones(b, np.float32)
            if k < b:
                xb = np.concatenate([xb, np.zeros((b - k, *xb.shape[1:]), xb.dtype)])
                yb = np.concatenate([yb, np.zeros((b - k, *yb.shape[1:]), yb.dtype)])
                wb[k:] = 0
            totals += [float(o) for o in fn(xb, yb, wb)]
        return {name: float(t) / n for name, t in zip(self.names, totals)}

    def predict(self, x, batch_size: int = 2048) -> np.ndarray:
        """The model's outputs for every row of ``x``."""
        x = self._examples(x, "x")
        n = len(x)
        b = min(batch_size, n)
        fn = self._predict_fns.get(b)
        if fn is None:
            xp = placeholder((b, *self.x_shape), self.x_dtype, name="x")
            fn = self._predict_fns[b] = _compile([xp], self.model(xp), name=f"{self.name}_predict")
        parts = []
        for start in range(0, n, b):
            xb = x[start:start + b]
            k = len(xb)
            if k < b:
                xb = np.concatenate([xb, np.zeros((b - k, *xb.shape[1:]), xb.dtype)])
            parts.append(np.array(fn(xb))[:k])
        return np.concatenate(parts)
