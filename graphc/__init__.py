"""graphc: a static-graph compiler for deep learning.

Build a graph with numpy-named functions on symbolic tensors, evaluate it
with the reference interpreter, save and load it, print it::

    import graphc as gc
    x = gc.placeholder((4, 3), name="x")
    w = gc.parameter(np.ones((3, 2), np.float32), name="w")
    y = gc.relu(x @ w + 1.0)
    print(gc.Graph.from_outputs([y.node]))
    gc.evaluate(y, {x: np.ones((4, 3), np.float32)})
"""

from .dtypes import DType, as_dtype, bool_, float32, float64, int32, int64, promote_types, result_type, uint8
from .errors import GraphError, GraphVerificationError, InputError
from .ir import Graph, Node, TensorType
from . import ops
from .ops.registry import OpDef, all_ops, get_op, register
from .tensor import Tensor, as_tensor, constant, parameter, placeholder
from .ops.elementwise import *  # noqa: F401,F403
from .ops.reduce import *  # noqa: F401,F403
from .ops.linalg import *  # noqa: F401,F403
from .ops.shape import *  # noqa: F401,F403
from .ops.index import *  # noqa: F401,F403
from .ops.nn import *  # noqa: F401,F403
from .interpreter import evaluate, run_graph
from .printer import format_graph
from .serialize import GraphFormatError, load_graph, save_graph

bool = bool_  # noqa: A001  (numpy-style name: gc.bool)

__version__ = "0.1.0"


def graph(outputs, inputs=None, name: str = "graph", output_names=None) -> Graph:
    """The Graph computing ``outputs`` (Tensors) from ``inputs`` (default: every placeholder used)."""
    single = isinstance(outputs, Tensor)
    outs = [outputs] if single else list(outputs)
    ins = None if inputs is None else [t.node for t in inputs]
    return Graph.from_outputs([t.node for t in outs], ins, name=name, output_names=output_names)

from .autodiff import check_grads, grad, grad_program, hessian, hvp, jvp, value_and_grad, vjp  # noqa: E402
from .custom import define_op, elementwise_op  # noqa: E402
from .compile import compile  # noqa: E402,A001
from . import nn, optim  # noqa: E402,F401  (training: issue 6)

# Imported on first use (``gc.data``, ``gc.checkpoint``, ``gc.train``): they bring hashlib,
# pathlib, tempfile, json and gzip, ~15 ms of a start-up that needs none of them to compile.
_LAZY_SUBMODULES = ("checkpoint", "data", "train")


def __getattr__(name: str):
    if name in _LAZY_SUBMODULES:
        import importlib
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'graphc' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY_SUBMODULES))
