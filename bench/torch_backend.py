#!/usr/bin/env python3
"""fastconv as a PyTorch backend: a PyTorch user's training epoch, stock vs fastconv.torch.convert.

    python bench/torch_backend.py                          # cnn1 and keras_cnn, 2 threads
    python bench/torch_backend.py --images 6000 --reps 3 --json bench/results/torch_backend.json
    python bench/torch_backend.py --overhead               # per-call cost of the op path, tiny layer
    python bench/torch_backend.py --phases --own-pool      # where a training step's time goes

Epoch: the PyTorch models of bench/torch_train.py (NETWORKS.md's cnn1 and keras_cnn, Adam 1e-3,
batch 100 / 200, CrossEntropyLoss), trained on the first --images MNIST images. "stock" is the
model as built; "fastconv" is a copy (same initial weights) after fastconv.torch.convert(model),
which fuses each Conv2d -> ReLU -> MaxPool2d(2) into one fastconv pass, its jobs on PyTorch's
OpenMP threads (what import fastconv.torch sets); with --own-pool, a third copy runs with
share_threads_with_torch(False) (fastconv's own thread pool beside PyTorch's); with
--torch-dropout, a copy converted with dropout=False (PyTorch's own dropout and masks, which
convert replaces by default) for the models that have dropout. --fused-adam gives every side
PyTorch's Adam(fused=True) instead of the default (a per-parameter loop on the CPU). All train
in this one process, by turns (stock, fastconv, ..., then the reverse order) after a warm-up of
a few batches each; medians of --reps epochs each. Both libraries get --threads threads.

Phases: one training step split into the conv stack's forward (the layers up to the Flatten),
the head's forward and the loss, the backward and the optimizer step (wall ms per step, medians
over blocks of 10 steps on the same batches, sides alternated). The head and the optimizer step
are PyTorch's ops on every side, so a side where they take longer shows the cost of the threads
beside them (fastconv's own pool against its jobs on PyTorch's OpenMP threads).

Overhead: a 1x1 convolution of a 1x1x4x4 input, so the kernel itself costs about a microsecond
and the rest is call overhead: fastconv's NumPy API, the torch.ops.fastconv op (registered the
lower-level way, as fastconv.torch does it), the same kernel registered with
torch.library.custom_op (the way the issue first asked for, for comparison), the functional
wrapper (the eager path the modules take) and the module, each with autograd recording the call
and without, and stock PyTorch's functional and module beside them; 1,000 back-to-back calls per
timed block, blocks alternated, medians.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

from _util import alternate, machine_info, pin_threads, write_json


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="stock PyTorch vs fastconv.torch.convert, alternating")
    p.add_argument("--models", default="cnn1,keras_cnn")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--images", type=int, default=6000, help="first N MNIST images (default 6000)")
    p.add_argument("--reps", type=int, default=3, help="timed epochs per side (default 3)")
    p.add_argument(
        "--own-pool",
        action="store_true",
        help="also time the converted model on fastconv's own thread pool "
        "(share_threads_with_torch(False))",
    )
    p.add_argument(
        "--torch-dropout",
        action="store_true",
        help="also time convert(model, dropout=False) (PyTorch's own dropout kept)",
    )
    p.add_argument(
        "--fused-adam",
        action="store_true",
        help="every side (stock included) trains with torch.optim.Adam(fused=True)",
    )
    p.add_argument("--phases", action="store_true", help="time a training step's phases instead")
    p.add_argument("--overhead", action="store_true", help="time the per-call overhead instead")
    p.add_argument("--json", default=None, metavar="PATH")
    return p.parse_args(argv)


def isa_line(torch, fastconv):
    """Which SIMD path each library runs (the env vars that force them are echoed)."""
    forced = {
        k: os.environ[k]
        for k in ("FASTCONV_CPU_ISA", "ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")
        if k in os.environ
    }
    return {
        "fastconv_isa": fastconv.get_cpu_isa(),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "forced": forced,
    }


def epochs(a, torch, fastconv, ft):
    from torch_train import TorchTrainer, load_mnist_train

    x, y = load_mnist_train()
    x, y = x[: a.images], y[: a.images]
    rows = []
    for name in a.models.split(","):
        trainers = {"stock": TorchTrainer(name, torch, seed=0)}
        trainers["fastconv"] = TorchTrainer(name, torch, seed=0)
        ft.convert(trainers["fastconv"].model)  # in place: the optimizer keeps its parameters
        if a.own_pool:  # fastconv's own pool beside PyTorch's OpenMP team
            trainers["fastconv_own_pool"] = TorchTrainer(name, torch, seed=0)
            ft.convert(trainers["fastconv_own_pool"].model)
        if a.torch_dropout and any(
            isinstance(m, torch.nn.Dropout) for m in trainers["stock"].model
        ):
            trainers["fastconv_torch_dropout"] = TorchTrainer(name, torch, seed=0)
            ft.convert(trainers["fastconv_torch_dropout"].model, dropout=False)
        if a.fused_adam:  # the same optimizer on every side
            for t in trainers.values():
                hyper = {k: t.opt.defaults[k] for k in ("lr", "eps")}
                t.opt = torch.optim.Adam(t.model.parameters(), **hyper, fused=True)
        sides = list(trainers)
        warm = slice(0, 4 * trainers["stock"].batch)
        for side, t in trainers.items():
            ft.share_threads_with_torch(side != "fastconv_own_pool")
            t.epoch(x[warm], y[warm])
        times = {side: [] for side in sides}
        for r in range(a.reps):
            for side in sides if r % 2 == 0 else sides[::-1]:
                ft.share_threads_with_torch(side != "fastconv_own_pool")
                sec, loss, acc = trainers[side].epoch(x, y)
                times[side].append(sec)
                print(f"  {name} {side:15s} rep {r}: {sec:.2f} s  loss {loss:.4f}", flush=True)
        ft.share_threads_with_torch(True)
        med = {k: statistics.median(v) for k, v in times.items()}
        row = {"model": name, "images": len(x), "samples": times}
        for side in sides:
            row[f"{side}_s"] = med[side]
        row["speedup"] = med["stock"] / med["fastconv"]
        for side in sides[2:]:
            row[f"speedup_{side[len('fastconv_') :]}"] = med["stock"] / med[side]
        rows.append(row)
        print(
            f"{name}: "
            + ", ".join(f"{side} {med[side]:.2f} s" for side in sides)
            + f" per {len(x)} images -> "
            + ", ".join(f"{med['stock'] / med[side]:.2f}x" for side in sides[1:]),
            flush=True,
        )
    return rows


PHASES = ("conv_forward", "head_forward_loss", "backward", "optimizer_step", "step")


def phases(a, torch, fastconv, ft):
    """Wall ms per training step, split into phases, for every side (see the module docstring)."""
    from torch_train import TorchTrainer, load_mnist_train

    x, y = load_mnist_train()
    x, y = torch.from_numpy(x[:2000]), torch.from_numpy(y[:2000])
    rows = []
    for name in a.models.split(","):
        sides = {"stock": TorchTrainer(name, torch, seed=0)}
        sides["fastconv"] = TorchTrainer(name, torch, seed=0)
        if a.own_pool:
            sides["fastconv_own_pool"] = TorchTrainer(name, torch, seed=0)
        for side, t in sides.items():
            if side != "stock":
                ft.convert(t.model)
        flatten = next(
            i for i, m in enumerate(sides["stock"].model) if type(m).__name__ == "Flatten"
        )
        ms = {side: {k: [] for k in PHASES} for side in sides}

        def steps(side, record):
            t = sides[side]
            ft.share_threads_with_torch(side != "fastconv_own_pool")
            for i in range(10):
                start = i * t.batch
                xb, yb = x[start : start + t.batch], y[start : start + t.batch]
                t0 = time.perf_counter()
                h = t.model[:flatten](xb)
                t1 = time.perf_counter()
                loss = t.loss_fn(t.model[flatten:](h), yb)
                t2 = time.perf_counter()
                t.opt.zero_grad(set_to_none=True)
                loss.backward()
                t3 = time.perf_counter()
                t.opt.step()
                t4 = time.perf_counter()
                loss.item()
                if record:
                    for k, d in zip(PHASES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0)):
                        ms[side][k].append(d * 1e3)

        for side in sides:
            steps(side, False)
        names = list(sides)
        for r in range(a.reps):
            for side in names if r % 2 == 0 else names[::-1]:
                steps(side, True)
        ft.share_threads_with_torch(True)
        print(f"{name + ' (ms per step)':24s}" + "".join(f"{k:>19s}" for k in PHASES))
        for side in names:
            med = {k: statistics.median(v) for k, v in ms[side].items()}
            rows.append({"model": name, "side": side, **{f"{k}_ms": med[k] for k in PHASES}})
            print(f"{side:24s}" + "".join(f"{med[k]:19.2f}" for k in PHASES), flush=True)
    return rows


def overhead(a, torch, fastconv, ft):
    from fastconv import _C
    from fastconv.torch import _ops

    x = torch.rand(1, 1, 4, 4)
    w = torch.rand(1, 1, 1, 1)
    b = torch.rand(1)
    xg = x.clone().requires_grad_()
    xn, wn, bn = x.numpy(), w.numpy(), b.numpy()
    geometry = ([1, 1], "explicit", [0, 0], [1, 1], 1, False)

    # The same CPU kernel behind torch.library.custom_op, for comparison (the schema is given, so
    # no annotations are needed).
    custom = torch.library.custom_op(
        "fastconv_bench::conv2d",
        _ops._conv2d_cpu,
        mutates_args=(),
        device_types="cpu",
        schema=_ops.SCHEMAS["conv2d"][len("conv2d") :],
    )
    custom.register_autograd(lambda ctx, g: (None,) * 9)
    module = ft.Conv2d(1, 1, 1)
    stock_module = torch.nn.Conv2d(1, 1, 1)
    wg, bg = w.clone().requires_grad_(), b.clone().requires_grad_()
    op = torch.ops.fastconv.conv2d.default
    calls = 1000  # the measure: 1,000 back-to-back calls

    def loop(f, no_grad=False):
        def run(_i):
            with torch.set_grad_enabled(not no_grad):
                for _ in range(calls):
                    f()

        return run

    fns = {
        "fastconv.conv2d (NumPy)": loop(lambda: fastconv.conv2d(xn, wn, bn)),
        "fastconv._C.conv2d_fwd": loop(
            lambda: _C.conv2d_fwd(xn, wn, bn, (1, 1), "explicit", (0, 0), (1, 1), 1, False, None)
        ),
        "functional.conv2d": loop(lambda: ft.functional.conv2d(x, w, b)),
        "functional.conv2d, weight requires grad": loop(lambda: ft.functional.conv2d(x, wg, bg)),
        "Conv2d module (weight requires grad)": loop(lambda: module(x)),
        "Conv2d module, no_grad": loop(lambda: module(x), no_grad=True),
        "torch.ops.fastconv.conv2d": loop(lambda: op(x, w, b, *geometry)),
        "torch.ops, input requires grad": loop(lambda: op(xg, w, b, *geometry)),
        "custom_op registration": loop(lambda: custom(x, w, b, *geometry)),
        "custom_op, input requires grad": loop(lambda: custom(xg, w, b, *geometry)),
        "stock F.conv2d": loop(lambda: torch.nn.functional.conv2d(x, w, b)),
        "stock F.conv2d, weight requires grad": loop(lambda: torch.nn.functional.conv2d(x, wg, bg)),
        "stock nn.Conv2d module": loop(lambda: stock_module(x)),
        "stock nn.Conv2d module, no_grad": loop(lambda: stock_module(x), no_grad=True),
    }
    stats = alternate(fns, reps=25, warmup=1, block=3)
    base = stats["fastconv.conv2d (NumPy)"]["median_ms"] * 1e3 / calls
    rows = []
    for name, s in stats.items():
        us = s["median_ms"] * 1e3 / calls
        rows.append({"path": name, "us_per_call": us, "over_numpy_api_us": us - base})
        print(f"{name:38s} {us:7.2f} us/call  ({us - base:+.2f} us over the NumPy API)")
    return rows


def main(argv=None):
    a = parse_args(argv)
    pin_threads(a.threads)
    import fastconv
    import fastconv.torch as ft
    import torch

    torch.set_num_threads(a.threads)
    fastconv.set_num_threads(a.threads)
    info = machine_info(a.threads)
    isa = isa_line(torch, fastconv)
    load = os.getloadavg()
    print(f"threads {a.threads}, {isa}, load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}", flush=True)
    t0 = time.time()
    mode = overhead if a.overhead else phases if a.phases else epochs
    rows = mode(a, torch, fastconv, ft)
    load_after = os.getloadavg()
    print(f"load after {load_after[0]:.2f} ({time.time() - t0:.0f} s)")
    if a.json:
        meta = {
            "bench": "torch_backend"
            + ("_overhead" if a.overhead else "_phases" if a.phases else ""),
            "threads": a.threads,
            "fused_adam": a.fused_adam,
            "isa": isa,
            "load_before": load,
            "load_after": load_after,
            "machine": info,
        }
        write_json(a.json, meta, rows)


if __name__ == "__main__":
    sys.exit(main())
