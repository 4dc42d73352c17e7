"""The long fuzz run: thousands of random graphs, compiled vs interpreted, with a crash guard.

    python bench/fuzz.py --graphs 10000 [--seed 0] [--grad-every 5] [--jobs 2] [--batch 200]

Graph ``i`` uses seed ``seed + i``; every ``grad-every``-th graph is a
gradient graph (gc.grad vs finite differences, compiled vs interpreted
gradients), the others forward graphs (tests/fuzz_graphs.py). Graphs run
in-process in worker subprocesses, a batch at a time: a native crash
(segfault, abort) or a hang kills only the worker; the graph it was running
is counted as a crash with its seed and a new worker continues after it.

The run ends with

    graphs run: N, mismatches: M, crashes: C

and the failing seeds grouped by the shape of their message (numbers
blanked), so one bug hit by many graphs is one line. Reproduce one with
``python tests/fuzz_graphs.py SEED [grad]``. ``--log FILE`` writes every
result as one JSON line; ``--exclude a,b`` switches off generator features
(see ``KNOWN_PATTERNS`` in tests/fuzz_graphs.py).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"


def is_grad(i: int, grad_every: int) -> bool:
    return grad_every > 0 and i % grad_every == grad_every - 1


# ---------------------------------------------------------------- worker (one subprocess)

def worker(start: int, stop: int, seed: int, grad_every: int) -> None:
    import faulthandler
    faulthandler.enable()  # a native crash prints the Python stack to stderr (shown in the report)
    sys.path.insert(0, str(TESTS))
    import fuzz_graphs as F
    out = sys.stdout
    crash_seed = os.environ.get("GRAPHC_FUZZ_SELFTEST_CRASH")  # tests the guard: segfault at this seed
    for i in range(start, stop):
        s = seed + i
        grad = is_grad(i, grad_every)
        out.write(f"S\t{i}\n")
        out.flush()
        if crash_seed is not None and int(crash_seed) == s:
            import ctypes
            ctypes.string_at(0)
        t = time.perf_counter()
        msg = F.run_one(s, grad)
        rec = {"i": i, "seed": s, "grad": grad, "ok": msg is None, "msg": msg,
               "seconds": round(time.perf_counter() - t, 3)}
        out.write("R\t" + json.dumps(rec) + "\n")
        out.flush()


# ---------------------------------------------------------------- driver

def signature(msg: str) -> str:
    """The message with seeds, numbers and array values blanked: one line per kind of failure."""
    m = msg.splitlines()[0] if msg else ""
    m = re.sub(r"^seed \d+( \(grad(, compiled)?\))?( call \d+)?: ", "", m)
    m = re.sub(r"np\.\w+\(([^()]*)\)", r"\1", m)
    m = re.sub(r"-?\d+(\.\d+)?(e[-+]?\d+)?", "#", m)
    m = re.sub(r"\[[#, ]*\]", "[..]", m)
    m = re.sub(r"\(#(, #)*,?\)", "(..)", m)
    return m[:110]


class Driver:
    def __init__(self, args):
        self.args = args
        self.results: dict[int, dict] = {}
        self.lock = threading.Lock()
        self.log = open(args.log, "w") if args.log else None
        self.next_batch = 0
        self.batches = [(a, min(a + args.batch, args.graphs)) for a in range(0, args.graphs, args.batch)]
        self.started = time.time()
        self.last_report = 0.0

    def take_batch(self):
        with self.lock:
            if self.next_batch >= len(self.batches):
                return None
            b = self.batches[self.next_batch]
            self.next_batch += 1
            return b

    def record(self, rec: dict) -> None:
        with self.lock:
            self.results[rec["i"]] = rec
            if self.log:
                self.log.write(json.dumps(rec) + "\n")
                self.log.flush()
            if not rec["ok"] and not self.args.quiet:
                kind = "CRASH" if rec.get("crash") else "FAIL"
                print(f"{kind} seed {rec['seed']}{' (grad)' if rec['grad'] else ''}: "
                      f"{(rec['msg'] or '').splitlines()[0][:300]}", flush=True)
            now = time.time()
            if now - self.last_report > self.args.progress:
                self.last_report = now
                self.progress()

    def progress(self):
        n = len(self.results)
        bad = sum(1 for r in self.results.values() if not r["ok"])
        print(f"... {n}/{self.args.graphs} graphs, {bad} failing, {time.time() - self.started:.0f}s",
              flush=True)

    def run_range(self, start: int, stop: int) -> None:
        """Run graphs [start, stop) in subprocesses, restarting after each crash."""
        a = self.args
        env = dict(os.environ)
        if not a.cache:
            env["GRAPHC_CACHE"] = "0"
        if a.exclude:
            env["GRAPHC_FUZZ_EXCLUDE"] = a.exclude
        i = start
        while i < stop:
            cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--start", str(i), "--stop", str(stop),
                   "--seed", str(a.seed), "--grad-every", str(a.grad_every)]
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                    cwd=str(ROOT))
            current = None
            last_seen = time.time()
            stderr_tail: list[str] = []

            def drain_stderr():
                for line in proc.stderr:
                    stderr_tail.append(line)
                    del stderr_tail[:-20]
            t_err = threading.Thread(target=drain_stderr, daemon=True)
            t_err.start()
            timed_out = threading.Event()

            def watchdog():
                while proc.poll() is None:
                    if current is not None and time.time() - last_seen > a.timeout:
                        timed_out.set()
                        proc.kill()
                        return
                    time.sleep(1)
            t_dog = threading.Thread(target=watchdog, daemon=True)
            t_dog.start()
            for line in proc.stdout:
                tag, _, payload = line.rstrip("\n").partition("\t")
                if tag == "S":
                    current = int(payload)
                    last_seen = time.time()
                elif tag == "R":
                    rec = json.loads(payload)
                    self.record(rec)
                    current = None
                    i = rec["i"] + 1
            proc.wait()
            t_err.join(timeout=5)
            if current is not None:  # died (or hung) inside a graph
                why = "hang (killed after %ds)" % a.timeout if timed_out.is_set() else \
                    f"worker died with exit code {proc.returncode}"
                tail = "".join(stderr_tail[-5:]).strip().replace("\n", " | ")
                self.record({"i": current, "seed": a.seed + current, "grad": is_grad(current, a.grad_every),
                             "ok": False, "crash": True, "msg": f"seed {a.seed + current}: CRASH: {why}; {tail[:300]}",
                             "seconds": None})
                i = current + 1
            elif proc.returncode != 0 and i < stop:
                tail = "".join(stderr_tail[-5:]).strip()
                raise RuntimeError(f"worker failed outside a graph (exit {proc.returncode}): {tail}")

    def run(self):
        def loop():
            while True:
                b = self.take_batch()
                if b is None:
                    return
                self.run_range(*b)
        threads = [threading.Thread(target=loop) for _ in range(max(1, self.args.jobs))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.summary()

    def summary(self):
        res = [self.results[k] for k in sorted(self.results)]
        crashes = [r for r in res if r.get("crash")]
        mism = [r for r in res if not r["ok"] and not r.get("crash")]
        groups = defaultdict(list)
        for r in mism + crashes:
            groups[("CRASH " if r.get("crash") else "") + signature(r["msg"] or "")].append(r)
        print()
        n_grad = sum(1 for r in res if r["grad"])
        print(f"forward graphs: {len(res) - n_grad}, gradient graphs: {n_grad}, "
              f"time: {time.time() - self.started:.0f}s")
        if groups:
            print(f"failures by kind ({len(groups)} kinds):")
            for sig, rs in sorted(groups.items(), key=lambda kv: -len(kv[1])):
                seeds = ", ".join(f"{r['seed']}{'g' if r['grad'] else ''}" for r in rs[:15])
                more = f", ... (+{len(rs) - 15})" if len(rs) > 15 else ""
                print(f"  {len(rs):5d}  {sig}\n         seeds: {seeds}{more}")
            print("failing seeds (g = gradient graph): " +
                  " ".join(f"{r['seed']}{'g' if r['grad'] else ''}" for r in mism + crashes))
        print(f"graphs run: {len(res)}, mismatches: {len(mism)}, crashes: {len(crashes)}", flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--graphs", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0, help="graph i uses seed SEED + i")
    p.add_argument("--grad-every", type=int, default=5, help="every k-th graph is a gradient graph (0: none)")
    p.add_argument("--jobs", type=int, default=2, help="worker processes at a time")
    p.add_argument("--batch", type=int, default=200, help="graphs per worker process")
    p.add_argument("--timeout", type=int, default=300, help="seconds before a graph counts as hung")
    p.add_argument("--exclude", default="", help="generator features to switch off (comma-separated)")
    p.add_argument("--log", default="", help="write every result as a JSON line to this file")
    p.add_argument("--cache", action="store_true", help="keep graphc's on-disk code cache on (default off)")
    p.add_argument("--progress", type=float, default=60.0, help="seconds between progress lines")
    p.add_argument("--quiet", action="store_true", help="do not print each failure as it happens")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--start", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--stop", type=int, default=0, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker:
        worker(a.start, a.stop, a.seed, a.grad_every)
        return 0
    d = Driver(a)
    d.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
