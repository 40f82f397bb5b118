#!/usr/bin/env python3
"""End-to-end bench: one MNIST training epoch of cnn1 and keras_cnn, fastconv vs its PyTorch peer.

fastconv side: fastconv.models.build(name) with the Keras-like API,
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, batch_size=B, epochs=1, verbose=0)
PyTorch side: bench/torch_train.py (same layers, Adam 1e-3, same batch size: cnn1 100, keras_cnn 200).
Both train on the same images (all 60,000 MNIST training images unless --images), integer labels,
no validation split, shuffled with a seed; each repetition builds fresh models. The two alternate in
one process (fastconv, torch, torch, fastconv, ...) after a short warm-up of both (a few batches,
so oneDNN primitive creation and first-touch allocation are not charged to either epoch).

Each thread count runs in its own child process, because NumPy's BLAS (fastconv's Dense layers)
fixes its pool size when it loads; both frameworks get the same count (fastconv.set_num_threads,
torch.set_num_threads, OMP/OPENBLAS env vars).

    python bench/train_epoch.py                                   # both models, threads 2 and 1, 3 reps
    python bench/train_epoch.py --models cnn1 --threads 2 --reps 5
    python bench/train_epoch.py --images 12000 --json bench/results/train_latest.json
Prints a table (median epoch seconds with min-max, images/s, speed-up = torch s / fastconv s and the
goal at 2 threads: issue 5's cnn1 3x, keras_cnn 2.5x; with --isa avx2 issue 19's 4x and 3.5x) and
writes JSON with every repetition. Each repetition's line (and record) also has the process's CPU
seconds and its involuntary context switches ("preempted"): an epoch that shared a core with another
busy process shows hundreds to thousands of them (docs/PERF_LOG.md, round 24), a quiet one dozens.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

from _util import (
    check_isa,
    describe,
    goals,
    hold_isa,
    machine_info,
    pin_threads,
    print_table,
    write_json,
)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="one MNIST epoch, fastconv vs PyTorch, alternating")
    p.add_argument("--models", default="cnn1,keras_cnn")
    p.add_argument(
        "--threads", default="2,1", help="comma list; each in its own process (default 2,1)"
    )
    p.add_argument("--reps", type=int, default=3, help="epochs per framework (default 3)")
    p.add_argument(
        "--images", type=int, default=None, help="first N training images (default all 60000)"
    )
    p.add_argument("--backends", default="fastconv,torch")
    p.add_argument(
        "--isa",
        default=None,
        help="hold fastconv AND torch/oneDNN to one ISA (portable, avx2, avx512)",
    )
    p.add_argument("--json", default=None, metavar="PATH")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None):
    a = parse_args(argv)
    if a.child:
        return child(a)
    records, metas = [], []
    for t in [int(s) for s in a.threads.split(",")]:
        cmd = [
            sys.executable,
            os.path.abspath(__file__),
            "--child",
            "--threads",
            str(t),
            "--models",
            a.models,
            "--reps",
            str(a.reps),
            "--backends",
            a.backends,
        ]
        if a.images:
            cmd += ["--images", str(a.images)]
        if a.isa:
            cmd += ["--isa", a.isa]
        with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) as proc:  # stream progress
            for line in proc.stdout:
                if line.startswith("{"):
                    rec = json.loads(line)
                    (metas if rec.get("kind") == "meta" else records).append(rec)
                else:
                    print(line, end="", flush=True)
        if proc.returncode:
            print(f"child for threads={t} exited with {proc.returncode}", file=sys.stderr)
    rows, summary = [], []
    for model in a.models.split(","):
        for t in [int(s) for s in a.threads.split(",")]:
            by = {
                b: [
                    r
                    for r in records
                    if r["model"] == model and r["threads"] == t and r["backend"] == b
                ]
                for b in ("fastconv", "torch")
            }
            med = {
                b: statistics.median([r["seconds"] for r in rs]) if rs else None
                for b, rs in by.items()
            }
            sp = med["torch"] / med["fastconv"] if med["torch"] and med["fastconv"] else None
            goal = goals(a.isa)["epoch"].get(model) if t == 2 else None
            n_img = (by["fastconv"] or by["torch"] or [{}])[0].get("images")
            cell = {
                b: (
                    f"{med[b]:.2f} ({min(r['seconds'] for r in rs):.2f}-{max(r['seconds'] for r in rs):.2f})"
                    if rs
                    else "-"
                )
                for b, rs in by.items()
            }
            acc = {
                b: (f"{statistics.median([r['accuracy'] for r in rs]):.3f}" if rs else "-")
                for b, rs in by.items()
            }
            preempted = {  # the worst repetition's involuntary switches (dozens when quiet)
                b: str(max(r.get("involuntary_switches", 0) for r in rs)) if rs else "-"
                for b, rs in by.items()
            }
            rows.append(
                [
                    model,
                    t,
                    n_img,
                    cell["fastconv"],
                    cell["torch"],
                    f"{n_img / med['fastconv']:.0f}" if med["fastconv"] else "-",
                    f"{n_img / med['torch']:.0f}" if med["torch"] else "-",
                    f"{sp:.2f}x" if sp else "-",
                    (f">={goal:g}x " + ("ok" if sp and sp >= goal else "MISS"))
                    if goal
                    else "(report)",
                    f"{acc['fastconv']} / {acc['torch']}",
                    f"{preempted['fastconv']} / {preempted['torch']}",
                ]
            )
            summary.append(
                dict(
                    model=model,
                    threads=t,
                    images=n_img,
                    fastconv_median_s=med["fastconv"],
                    torch_median_s=med["torch"],
                    speedup=sp,
                    goal=goal,
                )
            )
    print("\nepoch seconds: median (min-max) over repetitions; speed-up = torch / fastconv")
    print_table(
        [
            "model",
            "threads",
            "images",
            "fastconv s",
            "torch s",
            "fc img/s",
            "torch img/s",
            "speed-up",
            "goal",
            "train acc fc / torch",
            "preempted max fc / torch",
        ],
        rows,
    )
    if a.json:
        write_json(a.json, {"children": metas, "summary": summary}, records)
        print(f"wrote {len(records)} records to {a.json}")
    return 0


def child(a):
    threads = int(a.threads)
    pin_threads(threads)
    hold_isa(a.isa)  # before fastconv/torch read their ISA settings
    import fastconv
    import numpy as np  # noqa: F401  (after pin_threads)
    import torch_train

    backends = a.backends.split(",")
    torch = None
    if "torch" in backends:
        import torch

        torch.set_num_threads(threads)
    try:
        from fastconv import models as fc_models
    except ImportError as e:
        fc_models = None
        print(f"fastconv.models not importable ({e}): timing torch only", flush=True)
    check_isa(a.isa, fastconv, torch)
    fastconv.set_num_threads(threads)
    x, y = torch_train.load_mnist_train()
    if a.images:
        x, y = x[: a.images], y[: a.images]
    meta = machine_info(threads)
    print(json.dumps({"kind": "meta", **meta}, default=str), flush=True)
    print(describe(meta), flush=True)

    def fc_epoch(name, seed, xs, ys):
        model = fc_models.build(name, seed=seed, compile=False)
        model.compile(
            optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"]
        )
        t0 = time.perf_counter()
        hist = model.fit(
            xs, ys, batch_size=torch_train.BATCH[name], epochs=1, verbose=0, shuffle=True, seed=seed
        )
        sec = time.perf_counter() - t0
        return sec, hist.history["loss"][-1], hist.history.get("accuracy", [float("nan")])[-1]

    def torch_epoch(name, seed, xs, ys):
        return torch_train.TorchTrainer(name, torch, seed=seed).epoch(xs, ys)

    runners = {}
    if "fastconv" in backends and fc_models is not None:
        runners["fastconv"] = fc_epoch
    if torch is not None:
        runners["torch"] = torch_epoch
    for name in a.models.split(","):
        bs = torch_train.BATCH[name]
        for f in runners.values():  # warm-up: a few batches each
            f(name, 1000, x[: 3 * bs], y[: 3 * bs])
        for r in range(a.reps):
            order = list(runners.items()) if r % 2 == 0 else list(runners.items())[::-1]
            for backend, f in order:
                ru0 = resource.getrusage(resource.RUSAGE_SELF)
                sec, loss, acc = f(name, r, x, y)
                ru1 = resource.getrusage(resource.RUSAGE_SELF)
                # Preemptions: a quiet 2-thread cnn1 epoch has a few dozen, one beside another
                # busy process ~1,000 (and runs at 1-thread speed): the tell of a noisy repetition.
                preempted = ru1.ru_nivcsw - ru0.ru_nivcsw
                cpu_s = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
                rec = dict(
                    kind="epoch",
                    model=name,
                    backend=backend,
                    threads=threads,
                    rep=r,
                    images=len(x),
                    batch_size=bs,
                    seconds=sec,
                    images_per_s=len(x) / sec,
                    loss=float(loss),
                    accuracy=float(acc),
                    isa=fastconv.get_cpu_isa() if backend == "fastconv" else None,
                    loadavg=list(os.getloadavg()),
                    cpu_s=cpu_s,
                    involuntary_switches=preempted,
                )
                print(json.dumps(rec), flush=True)
                print(
                    f"  {name} threads={threads} rep {r} {backend:8s} {sec:7.2f} s  "
                    f"loss {loss:.4f} acc {acc:.4f}  cpu {cpu_s:6.2f} s  preempted {preempted}",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
