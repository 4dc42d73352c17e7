"""gc.train (loop, progress, evaluation, nan exit) and gc.checkpoint (atomic save, checked in-place load)."""

import io
import os
import sys

import numpy as np
import pytest

import graphc as gc
from graphc import checkpoint, nn, optim, train


def _blobs(n, seed):
    """Three well-separated Gaussian classes in 2-D."""
    rng = np.random.default_rng(seed)
    centers = np.array([[0.0, 4.0], [4.0, -2.0], [-4.0, -2.0]])
    y = rng.integers(0, 3, n)
    x = centers[y] + rng.normal(size=(n, 2))
    return x.astype(np.float32), y.astype(np.int64)


def _regression_step(lr=0.1, dim=3, batch=8):
    w = gc.parameter(np.zeros(dim, np.float32), "w")
    x = gc.placeholder((batch, dim), gc.float32, "x")
    y = gc.placeholder((batch,), gc.float32, "y")
    loss = nn.mse(x @ w, y)
    opt = optim.SGD(lr)
    return w, opt, gc.compile([x, y], [loss, nn.mae(x @ w, y)], updates=opt.updates(loss, [w]))


# ---------------------------------------------------------------- fit

def test_fit_trains_and_records_history():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 3)).astype(np.float32)
    true_w = np.array([1.0, -2.0, 0.5], np.float32)
    Y = X @ true_w
    w, opt, step = _regression_step()
    calls = []
    hist = train.fit(step, gc.data.Batches(X, Y, batch_size=8, seed=0, drop_last=True), epochs=6,
                     names=("loss", "mae"), evaluate=lambda: calls.append(1) or {"n": len(calls)}, progress=False)
    assert len(hist.epochs) == 6 and len(hist.losses) == 48 and hist.stopped is None
    assert hist["loss"][-1] < 0.01 * hist["loss"][0]
    assert hist["eval_n"] == [1, 2, 3, 4, 5, 6]
    assert hist.last["steps"] == 8 and hist.last["steps_per_s"] > 0
    np.testing.assert_allclose(w.value, true_w, atol=0.05)
    assert opt.t == 48


def test_fit_progress_with_and_without_tqdm(monkeypatch):
    X = np.ones((16, 3), np.float32)
    Y = np.ones(16, np.float32)
    _, _, step = _regression_step(lr=0.01)
    monkeypatch.setitem(sys.modules, "tqdm", None)  # import tqdm -> ImportError
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    out = io.StringIO()
    train.fit(step, gc.data.Batches(X, Y, batch_size=8), epochs=2, names=("loss", "mae"), file=out)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and lines[0].startswith("epoch 1: loss=") and "mae=" in lines[0]
    assert not train.progress_available()
    monkeypatch.undo()
    if not train.progress_available():
        pytest.skip("tqdm is not installed")
    out = io.StringIO()
    train.fit(step, gc.data.Batches(X, Y, batch_size=8), epochs=2, names=("loss", "mae"), file=out,
              refresh_every=1)
    text = out.getvalue()
    assert "4/4" in text and "loss=" in text and "step" in text


def test_fit_stops_on_nan_loss_with_a_clear_message():
    X = np.ones((32, 3), np.float32)
    Y = np.ones(32, np.float32)
    X[20] = np.nan  # the third batch (no shuffle) has a nan input
    w, _, step = _regression_step(lr=0.01)
    batches = gc.data.Batches(X, Y, batch_size=8, shuffle=False)
    with pytest.raises(train.DivergedError, match=r"loss is nan at epoch 1, step 3 \(update 3\).*learning rate"):
        train.fit(step, batches, epochs=2, progress=False)
    w.value[...] = 0
    hist = train.fit(step, batches, epochs=2, progress=False, on_nan="stop")
    assert hist.stopped is not None and "step 3" in hist.stopped
    assert len(hist.losses) == 2 and all(np.isfinite(hist.losses))
    assert hist.epochs == []
    # a diverging learning rate: inf/nan loss, also caught
    rng = np.random.default_rng(0)
    Xr = rng.normal(size=(64, 3)).astype(np.float32) * 10
    _, _, fast = _regression_step(lr=50.0)
    with pytest.raises(train.DivergedError, match="non-finite"):
        train.fit(fast, gc.data.Batches(Xr, Xr[:, 0], batch_size=8), epochs=20, progress=False)


# ---------------------------------------------------------------- Trainer

def test_trainer_learns_blobs_and_evaluates_exactly(tmp_path):
    x, y = _blobs(300, 0)
    xt, yt = _blobs(103, 1)  # not a multiple of any batch size used: padded, masked
    model = nn.MLP([2, 16, 3], seed=0, name="blob")
    tr = train.Trainer(model, model.params, optim.Adam(0.05), batch_size=32, x_shape=(2,),
                       metrics={"accuracy": nn.accuracy, "error": nn.zero_one_error})
    hist = tr.fit(x, y, epochs=4, eval_data=(xt, yt), progress=False)
    assert hist.last["eval_accuracy"] > 0.95
    res = tr.evaluate(xt, yt, batch_size=40)
    w0, b0, w1, b1 = (p.value.astype(np.float64) for p in model.params)
    z = np.maximum(xt @ w0 + b0, 0) @ w1 + b1
    m = z.max(1, keepdims=True)
    lse = (m + np.log(np.exp(z - m).sum(1, keepdims=True)))[:, 0]
    np.testing.assert_allclose(res["loss"], np.mean(lse - z[np.arange(len(yt)), yt]), rtol=1e-4, atol=1e-6)
    acc = np.mean(z.argmax(1) == yt)
    assert res["accuracy"] == pytest.approx(acc) and res["error"] == pytest.approx(1 - acc)
    assert res == pytest.approx(tr.evaluate(xt, yt, batch_size=1000))
    np.testing.assert_allclose(tr.predict(xt, batch_size=50), z, rtol=1e-4, atol=1e-4)
    # Trainer.save / load: parameters and optimizer state, restored in place
    path = tr.save(tmp_path / "blob.npz", metadata={"epochs": 4})
    saved = [p.value.copy() for p in model.params]
    tr.fit(x, y, epochs=1, progress=False)
    assert tr.optimizer.t > len(x) // 32 * 4
    assert tr.load(path) == {"epochs": 4} and tr.optimizer.t == len(x) // 32 * 4
    for p, v in zip(model.params, saved):
        np.testing.assert_array_equal(p.value, v)


def test_fit_gathers_inside_the_step_exactly_like_batches_outside():
    """fit's step(x, y, idx) (rows gathered in the compiled code) = step(x[idx], y[idx]) on the
    same seeded order; both forms share the parameters and the optimizer's state."""
    x, y = _blobs(200, 3)
    runs = []
    for use_fit in (True, False):
        model = nn.MLP([2, 8, 3], seed=1, name=f"g{use_fit}")
        tr = train.Trainer(model, model.params, optim.Momentum(0.1, 0.9), batch_size=16, x_shape=(2,))
        if use_fit:
            hist = tr.fit(x, y, epochs=3, seed=5, progress=False)
            losses = hist.losses
        else:
            losses = []
            order = gc.data.Batches(x.astype(np.float32), y, batch_size=16, seed=5, drop_last=True)
            for _ in range(3):
                for xb, yb in order:
                    losses.append(float(tr.step(xb, yb)[0]))
        runs.append(([p.value.copy() for p in model.params], losses, tr.optimizer.t))
    (pa, la, ta), (pb, lb, tb) = runs
    assert ta == tb == 3 * (200 // 16)
    np.testing.assert_array_equal(la, lb)
    for a, b in zip(pa, pb):
        np.testing.assert_array_equal(a, b)


def test_fit_checks_the_training_set():
    model = nn.MLP([2, 4, 3], seed=0, name="chk")
    tr = train.Trainer(model, model.params, optim.SGD(0.1), batch_size=8, x_shape=(2,))
    with pytest.raises(ValueError, match="differ in length: 20 and 19"):
        tr.fit(np.zeros((20, 2)), np.zeros(19, np.int64), progress=False)
    with pytest.raises(ValueError, match=r"examples of shape \(3,\)"):
        tr.fit(np.zeros((20, 3)), np.zeros(20, np.int64), progress=False)


def test_a_trainer_on_uint8_pixels_normalizes_inside_the_step():
    """x_dtype=uint8 and a model that converts: the same losses and parameters, bit for bit,
    as float32 pixels / 255 given to a float32 trainer; fractional floats are refused."""
    rng = np.random.default_rng(0)
    pixels, labels = rng.integers(0, 256, (96, 12), dtype=np.uint8), rng.integers(0, 3, 96)
    runs = []
    for u8 in (True, False):
        mlp = nn.MLP([12, 8, 3], seed=0, name=f"px{u8}")
        model = (lambda x: mlp(x.astype(gc.float32) / 255)) if u8 else mlp
        tr = train.Trainer(model, mlp.params, optim.SGD(0.1), batch_size=16, x_shape=(12,),
                           x_dtype=gc.uint8 if u8 else gc.float32)
        x = pixels if u8 else pixels.astype(np.float32) / np.float32(255)
        hist = tr.fit(x, labels, epochs=2, progress=False)
        runs.append((hist.losses, [p.value.copy() for p in mlp.params], tr.evaluate(x, labels)))
        if u8:
            for bad in (pixels.astype(np.float32) / 255, pixels.astype(np.int64) * 256, np.full_like(x, np.inf, float)):
                with pytest.raises(TypeError, match=rf"x has {bad.dtype} values that uint8 cannot hold"):
                    tr.fit(bad, labels, progress=False)
            tr.evaluate(pixels.astype(np.float64), labels)  # integral floats convert exactly
    (la, pa, ea), (lb, pb, eb) = runs
    assert la == lb and ea == eb
    for a, b in zip(pa, pb):
        np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------- checkpoints

def _adam_setup(seed=0):
    w = gc.parameter(np.random.default_rng(seed).normal(size=(3, 2)).astype(np.float32), "w")
    b = gc.parameter(np.zeros(2, np.float32), "b")
    x = gc.placeholder((4, 3), gc.float32, "x")
    loss = gc.sum((x @ w + b) ** 2)
    opt = optim.Adam(0.05)
    step = gc.compile([x], loss, updates=opt.updates(loss, [w, b]))
    return w, b, opt, step


def test_checkpoint_resume_is_exact_and_loads_in_place(tmp_path):
    xs = [np.random.default_rng(k).normal(size=(4, 3)).astype(np.float32) for k in range(5)]
    w, b, opt, step = _adam_setup()
    for xv in xs[:3]:
        step(xv)
    path = checkpoint.save(tmp_path / "ck.npz", [w, b], optimizer=opt, metadata={"epoch": 3})
    for xv in xs[3:]:
        step(xv)
    final = [w.value.copy(), b.value.copy(), opt.state["adam/w/m"].value.copy()]
    w_arr = w.value
    meta = checkpoint.load(path, [w, b], optimizer=opt)
    assert meta == {"epoch": 3} and opt.t == 3
    assert w.value is w_arr  # assigned into the live array
    for xv in xs[3:]:
        step(xv)
    for got, want in zip([w.value, b.value, opt.state["adam/w/m"].value], final):
        np.testing.assert_array_equal(got, want)
    with np.load(path, allow_pickle=False) as z:  # plain arrays, no pickles
        assert sorted(z.files) == sorted(["param/w", "param/b", "optim/adam/step", "optim/adam/w/m",
                                          "optim/adam/w/v", "optim/adam/b/m", "optim/adam/b/v",
                                          "__graphc_checkpoint__"])


def test_checkpoint_mismatches_are_clear_errors_and_change_nothing(tmp_path):
    w, b, opt, step = _adam_setup()
    step(np.ones((4, 3), np.float32))
    path = checkpoint.save(tmp_path / "ck.npz", [w, b], optimizer=opt)
    before = w.value.copy()
    w.value[...] = 7
    other_w = gc.parameter(np.zeros((3, 3), np.float32), "w")
    with pytest.raises(checkpoint.CheckpointError, match=r"param/w: shape \(3, 2\) in the checkpoint, \(3, 3\)"):
        checkpoint.load(path, [other_w, b])
    with pytest.raises(checkpoint.CheckpointError, match="missing from the checkpoint: param/c"):
        checkpoint.load(path, [w, b, gc.parameter(np.zeros(1, np.float32), "c")])
    with pytest.raises(checkpoint.CheckpointError, match="not loaded into anything: param/b"):
        checkpoint.load(path, [w])
    with pytest.raises(checkpoint.CheckpointError, match="dtype float32 in the checkpoint, float64"):
        checkpoint.load(path, [gc.parameter(np.zeros((3, 2)), "w"), b])
    np.testing.assert_array_equal(w.value, 7)  # every failed load left the parameters alone
    checkpoint.load(path, [w], strict=False)
    np.testing.assert_array_equal(w.value, before)
    bad = tmp_path / "plain.npz"
    np.savez(bad, w=np.zeros(2))
    with pytest.raises(checkpoint.CheckpointError, match="not a graphc checkpoint"):
        checkpoint.load(bad, [w])
    with pytest.raises(checkpoint.CheckpointError, match="no state yet"):
        checkpoint.load(path, [w, b], optimizer=optim.Adam())


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    w, b, opt, step = _adam_setup()
    path = checkpoint.save(tmp_path / "ck.npz", [w, b])
    good = path.read_bytes()

    def crash(f, **arrays):
        f.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt("simulated crash while writing")
    monkeypatch.setattr(np, "savez", crash)
    w.value[...] = 1
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save(path, [w, b])
    assert path.read_bytes() == good
    assert os.listdir(tmp_path) == ["ck.npz"]  # the temporary file was removed


def test_checkpoint_of_a_compiled_steps_parameters(tmp_path):
    w, b, opt, step = _adam_setup(seed=1)
    step(np.ones((4, 3), np.float32))
    live = step.parameters()  # every buffer the step updates: parameters and optimizer state
    assert set(live) == {"w", "b", "adam/step", "adam/w/m", "adam/w/v", "adam/b/m", "adam/b/v"}
    checkpoint.save(tmp_path / "s.npz", live)
    saved = {k: v.copy() for k, v in live.items()}
    step(np.ones((4, 3), np.float32))
    checkpoint.load(tmp_path / "s.npz", live)
    for k in saved:
        np.testing.assert_array_equal(live[k], saved[k])
    with pytest.raises(checkpoint.CheckpointError, match="named 'w'"):
        checkpoint.save(tmp_path / "dup.npz", [w, gc.parameter(np.zeros(1), "w")])
