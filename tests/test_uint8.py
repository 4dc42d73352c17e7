"""uint8, the storage type: fed, moved, gathered and converted; never computed on.

The shape, indexing and ``cast`` records list uint8 examples, so the registry
tests (interpreter vs numpy, compiled vs interpreter, serialization) cover
them; here: that every other op refuses uint8 with a message saying what to
do, that a training step fed uint8 pixels (normalized inside the step) is
bit-identical to one fed the same pixels normalized in numpy, and the casts'
wrap-around.
"""

from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc.ops.registry import Arg
from registry_cases import build, compute_ops


def _accepts_uint8(op) -> bool:
    """Whether the op's record lists an example with a uint8 argument (its claim to move uint8)."""
    def has(a):
        return (isinstance(a, Arg) and a.dtype == gc.uint8) or (isinstance(a, list) and any(map(has, a)))
    return any(has(a) for ex in op.examples for a in ex.args)


def _as_uint8(ex):
    """The example with every non-bool array argument made uint8 over its whole range."""
    def conv(a):
        if isinstance(a, Arg) and not a.dtype.is_bool:
            return Arg(a.shape, gc.uint8, 0, 255)
        if isinstance(a, list):
            return [conv(x) for x in a]
        return a
    return type(ex)(tuple(conv(a) for a in ex.args), ex.kwargs, ex.rtol)


MOVING = [op for op in compute_ops() if _accepts_uint8(op)]


def test_the_ops_that_take_uint8():
    """The ops that move or convert it, and the indexing ops, which take uint8 indices (labels)."""
    assert {op.name for op in MOVING} == {
        "broadcast_to", "cast", "concatenate", "expand_dims", "pad", "reshape", "slice", "squeeze",
        "stack", "take", "transpose", "where", "one_hot", "scatter_add"}


def _uint8_cases():
    """Each other op's examples with uint8 arrays (0-255, so that a signed reading would show)."""
    for op in compute_ops():
        if _accepts_uint8(op):
            continue
        for i, ex in enumerate(op.examples[:3]):
            u8 = _as_uint8(ex)
            if u8 != ex:  # an example of bool arguments only has nothing to try
                yield pytest.param(op, u8, id=f"{op.name}-{i}")


@pytest.mark.parametrize("op,ex", list(_uint8_cases()))
def test_every_other_op_refuses_uint8_or_computes_in_a_wider_type(op, ex):
    """No op computes in uint8: it refuses, saying to convert first, or (as numpy) promotes it
    to the type it computes in (mean, divide, softmax... in float64; logical ops in bool), and
    then its compiled result equals numpy's on the same uint8 values."""
    args, feed, raw = build(ex, seed=3)
    try:
        out = op.api(*args, **ex.kwargs)
    except gc.GraphError as e:
        msg = str(e)
        assert op.name in msg or (op.api.__name__ in msg), msg
        assert "uint8 is a storage type: convert it first, e.g. x.astype(graphc." in msg, msg
        assert "test_uint8.py" in msg, msg
        return
    assert out.dtype != gc.uint8
    inputs = list(feed)
    got = gc.compile(inputs, out)(*[feed[t] for t in inputs])
    if out.dtype.is_float:  # the oracle sees the values as promoted (numpy would use float16 for some)
        raw = [r.astype(out.dtype.np_dtype) if isinstance(r, np.ndarray) and r.dtype == np.uint8 else
               [v.astype(out.dtype.np_dtype) for v in r] if isinstance(r, list) else r for r in raw]
    with np.errstate(all="ignore"):
        want = op.oracle(*raw, **ex.kwargs)
    if out.dtype.is_float:
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    else:
        np.testing.assert_array_equal(got, want)


def test_uint8_meeting_a_wider_type_is_promoted_as_numpy_does():
    """No op computes in uint8, but uint8 + int32 is int32 and uint8 * 0.5 is float64 (numpy 2)."""
    a = np.arange(6, dtype=np.uint8).reshape(2, 3) * 40
    b = np.array([1, -2, 3], np.int32)
    pa, pb = gc.placeholder(a.shape, gc.uint8, "a"), gc.placeholder(b.shape, gc.int32, "b")
    s, h = pa + pb, pa * 0.5
    assert (s.dtype, h.dtype) == (gc.int32, gc.float64)
    assert ((a + b).dtype, (a * 0.5).dtype) == (np.int32, np.float64)
    f = gc.compile([pa, pb], [s, h])
    got_s, got_h = f(a, b)
    np.testing.assert_array_equal(got_s, a + b)
    np.testing.assert_array_equal(got_h, a * 0.5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cast_to_uint8_wraps_as_numpy(dtype):
    """Through int32, as numpy on x86-64: out of int32's range, nan and inf give 0x80000000 -> 0."""
    v = np.array([-1.0, 300.0, 255.9, -0.5, 0.0, 17.2, -129.0, 1e10, 65535.0, -1e9, 3000000100.0,
                  5e9 + 7, 2.0 ** 40 + 65, -(2.0 ** 31), 2.0 ** 31 - 128, np.inf, -np.inf, np.nan], dtype)
    i = np.array([-1, 255, 256, 70000, -70000, 2**31 - 1], np.int64)
    pv, pi = gc.placeholder(v.shape, gc.as_dtype(dtype)), gc.placeholder(i.shape, gc.int64)
    f = gc.compile([pv, pi], [pv.astype(gc.uint8), pi.astype(gc.uint8), pi.astype(gc.int32).astype(gc.uint8)])
    got = f(v, i)
    with np.errstate(invalid="ignore"):  # numpy warns for nan, inf and values beyond int32
        want = v.astype(np.uint8)
        np.testing.assert_array_equal(got[0], want)
        np.testing.assert_array_equal(gc.evaluate(pv.astype(gc.uint8), {pv: v}), want)
    np.testing.assert_array_equal(got[1], i.astype(np.uint8))
    np.testing.assert_array_equal(got[2], i.astype(np.int32).astype(np.uint8))


def test_uint8_converts_to_every_type_unsigned():
    x = np.array([0, 1, 127, 128, 200, 255], np.uint8)
    p = gc.placeholder(x.shape, gc.uint8)
    types = [gc.float32, gc.float64, gc.int32, gc.int64, gc.bool_]
    got = gc.compile([p], [p.astype(t) for t in types])(x)
    for g, t in zip(got, types):
        np.testing.assert_array_equal(g, x.astype(t.np_dtype))


def test_gather_convert_and_scale_is_one_kernel():
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, (500, 784), dtype=np.uint8)
    images = gc.placeholder(data.shape, gc.uint8, "images")
    batch = gc.placeholder((64,), gc.int64, "batch")
    xb = gc.take(images, batch, axis=0).astype(gc.float32) / 255
    f = gc.compile([images, batch], xb)
    idx = rng.integers(-500, 500, 64)
    np.testing.assert_array_equal(f(data, idx), data[idx].astype(np.float32) / np.float32(255))
    assert len(f.kernels) == 1 and f.kernels[0].chunks >= 1


def test_a_training_step_on_uint8_pixels_equals_the_float32_one():
    """Normalizing inside the step gives the same bits as the loader's float32 pixels / 255."""
    rng = np.random.default_rng(1)
    n, batch = 300, 32
    pixels = rng.integers(0, 256, (n, 784), dtype=np.uint8)
    labels = rng.integers(0, 10, n).astype(np.int64)
    runs = []
    for data in (pixels, pixels.astype(np.float32) / np.float32(255)):
        images = gc.placeholder(data.shape, data.dtype, "images")
        ys = gc.placeholder(labels.shape, gc.int64, "labels")
        idx = gc.placeholder((batch,), gc.int64, "batch")
        xb = gc.take(images, idx, axis=0)
        if data.dtype == np.uint8:
            xb = xb.astype(gc.float32) / 255
        w = gc.parameter(gc.nn.he_normal((784, 16), seed=0), name="W")
        v = gc.parameter(gc.nn.xavier_uniform((16, 10), seed=1), name="V")
        loss = gc.nn.cross_entropy(gc.relu(xb @ w) @ v, gc.take(ys, idx))
        step = gc.compile([images, ys, idx], loss, updates=gc.optim.SGD(0.1).updates(loss, [w, v]))
        losses = [float(step(data, labels, rng_idx)) for rng_idx in np.random.default_rng(2).integers(0, n, (4, batch))]
        runs.append((losses, w.value.copy(), v.value.copy()))
    (l8, w8, v8), (l32, w32, v32) = runs
    assert l8 == l32
    np.testing.assert_array_equal(w8, w32)
    np.testing.assert_array_equal(v8, v32)


def test_feeding_the_wrong_pixel_type_names_the_input():
    images = gc.placeholder((4, 3), gc.uint8, "images")
    f = gc.compile([images], images.astype(gc.float32) * 2)
    with pytest.raises(gc.InputError, match=r"input 0 \('images', expected u8\[4,3\]\): got dtype float32"):
        f(np.zeros((4, 3), np.float32))


def test_gradients_through_a_cast_from_uint8():
    x = gc.placeholder((3,), gc.uint8, "x")
    w = gc.parameter(np.ones(3, np.float32), name="w")
    y = gc.sum(x.astype(gc.float32) * w)
    with pytest.raises(gc.GraphError, match="cannot differentiate with respect to a uint8 tensor"):
        gc.grad(y, [x])
    (gw,) = gc.grad(y, [w])
    np.testing.assert_array_equal(gc.evaluate(gw, {x: np.array([1, 2, 200], np.uint8)}), [1, 2, 200])


def test_pad_value_must_fit_uint8():
    x = gc.placeholder((2,), gc.uint8)
    for bad in (300, -1, 2.5, float("nan"), float("inf")):
        with pytest.raises(gc.GraphError, match=rf"pad: constant_values={bad!r} is not a uint8 value"):
            gc.pad(x, 1, constant_values=bad)
    got = gc.compile([x], gc.pad(x, 1, constant_values=7))(np.array([1, 255], np.uint8))
    np.testing.assert_array_equal(got, [7, 1, 255, 7])


def test_the_printer_names_uint8():
    x = gc.placeholder((2, 3), gc.uint8, "pixels")
    text = gc.format_graph(gc.graph([x.astype(gc.float32)], [x], name="pixels"), locations=False)
    assert "input  %pixels:u8[2,3]" in text and "cast[dtype=f32] %pixels" in text, text


@pytest.mark.parametrize("dtype", [gc.uint8, gc.int32])
def test_bitwise_operators_on_integers_are_refused(dtype):
    """numpy's ~ & | on integers are bitwise (~img inverts an image); graphc has them for bool only."""
    x = gc.placeholder((4,), dtype, "x")
    for make, sym in [(lambda: ~x, "~"), (lambda: x & 15, "&"), (lambda: 15 | x, "|")]:
        with pytest.raises(gc.GraphError, match=rf"\{sym}: bitwise \{sym} on {dtype.name} is not supported"):
            make()
    b = gc.placeholder((4,), gc.bool_, "b")
    v = np.array([True, False, True, False])
    got = gc.compile([b], [~b, b & True, b | False])(v)
    np.testing.assert_array_equal(got[0], ~v)
    np.testing.assert_array_equal(got[1], v)
    np.testing.assert_array_equal(got[2], v)


def test_a_python_int_must_fit_the_array_type():
    x = gc.placeholder((3,), gc.uint8, "x")
    c = gc.placeholder((3,), gc.bool_, "c")
    with pytest.raises(gc.GraphError, match=r"where: the Python int -1 is out of range for uint8 \(0\.\.255\)"):
        gc.where(c, x, -1)
    with pytest.raises(gc.GraphError, match=r"add: the Python int 3000000000 is out of range for int32"):
        gc.placeholder((3,), gc.int32) + 3_000_000_000
    got = gc.compile([c, x], gc.where(c, x, 255))(np.array([True, False, True]), np.array([1, 2, 3], np.uint8))
    np.testing.assert_array_equal(got, [1, 255, 3])


def test_uint8_indices_are_read_unsigned():
    """Indices of 128-255 (a signed reading would make them negative, i.e. counted from the end)."""
    table = np.arange(256 * 3, dtype=np.float32).reshape(256, 3)
    idx = np.array([0, 127, 128, 200, 255, 1], np.uint8)
    t, i = gc.placeholder(table.shape, gc.float32), gc.placeholder(idx.shape, gc.uint8)
    u = gc.placeholder((6, 3), gc.float32)
    f = gc.compile([t, i, u], [gc.take(t, i, axis=0), gc.one_hot(i, 256), gc.scatter_add(u, i, 0, 256)])
    uv = np.ones((6, 3), np.float32)
    got = f(table, idx, uv)
    np.testing.assert_array_equal(got[0], table[idx])
    np.testing.assert_array_equal(got[1], np.eye(256, dtype=np.float32)[idx])
    want = np.zeros((256, 3), np.float32)
    np.add.at(want, idx, uv)
    np.testing.assert_array_equal(got[2], want)
    small = gc.placeholder((100, 3), gc.float32)  # 200 is out of range for 100 rows: an error, not row 200 - 256
    g = gc.compile([small, i], gc.take(small, i, axis=0))
    with pytest.raises(IndexError, match="out of range"):
        g(table[:100], idx)


def test_cross_entropy_takes_the_loaders_uint8_labels():
    logits = np.random.default_rng(0).standard_normal((5, 10)).astype(np.float32)
    labels = np.array([0, 9, 3, 3, 7], np.uint8)
    z, y = gc.placeholder(logits.shape, gc.float32), gc.placeholder(labels.shape, gc.uint8)
    got = gc.compile([z, y], gc.nn.cross_entropy(z, y))(logits, labels)
    lse = np.log(np.exp(logits.astype(np.float64)).sum(1))
    np.testing.assert_allclose(got, np.mean(lse - logits[np.arange(5), labels]), rtol=1e-5)


def test_scatter_add_updates_of_uint8_are_refused():
    u, i = gc.placeholder((3,), gc.uint8), gc.placeholder((3,), gc.int64)
    with pytest.raises(gc.GraphError, match=r"scatter_add: updates dtype uint8 is not supported .* storage type"):
        gc.scatter_add(u, i, 0, 4)


def test_exact_cast_chains_from_uint8_merge():
    """u8 -> i32 -> f32 is u8 -> f32 (every uint8 is exact in int32): one cast after simplify."""
    from graphc.passes.simplify import simplify
    x = gc.placeholder((4,), gc.uint8, "x")
    y = x.astype(gc.int32).astype(gc.float32)
    g = simplify(gc.graph([y], [x]))
    assert [n.op for n in g.nodes if n.op not in ("placeholder",)] == ["cast"]
    v = np.array([0, 1, 200, 255], np.uint8)
    np.testing.assert_array_equal(gc.compile([x], y)(v), v.astype(np.float32))


# ---------------------------------------------------------------- random chains of moves

def _random_moves(seed: int):
    """A uint8 input moved by 1-5 random storage ops, then converted and used in float math
    (so that the moves fuse into a computing kernel); the same steps in numpy alongside."""
    rng = np.random.default_rng(seed)
    shape = tuple(int(s) for s in rng.integers(1, 6, size=int(rng.integers(1, 4))))
    value = rng.integers(0, 256, size=shape, dtype=np.uint8)
    x = gc.placeholder(shape, gc.uint8, "x")
    feed = [(x, value)]
    t, v = x, value
    for _ in range(int(rng.integers(1, 6))):
        kind = rng.choice(["transpose", "slice", "reshape", "take", "where", "pad", "concat", "broadcast",
                           "expand"])
        if kind == "transpose" and v.ndim >= 2:
            perm = tuple(int(p) for p in rng.permutation(v.ndim))
            t, v = gc.transpose(t, perm), np.transpose(v, perm)
        elif kind == "slice" and v.ndim >= 1 and v.shape[0] >= 2:
            step = int(rng.choice([1, 2, -1]))
            t, v = t[::step], v[::step]
        elif kind == "reshape" and v.size:
            t, v = gc.reshape(t, (-1,)), v.reshape(-1)
        elif kind == "take" and v.ndim >= 1 and v.shape[0]:
            idx = rng.integers(-v.shape[0], v.shape[0], size=int(rng.integers(1, 5)))
            if rng.random() < 0.5:  # fed indices, uint8 when they fit
                idx = (idx % v.shape[0]).astype(np.uint8) if rng.random() < 0.5 else idx.astype(np.int64)
                pi = gc.placeholder(idx.shape, gc.as_dtype(idx.dtype), f"i{len(feed)}")
                feed.append((pi, idx))
                t = gc.take(t, pi, axis=0)
            else:
                t = gc.take(t, idx, axis=0)
            v = np.take(v, idx, axis=0)
        elif kind == "where":
            mask = rng.random(v.shape) < 0.5
            other = int(rng.integers(0, 256))
            t, v = gc.where(mask, t, other), np.where(mask, v, np.uint8(other))
        elif kind == "pad" and v.ndim >= 1:
            c = int(rng.integers(0, 256))
            t, v = gc.pad(t, 1, constant_values=c), np.pad(v, 1, constant_values=c)
        elif kind == "concat" and v.ndim >= 1:
            t, v = gc.concatenate([t, t[::-1]], axis=0), np.concatenate([v, v[::-1]], axis=0)
        elif kind == "broadcast":
            t, v = gc.broadcast_to(t, (2,) + v.shape), np.broadcast_to(v, (2,) + v.shape)
        elif kind == "expand":
            t, v = gc.expand_dims(t, 0), np.expand_dims(v, 0)
    to = rng.choice([gc.float32, gc.float64, gc.int32, gc.int64])
    scale = gc.placeholder(v.shape[-1:], to, "s")
    s_val = rng.integers(1, 4, size=v.shape[-1:]).astype(to.np_dtype)
    feed.append((scale, s_val))
    out = t.astype(to) * scale + 1
    want = v.astype(to.np_dtype) * s_val + to.np_dtype.type(1)
    return feed, [t, out], [v, want]


@pytest.mark.parametrize("seed", range(40))
def test_random_chains_of_uint8_moves_compile_exactly(seed):
    feed, outs, wants = _random_moves(seed)
    inputs = [p for p, _ in feed]
    got = gc.compile(inputs, outs)(*[val for _, val in feed])
    for g, w in zip(got, wants):
        assert g.dtype == w.dtype and g.shape == w.shape
        np.testing.assert_array_equal(g, w)
