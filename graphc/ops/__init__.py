"""The op registry and the op records, one module per kind.

Importing this package registers every built-in op. To add an op, add its
``OpDef`` (with ``api``, ``oracle`` and ``examples``) to the module of its
kind and export its API function in that module's ``__all__``.
"""

from . import leaves, elementwise, reduce, linalg, shape, index, nn, fused  # noqa: F401  (registers the ops)
from .registry import OpDef, OpTypeError, Arg, Example, all_ops, get_op, make_node, register  # noqa: F401
