#!/usr/bin/env python3
"""A/B timing of two builds of fastconv's native module (_C) in one process.

"head" is the _C of the fastconv this venv imports (or --head PATH); "base" is another build's _C,
for example a commit built in its own worktree and build dir:
    git worktree add --detach /tmp/fc_base <commit>
    cd /tmp/fc_base && python3 -m venv --system-site-packages .venv && . .venv/bin/activate
    FASTCONV_CUDA=OFF pip install --no-build-isolation -e . -Cbuild-dir=build/dev
    python bench/ab_native.py --base /tmp/fc_base/build/dev/_C.cpython-311-x86_64-linux-gnu.so \
        --layers keras.conv1 --passes bwd_data --threads 1,2 --isa avx512,avx2
Both modules are loaded side by side (under different package names) and called with the same
inputs and preallocated outputs; they take turns block by block (A B, B A, ...; an untimed
hand-over of --handover-ms after each switch, so neither runs beside the other's spinning workers).
Each call is timed twice: wall clock, and the process's CPU time (all threads, user + system),
which the time slices lost to other processes on a shared machine do not inflate (cache and memory
contention still do). The table gives medians of both and the ratio of the CPU times' minima;
ratio = head / base (> 1: head is slower). Before timing, each pass's outputs of the two builds are
compared bit for bit (a mismatch is printed: the builds differ in behaviour, not only speed).
Run a build against a copy of itself (A/A) first: the ratios it shows are this machine's noise.
--rotate N cycles each pass's inputs (x, dy) through N buffers call by call, as bench/conv_cpu.py
does (its default, 4 when a pass's inputs fit in 4 MB, is this script's too): with one buffer a
cache-sized layer is timed on inputs hot in L2, which training never gives it; --rotate 1 times
that hot case.
"""

from __future__ import annotations

import argparse
import fnmatch
import gc
import importlib.util
import itertools
import os
import statistics
import sys
import time
from math import prod

from _util import add_tests_to_path, pin_threads

PASSES = ("fwd", "bwd_data", "bwd_weight")


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--base", required=True, help="path of the base build's _C extension module")
    p.add_argument(
        "--head", default=None, help="path of another _C to use as head (default: this venv's)"
    )
    p.add_argument("--layers", default="*", help="names or globs of tests/shapes.py CONV_LAYERS")
    p.add_argument("--passes", default=",".join(PASSES), help="subset of " + ",".join(PASSES))
    p.add_argument("--threads", default="2", help="comma-separated thread counts (default 2)")
    p.add_argument("--isa", default="avx512", help="comma-separated ISA paths (default avx512)")
    p.add_argument("--reps", type=int, default=30, help="timed calls per build at least")
    p.add_argument("--min-time", type=float, default=0.3, help="seconds per build at least")
    p.add_argument("--block", type=int, default=5, help="timed calls per turn")
    p.add_argument("--handover-ms", type=float, default=2.0, help="untimed calls after a switch")
    p.add_argument("--all-shapes", action="store_true", help="also the bench-only layers")
    p.add_argument(
        "--rotate",
        type=int,
        default=None,
        help="input buffers to cycle through (default: 4 when a pass's inputs fit in 4 MB, as "
        "conv_cpu.py; 1: the same inputs every call, hot in cache)",
    )
    return p.parse_args(argv)


def load_native(path, package):
    """The _C extension at path as module <package>._C (its init symbol is PyInit__C)."""
    spec = importlib.util.spec_from_file_location(f"{package}._C", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def alternate_two(fns, reps, min_time, block, handover_ms):
    """Median wall and CPU ms of each callable, timed by turns (A B, B A, ...) with an untimed
    hand-over of at least one call and handover_ms after every switch."""
    samples = {name: ([], []) for name in fns}
    order = list(fns)
    gc_was = gc.isenabled()
    gc.disable()
    try:
        for f in fns.values():  # warm-up: workspaces, thread pools
            f()
            f()
        turn = 0
        while True:
            for name in order if turn % 2 == 0 else order[::-1]:
                f = fns[name]
                t_hand = time.perf_counter()
                f()
                while (time.perf_counter() - t_hand) * 1e3 < handover_ms:
                    f()
                wall, cpu = samples[name]
                for _ in range(block):
                    w0, c0 = time.perf_counter_ns(), time.process_time_ns()
                    f()
                    c1, w1 = time.process_time_ns(), time.perf_counter_ns()
                    wall.append((w1 - w0) / 1e6)
                    cpu.append((c1 - c0) / 1e6)
            turn += 1
            n = min(len(s[0]) for s in samples.values())
            spent = min(sum(s[0]) for s in samples.values()) / 1e3
            if n >= reps and (spent >= min_time or n >= 10 * reps):
                break
    finally:
        if gc_was:
            gc.enable()
    return {
        name: (statistics.median(wall), statistics.median(cpu), min(cpu))
        for name, (wall, cpu) in samples.items()
    }


def input_buffers(rotate, nbytes):
    """How many input buffers a pass cycles through (conv_cpu.py's rule unless --rotate)."""
    if rotate is not None:
        return max(1, rotate)
    return 4 if nbytes <= 4 << 20 else 1


def pass_call(C, name, layer, args, arrays):
    """A callable running one pass of `layer` through native module C into preallocated outputs;
    xs and dys are lists of input buffers taken in turn, one per call."""
    xs, w, b, dys, out = arrays
    turn = itertools.count()

    def nxt(bufs):
        return bufs[next(turn) % len(bufs)]

    if name == "fwd":
        return lambda: C.conv2d_fwd(nxt(xs), w, b, *args, False, out["y"])
    if name == "bwd_data":
        return lambda: C.conv2d_bwd_data(nxt(dys), w, layer.x_shape, *args, out["dx"])

    def bwd_weight():
        i = next(turn) % len(xs)
        C.conv2d_bwd_weights(dys[i], xs[i], layer.w_shape, *args, True, out["dw"], out["db"])

    return bwd_weight


def main(argv=None):
    a = parse_args(argv)
    threads = [int(t) for t in a.threads.split(",")]
    pin_threads(max(threads))
    import numpy as np

    add_tests_to_path()
    import shapes
    from fastconv import _C as head
    from fastconv.ops import _conv_args

    if a.head is not None:
        head = load_native(a.head, "fastconv_ab_head")
    base = load_native(a.base, "fastconv_ab_base")
    layers = [
        s
        for s in shapes.CONV_LAYERS
        if (a.all_shapes or not s.bench_only)
        and any(fnmatch.fnmatch(s.name, g) for g in a.layers.split(","))
    ]
    passes = [p for p in a.passes.split(",") if p]
    rng = np.random.default_rng(0)
    print(f"# head {head.__file__}\n# base {base.__file__}\n# load {os.getloadavg()}")
    print(f"# input buffers rotated: {a.rotate if a.rotate is not None else '4 if <= 4 MB'}")
    print(
        f"{'layer':<15}{'pass':<11}{'isa':<7}{'thr':>3}{'base ms':>9}{'head ms':>9}{'ratio':>7}"
        f"{'base cpu':>10}{'head cpu':>10}{'ratio':>7}{'min cpu ratio':>14}"
    )
    for isa in a.isa.split(","):
        for C in (head, base):
            C.set_isa(isa)
        for layer in layers:
            w = rng.standard_normal(layer.w_shape, dtype=np.float32)
            b = rng.standard_normal(layer.b_shape, dtype=np.float32)
            nbuf = input_buffers(a.rotate, 4 * (prod(layer.x_shape) + prod(layer.y_shape)))
            xs = [rng.standard_normal(layer.x_shape, dtype=np.float32) for _ in range(nbuf)]
            dys = [rng.standard_normal(layer.y_shape, dtype=np.float32) for _ in range(nbuf)]
            args = _conv_args(layer.stride, layer.padding, layer.dilation, layer.groups)
            outs = {}
            for tag in ("base", "head"):
                outs[tag] = {
                    "y": np.empty(layer.y_shape, np.float32),
                    "dx": np.empty(layer.x_shape, np.float32),
                    "dw": np.empty(layer.w_shape, np.float32),
                    "db": np.empty(layer.b_shape, np.float32),
                }
            for name in passes:
                for t in threads:
                    # fresh callables: their buffer turns start together (the timing below calls
                    # the two builds unequal numbers of times)
                    fns = {
                        tag: pass_call(C, name, layer, args, (xs, w, b, dys, outs[tag]))
                        for tag, C in (("base", base), ("head", head))
                    }
                    for C in (head, base):
                        C.set_num_threads(t)
                    keys = {"fwd": ("y",), "bwd_data": ("dx",), "bwd_weight": ("dw", "db")}[name]
                    same = True
                    for _ in range(nbuf):  # each input buffer through both builds, compared
                        fns["base"](), fns["head"]()
                        same = same and all(
                            np.array_equal(outs["base"][k], outs["head"][k], equal_nan=True)
                            for k in keys
                        )
                    st = alternate_two(fns, a.reps, a.min_time, a.block, a.handover_ms)
                    (wb, cb, mb), (wh, ch, mh) = st["base"], st["head"]
                    flag = "" if same else "  OUTPUTS DIFFER"
                    print(
                        f"{layer.name:<15}{name:<11}{isa:<7}{t:>3}{wb:>9.3f}{wh:>9.3f}"
                        f"{wh / wb:>7.3f}{cb:>10.3f}{ch:>10.3f}{ch / cb:>7.3f}{mh / mb:>14.3f}{flag}",
                        flush=True,
                    )
    print(f"# load {os.getloadavg()}")


if __name__ == "__main__":
    sys.exit(main())
