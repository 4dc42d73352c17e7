"""IR dumps: every stage of a compile as numbered files, Graphviz pictures, and a registry
of compiled functions (for ``graphc stats``).

A dump folder of one compile::

    00-forward.txt      the user's nodes (origin None), as a graph whose extra outputs
                        are the values the backward part reads (+ .dot/.svg)
    01-backward.txt     the nodes made by derivative rules (origin "autodiff") and what
                        is computed from them (optimizer updates), as a graph whose
                        inputs are the forward values they read (+ .dot/.svg)
    02-simplify.txt     the graph after each pass, in pipeline order ...
    02-simplify.diff    ... each with a unified diff against the previous stage
    03-cse.txt/.diff, 04-fold.txt/.diff, 05-dce.txt/.diff
    06-fuse.txt/.diff   the kernels as ``fused`` nodes (+ .dot/.svg: one cluster per kernel)
    07-kernels.txt      each kernel: kind, ops, shapes, flops, bytes, chunks; buffer memory
    08-llvm.ll          the LLVM module as emitted
    09-llvm-optimized.ll
    10-assembly.s

Every graph is printed by the one printer (``graphc.printer``). Pictures are
Graphviz ``.dot`` text written here; ``.svg`` files are added when the
``dot`` program is installed.

Wiring (what ``compile`` does)::

    folder = dump_requested(dump, name=graph.name)     # gc.compile(dump=...) or $GRAPHC_DUMP
    dumper = Dumper(folder) if folder else None
    fused = run_pipeline(graph, dump=dumper)            # graphc.passes.pipeline
    ... plan, emit, JIT -> fn ...
    after_compile(fn, dumper)                          # register, write kernels/LLVM/asm, log

``$GRAPHC_DUMP=folder`` gives each compile its own numbered subfolder
(``folder/01-<graph name>/``, ``02-...``); an explicit ``dump="folder"``
writes into that folder itself. Console output is controlled by
``GRAPHC_DEBUG`` (see ``graphc.debug``).
"""

from __future__ import annotations

import collections
import os
import re
import shutil
import weakref
from dataclasses import dataclass, field
from pathlib import Path

from .ir import Graph, Node
from .printer import format_constant, format_graph, value_names

ENV = "GRAPHC_DUMP"
SVG_MAX_NODES = 2500  # bigger pictures: .dot only (dot would take too long)
SVG_TIMEOUT = 60.0
MARKER = ".graphc-dump"
_STALE = re.compile(r"^\d{2,}-[A-Za-z0-9_.-]+\.(txt|diff|dot|svg|ll|s)$")


# ---------------------------------------------------------------- where dumps go

def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name or "graph").strip("._") or "graph"


def _numbered_subfolder(root: Path, name: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    taken = [int(m.group(1)) for p in root.iterdir() if (m := re.match(r"^(\d+)-", p.name))]
    n = max(taken, default=0) + 1
    while True:
        folder = root / f"{n:02d}-{_safe(name)}"
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            n += 1


def dump_requested(explicit=None, name: str = "graph") -> Path | None:
    """The folder a compile should dump into, or None.

    ``explicit``: the ``dump=`` argument of ``gc.compile``: a path (dump into that
    folder), True (numbered subfolders of ``$GRAPHC_DUMP``, else of ./graphc-dump),
    or None/False (``$GRAPHC_DUMP`` if set: a new numbered subfolder per compile,
    named after the graph).
    """
    if explicit is not None and explicit is not False and explicit is not True:
        folder = Path(os.fspath(explicit))
        folder.mkdir(parents=True, exist_ok=True)
        return folder
    env = os.environ.get(ENV, "").strip()
    if explicit is True:
        return _numbered_subfolder(Path(env or "graphc-dump"), name)
    if not env or env.lower() in ("0", "off", "no", "false"):
        return None
    return _numbered_subfolder(Path(env), name)


# ---------------------------------------------------------------- forward / backward

def split_forward_backward(graph: Graph) -> tuple[Graph, Graph | None]:
    """The graph's forward part and its backward part (None if it has no autodiff nodes).

    Backward: nodes with origin "autodiff" and every computed node that reads one
    (e.g. an optimizer's update ``w - lr * dw``), with the constant-only values they
    read (``broadcast_to(0.1)``). Forward: the rest; its outputs are the graph's
    forward outputs and then the computed values the backward part reads (``res.k``).
    The backward graph's inputs are those values (``%res.k``) and the graph inputs it
    reads; parameters and constants appear as they are.
    """
    back: set[int] = set()
    for n in graph.nodes:
        made_by_rule = n.origin == "autodiff" and n.op not in ("placeholder", "parameter")
        if made_by_rule or (not n.is_leaf and any(id(i) in back for i in n.inputs)):
            back.add(id(n))
    if not back:
        return graph, None
    # values computed from constants only (a broadcast learning rate...) are not residuals:
    # the backward part shows them itself
    const_only: set[int] = set()
    for n in graph.nodes:
        if n.op == "constant" or (not n.is_leaf and all(id(i) in const_only for i in n.inputs)):
            const_only.add(id(n))
    shown = set(back)
    for n in reversed(graph.nodes):
        if id(n) in shown:
            for i in n.inputs:
                if id(i) in const_only:
                    shown.add(id(i))
    out_names = graph.output_names or [f"out{k}" for k in range(len(graph.outputs))]
    residuals: list[Node] = []
    seen: set[int] = set()
    for n in graph.nodes:
        if id(n) not in shown:
            continue
        for i in n.inputs:
            if id(i) not in shown and not i.is_leaf and id(i) not in seen:
                seen.add(id(i))
                residuals.append(i)
    fwd_outs = [(o, nm) for o, nm in zip(graph.outputs, out_names) if id(o) not in back]
    extra = [(r, f"res.{k}") for k, r in enumerate(residuals)]
    forward = Graph(graph.inputs, [o for o, _ in fwd_outs] + [r for r, _ in extra],
                    name=graph.name, output_names=[nm for _, nm in fwd_outs] + [nm for _, nm in extra])

    taken = {n.name for n in graph.nodes if n.name}
    subst: dict[int, Node] = {}
    bwd_inputs: list[Node] = []
    for r, nm in extra:
        while nm in taken:
            nm += "_"
        taken.add(nm)
        ph = Node("placeholder", (), {}, r.type, loc=r.loc, name=nm)
        ph.origin = r.origin
        subst[id(r)] = ph
        bwd_inputs.append(ph)
    used_inputs = {id(i) for n in graph.nodes if id(n) in shown for i in n.inputs if i.op == "placeholder"}
    bwd_inputs += [p for p in graph.inputs if id(p) in used_inputs]
    for n in graph.nodes:
        if id(n) not in shown or n.op in ("placeholder", "parameter"):
            continue
        c = Node(n.op, [subst.get(id(i), i) for i in n.inputs], n.attrs, n.type, loc=n.loc,
                 value=n.value, name=n.name)
        c.origin = n.origin
        subst[id(n)] = c
    bwd_outs = [(subst[id(o)], nm) for o, nm in zip(graph.outputs, out_names) if id(o) in back]
    backward = Graph(bwd_inputs, [o for o, _ in bwd_outs], name=f"{graph.name}_backward",
                     output_names=[nm for _, nm in bwd_outs])
    return forward, backward


# ---------------------------------------------------------------- kernels

@dataclass
class KernelInfo:
    """One kernel of a fused graph, for dumps and ``graphc stats``."""

    index: int
    kind: str
    node: Node
    ops: list[str]
    flops: int
    bytes_io: int  # what the kernel reads and writes: its inputs' and its result's buffers
    bytes_unfused: int  # Σ cost over the body: the traffic had every op its own buffer
    functions: list[tuple[str, int]] = field(default_factory=list)  # (function name, chunks)

    @property
    def chunks(self) -> int | None:
        return max((c for _, c in self.functions), default=None) if self.functions else None


def kernel_infos(graph: Graph, codes=None) -> list[KernelInfo]:
    """One ``KernelInfo`` per ``fused`` node (in order); ``codes``: the compiled function's
    ``kernels`` (``.name``, ``.chunks``, ``.kernel.node``) to add function names and chunks."""
    from .ops.registry import get_op
    by_node: dict[int, list] = collections.defaultdict(list)
    for code in codes or ():
        k = getattr(code, "kernel", None)
        node = getattr(k, "node", None)
        if node is not None:
            by_node[id(node)].append((code.name, int(code.chunks)))
    out = []
    for n in graph.nodes:
        if n.op != "fused":
            continue
        body: Graph = n.attrs["body"]
        ops, flops, unfused = [], 0, 0
        for b in body.nodes:
            if b.is_leaf:
                continue
            ops.append(b.op)
            f, by = get_op(b.op).cost(b)
            flops += f
            unfused += by
        seen: set[int] = set()
        io = n.type.nbytes
        for i in n.inputs:
            if id(i) not in seen:
                seen.add(id(i))
                io += i.type.nbytes
        out.append(KernelInfo(len(out), n.attrs["kind"], n, ops, flops, io, unfused, by_node.get(id(n), [])))
    return out


def _ops_text(ops: list[str]) -> str:
    """``broadcast_to, add x2, relu`` (consecutive repeats counted)."""
    parts: list[list] = []
    for op in ops:
        if parts and parts[-1][0] == op:
            parts[-1][1] += 1
        else:
            parts.append([op, 1])
    return ", ".join(op if c == 1 else f"{op} x{c}" for op, c in parts)


def human_bytes(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def format_kernels(graph: Graph, codes=None) -> str:
    """The kernels file: one block per kernel, then totals."""
    infos = kernel_infos(graph, codes)
    names = value_names(graph)
    lines = [f"kernels of graph {graph.name}: {len(infos)}", ""]
    for k in infos:
        n = k.node
        ins = ", ".join(f"{names[id(i)]}:{i.type}" for i in n.inputs) or "-"
        lines.append(f"k{k.index}  {k.kind:<12} {names[id(n)]}:{n.type}  <- {ins}")
        lines.append(f"    ops ({len(k.ops)}): {_ops_text(k.ops)}")
        lines.append(f"    flops {k.flops:,}   bytes {k.bytes_io:,} (kernel inputs + result)"
                     f"   bytes unfused {k.bytes_unfused:,}")
        if k.functions:
            lines.append("    functions: " + ", ".join(f"{f} ({c} chunk{'s' if c != 1 else ''})"
                                                     for f, c in k.functions))
        lines.append("")
    lines.append(f"total: {len(infos)} kernels, flops {sum(k.flops for k in infos):,}, "
                 f"bytes {sum(k.bytes_io for k in infos):,} "
                 f"(unfused {sum(k.bytes_unfused for k in infos):,})")
    return "\n".join(lines) + "\n"


def memory_summary(plan) -> dict[str, int]:
    """Bytes of a compiled function's buffers by kind, and their sum (peak memory of a call).

    Keys: inputs, parameters, constants, outputs, scratch (the arena holding every
    intermediate buffer), peak.
    """
    kinds = {"input": "inputs", "param": "parameters", "const": "constants", "output": "outputs"}
    out = {v: 0 for v in kinds.values()}
    for b in plan.buffers:
        key = kinds.get(b.kind)
        if key is not None:
            out[key] += b.node.type.nbytes
    out["scratch"] = int(plan.arena_bytes)
    out["peak"] = sum(out.values())
    return out


def format_memory(plan) -> str:
    m = memory_summary(plan)
    text = ("memory: " + ", ".join(f"{k} {human_bytes(v)}" for k, v in m.items() if k != "peak")
            + f"; peak {human_bytes(m['peak'])} ({m['peak']:,} bytes)")
    updated = getattr(plan, "updated", None)
    if updated:
        in_place = set(getattr(plan, "in_place", ()))
        text += "\nparameters updated: " + ", ".join(f"{n} (in place)" if n in in_place else f"{n} (copied)"
                                                     for n in updated)
    return text


# ---------------------------------------------------------------- Graphviz

def _esc(s: str) -> str:
    return s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


_FILL = {"placeholder": "#cfe2ff", "parameter": "#fff3bf", "constant": "#eeeeee"}


def graph_to_dot(graph: Graph, title: str | None = None) -> str:
    """Graphviz text of a graph: one box per node, edges from inputs to users; each ``fused``
    node is a cluster (``subgraph cluster_k``) holding its body's ops; nodes made by autodiff
    are shaded orange."""
    names = value_names(graph)
    lines = ["digraph graphc {",
             f'  label="{_esc(title or graph.name)}"; labelloc=t; fontname="monospace";',
             '  node [shape=box, style="rounded,filled", fillcolor=white, fontname="monospace", fontsize=10];',
             '  edge [color="#555555", arrowsize=0.6];']
    dot_id: dict[int, str] = {}
    edges: list[tuple[str, str]] = []

    def label(n: Node, name: str | None) -> str:
        if n.op in ("placeholder", "parameter"):
            return f"{name}\n{n.type}"
        if n.op == "constant":
            return f"{format_constant(n.value)}\n{n.type}"
        head = f"{name} = {n.op}" if name else n.op
        return f"{head}\n{n.type}"

    def node_line(did: str, n: Node, name: str | None, indent: str = "  ") -> str:
        shape = {"placeholder": "ellipse", "constant": "plaintext"}.get(n.op, "box")
        fill = _FILL.get(n.op, "#ffd8a8" if n.origin == "autodiff" else "white")
        return f'{indent}{did} [label="{_esc(label(n, name))}", shape={shape}, fillcolor="{fill}"];'

    k = 0
    for i, n in enumerate(graph.nodes):
        if n.op != "fused":
            did = f"n{i}"
            lines.append(node_line(did, n, names[id(n)]))
            dot_id[id(n)] = did
            for x in n.inputs:
                edges.append((dot_id[id(x)], did))
            continue
        body: Graph = n.attrs["body"]
        inner: dict[int, str] = {id(ph): dot_id[id(x)] for ph, x in zip(body.inputs, n.inputs)}
        lines.append(f"  subgraph cluster_{k} {{")
        lines.append(f'    label="k{k}: {_esc(n.attrs["kind"])} {names[id(n)]}:{n.type}"; style=rounded; '
                     f'color="#1c7ed6"; fontcolor="#1c7ed6";')
        for j, b in enumerate(body.nodes):
            if id(b) in inner:
                continue
            did = f"k{k}_{j}"
            is_root = b is body.outputs[0]
            lines.append(node_line(did, b, names[id(n)] if is_root else None, indent="    "))
            inner[id(b)] = did
            for x in b.inputs:
                edges.append((inner[id(x)], did))
        lines.append("  }")
        dot_id[id(n)] = inner[id(body.outputs[0])]
        k += 1
    out_names = graph.output_names or [f"out{j}" for j in range(len(graph.outputs))]
    for j, (o, nm) in enumerate(zip(graph.outputs, out_names)):
        lines.append(f'  out{j} [label="{_esc(nm)}", shape=plaintext, style=""];')
        edges.append((dot_id[id(o)], f"out{j}"))
    lines.extend(f"  {a} -> {b};" for a, b in edges)
    lines.append("}")
    return "\n".join(lines) + "\n"


def dot_available() -> bool:
    return shutil.which("dot") is not None


def render_svg(dot_path: Path, n_nodes: int = 0) -> Path | None:
    """``dot -Tsvg`` of a .dot file next to it; None without ``dot``, for huge graphs or on failure."""
    exe = shutil.which("dot")
    if exe is None or n_nodes > SVG_MAX_NODES:
        return None
    import subprocess  # not imported by every compile (~3 ms): only to draw

    svg = dot_path.with_suffix(".svg")
    try:
        subprocess.run([exe, "-Tsvg", str(dot_path), "-o", str(svg)], check=True, timeout=SVG_TIMEOUT,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    except (subprocess.SubprocessError, OSError):
        return None
    return svg


def _count_nodes(graph: Graph) -> int:
    return sum(len(n.attrs["body"].nodes) if n.op == "fused" else 1 for n in graph.nodes)


# ---------------------------------------------------------------- the dumper

class Dumper:
    """Writes the numbered files of one compile into ``folder`` (see the module docstring).

    Call ``write_input(graph)`` (00 forward, 01 backward), ``write_stage(name, graph)``
    after each pass (``run_pipeline`` does both), then ``write_compiled(fn)``.
    ``files`` lists what was written, in order.
    """

    def __init__(self, folder, pictures: bool = True, svg: bool | None = None):
        self.folder = Path(os.fspath(folder))
        self.folder.mkdir(parents=True, exist_ok=True)
        marker = self.folder / MARKER
        if marker.exists():  # an earlier dump into this folder: its numbered files go
            for p in self.folder.iterdir():
                if p.is_file() and _STALE.match(p.name):
                    p.unlink()
        marker.write_text("graphc dump folder: numbered files here are replaced by the next dump\n")
        self.pictures = pictures
        self.svg = dot_available() if svg is None else svg
        self.counter = 0
        self.files: list[Path] = []
        self.has_input = False
        self.previous: tuple[str, str] | None = None  # (label, text) of the last stage
        self.last_graph: Graph | None = None

    def _number(self) -> str:
        n = f"{self.counter:02d}"
        self.counter += 1
        return n

    def _write(self, filename: str, text: str) -> Path:
        path = self.folder / filename
        path.write_text(text if text.endswith("\n") or not text else text + "\n")
        self.files.append(path)
        return path

    def _picture(self, stem: str, graph: Graph, title: str) -> None:
        if not self.pictures:
            return
        path = self._write(stem + ".dot", graph_to_dot(graph, title))
        if self.svg:
            svg = render_svg(path, _count_nodes(graph))
            if svg is not None:
                self.files.append(svg)

    def write_input(self, graph: Graph) -> None:
        """``00-forward`` and ``01-backward`` (text and pictures) of the graph to compile."""
        forward, backward = split_forward_backward(graph)
        n = self._number()
        self._write(f"{n}-forward.txt", format_graph(forward))
        self._picture(f"{n}-forward", forward, f"{graph.name}: forward")
        n = self._number()
        if backward is None:
            self._write(f"{n}-backward.txt", f"# graph {graph.name} has no nodes made by autodiff\n")
        else:
            self._write(f"{n}-backward.txt", format_graph(backward))
            self._picture(f"{n}-backward", backward, f"{graph.name}: backward")
        self.previous = (f"input ({graph.name}: forward and backward)", format_graph(graph))
        self.has_input = True
        self.last_graph = graph

    def write_stage(self, name: str, graph: Graph) -> Path:
        """``NN-name.txt`` (the graph) and ``NN-name.diff`` (against the previous stage); a
        picture too when the graph holds kernels."""
        n = self._number()
        text = format_graph(graph)
        path = self._write(f"{n}-{name}.txt", text)
        if self.previous is not None:
            import difflib

            label, before = self.previous
            diff = difflib.unified_diff(before.splitlines(), text.splitlines(), fromfile=label,
                                        tofile=path.name, lineterm="")
            self._write(f"{n}-{name}.diff", "\n".join(diff))
        if any(x.op == "fused" for x in graph.nodes):
            self._picture(f"{n}-{name}", graph, f"{graph.name}: {name} ({sum(x.op == 'fused' for x in graph.nodes)}"
                                                f" kernels)")
        self.previous = (path.name, text)
        self.last_graph = graph
        return path

    def write_kernels(self, graph: Graph, codes=None, plan=None) -> Path:
        """``NN-kernels.txt``: each kernel of a fused graph (and buffer memory, given a plan)."""
        text = format_kernels(graph, codes)
        if plan is not None:
            text += "\n" + format_memory(plan) + "\n"
        return self._write(f"{self._number()}-kernels.txt", text)

    def write_compiled(self, fn) -> None:
        """Kernels (with chunk counts and memory), LLVM IR as emitted and optimized, assembly."""
        plan = fn.plan
        self.write_kernels(plan.graph, getattr(fn, "kernels", None), plan)
        self._write(f"{self._number()}-llvm.ll", fn.llvm_ir or "")
        self._write(f"{self._number()}-llvm-optimized.ll", fn.optimized_llvm_ir or "")
        self._write(f"{self._number()}-assembly.s", fn.assembly or "")


# ---------------------------------------------------------------- compiled functions

_COMPILED: list = []  # weak references, oldest first
_LAST = None  # the most recent one, held strongly (for `graphc stats`)
_MAX_REGISTERED = 256
_after_compile_calls = 0


def register_compiled(fn) -> None:
    """Remember a compiled function for ``graphc stats``: the last one strongly, earlier ones
    by weak reference (a registry must not keep old functions' buffers alive)."""
    global _LAST
    _LAST = fn
    if any(r() is fn for r in _COMPILED):
        return
    _COMPILED[:] = [r for r in _COMPILED if r() is not None][-(_MAX_REGISTERED - 1):]
    _COMPILED.append(weakref.ref(fn))


def compiled_functions() -> list:
    """The registered compiled functions still alive, oldest first."""
    return [f for f in (r() for r in _COMPILED) if f is not None]


def last_compiled():
    """The most recently registered compiled function, or None."""
    return _LAST


def clear_compiled() -> None:
    """Forget every registered function."""
    global _LAST
    _COMPILED.clear()
    _LAST = None


def compile_summary(fn) -> str:
    """A few lines on a compiled function: time, cache, kernels, memory (GRAPHC_DEBUG=1)."""
    plan = fn.plan
    native = getattr(fn, "native", None)
    if native is not None and getattr(native, "lazy_details", None) is not None:
        codes = []  # loaded from the disk cache: listing its functions would mean emitting the IR again
    else:
        codes = getattr(fn, "kernels", None) or []
    infos = kernel_infos(plan.graph, codes)
    hit = "cache hit" if getattr(fn, "cache_hit", False) else "cache miss"
    lines = [f"graphc: compiled {plan.graph.name!r} in {getattr(fn, 'compile_seconds', 0.0) * 1e3:.1f} ms "
             f"({hit}): {len(infos)} kernels" + (f", {len(codes)} functions" if codes else "")]
    phases = getattr(fn, "compile_times", None)
    if phases:
        lines.append("  time: " + ", ".join(f"{name} {t * 1e3:.1f} ms" for name, t in phases.items()))
    for k in infos:
        chunks = k.chunks
        lines.append(f"  k{k.index:<3} {k.kind:<12} {str(k.node.type):<16} "
                     f"{'' if chunks is None else str(chunks) + ' chunks':<10} {_ops_text(k.ops)}")
    lines.extend("  " + line for line in format_memory(plan).split("\n"))
    return "\n".join(lines)


def after_compile(fn, dumper: Dumper | None = None) -> None:
    """What every compile does at the end: register ``fn``, write its dumps, log (GRAPHC_DEBUG)."""
    global _after_compile_calls
    from . import debug
    _after_compile_calls += 1
    register_compiled(fn)
    if dumper is not None:
        dumper.write_compiled(fn)
    level = debug.debug_level()
    if level >= 1:
        debug.log(1, compile_summary(fn))
    if level >= 3:
        debug.log(3, f"--- LLVM IR of {fn.plan.graph.name!r}\n{fn.llvm_ir}")
        debug.log(3, f"--- optimized LLVM IR of {fn.plan.graph.name!r}\n{fn.optimized_llvm_ir}")


__all__ = ["Dumper", "dump_requested", "split_forward_backward", "graph_to_dot", "kernel_infos",
           "format_kernels", "memory_summary", "register_compiled", "compiled_functions", "last_compiled",
           "clear_compiled", "compile_summary", "after_compile", "render_svg", "dot_available", "KernelInfo"]
