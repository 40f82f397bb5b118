"""fastconv CUDA kernels vs cuDNN (through PyTorch) on the NETWORKS.md layers.

    python bench/conv_cuda.py [--reps 100] [--json conv_cuda.json] [--tf32] [--only NAME ...]

Needs a GPU, fastconv built with CUDA, CuPy and PyTorch (CUDA build). For each conv layer and pass
(fwd, bwd_data, bwd_weights) and each max-pool layer and pass (fwd, bwd) it times fastconv and
cuDNN with CUDA events on one stream (PyTorch's current stream, shared with CuPy), after warm-up
(which includes cuDNN's autotuning: torch.backends.cudnn.benchmark = True), as the median of --reps
individually timed calls, rotating among several input sets when a problem fits in L2. TF32 is off
for the float32 comparison; --tf32 adds a labelled cuDNN row with TF32 on.
Also printed per row: the floor (max of FLOPs / peak FP32 rate and bytes / peak bandwidth, see
docs/CUDA.md) and fastconv's relative error against cuDNN (a check that both computed the same).
Shapes: tests/shapes.py — the MNIST-family layers at their training batch sizes, AlexNet conv1 and
two VGG 3x3 layers at batch 64, plus the catalog's AlexNet conv2 / Inception layers at batch 8.
Writes one JSON record per row (--json) and prints a table; the GPU model is in both.
Large layers (AlexNet, VGG, Inception): each pass is also timed with every CUDA kernel family
forced in turn (--families, default direct, tiled, tiled128 and tf32 where this build has it;
--family-reps calls each), one labelled row each ("family"), next to cuDNN FP32 (and TF32 with
--tf32): the data for the automatic choice, which never picks tiled128 or tf32 by itself yet.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

import shapes  # noqa: E402
from _util import cupy_stream_of  # noqa: E402  (bench/, this script's folder)

# Datasheet peaks (FP32 non-tensor TFLOP/s, HBM GB/s): leads for the floor column, not measurements.
PEAKS = {"H100": (67.0, 3350.0), "H200": (67.0, 4800.0), "A100": (19.5, 2039.0)}


FAMILIES = ("direct", "tiled", "tiled128", "tf32")


def large_conv_problems():
    big = [shapes.conv(n).with_batch(64) for n in ("alexnet.conv1", "vgg.a", "vgg.b")]
    extra = [shapes.conv(n) for n in ("alexnet.conv2", "inception.1x1", "inception.5x5")]
    return big + extra


def conv_problems():
    layers = [s for s in shapes.CONV_LAYERS if not s.bench_only]
    return layers + large_conv_problems()


def pool_problems():
    layers = [s for s in shapes.POOL_LAYERS if not s.bench_only]
    return layers + [shapes.pool(n).with_batch(64) for n in ("alexnet.pool1", "vgg.pool")]


def conv_bytes(s, pass_):
    x, w, y = (4 * _prod(t) for t in (s.x_shape, s.w_shape, s.y_shape))
    return {"fwd": x + w + y + 4 * s.k, "bwd_data": y + w + x, "bwd_weights": y + x + w + 4 * s.k}[
        pass_
    ]


def _prod(t):
    out = 1
    for v in t:
        out *= v
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--reps", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--json", default="conv_cuda.json")
    ap.add_argument(
        "--tf32", action="store_true", help="add a cuDNN row with TF32 enabled (labelled)"
    )
    ap.add_argument("--only", nargs="*", help="shape names to run (default: all)")
    ap.add_argument(
        "--families",
        default=",".join(FAMILIES),
        help="CUDA kernel families forced in turn on the large layers (comma-separated; '' none)",
    )
    ap.add_argument("--family-reps", type=int, default=20, help="timed calls per forced family")
    args = ap.parse_args(argv)
    families = [f for f in args.families.split(",") if f]
    for f in families:
        if f not in FAMILIES:
            ap.error(f"--families: unknown family {f!r} (choose from {', '.join(FAMILIES)})")

    import cupy as cp
    import fastconv
    import torch
    import torch.nn.functional as F

    if not torch.cuda.is_available():
        sys.exit("conv_cuda: PyTorch sees no CUDA device")
    if not fastconv.info()["cuda_built"]:
        sys.exit("conv_cuda: fastconv was built without CUDA (FASTCONV_CUDA=ON pip install .)")
    torch.backends.cudnn.benchmark = True
    dev = torch.device("cuda")
    gpu = torch.cuda.get_device_name(0)
    peak = next((v for k, v in PEAKS.items() if k in gpu), None)
    stream = torch.cuda.current_stream()
    cp_stream = cupy_stream_of(stream, cp)  # fastconv's launches queue on torch's stream
    l2 = (
        torch.cuda.get_device_properties(0).L2_cache_size
        if hasattr(torch.cuda.get_device_properties(0), "L2_cache_size")
        else 50 * 2**20
    )

    def time_fn(fn, sets, reps=None, warmup=None):
        """Median ms of fn(inputs) over `reps` calls, rotating among the input sets."""
        reps = args.reps if reps is None else reps
        with cp_stream:
            for i in range(args.warmup if warmup is None else warmup):
                fn(sets[i % len(sets)])
            times = []
            for i in range(reps):
                start, end = (
                    torch.cuda.Event(enable_timing=True),
                    torch.cuda.Event(enable_timing=True),
                )
                start.record(stream)
                fn(sets[i % len(sets)])
                end.record(stream)
                times.append((start, end))
            torch.cuda.synchronize()
        return statistics.median(s.elapsed_time(e) for s, e in times)

    def n_sets(nbytes):
        return max(1, min(8, int(3 * l2 // max(nbytes, 1)) + 1))

    def rel_err(a, b):
        a, b = a.double(), b.double()
        return float((a - b).norm() / max(float(b.norm()), 1e-30))

    meta = {
        "gpu": gpu,
        "torch": torch.__version__,
        "cudnn": torch.backends.cudnn.version(),
        "fastconv": fastconv.__version__,
        "fastconv_cuda_device": fastconv.info()["cuda_device"],
        "python": platform.python_version(),
        "reps": args.reps,
        "warmup": args.warmup,
    }
    rows = []
    print(
        f"# GPU: {gpu}  torch {torch.__version__}  cuDNN {meta['cudnn']}  reps={args.reps} (median)"
    )
    hdr = (
        f"{'shape':24s} {'pass':12s} {'fastconv ms':>11s} {'cuDNN ms':>9s} {'fc TFLOP/s':>10s} "
        f"{'cuDNN TF/s':>10s} {'fc/cuDNN':>8s} {'floor ms':>8s} {'rel err':>8s}"
    )
    print(hdr)
    gen = torch.Generator(device=dev).manual_seed(0)
    large = {s.name for s in large_conv_problems()}

    def dump():
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "rows": rows}, f, indent=1)

    def family_rows(pass_, fc, sets, want, row, t_tf32):
        """One row per forced family of this pass (an error row where the family cannot run)."""
        out = []
        for fam in families:
            try:
                fastconv.set_conv_algo(pass_, fam, device="cuda")
            except ValueError as exc:  # a family this build does not have
                out.append(dict(row, family=fam, error=str(exc)))
                continue
            try:
                with cp_stream:
                    got = fc(sets[0])
                    got = got[0] if isinstance(got, tuple) else got
                torch.cuda.synchronize()
                err = rel_err(torch.as_tensor(got, device=dev), want)
                del got
                t = time_fn(fc, sets, reps=args.family_reps, warmup=2)
            except (ValueError, RuntimeError) as exc:
                out.append(dict(row, family=fam, error=str(exc)))
                continue
            finally:
                fastconv.set_conv_algo(pass_, None, device="cuda")
            fam_row = dict(
                row,
                family=fam,
                fastconv_ms=t,
                fastconv_tflops=row["flops"] / t / 1e9,
                ratio=t / row["cudnn_ms"],
                rel_err_vs_cudnn=err,
                reps=args.family_reps,
            )
            if t_tf32 is not None:
                fam_row["cudnn_tf32_ms"] = t_tf32
                fam_row["ratio_vs_cudnn_tf32"] = t / t_tf32
            out.append(fam_row)
        for r in out:
            text = r.get("error") or (
                f"{r['fastconv_ms']:11.4f} {r['cudnn_ms']:9.4f} {r['fastconv_tflops']:10.2f} "
                f"{r['cudnn_tflops']:10.2f} {r['ratio']:8.2f} {'':8s} {r['rel_err_vs_cudnn']:8.1e}"
            )
            print(f"{'':24s} {'  ' + r['family']:12s} {text}")
        return out

    for s in conv_problems():
        if args.only and s.name not in args.only:
            continue
        pt, pb, pl, pr = s.pads()
        symmetric = pt == pb and pl == pr
        assert symmetric, f"{s.name}: asymmetric padding is not benchmarked against cuDNN"
        nbytes = conv_bytes(s, "fwd")
        sets = []
        for _ in range(n_sets(nbytes)):
            x = torch.rand(s.x_shape, device=dev, generator=gen) * 2 - 1
            w = torch.rand(s.w_shape, device=dev, generator=gen) * 2 - 1
            b = torch.rand((s.k,), device=dev, generator=gen) * 2 - 1
            dy = torch.rand(s.y_shape, device=dev, generator=gen) * 2 - 1
            sets.append({"t": (x, w, b, dy), "c": tuple(cp.asarray(t) for t in (x, w, b, dy))})
        kw = s.kwargs()
        tkw = dict(stride=s.stride, padding=(pt, pl), dilation=s.dilation, groups=s.groups)

        def t_bwd(t, mask):
            x, w, _, dy = t
            return torch.ops.aten.convolution_backward(
                dy,
                x,
                w,
                [s.k],
                list(s.stride),
                [pt, pl],
                list(s.dilation),
                False,
                [0, 0],
                s.groups,
                mask,
            )

        passes = {
            "fwd": (
                lambda d: fastconv.conv2d(*d["c"][:3], **kw),
                lambda d: F.conv2d(*d["t"][:3], **tkw),
            ),
            "bwd_data": (
                lambda d: fastconv.conv2d_bwd_data(d["c"][3], d["c"][1], s.x_shape, **kw),
                lambda d: t_bwd(d["t"], [True, False, False])[0],
            ),
            "bwd_weights": (
                lambda d: fastconv.conv2d_bwd_weights(d["c"][3], d["c"][0], s.w_shape, **kw),
                lambda d: t_bwd(d["t"], [False, True, True])[1],
            ),
        }
        for pass_, (fc, cd) in passes.items():
            torch.backends.cudnn.allow_tf32 = False
            with cp_stream:
                got = fc(sets[0])
                got = got[0] if isinstance(got, tuple) else got
            want = cd(sets[0])
            torch.cuda.synchronize()
            err = rel_err(torch.as_tensor(got, device=dev), want)
            t_fc, t_cd = time_fn(fc, sets), time_fn(cd, sets)
            flops = s.flops()
            floor = None
            if peak:
                floor = max(flops / (peak[0] * 1e12), conv_bytes(s, pass_) / (peak[1] * 1e9)) * 1e3
            row = {
                "op": "conv2d",
                "pass": pass_,
                "family": "auto",
                "auto_family": fastconv.conv2d_algo(
                    pass_, s.x_shape, s.w_shape, **kw, device="cuda"
                ),
                "shape": s.name,
                "x": s.x_shape,
                "w": s.w_shape,
                "stride": s.stride,
                "padding": s.padding,
                "groups": s.groups,
                "flops": flops,
                "bytes_min": conv_bytes(s, pass_),
                "fastconv_ms": t_fc,
                "cudnn_ms": t_cd,
                "fastconv_tflops": flops / t_fc / 1e9,
                "cudnn_tflops": flops / t_cd / 1e9,
                "ratio": t_fc / t_cd,
                "floor_ms": floor,
                "rel_err_vs_cudnn": err,
                "gpu": gpu,
            }
            rows.append(row)
            print(
                f"{s.name:24s} {pass_:12s} {t_fc:11.4f} {t_cd:9.4f} {row['fastconv_tflops']:10.2f} "
                f"{row['cudnn_tflops']:10.2f} {row['ratio']:8.2f} {floor if floor else float('nan'):8.4f} {err:8.1e}"
            )
            t_tf = None
            if args.tf32:
                torch.backends.cudnn.allow_tf32 = True
                t_tf = time_fn(cd, sets)
                torch.backends.cudnn.allow_tf32 = False
                rows.append(
                    dict(
                        row,
                        cudnn_ms=t_tf,
                        cudnn_tflops=flops / t_tf / 1e9,
                        ratio=t_fc / t_tf,
                        peer="cudnn-tf32",
                    )
                )
                print(
                    f"{'':24s} {pass_ + ' (TF32)':12s} {'':11s} {t_tf:9.4f} {'':10s} "
                    f"{flops / t_tf / 1e9:10.2f} {t_fc / t_tf:8.2f}"
                )
            if s.name in large:
                rows += family_rows(pass_, fc, sets, want, row, t_tf)
            del got, want
        dump()  # after every layer: a run cut short by its time cap keeps what it measured

    for s in pool_problems():
        if args.only and s.name not in args.only:
            continue
        stride = s.stride or s.kernel
        sets = []
        for _ in range(n_sets(8 * _prod(s.x_shape))):
            x = torch.rand(s.x_shape, device=dev, generator=gen)
            ty, ti = F.max_pool2d(x, s.kernel, stride, s.padding, return_indices=True)
            dy = torch.rand(ty.shape, device=dev, generator=gen)
            cx, cdy = cp.asarray(x), cp.asarray(dy)
            with cp_stream:
                _, cidx = fastconv.max_pool2d(cx, s.kernel, stride, s.padding, return_indices=True)
            sets.append({"t": (x, dy, ti), "c": (cx, cdy, cidx)})
        passes = {
            "fwd": (
                lambda d: fastconv.max_pool2d(
                    d["c"][0], s.kernel, stride, s.padding, return_indices=True
                ),
                lambda d: F.max_pool2d(d["t"][0], s.kernel, stride, s.padding, return_indices=True),
                4 * _prod(s.x_shape) + 12 * _prod(s.y_shape),
            ),
            "bwd": (
                lambda d: fastconv.max_pool2d_backward(d["c"][1], d["c"][2], s.x_shape),
                lambda d: torch.ops.aten.max_pool2d_with_indices_backward(
                    d["t"][1],
                    d["t"][0],
                    list(s.kernel),
                    list(stride),
                    list(s.padding),
                    [1, 1],
                    False,
                    d["t"][2],
                ),
                12 * _prod(s.y_shape) + 4 * _prod(s.x_shape),
            ),
        }
        for pass_, (fc, cd, nbytes) in passes.items():
            t_fc, t_cd = time_fn(fc, sets), time_fn(cd, sets)
            floor = nbytes / (peak[1] * 1e9) * 1e3 if peak else None
            row = {
                "op": "maxpool2d",
                "pass": pass_,
                "shape": s.name,
                "x": s.x_shape,
                "kernel": s.kernel,
                "stride": stride,
                "bytes_min": nbytes,
                "fastconv_ms": t_fc,
                "cudnn_ms": t_cd,
                "fastconv_gbs": nbytes / t_fc / 1e6,
                "cudnn_gbs": nbytes / t_cd / 1e6,
                "ratio": t_fc / t_cd,
                "floor_ms": floor,
                "gpu": gpu,
                "peer": "torch (native CUDA pooling)",
            }
            rows.append(row)
            print(
                f"{s.name:24s} {'pool ' + pass_:12s} {t_fc:11.4f} {t_cd:9.4f} {row['fastconv_gbs']:8.0f}GB/s "
                f"{row['cudnn_gbs']:8.0f}GB/s {row['ratio']:8.2f} {floor if floor else float('nan'):8.4f}"
            )

    dump()
    print(f"# wrote {len(rows)} rows to {args.json}")


if __name__ == "__main__":
    main()
