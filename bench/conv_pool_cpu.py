#!/usr/bin/env python3
"""CPU benchmark of the fused Conv2D(relu) + MaxPool 2x2 pair, as the layer API trains it, vs PyTorch.

Every conv layer of NETWORKS.md is followed by a ReLU and a 2x2/2 max-pool; Sequential runs that
pair as one op on the CPU (fastconv.conv2d_relu_maxpool2d and its backward ops). This times the
pair, both passes, against PyTorch doing the same work, alternating in one process (_util.alternate):
    fwd  fastconv  conv2d_relu_maxpool2d(x, w, b)                        -> pooled, uint8 codes
         torch     max_pool2d(relu(conv2d(x, w, b)), 2, return_indices)  -> pooled, int64 indices
    bwd  the gradients training needs from the pooled gradient dp:
         first layers (C_in = 1: the network's input needs no gradient): dW, db
         fastconv  conv2d_relu_maxpool2d_bwd_weights(dp, codes, x)
         other layers: dW, db and dx
         fastconv  relu_maxpool2d_backward(dp, codes) -> dz; conv2d_bwd_weights(dz, x); conv2d_bwd_data(dz, w)
         torch     max_pool2d_with_indices_backward -> threshold_backward (the ReLU) ->
                   convolution_backward(output_mask = [needs dx, True, True])
Results are checked against torch before timing (pooled exactly equal up to float32 conv rounding,
gradients to 5e-4 of their largest value). ratio = torch ms / fastconv ms.

    python bench/conv_pool_cpu.py --threads 2 --json bench/results/conv_pool_latest.json
    python bench/conv_pool_cpu.py --threads 1 --layers 'keras.*'
"""

from __future__ import annotations

import argparse
import fnmatch
import sys

from _util import (
    add_tests_to_path,
    alternate,
    describe,
    fmt_ms,
    machine_info,
    pin_threads,
    print_table,
    write_json,
)

TOL = 5e-4


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--layers", default="*", help="comma-separated glob patterns (default: all)")
    p.add_argument("--reps", type=int, default=30, help="timed calls per backend (default 30)")
    p.add_argument(
        "--block",
        type=int,
        default=10,
        help="timed calls per turn (default 10: long turns keep each library's pool warm "
        "and the other's idle; see _util.alternate)",
    )
    p.add_argument(
        "--handover-ms",
        type=float,
        default=25.0,
        help="untimed calls after each switch of backend for at least this long "
        "(default 25; see _util.alternate)",
    )
    p.add_argument("--json", help="write every record here")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    pin_threads(args.threads)
    import fastconv
    import numpy as np
    import torch

    add_tests_to_path()
    import shapes

    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    fastconv.set_num_threads(args.threads)
    F, aten = torch.nn.functional, torch.ops.aten
    info = machine_info(args.threads)
    print(describe(info), flush=True)
    pats = [p.strip() for p in args.layers.split(",")]
    rng = np.random.default_rng(0)
    records, rows = [], []
    for s in shapes.CONV_LAYERS:
        if s.name not in shapes.NETWORK_CONV or not any(fnmatch.fnmatch(s.name, p) for p in pats):
            continue
        kw = s.kwargs()
        first = s.c == 1
        x = rng.standard_normal(s.x_shape, dtype=np.float32)
        w = rng.standard_normal(s.w_shape, dtype=np.float32) / np.sqrt(np.prod(s.w_shape[1:]))
        w = w.astype(np.float32)
        b = rng.standard_normal(s.k, dtype=np.float32) * np.float32(0.1)
        oh, ow = s.y_shape[2:]
        p_shape = (s.n, s.k, oh // 2, ow // 2)
        dp = rng.standard_normal(p_shape, dtype=np.float32)
        tx, tw, tb, tdp = (torch.from_numpy(a) for a in (x, w, b, dp))
        pad = [s.pads()[0], s.pads()[2]]

        def t_fwd():
            z = F.conv2d(tx, tw, tb, padding=pad)
            r = torch.relu(z)
            pooled, idx = F.max_pool2d(r, 2, 2, return_indices=True)
            return z, r, pooled, idx

        def t_bwd(r, idx):
            g = aten.max_pool2d_with_indices_backward(
                tdp, r, [2, 2], [2, 2], [0, 0], [1, 1], False, idx
            )
            g = aten.threshold_backward(g, r, 0)
            return aten.convolution_backward(
                g, tx, tw, [s.k], [1, 1], pad, [1, 1], False, [0, 0], 1, [not first, True, True]
            )

        # check
        pooled, codes = fastconv.conv2d_relu_maxpool2d(x, w, b, **kw)
        _, r, tpooled, tidx = t_fwd()
        tg = t_bwd(r, tidx)
        errs = {
            "fwd": float(np.abs(pooled - tpooled.numpy()).max() / np.abs(tpooled.numpy()).max())
        }
        if first:
            gw, gb = fastconv.conv2d_relu_maxpool2d_bwd_weights(dp, codes, x, w.shape, **kw)
            got = {"dw": gw, "db": gb}
        else:
            dz = fastconv.relu_maxpool2d_backward(dp, codes, s.y_shape)
            gw, gb = fastconv.conv2d_bwd_weights(dz, x, w.shape, **kw)
            got = {"dx": fastconv.conv2d_bwd_data(dz, w, s.x_shape, **kw), "dw": gw, "db": gb}
        want = {"dx": tg[0], "dw": tg[1], "db": tg[2]}
        for k, v in got.items():
            ref = want[k].numpy()
            errs[k] = float(np.abs(v - ref).max() / max(float(np.abs(ref).max()), 1e-30))
        check = "ok" if max(errs.values()) <= TOL else "FAIL"
        if check == "FAIL":
            print(f"FAIL {s.name}: {errs}", file=sys.stderr, flush=True)

        # timing, with the layer API's out= buffers on the fastconv side
        out_p, out_c = np.empty(p_shape, np.float32), np.empty(p_shape, np.uint8)
        out_w, out_b = np.empty(w.shape, np.float32), np.empty(s.k, np.float32)
        out_z, out_x = np.empty(s.y_shape, np.float32), np.empty(s.x_shape, np.float32)
        _, r, _, tidx = t_fwd()

        def f_fwd(_):
            fastconv.conv2d_relu_maxpool2d(x, w, b, **kw, out=(out_p, out_c))

        def f_bwd(_):
            if first:
                fastconv.conv2d_relu_maxpool2d_bwd_weights(
                    dp, codes, x, w.shape, **kw, out=(out_w, out_b)
                )
                return
            fastconv.relu_maxpool2d_backward(dp, codes, s.y_shape, out=out_z)
            fastconv.conv2d_bwd_weights(out_z, x, w.shape, **kw, out=(out_w, out_b))
            fastconv.conv2d_bwd_data(out_z, w, s.x_shape, **kw, out=out_x)

        for pas, fns in (
            ("fwd", {"fastconv": f_fwd, "torch": lambda _: t_fwd()}),
            ("bwd", {"fastconv": f_bwd, "torch": lambda _: t_bwd(r, tidx)}),
        ):
            res = alternate(
                fns, args.reps, warmup=2, block=args.block, handover_ms=args.handover_ms
            )
            ratio = res["torch"]["median_ms"] / res["fastconv"]["median_ms"]
            grads = "dW, db" if first else "dx, dW, db"
            for backend, st in res.items():
                records.append(
                    dict(
                        op="conv2d_relu_maxpool2d",
                        layer=s.name,
                        **{"pass": pas},
                        backend=backend,
                        threads=args.threads,
                        check=check,
                        check_detail=errs,
                        grads=grads if pas == "bwd" else None,
                        speedup_vs_torch=ratio if backend == "fastconv" else None,
                        **st,
                    )
                )
            rows.append(
                [
                    s.name,
                    pas,
                    grads if pas == "bwd" else "pooled",
                    fmt_ms(res["fastconv"]),
                    fmt_ms(res["torch"]),
                    f"{ratio:.2f}x",
                    check,
                ]
            )
            print(
                f"  {s.name:14s} {pas}  fastconv {fmt_ms(res['fastconv'])}  torch {fmt_ms(res['torch'])}"
                f"  {ratio:.2f}x",
                flush=True,
            )
    print()
    print_table(
        [
            "pair (conv + relu + pool)",
            "pass",
            "computes",
            "fastconv ms",
            "torch ms",
            "speed-up",
            "check",
        ],
        rows,
    )
    if args.json:
        write_json(args.json, dict(info, threads=args.threads), records)
    return 0


if __name__ == "__main__":
    sys.exit(main())
