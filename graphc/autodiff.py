"""The user's derivatives: grad, value_and_grad, vjp, jvp, hvp, hessian, check_grads.

These build gradient tensors in the same graph as the function (the joint
form of ``graphc.passes.autodiff.backward``), so they can be evaluated,
compiled, printed and differentiated again. ``gc.grad_program`` gives the
split form: a forward graph with residual outputs and a separate backward
graph.

Forward mode (``jvp``) transposes the reverse mode: the VJP
``u ↦ uᵀ J`` is linear in ``u``, so ``J t = ∂/∂u ⟨uᵀ J, t⟩``; every op's
rule serves both modes and is tested the same way.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from .errors import GraphError
from .ir import Graph
from .tensor import Tensor, as_tensor, constant, placeholder


def _listify(xs):
    single = isinstance(xs, Tensor)
    return ([xs] if single else list(xs)), single


def _backward():
    from graphc.passes.autodiff import backward
    return backward


def _complete(grads, xs):
    from .ops.shape import zeros_like
    return [g if g is not None else zeros_like(x) for g, x in zip(grads, xs)]


def vjp(ys, xs, cotangents):
    """Σ_k ⟨cotangents_k, ∂ys_k/∂xs⟩: vector-Jacobian products, one tensor per x."""
    ys, _ = _listify(ys)
    xs, single = _listify(xs)
    cts = [as_tensor(c) for c in (cotangents if isinstance(cotangents, (list, tuple)) else [cotangents])]
    if len(cts) != len(ys):
        raise GraphError("vjp", f"{len(ys)} outputs but {len(cts)} cotangents")
    for y, c in zip(ys, cts):
        if c.shape != y.shape:
            raise GraphError("vjp", f"cotangent {c.type} does not match output {y.type}", operands=[y.type, c.type])
    grads = _complete(_backward()([y.node for y in ys], [c.node for c in cts], [x.node for x in xs]), xs)
    return grads[0] if single else grads


def grad(y, xs):
    """Gradient of the scalar ``y`` with respect to each of ``xs`` (a Tensor or a list).

    >>> gw, gb = gc.grad(loss, [w, b])
    """
    if not isinstance(y, Tensor):
        raise TypeError(f"grad() takes a graph Tensor, got {type(y).__name__}")
    if y.shape != ():
        raise GraphError("grad", f"the output must be a scalar, got {y.type}; use gc.vjp with a cotangent",
                         operands=[y.type])
    if not y.dtype.is_float:
        raise GraphError("grad", f"the output must be a float value, got {y.type}", operands=[y.type])
    xs_list, single = _listify(xs)
    for x in xs_list:
        if not x.dtype.is_float:
            raise GraphError("grad", f"cannot differentiate with respect to a {x.dtype.name} tensor",
                             operands=[x.type])
    from .ir import created_by
    with created_by("autodiff"):
        seed = constant(1, dtype=y.dtype)
    grads = vjp(y, xs_list, seed)
    return grads[0] if single else grads


def value_and_grad(y, xs):
    """``(y, grad(y, xs))``."""
    return y, grad(y, xs)


def jvp(ys, xs, tangents):
    """Jacobian-vector products ``Σ_i ∂ys/∂xs_i · tangents_i`` (forward mode), one per y.

    Computed by transposing the VJP: with ``u`` a cotangent variable,
    ``J t = ∂/∂u Σ ⟨vjp(u), t⟩`` (the VJP is linear in ``u``).
    """
    from .ops.reduce import sum as reduce_sum
    ys_list, single_y = _listify(ys)
    xs_list, _ = _listify(xs)
    ts = [as_tensor(t) for t in (tangents if isinstance(tangents, (list, tuple)) else [tangents])]
    if len(ts) != len(xs_list):
        raise GraphError("jvp", f"{len(xs_list)} inputs but {len(ts)} tangents")
    outs = []
    for y in ys_list:
        u = constant(np.zeros(y.shape, y.dtype.np_dtype))
        grads = vjp(y, xs_list, u)
        s = None
        for g, t in zip(grads, ts):
            if t.shape != g.shape:
                raise GraphError("jvp", f"tangent {t.type} does not match input {g.type}", operands=[t.type])
            term = reduce_sum(g * t)
            s = term if s is None else s + term
        outs.append(vjp(s, u, constant(1, dtype=s.dtype)))
    return outs[0] if single_y else outs


def hvp(y, x, v):
    """Hessian-vector product ``(∂²y/∂x²) v`` of a scalar ``y``: the gradient of ⟨∇y, v⟩."""
    from .ops.reduce import sum as reduce_sum
    g = grad(y, x)
    return grad(reduce_sum(g * as_tensor(v)), x)


def hessian(y, x):
    """The full Hessian ``∂²y/∂x_i∂x_j`` of a scalar ``y``, shape ``x.shape + x.shape``.

    One reverse pass per element of ``x`` over the gradient graph.
    """
    from .ops.shape import reshape, stack
    g = reshape(grad(y, x), (x.size,))
    rows = [reshape(grad(g[i], x), (x.size,)) for i in range(x.size)]
    if not rows:
        return reshape(g, x.shape + x.shape)
    return reshape(stack(rows, axis=0), x.shape + x.shape)


def grad_program(y, wrt, name: str = "graph"):
    """The split form: forward graph (with residual outputs) + separate backward graph.

    Returns a ``GradProgram``; ``program.backward`` prints with the shared printer
    and runs on its own with the interpreter.
    """
    from graphc.passes.autodiff import grad_graph
    wrt_list, _ = _listify(wrt)
    g = Graph.from_outputs([y.node], name=name)
    return grad_graph(g, [w.node for w in wrt_list])


# ---------------------------------------------------------------- numeric checks

def numeric_grad(f: Callable[[list], float], values: list, eps: float = 1e-6) -> list:
    """Central differences ``(f(x + ε e_i) - f(x - ε e_i)) / 2ε`` of a scalar function, per element."""
    out = []
    for k, v in enumerate(values):
        v = np.array(v, dtype=np.float64)
        gk = np.zeros_like(v)
        flat = v.reshape(-1)
        for i in range(flat.size):
            old = flat[i]
            flat[i] = old + eps
            plus = f([*values[:k], v, *values[k + 1:]])
            flat[i] = old - eps
            minus = f([*values[:k], v, *values[k + 1:]])
            flat[i] = old
            gk.reshape(-1)[i] = (plus - minus) / (2 * eps)
        out.append(gk)
    return out


def check_grads(fn_or_graph, inputs: Sequence, eps: float = 1e-6, rtol: float = 1e-5, atol: float = 1e-7,
                seed: int = 0) -> float:
    """Compare graphc's gradients with central finite differences in float64.

    ``fn_or_graph``: a function of Tensors returning a Tensor, or a Graph
    (its output 0 is used, with respect to its inputs). A non-scalar output
    is projected on a fixed random direction. Returns the largest error
    relative to ``atol + rtol·|numeric|``; raises AssertionError naming the
    input and element where the two disagree.
    """
    from .interpreter import run_graph
    from .ops.reduce import sum as reduce_sum
    values = [np.asarray(v, dtype=np.float64) for v in inputs]
    if isinstance(fn_or_graph, Graph):
        from graphc.passes.autodiff import grad_graph
        graph = fn_or_graph
        if len(graph.inputs) != len(values):
            raise ValueError(f"graph takes {len(graph.inputs)} inputs, got {len(values)}")
        out_t = graph.outputs[0].type
        rng = np.random.default_rng(seed)
        proj = rng.normal(size=out_t.shape).astype(out_t.dtype.np_dtype)

        def f(vals):
            return float(np.sum(run_graph(graph, vals)[0].astype(np.float64) * proj))
        program = grad_graph(graph, graph.inputs)
        _, analytic = program.run(values, cotangent=proj)
    else:
        phs = [placeholder(v.shape, np.float64, name=f"arg{k}") for k, v in enumerate(values)]
        y = fn_or_graph(*phs)
        rng = np.random.default_rng(seed)
        if y.shape != ():
            y = reduce_sum(y * constant(rng.normal(size=y.shape)))
        y = y if y.dtype.is_float and y.dtype.itemsize == 8 else y.astype(np.float64)
        grads = grad(y, phs)
        g = Graph.from_outputs([y.node] + [t.node for t in grads], [p.node for p in phs])

        def f(vals):
            return float(run_graph(g, vals)[0])
        analytic = run_graph(g, values)[1:]
    numeric = numeric_grad(f, values, eps)
    worst = 0.0
    for k, (a, n) in enumerate(zip(analytic, numeric)):
        a = np.asarray(a, dtype=np.float64)
        err = np.abs(a - n) / (atol + rtol * np.abs(n))
        if err.size and np.nanmax(err) > worst:
            worst = float(np.nanmax(err))
        bad = ~(err <= 1.0)
        if bad.any():
            i = np.unravel_index(np.argmax(np.where(bad, np.inf, err)), a.shape) if a.shape else ()
            raise AssertionError(f"gradient of input {k} at {tuple(int(j) for j in i)}: graphc {a[i]!r}, "
                                 f"finite differences {n[i]!r} (rtol {rtol}, atol {atol})")
    return worst
