"""Minimal reproductions of the bugs found by the graph fuzzer (tests/fuzz_graphs.py, bench/fuzz.py).

Each test is the smallest graph that shows one bug, with the expected value
computed by numpy. They are marked ``xfail(strict=True)``: when a bug is
fixed its test starts passing, pytest reports XPASS as a failure, and the
marker is removed (the test then guards against the bug coming back).
The fuzz seeds that first hit each bug are in the reason string.
"""

from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc.interpreter import run_graph
from graphc.ir import Graph


def _xfail(k, what):
    return pytest.mark.xfail(strict=True, reason=f"fuzz bug #{k}: {what}")


# ---------------------------------------------------------------- bug 1: epilogue fusion and dtypes

def test_cast_after_reduction():
    """Bug 1 (fixed in 3f033db): a cast fused as the epilogue of a reduction stored the f32 accumulator
    into the f64 buffer (compile error)."""
    x = gc.placeholder((4, 3), gc.float32, name="x")
    y = gc.cast(gc.sum(x, axis=0), gc.float64)
    xv = np.arange(12, dtype=np.float32).reshape(4, 3)
    f = gc.compile([x], y)
    np.testing.assert_array_equal(f(xv), xv.sum(axis=0).astype(np.float64))


def test_comparison_after_reduction():
    """Bug 1: a comparison epilogue after a reduction (bool buffer, f32 accumulator)."""
    x = gc.placeholder((4, 3), gc.float32, name="x")
    y = gc.sum(x, axis=0) > 10
    xv = np.arange(12, dtype=np.float32).reshape(4, 3)
    f = gc.compile([x], y)
    np.testing.assert_array_equal(f(xv), xv.sum(axis=0) > 10)


def test_cast_after_matmul_silently_wrong():
    """Bug 1: matmul + cast epilogue; sgemm wrote float32 results into the float64 buffer (silently
    wrong values)."""
    a = gc.placeholder((2, 2), gc.float32, name="a")
    y = gc.cast(a @ a, gc.float64)
    av = np.array([[1, 2], [3, 4]], np.float32)
    f = gc.compile([a], y)
    np.testing.assert_array_equal(f(av), (av @ av).astype(np.float64))


def test_int_matmul_abs_cast_epilogue():
    """Bug 1: int matmul + abs lowered on the f64 buffer of the following cast (LLVM parse error)."""
    a = gc.placeholder((2, 2), gc.int64, name="a")
    y = gc.cast(gc.abs(a @ a), gc.float64)
    av = np.array([[1, -2], [3, 4]], np.int64)
    f = gc.compile([a], y)
    np.testing.assert_array_equal(f(av), np.abs(av @ av).astype(np.float64))


# ---------------------------------------------------------------- bug 2: integer matmul operands

def test_int_matmul_of_computed_operand():
    """Bug 2 (fixed in 3f033db): an integer matmul operand that is a computed value got no buffer
    (AttributeError in the naive loop)."""
    a = gc.placeholder((2, 3), gc.int32, name="a")
    b = gc.placeholder((3, 2), gc.int32, name="b")
    y = gc.matmul(a + 1, b)
    av = np.arange(6, dtype=np.int32).reshape(2, 3)
    bv = np.arange(6, dtype=np.int32).reshape(3, 2)
    f = gc.compile([a, b], y)
    np.testing.assert_array_equal(f(av, bv), (av + 1) @ bv)


# ---------------------------------------------------------------- bug 3: reshape of strided views

def test_reshape_of_transpose():
    """Bug 3 (fixed in 3f033db): reshape of a non-contiguous view did not compile (NotImplementedError)."""
    x = gc.placeholder((2, 3), gc.float32, name="x")
    y = gc.reshape(x.T, (6,))
    xv = np.arange(6, dtype=np.float32).reshape(2, 3)
    f = gc.compile([x], y)
    np.testing.assert_array_equal(f(xv), xv.T.reshape(6))


def test_argmax_of_transpose():
    """Bug 3: argmax with axis=None flattens with a reshape, so argmax of a transpose did not compile."""
    x = gc.placeholder((2, 3), gc.float32, name="x")
    y = gc.argmax(x.T)
    xv = np.array([[0, 5, 1], [2, 3, 4]], np.float32)
    f = gc.compile([x], y)
    assert int(f(xv)) == int(np.argmax(xv.T))


# ---------------------------------------------------------------- bug 4: log_softmax with +inf

def test_log_softmax_with_posinf():
    """Bug 4 (fixed in 3f033db): compiled log_softmax of a row holding +inf gave nan everywhere."""
    x = gc.placeholder((3,), gc.float32, name="x")
    y = gc.log_softmax(x)
    xv = np.array([np.inf, 1.0, 2.0], np.float32)
    f = gc.compile([x], y)
    want = gc.evaluate(y, {x: xv})
    np.testing.assert_array_equal(want, np.array([np.nan, -np.inf, -np.inf], np.float32))
    np.testing.assert_array_equal(f(xv), want)


# ---------------------------------------------------------------- bug 5: interpreter, softmax over an empty axis

def test_softmax_over_empty_axis_interpreter():
    """Bug 5 (fixed in 3f033db): the interpreter's softmax over an axis of length 0 raised ValueError."""
    x = gc.placeholder((0, 3), gc.float32, name="x")
    xv = np.zeros((0, 3), np.float32)
    for fn in (gc.softmax, gc.log_softmax):
        y = fn(x, axis=0)
        assert gc.evaluate(y, {x: xv}).shape == (0, 3)


# ---------------------------------------------------------------- bug 6: interpreter, pad of a 0-d array

def test_pad_of_scalar_interpreter():
    """Bug 6 (fixed in 3f033db): the interpreter's pad of a 0-d tensor raised TypeError."""
    x = gc.placeholder((), gc.float32, name="x")
    y = gc.pad(x, 1)
    assert float(gc.evaluate(y, {x: np.float32(2.0)})) == 2.0


# ---------------------------------------------------------------- bug 7: scatter_add axis range (grad of take)

def test_grad_of_take_scalar_index_last_axis():
    """Bug 7 (fixed in 3f033db): scatter_add rejected axis == updates.ndim, so grad of take(x, scalar,
    axis=-1) failed."""
    x = gc.placeholder((4, 4), gc.float64, name="x")
    y = gc.sum(gc.take(x, 2, axis=1))
    gx = gc.grad(y, x)
    want = np.zeros((4, 4))
    want[:, 2] = 1
    np.testing.assert_array_equal(gc.evaluate(gx, {x: np.ones((4, 4))}), want)


# ---------------------------------------------------------------- bug 8: inlined 0-d constants are not buffers

def test_take_from_filled_array():
    """Bug 8 (fixed in 3f033db): take from broadcast_to(0-d constant): the inlined constant has no buffer."""
    i = gc.placeholder((2,), gc.int64, name="i")
    y = gc.take(gc.zeros((4, 3)), i, axis=0)
    f = gc.compile([i], y)
    np.testing.assert_array_equal(f(np.array([0, 3])), np.zeros((2, 3), np.float32))


def test_matmul_with_filled_1x1_operand():
    """Bug 8: a 1x1 broadcast 0-d constant passed blas_layout but had no buffer (AttributeError)."""
    a = gc.placeholder((3, 1), gc.float32, name="a")
    y = gc.matmul(a, gc.ones((1, 1)))
    av = np.arange(3, dtype=np.float32).reshape(3, 1)
    f = gc.compile([a], y)
    np.testing.assert_array_equal(f(av), av)


# ---------------------------------------------------------------- bug 9: gathers in unselected branches

# fixed: fuzz bug #9: a take whose index tensor is EMPTY, inside pad or concatenate, raises a spurious IndexError: the Gather is evaluated for every output element (Select evaluates both branches), its index is loaded 'guarded' from a zero-size buffer (garbage, read outside the array) and the bounds check sets the status
def test_concatenate_with_take_of_empty_indices():
    x = gc.placeholder((3,), gc.float32, name="x")
    i = gc.placeholder((0,), gc.int64, name="i")
    y = gc.concatenate([gc.take(x, i), x])
    f = gc.compile([x, i], y)
    xv = np.arange(3, dtype=np.float32)
    np.testing.assert_array_equal(f(xv, np.zeros(0, np.int64)), xv)


# fixed: fuzz bug #9: the same with pad: pad(take(x, empty indices)) raises IndexError instead of returning the padding
def test_pad_of_take_of_empty_indices():
    x = gc.placeholder((3,), gc.float32, name="x")
    i = gc.placeholder((0,), gc.int64, name="i")
    y = gc.pad(gc.take(x, i), (1, 1), constant_values=5.0)
    f = gc.compile([x, i], y)
    np.testing.assert_array_equal(f(np.arange(3, dtype=np.float32), np.zeros(0, np.int64)),
                                  np.full(2, 5.0, np.float32))


# ---------------------------------------------------------------- bugs 10-12: parameter updates

# fixed: fuzz bug #10: updates are applied as copies in sequence after the kernels, so an update whose new value IS another updated parameter reads its NEW value: swapping two parameters (p1 <- p2, p2 <- p1) leaves both equal to old p2 (codegen/plan.py plan: copies)
def test_update_swap_parameters():
    x = gc.placeholder((2,), gc.float32, name="x")
    p1 = gc.parameter(np.array([1.0, 2.0], np.float32), name="p1")
    p2 = gc.parameter(np.array([3.0, 4.0], np.float32), name="p2")
    f = gc.compile([x], gc.sum(x), updates=[(p1, p2), (p2, p1)])
    f(np.ones(2, np.float32))
    np.testing.assert_array_equal(p1.value, [3.0, 4.0])
    np.testing.assert_array_equal(p2.value, [1.0, 2.0])


# fixed: fuzz bug #10: an in-place update of p1 (elementwise kernel writing p1's buffer) runs before the final copy p2 <- p1, which then copies the NEW p1: the in-place check looks at kernel reads of p1 but not at the copies (codegen/plan.py: last_read ignores update copies)
def test_update_in_place_then_copy_of_old_value():
    x = gc.placeholder((2,), gc.float32, name="x")
    p1 = gc.parameter(np.array([1.0, 2.0], np.float32), name="p1")
    p2 = gc.parameter(np.array([3.0, 4.0], np.float32), name="p2")
    f = gc.compile([x], gc.sum(x) + gc.sum(p2), updates=[(p1, p1 * 2.0 + x), (p2, p1)])
    f(np.ones(2, np.float32))
    np.testing.assert_array_equal(p1.value, [3.0, 5.0])
    np.testing.assert_array_equal(p2.value, [1.0, 2.0])


def test_update_of_unread_parameter():
    """Bug 11 (fixed in d034757): updating a parameter the graph never reads raised KeyError in plan()
    (no buffer slot for it)."""
    x = gc.placeholder((2,), gc.float32, name="x")
    p = gc.parameter(np.zeros(2, np.float32), name="p")
    f = gc.compile([x], gc.sum(x), updates=[(p, x * 2.0)])
    f(np.array([1.0, 2.0], np.float32))
    np.testing.assert_array_equal(p.value, [2.0, 4.0])


# fixed: fuzz bug #12: in-place GEMM update C = beta*W + alpha*A@B is chosen even when W itself is A or B (w <- w - 0.5 * w @ w): BLAS reads W while overwriting it; wrong values for e.g. 8x8 and 33x33 (codegen/plan.py gemm_accumulate does not check the operands for the parameter)
def test_gemm_in_place_update_reading_the_parameter():
    x = gc.placeholder((2,), gc.float32, name="x")
    rng = np.random.default_rng(0)
    w = gc.parameter(rng.normal(size=(33, 33)).astype(np.float32), name="w")
    w0 = w.value.copy()
    f = gc.compile([x], gc.sum(x), updates=[(w, w - 0.5 * (w @ w))])
    f(np.ones(2, np.float32))
    np.testing.assert_allclose(w.value, w0 - 0.5 * (w0 @ w0), rtol=1e-4, atol=1e-3)


# fixed: fuzz bug #13: an elementwise kernel is chosen to write a parameter's new value in place when the parameter's own readers are elementwise, even if a view (transpose, reversed slice, broadcast) comes after them on the way to the root: p <- transpose(-p) reads elements already overwritten (codegen/plan.py update_in_
def test_in_place_update_through_a_transpose():
    x = gc.placeholder((2,), gc.float32, name="x")
    p = gc.parameter(np.arange(9, dtype=np.float32).reshape(3, 3), name="p")
    p0 = p.value.copy()
    f = gc.compile([x], gc.sum(x), updates=[(p, gc.transpose(-p))])
    f(np.ones(2, np.float32))
    np.testing.assert_array_equal(p.value, -p0.T)


# fixed: fuzz bug #13: the same with a reversed slice: q <- (2 q)[::-1]
def test_in_place_update_through_a_reversed_slice():
    x = gc.placeholder((2,), gc.float32, name="x")
    q = gc.parameter(np.arange(4, dtype=np.float32), name="q")
    q0 = q.value.copy()
    f = gc.compile([x], gc.sum(x), updates=[(q, (q * 2.0)[::-1])])
    f(np.ones(2, np.float32))
    np.testing.assert_array_equal(q.value, (q0 * 2.0)[::-1])


# ---------------------------------------------------------------- bug 14: cache key vs splat constants

# fixed: fuzz bug #14: the compiled-code cache key is the PRINTED input graph (made before the pass pipeline), which shows constants of more than 8 elements as <...>; simplify/fold turn a uniform constant into an inlined immediate, so two graphs that differ only in that constant's value share machine code: the second retu
def test_cache_key_tells_large_uniform_constants_apart():
    got = []
    for c in (1.0, 2.0):
        x = gc.placeholder((16,), gc.float32, name="x")
        y = x + gc.constant(np.full(16, c, np.float32))
        f = gc.compile([x], y)
        got.append(f(np.zeros(16, np.float32)))
    np.testing.assert_array_equal(got[0], np.ones(16, np.float32))
    np.testing.assert_array_equal(got[1], np.full(16, 2.0, np.float32))


# ---------------------------------------------------------------- bug 15: compile time blow-up

_HANG = """
import numpy as np, graphc as gc
x = gc.placeholder((1,), gc.float64, name="x")
y = gc.tanh(gc.broadcast_to(gc.power(x, -1.7), (16,)))
f = gc.compile([x], y)
np.testing.assert_allclose(f(np.array([1.5])), np.full(16, np.tanh(1.5 ** -1.7)), rtol=1e-12)
"""


# fixed: fuzz bug #15: compiling tanh(pow(x, c)) of a BROADCAST float64 scalar into 16 elements does not finish (LLVM's O3 pipeline ran > 10 min; 12 or 24 elements take 0.2 s, pow alone 2 s, tanh(exp(.)) 37 s): the loop re-loads the stride-0 input every iteration (no noalias / invariant hoisting in codegen/emit.py) and th
def test_compile_time_of_transcendental_chain_on_broadcast_scalar():
    import os
    import subprocess
    import sys
    env = dict(os.environ, GRAPHC_CACHE="0")
    try:
        subprocess.run([sys.executable, "-c", _HANG], env=env, timeout=10, check=True)
    except subprocess.TimeoutExpired:
        pytest.fail("compile did not finish in 10 s (it normally takes 0.2 s)")


# ---------------------------------------------------------------- checker rules (not compiler bugs)

def test_fuzz_checker_skips_float32_overflow_borderline_in_float64_outputs():
    """Seed 555320: a float32 matmul whose products overflow to +inf and -inf is nan in numpy's
    order and finite with FMA contraction; the nan reached a float64 logsumexp. Elements whose
    class (finite / inf / nan) a float64 shadow of the float32 parts changes are borderline for
    float64 outputs too, so the checker accepts either."""
    import fuzz_graphs
    fuzz_graphs.check(555320)


def test_fuzz_checker_accepts_order_dependent_overflow_of_sums():
    """Seed 630848: a sum over pairs (a, -a) of float64 values near the maximum is 0 added
    pairwise and nan in numpy's order (its 8 strided accumulators overflow to -inf and +inf).
    Where the cone's largest value times the accumulation length nears the type's maximum,
    finite / inf / nan results depend on the order and the checker accepts either."""
    import fuzz_graphs
    fuzz_graphs.check(630848)


def test_fuzz_checker_accepts_nan_gradient_through_an_inf_the_loss_drops():
    """Seed 556384: ``1 / -(|x / (x - x)| + 0.2)`` on the diagonal: the forward value is inf
    there, the loss loses it (1/inf = 0), finite differences see a constant, and the chain
    rule multiplies 0 by inf (nan), as every reverse-mode autodiff does. The checker allows a
    nan gradient where the forward pass had non-finite values."""
    import fuzz_graphs
    fuzz_graphs.check_grad(556384)


def test_fuzz_checker_excuses_a_nan_only_downstream_of_its_input():
    """The nan excuse is per input: an inf that depends only on ``y`` does not excuse a nan
    gradient of ``x``; and a nan that finite differences do not see is a disagreement."""
    import fuzz_graphs
    x = gc.placeholder((3,), gc.float64, name="x")
    y = gc.placeholder((3,), gc.float64, name="y")
    z, w = x * 2.0, 1.0 / (y - y)
    loss = gc.sum(z) + gc.sum(w * 0.0)
    g = Graph([x.node, y.node], [loss.node])
    below_x, below_y = fuzz_graphs._downstream(g, x.node), fuzz_graphs._downstream(g, y.node)
    assert id(z.node) in below_x and id(w.node) not in below_x and id(loss.node) in below_x
    assert id(w.node) in below_y and id(z.node) not in below_y
    feed = [np.ones(3), np.ones(3)]
    f = lambda v: float(np.sum(2.0 * v[0]))  # noqa: E731
    nan_grad = np.array([2.0, np.nan, 2.0])
    assert fuzz_graphs._fd_agrees(f, feed, 0, nan_grad, 6.0, nan_ok=False)[0] == (1,)
    assert fuzz_graphs._fd_agrees(f, feed, 0, nan_grad, 6.0, nan_ok=True) is None


def test_fuzz_checker_accepts_a_nan_jvp_through_an_inf():
    """Seed 700756: ``logsumexp`` over an empty axis is -inf; its square goes through tanh to a
    finite loss. The gradient with respect to the empty input is empty (<grad, v> = 0), while
    forward mode multiplies the 0 tangent by the inf: nan, as in any forward-mode autodiff."""
    import fuzz_graphs
    fuzz_graphs.check_grad(700756)
    fuzz_graphs.check_grad(701645)  # the other way round: a nan gradient, a 0 jvp


def test_fuzz_checker_accepts_nan_gradient_through_an_infinite_local_derivative():
    """Seed 721189: ``sqrt(x - x)``: every forward value is finite, but sqrt's derivative at 0 is
    inf and d(x - x)/dx is 0, so the chain rule gives nan where finite differences see a
    constant (JAX and PyTorch give nan too). The backward pass's own inf excuses it."""
    import fuzz_graphs
    fuzz_graphs.check_grad(721189)


def test_fuzz_checker_accepts_either_side_of_a_domain_boundary_within_rounding():
    """Seed 720765: ``rsqrt(logsumexp(log_softmax(x)))``: the logsumexp is 0 up to rounding
    (-1e-17 in numpy's order: rsqrt gives nan; 0 in the compiled order: inf). The noise
    shadows add an accumulation's absolute rounding error both ways, so one of them lands on
    the other side of 0 and the element is borderline; rsqrt of a clearly negative value
    must still be nan."""
    import fuzz_graphs
    fuzz_graphs.check(720765)
    x = gc.placeholder((3,), gc.float64, name="x")
    near_zero = gc.logsumexp(gc.log_softmax(x, axis=0), axis=0)
    g = Graph([x.node], [gc.rsqrt(near_zero).node, gc.rsqrt(near_zero - 1.0).node])
    feed = [np.array([-1.0, -4.0, 4.0])]
    plus, minus = (fuzz_graphs._noisy_values(g, feed, 0, sign=s) for s in (1.0, -1.0))
    assert np.isnan(plus[0]) != np.isnan(minus[0])  # one each side of 0
    assert np.isnan(plus[1]) and np.isnan(minus[1])  # rsqrt(-1 +- rounding): nan both times
    ref = run_graph(g, feed)
    shadows = fuzz_graphs._shadow_values(g, feed)
    cone = (8.0, 3, False)
    got0 = np.float64(np.inf) if np.isnan(ref[0]) else np.float64(np.nan)
    fuzz_graphs.compare_output(0, g.outputs[0], np.asarray(got0), ref[0], False,
                               fuzz_graphs._shadows_of(shadows, 0, gc.float64), cone)
    with pytest.raises(fuzz_graphs.Mismatch):
        fuzz_graphs.compare_output(1, g.outputs[1], np.asarray(np.float64(np.inf)), ref[1], False,
                                   fuzz_graphs._shadows_of(shadows, 1, gc.float64), cone)


# ---------------------------------------------------------------- bug 16: hoisted values by id()

# fixed: fuzz bug #16 (seeds 600938, 601498, 600034g, found the day the loop split learned to
# unroll short rows): loop-invariant values are emitted once per kernel and memoized by id() of
# their expression; the specialized parts of a split loop are made-up expressions freed after
# their part, so the next part's expression could get a freed id and reuse a wrong value
# (stack([-x, x]) of a broadcast scalar stored -x twice; an LLVM IR parse error elsewhere).
def test_split_parts_of_loop_invariant_values():
    x = gc.placeholder((1, 1), gc.float32, name="x")
    s = gc.stack([-x, x], axis=2)
    b = gc.broadcast_to(s, (6, 2, 1, 1, 2))
    f = gc.compile([x], [gc.scatter_add(b, gc.constant(np.array([0, -2])), 1, 2), b])
    xv = np.array([[2.5]], np.float32)
    want_b = np.broadcast_to(np.stack([-xv, xv], axis=2), (6, 2, 1, 1, 2))
    got = f(xv)
    np.testing.assert_array_equal(got[1], want_b)
    np.testing.assert_array_equal(got[0][:, 0], want_b[:, 0] + want_b[:, 1])
    for seed in (600938, 601498):
        import fuzz_graphs
        fuzz_graphs.check(seed)
