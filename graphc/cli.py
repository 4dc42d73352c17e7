"""The ``graphc`` command line.

    graphc verify [OP ...] [--numeric-only]       prove every derivative rule (table; exit 1 on failure)
    graphc dump SCRIPT [--stage STAGE ...] [--out DIR]
                                                  run SCRIPT (a Python file, or a graph saved as .json)
                                                  with dumps on; print where they went, or print the
                                                  chosen stages (forward, backward, simplify, cse,
                                                  fold, dce, fuse, kernels, llvm, llvm-optimized,
                                                  assembly; a number like 06; NAME.diff for a diff)
    graphc stats SCRIPT [--all]                   run SCRIPT; per-kernel and total flops and bytes,
                                                  and the buffer memory of its last compiled function

A script is run as ``python SCRIPT`` would run it (``__name__ == "__main__"``,
its folder on ``sys.path``). ``dump`` sets ``GRAPHC_DUMP`` to the output
folder while it runs, so every compile the script makes writes a numbered
subfolder there. While ``--stage`` or ``stats`` prints to stdout, the
script's own output goes to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import runpy
import shutil
import sys
import tempfile
from pathlib import Path


def _verify(args) -> int:
    from .verify import verify_all
    results = verify_all(args.ops or None, symbolic=not args.numeric_only)
    return 0 if results and all(r.ok for r in results) else 1


# ---------------------------------------------------------------- running a user's script

@contextlib.contextmanager
def _compiles_reported():
    """Every compile made inside is registered and dumped, also by a ``compile_graph`` that
    does not call ``graphc.dump.after_compile`` itself (then the dump is made here)."""
    from graphc import dump
    from graphc.codegen import compiler
    original = compiler.compile_graph

    def compile_graph(graph, *args, **kwargs):
        before = dump._after_compile_calls
        fn = original(graph, *args, **kwargs)
        if dump._after_compile_calls == before:
            dumper = None
            folder = dump.dump_requested(None, graph.name)
            if folder is not None:
                from graphc.passes.pipeline import run_pipeline
                dumper = dump.Dumper(folder)
                run_pipeline(graph, dump=dumper)
            dump.after_compile(fn, dumper)
        return fn

    compiler.compile_graph = compile_graph
    try:
        yield
    finally:
        compiler.compile_graph = original


_NAMESPACES: list[dict] = []


def _run(script: str, quiet_stdout: bool) -> int:
    """Run a Python script (or compile a saved graph) with compiles reported; its exit status."""
    path = Path(script)
    if not path.is_file():
        print(f"graphc: no such file: {script}", file=sys.stderr)
        return 2
    out = contextlib.redirect_stdout(sys.stderr) if quiet_stdout else contextlib.nullcontext()
    old_argv, old_path = sys.argv[:], sys.path[:]
    try:
        with out, _compiles_reported():
            if path.suffix == ".json":
                from graphc.codegen.compiler import compile_graph
                from graphc.serialize import load_graph
                compile_graph(load_graph(str(path)))
                return 0
            sys.argv = [str(path)]
            sys.path.insert(0, str(path.resolve().parent))
            try:
                # the script's globals stay alive until the command is done (its compiled functions)
                _NAMESPACES.append(runpy.run_path(str(path), run_name="__main__"))
            except SystemExit as e:
                code = e.code
                if code not in (None, 0):
                    print(f"graphc: {script} exited with status {code}", file=sys.stderr)
                    return code if isinstance(code, int) else 1
    finally:
        sys.argv, sys.path[:] = old_argv, old_path
    return 0


# ---------------------------------------------------------------- graphc dump

_EXT_ORDER = (".txt", ".ll", ".s", ".diff", ".dot", ".svg")


def find_stage(folder: Path, stage: str) -> Path | None:
    """The file of one stage in a dump folder: by file name, name without its number
    (``simplify``, ``simplify.diff``, ``llvm``), or number (``02``)."""
    files = sorted(p for p in folder.iterdir() if p.is_file())

    def rank(p: Path) -> int:
        return _EXT_ORDER.index(p.suffix) if p.suffix in _EXT_ORDER else len(_EXT_ORDER)

    for p in files:
        if p.name == stage or p.name.split("-", 1)[-1] == stage:
            return p
    hits = [p for p in files if p.stem.split("-", 1)[-1] == stage or p.stem.split("-", 1)[0] == stage]
    return min(hits, key=rank) if hits else None


def _stages_of(folder: Path) -> list[str]:
    names = []
    for p in sorted(folder.iterdir()):
        if p.suffix in (".txt", ".ll", ".s"):
            name = p.stem.split("-", 1)[-1]
            if name not in names:
                names.append(name)
    return names


def _dump(args) -> int:
    temp = None
    if args.out:
        out = Path(args.out)
    elif args.stage:
        temp = tempfile.mkdtemp(prefix="graphc-dump-")
        out = Path(temp)
    else:
        out = Path("graphc-dump")
    out.mkdir(parents=True, exist_ok=True)
    before = {p.name for p in out.iterdir()}
    old_env = os.environ.get("GRAPHC_DUMP")
    os.environ["GRAPHC_DUMP"] = str(out)
    try:
        status = _run(args.script, quiet_stdout=bool(args.stage))
        folders = sorted(p for p in out.iterdir() if p.is_dir() and p.name not in before)
        if status:
            return status
        if not folders:
            print(f"graphc: {args.script} compiled nothing (no gc.compile call ran)", file=sys.stderr)
            return 1
        if not args.stage:
            print(f"dumps of {len(folders)} compile{'s' if len(folders) != 1 else ''} in {out}/:")
            for f in folders:
                print(f"  {f}/  ({sum(not p.name.startswith('.') for p in f.iterdir())} files)")
            return 0
        chosen = []
        for f in folders:
            for st in args.stage:
                p = find_stage(f, st)
                if p is None:
                    print(f"graphc: no stage {st!r} in {f}; stages: {', '.join(_stages_of(f))} "
                          "(or NAME.diff, NAME.dot, a number)", file=sys.stderr)
                    return 1
                chosen.append(p)
        for p in chosen:
            if len(chosen) > 1:
                print(f"==> {p.parent.name}/{p.name} <==")
            sys.stdout.write(p.read_text())
        return 0
    finally:
        if old_env is None:
            os.environ.pop("GRAPHC_DUMP", None)
        else:
            os.environ["GRAPHC_DUMP"] = old_env
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)


# ---------------------------------------------------------------- graphc stats

def format_stats(fn) -> str:
    """Per-kernel and total flops and bytes, and buffer memory, of a compiled function."""
    from .dump import _ops_text, human_bytes, kernel_infos, memory_summary
    plan = fn.plan
    infos = kernel_infos(plan.graph, getattr(fn, "kernels", None))
    lines = [f"graph {plan.graph.name!r}: {len(infos)} kernels "
             f"(compiled in {getattr(fn, 'compile_seconds', 0.0) * 1e3:.1f} ms"
             f"{', cache hit' if getattr(fn, 'cache_hit', False) else ''})", ""]
    head = f"{'kernel':<7} {'kind':<12} {'result':<18} {'flops':>14} {'bytes':>14} {'bytes unfused':>14} " \
           f"{'chunks':>6}  ops"
    lines += [head, "-" * len(head)]
    for k in infos:
        chunks = "" if k.chunks is None else str(k.chunks)
        lines.append(f"k{k.index:<6} {k.kind:<12} {str(k.node.type):<18} {k.flops:>14,} {k.bytes_io:>14,} "
                     f"{k.bytes_unfused:>14,} {chunks:>6}  {_ops_text(k.ops)}")
    lines.append("-" * len(head))
    lines.append(f"{'total':<7} {'':<12} {'':<18} {sum(k.flops for k in infos):>14,} "
                 f"{sum(k.bytes_io for k in infos):>14,} {sum(k.bytes_unfused for k in infos):>14,}")
    lines.append("")
    lines.append("bytes: what each kernel reads and writes (its inputs and result); unfused: the same"
                 " if every op had its own buffer")
    lines.append("")
    m = memory_summary(plan)
    lines.append("memory (buffers of one call):")
    labels = {"inputs": "inputs", "parameters": "parameters", "constants": "constants", "outputs": "outputs",
              "scratch": "scratch arena", "peak": "peak (sum)"}
    for key, label in labels.items():
        lines.append(f"  {label:<14} {human_bytes(m[key]):>11}  ({m[key]:,} bytes)")
    updated = getattr(plan, "updated", None)
    if updated:
        in_place = set(getattr(plan, "in_place", ()))
        lines.append("parameters updated in place: " + (", ".join(n for n in updated if n in in_place) or "none")
                     + "; copied after the last kernel: " + (", ".join(n for n in updated if n not in in_place)
                                                           or "none"))
    return "\n".join(lines)


def _stats(args) -> int:
    from . import dump
    dump.clear_compiled()
    status = _run(args.script, quiet_stdout=True)
    if status:
        return status
    fns = dump.compiled_functions() if args.all else [dump.last_compiled()]
    fns = [f for f in fns if f is not None]
    if not fns:
        print(f"graphc: {args.script} compiled nothing (no gc.compile call ran)", file=sys.stderr)
        return 1
    print("\n\n".join(format_stats(fn) for fn in fns))
    return 0


# ---------------------------------------------------------------- main

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="graphc", description="graphc: a static-graph compiler for deep learning")
    sub = parser.add_subparsers(dest="command", required=True)
    v = sub.add_parser("verify", help="check every op's derivative rule symbolically (sympy) and numerically")
    v.add_argument("ops", nargs="*", help="ops to check (default: all differentiable ops)")
    v.add_argument("--numeric-only", action="store_true", help="skip the sympy proofs")
    v.set_defaults(func=_verify)
    d = sub.add_parser("dump", help="run a script with IR dumps on (every stage of every compile)")
    d.add_argument("script", help="a Python script that compiles graphs, or a graph saved as .json")
    d.add_argument("--stage", action="append", default=[], metavar="STAGE",
                   help="print this stage to stdout (repeatable): forward, backward, simplify, cse, fold, dce, "
                        "fuse, kernels, llvm, llvm-optimized, assembly, a number like 06, or NAME.diff")
    d.add_argument("--out", metavar="DIR", help="folder for the dumps (default: ./graphc-dump, or a temporary "
                                                "folder with --stage)")
    d.set_defaults(func=_dump)
    s = sub.add_parser("stats", help="run a script; flops, bytes and memory of its last compiled function")
    s.add_argument("script", help="a Python script that compiles graphs, or a graph saved as .json")
    s.add_argument("--all", action="store_true", help="every function the script compiled, not just the last")
    s.set_defaults(func=_stats)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except BrokenPipeError:  # output piped into `head` and the like
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
