"""Proofs of the derivative rules: symbolic with sympy, and numeric with finite differences.

For an op with inputs ``X`` (object arrays of sympy symbols) and output
``Y = op(X)``, the true vector-Jacobian product for a symbolic cotangent
``G`` is ``X̄_k = Σ_j G_j ∂Y_j/∂X_k`` (``sympy.diff``). The op's rule is run
through the autodiff pass on the same symbols (every op of the backward
graph evaluated by its reference on the sympy namespace) and must agree:

* ``proven``: ``simplify(rule - true) == 0`` for every element;
* ``points``: ops with kinks (relu, abs, max, min, where...) or where
  simplify cannot decide: both sides agree to 25 digits at random points away
  from the kinks;
* ``failed``: they disagree.

The numeric check compares the rule with central differences in float64.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .dtypes import float64
from .ir import Graph, Node, TensorType
from .ops.registry import Arg, OpDef, all_ops, make_node
from .xp import sympy_namespace

KINKED = {"abs", "relu", "maximum", "minimum", "max", "min", "where", "prod"}


@dataclass
class RuleCheck:
    """The outcome of checking one op's rule."""

    op: str
    symbolic: str  # proven | points | failed | skipped
    numeric_error: float | None  # max relative error vs finite differences
    detail: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.symbolic in ("proven", "points", "skipped") and (
            self.numeric_error is None or self.numeric_error <= 1.0)


def differentiable_ops() -> list[OpDef]:
    """Ops whose records carry a derivative rule."""
    return [op for op in all_ops() if op.kind != "leaf" and op.vjp is not None]


def _flat(args):
    for a in args:
        if isinstance(a, list):
            yield from a
        else:
            yield a


def ir_case(op: OpDef, max_size: int = 8):
    """A small IR-level instance of ``op``: (input types in float64, attrs, sample Args).

    Built from the op's examples: the first example whose call creates the op
    with float inputs of at most ``max_size`` elements each (preferring >= 2).
    """
    from .tensor import placeholder
    best = None
    for ex in op.examples:
        args = list(_flat(ex.args))
        if not any(isinstance(a, Arg) and a.dtype.is_float for a in args):
            continue
        phs = {}

        def make(a):
            if isinstance(a, Arg):
                p = placeholder(a.shape, float64 if a.dtype.is_float else a.dtype)
                phs[id(p.node)] = a
                return p
            if isinstance(a, list):
                return [make(x) for x in a]
            return a
        try:
            out = op.api(*[make(a) for a in ex.args], **ex.kwargs)
        except Exception:
            continue
        node = next((n for n in Graph.from_outputs([out.node]).nodes if n.op == op.name), None)
        if node is None:
            continue
        types = [i.type for i in node.inputs]
        floats = [t for t in types if t.dtype.is_float]
        if not node.type.dtype.is_float or not floats or any(t.size > max_size for t in floats) or any(t.size == 0 for t in types):
            continue
        # the Arg behind each input (for value ranges); inputs made by the API get defaults
        samples = [phs.get(id(i)) for i in node.inputs]
        score = (node.type.dtype == float64, all(a is not None for a in samples),
                 min(t.size for t in floats) >= 2, -sum(t.size for t in types))
        if best is None or score > best[0]:
            best = (score, types, dict(node.attrs), samples)
    if best is None:
        return None
    return best[1], best[2], best[3]


def _build(op: OpDef, types, attrs):
    """Placeholders, the op's node, a cotangent placeholder and the backward outputs."""
    from graphc.passes.autodiff import backward
    phs = [Node("placeholder", (), {}, t, name=f"x{k}") for k, t in enumerate(types)]
    y = make_node(op.name, phs, attrs, loc="<verify>:0")
    g = Node("placeholder", (), {}, y.type, name="g")
    wrt = [p for p in phs if p.type.dtype.is_float]
    grads = backward([y], [g], wrt)
    return phs, y, g, wrt, grads


def _values(types, samples, rng):
    vals = []
    for t, a in zip(types, samples):
        if a is None:
            a = Arg(t.shape, t.dtype)
        if t.dtype.is_float:
            v = a.sample(rng).astype(np.float64)
        else:
            v = Arg(t.shape, t.dtype, a.low, a.high).sample(rng)
        vals.append(v)
    return vals


def symbolic_check(op: OpDef, points: int = 3, seed: int = 0, simplify_budget: float = 20.0) -> tuple[str, str]:
    """Prove ``op``'s rule with sympy; returns (status, detail)."""
    import sympy
    case = ir_case(op)
    if case is None:
        return "skipped", "no small float example"
    types, attrs, samples = case
    phs, y, g, wrt, grads = _build(op, types, attrs)
    rng = np.random.default_rng(seed)
    base = _values(types, samples, rng)
    sym_in, symbols = [], []
    for k, (t, a, v) in enumerate(zip(types, samples, base)):
        if t.dtype.is_float:
            positive = a is not None and a.low >= 0
            syms = np.array([sympy.Symbol(f"x{k}_{i}", real=True, positive=positive or None)
                             for i in range(t.size)], dtype=object).reshape(t.shape)
            sym_in.append(syms)
            symbols.append((syms, a))
        else:
            sym_in.append(v)
    gsym = np.array([sympy.Symbol(f"g_{i}", real=True) for i in range(y.type.size)], dtype=object)
    gsym = gsym.reshape(y.type.shape)
    ns = sympy_namespace()
    from .interpreter import run_graph
    Y = np.asarray(run_graph(Graph(phs, [y]), sym_in, xp=ns)[0], dtype=object)
    grad_nodes = [t.node if t is not None else None for t in grads]
    live = [n for n in grad_nodes if n is not None]
    rule_vals = run_graph(Graph(phs + [g], live), sym_in + [gsym], xp=ns) if live else []
    rule_iter = iter(rule_vals)
    diffs = []
    for (syms, _), n in zip(symbols, grad_nodes):
        rule = next(rule_iter) if n is not None else np.zeros(syms.shape, dtype=object)
        rule = np.asarray(rule, dtype=object).reshape(-1)
        for k, s in enumerate(syms.reshape(-1)):
            true = sum((gj * sympy.diff(yj, s) for gj, yj in zip(gsym.reshape(-1), Y.reshape(-1))), sympy.Integer(0))
            diffs.append(sympy.sympify(rule[k]) - true)
    kinked = op.name in KINKED or any(e.has(sympy.Max, sympy.Min, sympy.Abs, sympy.sign, sympy.Piecewise,
                                            sympy.Heaviside, sympy.floor, sympy.ceiling) for e in diffs)
    if not kinked:
        start = time.perf_counter()
        proven = True
        for d in diffs:
            if time.perf_counter() - start > simplify_budget:
                proven = False
                break
            if sympy.simplify(d) != 0 and sympy.simplify(d.rewrite(sympy.exp)) != 0:
                proven = False
                break
        if proven:
            return "proven", f"{len(diffs)} elements simplify to 0"
    # points away from kinks: random values in each input's range, random cotangents
    for p in range(points):
        subs = {}
        for syms, a in symbols:
            vals = (a or Arg(syms.shape, float64)).sample(rng).astype(np.float64).reshape(-1)
            subs.update({s: sympy.Float(float(v), 40) for s, v in zip(syms.reshape(-1), vals)})
        subs.update({s: sympy.Float(float(v), 40) for s, v in zip(gsym.reshape(-1), rng.normal(size=gsym.size))})
        for d in diffs:
            val = sympy.N(d.subs(subs), 30)
            if not val.is_number or abs(complex(val)) > 1e-20:
                return "failed", f"rule - true = {val} at a sample point"
    why = "kinked: compared at sample points" if kinked else "simplify inconclusive: compared at sample points"
    return "points", f"{points} random points, 25 digits ({why})"


def numeric_check(op: OpDef, seed: int = 0) -> float | None:
    """Max relative error (in units of tolerance) of the rule vs central differences, float64."""
    from .autodiff import check_grads
    case = ir_case(op, max_size=64)
    if case is None:
        return None
    types, attrs, samples = case
    rng = np.random.default_rng(seed + 1)
    vals = _values(types, samples, rng)
    float_idx = [i for i, t in enumerate(types) if t.dtype.is_float]

    def fn(*xs):
        from .tensor import Tensor, constant
        full = []
        it = iter(xs)
        for i, t in enumerate(types):
            full.append(next(it).node if i in float_idx else constant(vals[i]).node)
        return Tensor(make_node(op.name, full, attrs))
    # an op whose output is float32 (a narrowing cast) is checked at float32 resolution
    lossy = make_node(op.name, [Node("placeholder", (), {}, t, name="t") for t in types], attrs).type.dtype != float64
    eps, rtol, atol = (1e-3, 1e-3, 1e-4) if lossy else (1e-6, 1e-5, 1e-7)
    return check_grads(fn, [vals[i] for i in float_idx], eps=eps, rtol=rtol, atol=atol, seed=seed)


def check_op(op: OpDef, symbolic: bool = True) -> RuleCheck:
    start = time.perf_counter()
    status, detail = symbolic_check(op) if symbolic else ("skipped", "")
    try:
        err = numeric_check(op)
    except AssertionError as e:
        err = float("inf")
        detail = (detail + "; " if detail else "") + str(e)
    return RuleCheck(op.name, status, err, detail, time.perf_counter() - start)


def verify_all(ops=None, symbolic: bool = True, out=print) -> list[RuleCheck]:
    """Check every differentiable op (or those named); print a table; return the results."""
    chosen = differentiable_ops() if not ops else [o for o in differentiable_ops() if o.name in set(ops)]
    out(f"{'op':<14} {'symbolic':<9} {'numeric err':>12} {'time':>7}  detail")
    results = []
    for op in chosen:
        r = check_op(op, symbolic)
        results.append(r)
        num = "n/a" if r.numeric_error is None else f"{r.numeric_error:.2e}"
        out(f"{r.op:<14} {r.symbolic:<9} {num:>12} {r.seconds:>6.1f}s  {r.detail}")
    bad = [r.op for r in results if not r.ok]
    out(f"\n{len(results)} rules checked: {sum(r.symbolic == 'proven' for r in results)} proven symbolically, "
        f"{sum(r.symbolic == 'points' for r in results)} at sample points, {len(bad)} failed"
        + (f" ({', '.join(bad)})" if bad else ""))
    return results


del TensorType
