"""Leaf ops: ``placeholder`` (a graph input), ``parameter`` and ``constant``.

Their values come from the feed (placeholders) or the node itself
(``node.value``); their types are fixed when they are created.
"""

from __future__ import annotations

from .registry import OpDef, OpTypeError, register


def _no_infer(*types, **attrs):
    raise OpTypeError("leaf ops are created by gc.placeholder, gc.parameter and gc.constant")


for _name, _doc in [("placeholder", "a graph input, fed at each call"),
                    ("parameter", "a named trainable array with an initial value"),
                    ("constant", "a fixed array")]:
    register(OpDef(_name, "leaf", _no_infer, None, nin=0, differentiable=(_name != "constant"), doc=_doc))
