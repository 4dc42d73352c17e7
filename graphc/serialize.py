"""Graphs to JSON and back; arrays (parameters, constants) to .npz, never pickle.

A saved graph is two files: ``NAME.json`` (structure: nodes with op,
inputs, attributes, type, location and names) and ``NAME.npz`` (the values
of parameters and constants, loaded with ``allow_pickle=False``). The round
trip is exact: the loaded graph prints identically and evaluates
identically. Loading verifies the graph and names what is wrong with a
malformed file.
"""

from __future__ import annotations

import io
import os
from typing import Mapping

import numpy as np

from .dtypes import DType, as_dtype
from .ir import Graph, Node, TensorType

FORMAT = "graphc-graph"
VERSION = 1


class GraphFormatError(ValueError):
    """A saved graph cannot be read: malformed JSON, missing arrays, unknown ops..."""


def _encode_attr(v, arrays=None, prefix=""):
    if isinstance(v, Graph):  # a fused node's body
        doc, _ = graph_to_dict(v, arrays, prefix)
        return {"graph": doc}
    if isinstance(v, DType):
        return {"dtype": v.name}
    if isinstance(v, tuple):
        return [_encode_attr(x, arrays, prefix) for x in v]
    if isinstance(v, float) and (v != v or v in (float("inf"), float("-inf"))):
        return {"float": repr(v)}
    return v


def _decode_attr(v, arrays=None):
    if isinstance(v, dict):
        if "graph" in v:
            return graph_from_dict(v["graph"], arrays or {})
        if "dtype" in v:
            return as_dtype(v["dtype"])
        if "float" in v:
            return float(v["float"])
        raise GraphFormatError(f"unknown attribute encoding {v!r}")
    if isinstance(v, list):
        return tuple(_decode_attr(x, arrays) for x in v)
    return v


def graph_to_dict(graph: Graph, arrays: dict | None = None, prefix: str = "") -> tuple[dict, dict[str, np.ndarray]]:
    """The JSON-able structure of ``graph`` and its arrays by key (nested bodies share ``arrays``)."""
    index = {id(n): i for i, n in enumerate(graph.nodes)}
    arrays = {} if arrays is None else arrays
    nodes = []
    for i, n in enumerate(graph.nodes):
        rec = {"op": n.op, "inputs": [index[id(x)] for x in n.inputs],
               "attrs": {k: _encode_attr(v, arrays, f"{prefix}n{i}.") for k, v in n.attrs.items()},
               "dtype": n.type.dtype.name, "shape": list(n.type.shape), "loc": n.loc}
        if n.name is not None:
            rec["name"] = n.name
        if n.value is not None:
            key = f"{prefix}v{i}"
            arrays[key] = np.asarray(n.value)
            rec["value"] = key
        nodes.append(rec)
    doc = {"format": FORMAT, "version": VERSION, "name": graph.name, "nodes": nodes,
           "inputs": [index[id(n)] for n in graph.inputs], "outputs": [index[id(n)] for n in graph.outputs],
           "output_names": graph.output_names}
    return doc, arrays


def graph_from_dict(doc: Mapping, arrays: Mapping[str, np.ndarray]) -> Graph:
    """Rebuild a graph from ``graph_to_dict``'s output; verifies it."""
    if not isinstance(doc, Mapping) or doc.get("format") != FORMAT:
        raise GraphFormatError(f"not a graphc graph (format {doc.get('format') if isinstance(doc, Mapping) else None!r})")
    if doc.get("version") != VERSION:
        raise GraphFormatError(f"unsupported graph format version {doc.get('version')!r} (this is {VERSION})")
    nodes: list[Node] = []
    try:
        for i, rec in enumerate(doc["nodes"]):
            inputs = []
            for j in rec["inputs"]:
                if not isinstance(j, int) or not 0 <= j < i:
                    raise GraphFormatError(f"node {i} ({rec.get('op')}): input {j!r} is not an earlier node")
                inputs.append(nodes[j])
            value = None
            if "value" in rec:
                if rec["value"] not in arrays:
                    raise GraphFormatError(f"node {i} ({rec['op']}): array {rec['value']!r} is missing")
                value = np.asarray(arrays[rec["value"]])
                if rec["op"] == "constant":
                    value = value.copy()
                    value.flags.writeable = False
                else:
                    value = value.copy()
            t = TensorType(tuple(rec["shape"]), as_dtype(rec["dtype"]))
            attrs = {k: _decode_attr(v, arrays) for k, v in rec["attrs"].items()}
            nodes.append(Node(rec["op"], inputs, attrs, t, loc=rec.get("loc"), value=value, name=rec.get("name")))
        inputs = [nodes[i] for i in doc["inputs"]]
        outputs = [nodes[i] for i in doc["outputs"]]
    except GraphFormatError:
        raise
    except (KeyError, TypeError, IndexError, ValueError) as e:
        raise GraphFormatError(f"malformed graph file: {type(e).__name__}: {e}") from None
    graph = Graph(inputs, outputs, name=doc.get("name", "graph"), output_names=doc.get("output_names"))
    try:
        graph.verify()
    except ValueError as e:
        raise GraphFormatError(f"saved graph is not well formed: {e}") from None
    return graph


def dumps(graph: Graph) -> tuple[str, bytes]:
    """JSON text and .npz bytes of a graph."""
    import json  # here, not at import: json and zipfile add ~10 ms to `import graphc`
    doc, arrays = graph_to_dict(graph)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return json.dumps(doc, indent=1), buf.getvalue()


def loads(text: str, npz: bytes | None) -> Graph:
    """Inverse of ``dumps``."""
    import json
    import zipfile
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise GraphFormatError(f"graph JSON is malformed: {e}") from None
    arrays = {}
    if npz:
        try:
            with np.load(io.BytesIO(npz), allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
            raise GraphFormatError(f"graph arrays (.npz) are unreadable: {e}") from None
    return graph_from_dict(doc, arrays)


def _paths(path: str) -> tuple[str, str]:
    base = path[:-5] if path.endswith(".json") else path
    return base + ".json", base + ".npz"


def _atomic_write(path: str, data: bytes) -> None:
    import tempfile
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_graph(graph: Graph, path: str) -> tuple[str, str]:
    """Write ``path`` (.json) and its sibling .npz atomically; returns both paths."""
    jpath, npath = _paths(path)
    text, npz = dumps(graph)
    _atomic_write(npath, npz)
    _atomic_write(jpath, text.encode())
    return jpath, npath


def load_graph(path: str) -> Graph:
    """Read a graph written by ``save_graph`` (no code is executed: JSON and pickle-free npz)."""
    jpath, npath = _paths(path)
    try:
        with open(jpath, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise GraphFormatError(f"cannot read {jpath}: {e}") from None
    npz = None
    if os.path.exists(npath):
        with open(npath, "rb") as f:
            npz = f.read()
    return loads(text, npz)
