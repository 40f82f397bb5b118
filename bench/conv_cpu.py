#!/usr/bin/env python3
"""CPU benchmark of fastconv's Conv2D and MaxPool2D passes against PyTorch (oneDNN) and plain NumPy.

For every conv layer of NETWORKS.md at its published batch size (plus two VGG-sized 3x3 layers), and
every 2x2/2 max-pool those networks apply, this times
    conv:  fwd (conv2d_fwd), bwd-data (conv2d_bwd_data), bwd-weight (conv2d_bwd_weights, bias grad incl.)
    pool:  fwd (maxpool2d_fwd, with argmax indices), bwd (maxpool2d_bwd, scatter through the indices)
for three backends, in one process, taking turns rep by rep (fastconv, torch, numpy, numpy, torch,
fastconv, ...) so machine noise hits all of them alike:
    fastconv  fastconv.conv2d / conv2d_bwd_data / conv2d_bwd_weights / max_pool2d / max_pool2d_backward
    torch     F.conv2d; aten.convolution_backward with output_mask (input grad alone; weight+bias grads
              alone); F.max_pool2d(return_indices=True); aten.max_pool2d_with_indices_backward
    numpy     im2col (sliding_window_view) + matmul through NumPy's BLAS; col2im for bwd-data;
              reshape+argmax pooling (the "no special kernel" baseline)
All run on the same thread count (--threads, default 2: fastconv.set_num_threads, torch.set_num_threads,
and the BLAS/OpenMP env vars before NumPy loads). Before any timing, each layer's fastconv results
are checked against torch (max |a-b| / max |b|, pool values and indices exactly); a layer that fails
is reported as FAIL and its fastconv passes are not timed.

FLOPs per conv pass = 2*N*C_out*H_out*W_out*(C_in/groups)*KH*KW (the same for all three passes):
the direct algorithm's count, so a pass that runs Winograd (fewer multiplies) shows an effective
rate, above 100% of peak where it beats any direct kernel.
% of peak is against this machine's measured FMA ceilings (bench/fma_peak.cpp): AVX-512 239 GFLOP/s
per core, AVX2 120 per core (times --threads), for the ISA fastconv runs. Pools report GB/s of
compulsory traffic (fwd: x read, y and int64 indices written; bwd: dy and indices read, dx written).

Run (from the repo root, in a venv with fastconv built and torch installed: pip install .[bench]):
    python bench/conv_cpu.py                                 # all layers, 2 threads, table to stdout
    python bench/conv_cpu.py --json bench/results/cpu_latest.json
    python bench/conv_cpu.py --layers 'cnn1.*,keras.conv1' --passes fwd,bwd_data --reps 50
    python bench/conv_cpu.py --quick                          # smoke run: few reps
    python bench/conv_cpu.py --isa avx2 --threads 1           # hold fastconv AND torch/oneDNN to AVX2
    python bench/conv_cpu.py --jsonl                           # also one JSON line per record on stdout
Shapes come from tests/shapes.py (CONV_LAYERS / POOL_LAYERS); ratio = torch ms / fastconv ms
(> 1: fastconv is faster); goal = the target ratio for that layer (issue 5's; issue 19's with --isa avx2).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import sys
import time

from _conv_report import add_ratios, table_rows
from _numpy_baseline import NumpyConv, NumpyPool
from _util import (
    add_tests_to_path,
    alternate,
    check_isa,
    describe,
    fmt_ms,
    goals,
    hold_isa,
    machine_info,
    peak_gflops,
    pin_threads,
    print_table,
    write_json,
)

# The layers the issue tables: NETWORKS.md's at the published batch sizes (shapes.NETWORK_CONV and
# NETWORK_POOL), plus these VGG-sized ones.
VGG_CONV, VGG_POOL = ["vgg.a", "vgg.b"], ["vgg.pool"]
# The goals (torch_ms / fastconv_ms at least this much on every pass) come from _util.goals: issue
# 5's on the default path, issue 19's with --isa avx2; the compute-bound layers have their own.
COMPUTE_BOUND = {"keras.conv2", "fashion.conv2", "vgg.a", "vgg.b"}
CONV_PASSES = ("fwd", "bwd_data", "bwd_weight")
POOL_PASSES = ("fwd", "bwd")
# Check tolerance: max|fastconv - torch| / max|torch| per pass (float32, both sum in float32;
# bwd-weight reduces over N*OH*OW terms, hence the larger budget).
TOL = {"fwd": 1e-4, "bwd_data": 1e-4, "bwd_weight": 5e-4, "bwd_bias": 5e-4}


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--threads", type=int, default=2, help="threads for every backend (default 2)")
    p.add_argument(
        "--layers",
        default=None,
        help="comma-separated names or globs (e.g. 'cnn1.*,vgg.a'); default: the issue's layers",
    )
    p.add_argument(
        "--all-shapes",
        action="store_true",
        help="also the other bench-only layers of tests/shapes.py (AlexNet, Inception)",
    )
    p.add_argument("--ops", default="conv,pool", help="conv, pool or both (default)")
    p.add_argument(
        "--passes", default=None, help="subset of fwd,bwd_data,bwd_weight (conv), fwd,bwd (pool)"
    )
    p.add_argument("--backends", default="fastconv,torch,numpy", help="which backends to time")
    p.add_argument(
        "--reps", type=int, default=30, help="repetitions per backend at least (default 30)"
    )
    p.add_argument("--max-reps", type=int, default=300, help="cap when --min-time asks for more")
    p.add_argument(
        "--min-time",
        type=float,
        default=0.5,
        help="keep repeating until each backend spent this many seconds (default 0.5)",
    )
    p.add_argument(
        "--warmup", type=int, default=3, help="untimed calls per backend first (default 3)"
    )
    p.add_argument(
        "--numpy-reps", type=int, default=7, help="repetitions for the slow NumPy baseline"
    )
    p.add_argument(
        "--rotate",
        type=int,
        default=None,
        help="input buffers to cycle through (default: 4 when a pass's inputs fit in 4 MB)",
    )
    p.add_argument(
        "--block",
        type=int,
        default=3,
        help="timed calls per turn, after the untimed hand-over (default 3)",
    )
    p.add_argument(
        "--settle",
        type=float,
        default=0.0,
        help="ms to sleep before each turn (default 0: hand over at once)",
    )
    p.add_argument(
        "--handover-ms",
        type=float,
        default=25.0,
        help="untimed calls after each switch of backend for at least this long (default "
        "25: outlasts torch's ~9 ms worker spin; see _util.alternate)",
    )
    p.add_argument(
        "--isa",
        default=None,
        help="hold both libraries to one ISA (portable, avx2, avx512): FASTCONV_CPU_ISA, and "
        "ATEN_CPU_CAPABILITY + ONEDNN_MAX_CPU_ISA for torch, set before either loads",
    )
    p.add_argument("--quick", action="store_true", help="smoke run: 3 reps, 1 warm-up, no min time")
    p.add_argument("--json", default=None, metavar="PATH", help="write {meta, records} JSON here")
    p.add_argument(
        "--jsonl", action="store_true", help="print one JSON line per record as it is measured"
    )
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    if a.quick:
        a.reps, a.warmup, a.min_time, a.numpy_reps, a.max_reps, a.block = 3, 1, 0.0, 2, 3, 1
    if a.threads < 1:
        p.error("--threads must be >= 1")
    return a


def main(argv=None):
    args = parse_args(argv)
    pin_threads(args.threads)  # before numpy/torch load their thread pools
    hold_isa(args.isa)  # before fastconv/torch read their ISA settings
    # OpenBLAS workers spin up to 2^28 cycles (~0.1 s) after each call before sleeping, stealing a
    # core from whichever backend runs next; 2^4 makes them sleep at once. It affects only the NumPy
    # baseline's matmuls (fastconv and torch do not use OpenBLAS).
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

    import fastconv
    import numpy as np

    add_tests_to_path()
    import shapes

    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    torch = None
    if "torch" in backends:
        try:
            import torch
        except ImportError:
            print(
                "torch not installed: timing fastconv and numpy only (pip install .[bench])",
                file=sys.stderr,
            )
            backends.remove("torch")
    if torch is not None:
        torch.set_num_threads(args.threads)
        torch.set_grad_enabled(False)
    check_isa(args.isa, fastconv, torch)
    fastconv.set_num_threads(args.threads)
    isa = fastconv.get_cpu_isa()
    peak = peak_gflops(isa, args.threads)

    ops = {o.strip() for o in args.ops.split(",")}
    want = [s.strip() for s in args.layers.split(",")] if args.layers else None
    conv_pool = (
        shapes.CONV_LAYERS
        if args.all_shapes or want
        else [shapes.conv(n) for n in shapes.NETWORK_CONV + VGG_CONV]
    )
    pool_pool = (
        shapes.POOL_LAYERS
        if args.all_shapes or want
        else [shapes.pool(n) for n in shapes.NETWORK_POOL + VGG_POOL]
    )
    if want:

        def pick(s):
            return any(fnmatch.fnmatchcase(s.name, w) for w in want)

        conv_pool = [s for s in conv_pool if pick(s)]
        pool_pool = [s for s in pool_pool if pick(s)]
    conv_list = conv_pool if "conv" in ops else []
    pool_list = pool_pool if "pool" in ops else []
    if not conv_list and not pool_list:
        sys.exit(f"no layer matches --layers {args.layers!r} / --ops {args.ops!r}")

    meta = machine_info(args.threads)
    meta.update(
        isa=isa,
        peak_gflops=peak,
        reps=args.reps,
        min_time=args.min_time,
        warmup=args.warmup,
        block=args.block,
        handover_ms=args.handover_ms,
        backends=backends,
        method=(
            "backends alternate rep by rep in one process (order flips every round); "
            "median and p25/p75 of per-call perf_counter_ns times after warm-up"
        ),
    )
    print(describe(meta))
    print(
        f"threads={args.threads} isa={isa} peak={peak:.0f} GFLOP/s (measured FMA ceiling, bench/fma_peak.cpp) "
        f"reps>={args.reps} min-time={args.min_time}s warm-up={args.warmup}",
        flush=True,
    )

    rng = np.random.default_rng(args.seed)
    bench = Bench(np, fastconv, torch, backends, args, rng, isa, peak)
    records, rows = [], []
    t0 = time.perf_counter()
    for s in conv_list:
        recs = bench.conv_layer(s)
        records += recs
        rows += table_rows(recs)
    for s in pool_list:
        recs = bench.pool_layer(s)
        records += recs
        rows += table_rows(recs)
    meta["elapsed_s"] = round(time.perf_counter() - t0, 1)
    meta["loadavg_end"] = meta_load()

    print()
    print(
        f"times in ms: median (p25-p75); ratio = torch/fastconv medians (>1: fastconv faster), "
        f"ratio(min) = the same on the fastest reps; "
        f"peak = {peak:.0f} GFLOP/s ({isa}, {args.threads} threads); GFLOP/s count the direct "
        f"algorithm's FLOPs (Winograd passes: effective rates, may exceed the peak)"
    )
    print_table(
        [
            "layer",
            "pass",
            "fastconv ms",
            "torch ms",
            "numpy ms",
            "ratio",
            "ratio(min)",
            "goal",
            "fc GFLOP/s",
            "fc %peak",
            "torch GFLOP/s",
            "check",
        ],
        rows,
    )
    fails = [r for r in records if r.get("check") == "FAIL"]
    if fails:
        print(
            f"\n{len({r['layer'] for r in fails})} layer(s) FAILED the numerical check and were not "
            "timed for fastconv:",
            sorted({r["layer"] for r in fails}),
        )
    if args.json:
        write_json(args.json, meta, records)
        print(f"\nwrote {len(records)} records to {args.json}")
    return 1 if fails else 0


def meta_load():
    import os

    return list(os.getloadavg()) if hasattr(os, "getloadavg") else None


# ---- the three backends, per layer -------------------------------------------------------------------


class Bench:
    def __init__(self, np, fastconv, torch, backends, args, rng, isa, peak):
        self.np, self.fc, self.torch = np, fastconv, torch
        self.backends, self.args, self.rng, self.isa, self.peak = backends, args, rng, isa, peak
        self.passes = set(args.passes.split(",")) if args.passes else None

    def _nbuf(self, nbytes):
        if self.args.rotate:
            return max(1, self.args.rotate)
        return 4 if nbytes <= 4 << 20 else 1

    def _time(self, fns):
        a = self.args
        table = {}
        for name, f in fns.items():
            if name not in self.backends or f is None:
                continue
            table[name] = (f, a.numpy_reps) if name == "numpy" else f
        return alternate(
            table,
            a.reps,
            warmup=a.warmup,
            max_reps=a.max_reps,
            min_seconds=a.min_time,
            block=a.block,
            settle=a.settle / 1e3,
            handover_ms=a.handover_ms,
        )

    def _emit(self, rec):
        if self.args.jsonl:
            print(json.dumps(rec, default=str), flush=True)

    # -- conv ------------------------------------------------------------------------------------------
    def conv_layer(self, s):
        np, fc, torch = self.np, self.fc, self.torch
        pt, pb, pl, pr = s.pads()
        sym = pt == pb and pl == pr
        x = self.rng.standard_normal(s.x_shape, dtype=np.float32)
        w = (
            self.rng.standard_normal(s.w_shape, dtype=np.float32) / np.sqrt(np.prod(s.w_shape[1:]))
        ).astype(np.float32)
        b = self.rng.standard_normal(s.k, dtype=np.float32) if s.bias else None
        dy = self.rng.standard_normal(s.y_shape, dtype=np.float32)
        kw = s.kwargs()
        npimpl = NumpyConv(np, s) if s.groups == 1 and s.dilation == (1, 1) else None

        # numerical check first: fastconv vs torch (or vs the numpy baseline without torch)
        check, errs = "ok", {}
        got = {
            "fwd": fc.conv2d(x, w, b, **kw),
            "bwd_data": fc.conv2d_bwd_data(dy, w, s.x_shape, **kw),
        }
        got["bwd_weight"], got["bwd_bias"] = fc.conv2d_bwd_weights(
            dy, x, s.w_shape, **kw, with_bias=b is not None
        )
        if torch is not None and sym:
            ref = self._torch_conv_all(s, x, w, b, dy)
        elif npimpl is not None:
            ref = {"fwd": npimpl.fwd(x, w, b), "bwd_data": npimpl.bwd_data(dy, w)}
            ref["bwd_weight"], ref["bwd_bias"] = npimpl.bwd_weight(dy, x)
        else:
            ref, check = {}, "unchecked"
        for k, r in ref.items():
            if r is None:
                continue
            g = got[k]
            if g is None or g.shape != tuple(r.shape):
                errs[k] = float("inf")
                continue
            errs[k] = float(np.max(np.abs(g - r)) / max(float(np.max(np.abs(r))), 1e-30))
        if any(not (e <= TOL[k]) for k, e in errs.items()):
            check = "FAIL"
            print(
                f"FAIL {s.name}: fastconv vs reference max rel err {errs}",
                file=sys.stderr,
                flush=True,
            )
        del got

        # buffers rotated between reps so a cache-sized problem is not timed on hot inputs only
        nb_x = self._nbuf(x.nbytes + dy.nbytes)
        xs = [x] + [self.rng.standard_normal(s.x_shape, dtype=np.float32) for _ in range(nb_x - 1)]
        dys = [dy] + [
            self.rng.standard_normal(s.y_shape, dtype=np.float32) for _ in range(nb_x - 1)
        ]
        if torch is not None:
            T = torch.from_numpy
            txs, tdys, tw = [T(a) for a in xs], [T(a) for a in dys], T(w)
            tb = T(b) if b is not None else None
            tstride, tpad, tdil = list(s.stride), [pt, pl], list(s.dilation)
            conv_bwd = torch.ops.aten.convolution_backward
            bias_sizes = [s.k] if b is not None else None
            mask_d, mask_w = [True, False, False], [False, True, b is not None]

        flops = s.flops()
        records = []
        for pas in CONV_PASSES:
            if self.passes and pas not in self.passes:
                continue
            n = len(xs)
            fns = {}
            if check != "FAIL":
                if pas == "fwd":
                    fns["fastconv"] = lambda r: fc.conv2d(xs[r % n], w, b, **kw)
                elif pas == "bwd_data":
                    fns["fastconv"] = lambda r: fc.conv2d_bwd_data(dys[r % n], w, s.x_shape, **kw)
                else:
                    fns["fastconv"] = lambda r: fc.conv2d_bwd_weights(
                        dys[r % n], xs[r % n], s.w_shape, **kw, with_bias=b is not None
                    )
            if torch is not None and sym:
                F = torch.nn.functional
                if pas == "fwd":
                    fns["torch"] = lambda r: F.conv2d(
                        txs[r % n], tw, tb, tstride, tpad, tdil, s.groups
                    )
                elif pas == "bwd_data":
                    fns["torch"] = lambda r: conv_bwd(
                        tdys[r % n],
                        txs[r % n],
                        tw,
                        bias_sizes,
                        tstride,
                        tpad,
                        tdil,
                        False,
                        [0, 0],
                        s.groups,
                        mask_d,
                    )
                else:
                    fns["torch"] = lambda r: conv_bwd(
                        tdys[r % n],
                        txs[r % n],
                        tw,
                        bias_sizes,
                        tstride,
                        tpad,
                        tdil,
                        False,
                        [0, 0],
                        s.groups,
                        mask_w,
                    )
            if npimpl is not None:
                if pas == "fwd":
                    fns["numpy"] = lambda r: npimpl.fwd(xs[r % n], w, b)
                elif pas == "bwd_data":
                    fns["numpy"] = lambda r: npimpl.bwd_data(dys[r % n], w)
                else:
                    fns["numpy"] = lambda r: npimpl.bwd_weight(dys[r % n], xs[r % n])
            res = self._time(fns)
            for backend, st in res.items():
                rec = dict(
                    op="conv2d",
                    layer=s.name,
                    **{"pass": pas},
                    backend=backend,
                    threads=self.args.threads,
                    isa=self.isa if backend == "fastconv" else None,
                    shape=dict(
                        n=s.n,
                        c_in=s.c,
                        h=s.h,
                        w=s.w,
                        c_out=s.k,
                        kernel=s.kernel,
                        stride=s.stride,
                        padding=s.pads(),
                        groups=s.groups,
                    ),
                    flops=flops,
                    gflops=flops / (st["median_ms"] * 1e6),
                    buffers=n,
                    check=check if backend == "fastconv" else None,
                    check_max_rel_err=errs or None,
                    **st,
                )
                rec["pct_peak"] = 100.0 * rec["gflops"] / self.peak
                records.append(rec)
                self._emit(rec)
            if check == "FAIL":
                records.append(
                    dict(
                        op="conv2d",
                        layer=s.name,
                        **{"pass": pas},
                        backend="fastconv",
                        threads=self.args.threads,
                        isa=self.isa,
                        check="FAIL",
                        check_max_rel_err=errs,
                        flops=flops,
                    )
                )
            goal = goals(self.args.isa)["conv"]
            add_ratios(
                records, s.name, pas, goal["compute" if s.name in COMPUTE_BOUND else "mnist"]
            )
            print(
                f"  {s.name:14s} {pas:10s} "
                + "  ".join(f"{k} {fmt_ms(v)}" for k, v in res.items()),
                flush=True,
            )
        return records

    def _torch_conv_all(self, s, x, w, b, dy):
        torch = self.torch
        pt, _, pl, _ = s.pads()
        T = torch.from_numpy
        tb = T(b) if b is not None else None
        y = torch.nn.functional.conv2d(
            T(x), T(w), tb, list(s.stride), [pt, pl], list(s.dilation), s.groups
        )
        dx, dw, db = torch.ops.aten.convolution_backward(
            T(dy),
            T(x),
            T(w),
            [s.k] if b is not None else None,
            list(s.stride),
            [pt, pl],
            list(s.dilation),
            False,
            [0, 0],
            s.groups,
            [True, True, b is not None],
        )
        out = {"fwd": y.numpy(), "bwd_data": dx.numpy(), "bwd_weight": dw.numpy()}
        out["bwd_bias"] = db.numpy() if b is not None else None
        return out

    # -- pool ------------------------------------------------------------------------------------------
    def pool_layer(self, s):
        np, fc, torch = self.np, self.fc, self.torch
        kh, kw_ = s.kernel
        sh, sw = s.stride or s.kernel
        ph, pw = s.padding
        x = self.rng.standard_normal(s.x_shape, dtype=np.float32)
        dy = self.rng.standard_normal(s.y_shape, dtype=np.float32)
        npimpl = NumpyPool(np, s) if (sh, sw) == (kh, kw_) and (ph, pw) == (0, 0) else None

        check, errs = "ok", {}
        y, idx = fc.max_pool2d(x, s.kernel, s.stride, s.padding, return_indices=True)
        dx = fc.max_pool2d_backward(dy, idx, s.x_shape)
        if torch is not None:
            ty, tidx = torch.nn.functional.max_pool2d(
                torch.from_numpy(x), s.kernel, (sh, sw), (ph, pw), return_indices=True
            )
            tdx = torch.ops.aten.max_pool2d_with_indices_backward(
                torch.from_numpy(dy),
                torch.from_numpy(x),
                list(s.kernel),
                [sh, sw],
                [ph, pw],
                [1, 1],
                False,
                tidx,
            )
            ref = (ty.numpy(), tidx.numpy(), tdx.numpy())
        elif npimpl is not None:
            ry, ridx = npimpl.fwd(x)
            ref = (ry, ridx, npimpl.bwd(dy, ridx))
        else:
            ref, check = None, "unchecked"
        if ref is not None:
            ok_y = y.shape == ref[0].shape and np.array_equal(y, ref[0])
            ok_i = idx.shape == ref[1].shape and np.array_equal(idx, ref[1])
            e_dx = (
                float(np.max(np.abs(dx - ref[2])) / max(float(np.max(np.abs(ref[2]))), 1e-30))
                if dx.shape == ref[2].shape
                else float("inf")
            )
            errs = {"fwd_values_equal": bool(ok_y), "fwd_indices_equal": bool(ok_i), "bwd": e_dx}
            if not (ok_y and ok_i and e_dx <= 1e-6):
                check = "FAIL"
                print(
                    f"FAIL {s.name}: fastconv pool vs reference {errs}", file=sys.stderr, flush=True
                )

        nb = self._nbuf(x.nbytes + dy.nbytes)
        xs = [x] + [self.rng.standard_normal(s.x_shape, dtype=np.float32) for _ in range(nb - 1)]
        dys = [dy] + [self.rng.standard_normal(s.y_shape, dtype=np.float32) for _ in range(nb - 1)]
        idxs = [fc.max_pool2d(a, s.kernel, s.stride, s.padding, return_indices=True)[1] for a in xs]
        n = len(xs)
        if torch is not None:
            T = torch.from_numpy
            txs, tdys = [T(a) for a in xs], [T(a) for a in dys]
            tidxs = [
                torch.nn.functional.max_pool2d(
                    t, s.kernel, (sh, sw), (ph, pw), return_indices=True
                )[1]
                for t in txs
            ]
        if npimpl is not None:
            nidxs = [npimpl.fwd(a)[1] for a in xs]
        out_elems = int(np.prod(s.y_shape))
        in_elems = int(np.prod(s.x_shape))
        nbytes = {
            "fwd": in_elems * 4 + out_elems * (4 + 8),
            "bwd": out_elems * (4 + 8) + in_elems * 4,
        }
        records = []
        for pas in POOL_PASSES:
            if self.passes and pas not in self.passes:
                continue
            fns = {}
            if check != "FAIL":
                if pas == "fwd":
                    fns["fastconv"] = lambda r: fc.max_pool2d(
                        xs[r % n], s.kernel, s.stride, s.padding, return_indices=True
                    )
                else:
                    fns["fastconv"] = lambda r: fc.max_pool2d_backward(
                        dys[r % n], idxs[r % n], s.x_shape
                    )
            if torch is not None:
                if pas == "fwd":
                    fns["torch"] = lambda r: torch.nn.functional.max_pool2d(
                        txs[r % n], s.kernel, (sh, sw), (ph, pw), return_indices=True
                    )
                else:
                    fns["torch"] = lambda r: torch.ops.aten.max_pool2d_with_indices_backward(
                        tdys[r % n],
                        txs[r % n],
                        list(s.kernel),
                        [sh, sw],
                        [ph, pw],
                        [1, 1],
                        False,
                        tidxs[r % n],
                    )
            if npimpl is not None:
                if pas == "fwd":
                    fns["numpy"] = lambda r: npimpl.fwd(xs[r % n])
                else:
                    fns["numpy"] = lambda r: npimpl.bwd(dys[r % n], nidxs[r % n])
            res = self._time(fns)
            for backend, st in res.items():
                rec = dict(
                    op="max_pool2d",
                    layer=s.name,
                    **{"pass": pas},
                    backend=backend,
                    threads=self.args.threads,
                    isa=self.isa if backend == "fastconv" else None,
                    shape=dict(
                        n=s.n,
                        c=s.c,
                        h=s.h,
                        w=s.w,
                        kernel=s.kernel,
                        stride=(sh, sw),
                        padding=(ph, pw),
                    ),
                    bytes=nbytes[pas],
                    gbytes_per_s=nbytes[pas] / (st["median_ms"] * 1e6),
                    buffers=n,
                    check=check if backend == "fastconv" else None,
                    check_detail=errs or None,
                    **st,
                )
                records.append(rec)
                self._emit(rec)
            if check == "FAIL":
                records.append(
                    dict(
                        op="max_pool2d",
                        layer=s.name,
                        **{"pass": pas},
                        backend="fastconv",
                        threads=self.args.threads,
                        isa=self.isa,
                        check="FAIL",
                        check_detail=errs,
                    )
                )
            add_ratios(records, s.name, pas, goals(self.args.isa)["pool"][pas])
            print(
                f"  {s.name:14s} {pas:10s} "
                + "  ".join(f"{k} {fmt_ms(v)}" for k, v in res.items()),
                flush=True,
            )
        return records


if __name__ == "__main__":
    sys.exit(main())
