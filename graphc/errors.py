"""Errors raised while building graphs, and the user's source location of each node.

Every node records where the user created it (``file:line``): the first stack
frame outside graphc's own folders. Graph-building errors name the op, the
operand types and that location, e.g.::

    GraphError: add: shapes f32[3,4] and f32[5] do not broadcast (at train.py:12)
"""

from __future__ import annotations

import os
import sys

_PKG_DIRS: tuple[str, ...] = ()


def _package_dirs() -> tuple[str, ...]:
    """graphc's own folders (graphc/, passes/, codegen/ and their installed aliases)."""
    global _PKG_DIRS
    if not _PKG_DIRS:
        here = os.path.dirname(os.path.abspath(__file__))
        root = os.path.dirname(here)
        dirs = {here, os.path.join(root, "passes"), os.path.join(root, "codegen")}
        _PKG_DIRS = tuple(sorted(d + os.sep for d in dirs))
    return _PKG_DIRS


_LOCATION_OVERRIDE: list[str] = []


class attribute_to:
    """Context manager: nodes created inside are attributed to ``loc``.

    The autodiff pass uses it so that each backward node points at the user's
    line of the forward node it differentiates.
    """

    def __init__(self, loc: str | None):
        self.loc = loc

    def __enter__(self):
        _LOCATION_OVERRIDE.append(self.loc)
        return self

    def __exit__(self, *exc):
        _LOCATION_OVERRIDE.pop()
        return False


def user_location(skip_internal: bool = True) -> str:
    """``file:line`` of the innermost stack frame that is not graphc's own code
    (or the location set by an enclosing ``attribute_to``)."""
    if _LOCATION_OVERRIDE and _LOCATION_OVERRIDE[-1]:
        return _LOCATION_OVERRIDE[-1]
    dirs = _package_dirs()
    frame = sys._getframe(1)
    while frame is not None:
        filename = frame.f_code.co_filename
        if not skip_internal or not os.path.abspath(filename).startswith(dirs):
            return f"{filename}:{frame.f_lineno}"
        frame = frame.f_back
    return "<unknown>:0"


def short_location(loc: str | None) -> str:
    """The basename form ``train.py:12`` of a location, for printing."""
    if not loc:
        return ""
    path, _, line = loc.rpartition(":")
    return f"{os.path.basename(path)}:{line}"


class GraphError(ValueError):
    """A graph cannot be built as asked: wrong shapes, dtypes, axes or attributes.

    Attributes: ``op`` (the op's name), ``operands`` (the operand types as
    printed), ``location`` (the user's ``file:line``).
    """

    def __init__(self, op: str, message: str, operands=(), location: str | None = None):
        self.op = op
        self.operands = tuple(str(o) for o in operands)
        self.location = location if location is not None else user_location()
        self.detail = message
        text = f"{op}: {message}"
        if self.operands:
            text += f" [operands: {', '.join(self.operands)}]"
        text += f" (at {self.location})"
        super().__init__(text)


class GraphVerificationError(ValueError):
    """A Graph is not well formed (raised by ``Graph.verify``); points at the bad node."""


class InputError(ValueError):
    """Arrays given to an evaluated or compiled graph do not match its inputs."""
