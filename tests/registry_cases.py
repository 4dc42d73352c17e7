"""Registry-driven test cases: every op's examples as pytest parameters.

A new op with ``api``, ``oracle`` and ``examples`` in its record is picked up
here with no change to the tests.
"""

from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc.ops.registry import Arg


def compute_ops():
    """Every registered op that is not a leaf."""
    return [op for op in gc.all_ops() if op.kind not in ("leaf", "fused")]


def example_params():
    """pytest params ``(op, example)`` with readable ids, over the whole registry."""
    params = []
    for op in compute_ops():
        for i, ex in enumerate(op.examples):
            params.append(pytest.param(op, ex, id=f"{op.name}-{i}-{describe(ex)}"))
    return params


def describe(ex) -> str:
    def one(a):
        if isinstance(a, Arg):
            return f"{a.dtype.short}{list(a.shape)}".replace(" ", "")
        if isinstance(a, list):
            return "[" + ",".join(one(x) for x in a) + "]"
        return repr(a)
    parts = [one(a) for a in ex.args] + [f"{k}={v!r}" for k, v in ex.kwargs.items()]
    return ";".join(parts).replace(" ", "")


def build(ex, seed=0):
    """Placeholders and random values for an example; returns (api args, feed, raw args)."""
    rng = np.random.default_rng(seed)
    feed = {}

    def make(a):
        if isinstance(a, Arg):
            value = a.sample(rng)
            ph = gc.placeholder(a.shape, a.dtype)
            feed[ph] = value
            return ph, value
        if isinstance(a, list):
            pairs = [make(x) for x in a]
            return [p for p, _ in pairs], [v for _, v in pairs]
        return a, a

    made = [make(a) for a in ex.args]
    return [m for m, _ in made], feed, [v for _, v in made]


def tolerance(dtype, rtol=None):
    if rtol is not None:
        return rtol, rtol
    if dtype == np.float32:
        return 2e-5, 2e-6
    if dtype == np.float64:
        return 1e-12, 1e-13
    return 0, 0
