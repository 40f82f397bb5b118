#!/usr/bin/env python3
"""Where data-parallel training stops scaling, per NETWORKS.md network (docs/DISTRIBUTED.md).

    python bench/distributed_scaling.py steps --threads 2          # measure, then model
    mpiexec -n 2 python bench/distributed_scaling.py allreduce    # measure Allreduce on this host

steps: for every network, the compute time of one training step at its documented global batch
(forward + backward + Adam on one machine, random inputs of the right shape; the fastest of
--reps steps after 2 warm-up steps, the least disturbed on a shared machine; the median is
printed too), and its gradient size (4 bytes per parameter). From these it models p machines
joined by a link of --gbps with a ring Allreduce: each step computes the batch in t_c / p and
exchanges 2 (p - 1) / p * bytes over the link plus 2 (p - 1) messages of --latency-us each:

    t(p) = t_c / p + 2 (p - 1) / p * bytes / bandwidth + 2 (p - 1) * latency

It prints the p at which the exchange takes as long as the compute (parallel efficiency 50%: the
network "stops scaling" there), the p with the shortest step, and the speed-up there (p at most
the global batch: "-" where even that p keeps efficiency above 50%), and the 50% point again
without the latency term (what the bytes alone allow; MPI libraries use tree algorithms with
log2(p) messages for small buffers, so the truth lies between the two). A model, not
a measurement: no second machine was used. It assumes perfect compute splitting (a batch of B / p
runs p times faster), which small per-machine batches do not reach, so the real limits are lower.

allreduce: under mpiexec, the median time of one in-place float32 Allreduce of each network's
gradient size (the exchange fit runs once per step), over whatever transport MPI picks between the
ranks (shared memory on one host).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mode", choices=("steps", "allreduce"))
    p.add_argument("--threads", type=int, default=None, help="kernel threads (steps)")
    p.add_argument("--reps", type=int, default=10, help="timed steps / Allreduces (median)")
    p.add_argument("--gbps", type=float, default=10.0, help="link bandwidth, Gbit/s (model)")
    p.add_argument("--latency-us", type=float, default=10.0, help="per-message latency (model)")
    p.add_argument("--models", default=None, help="comma list (default: every network)")
    p.add_argument(
        "--calibrate",
        default=None,
        metavar="NAME=MS",
        help="scale every measured step time by MS / the measured step of NAME (NAME must be in "
        "--models): a clean figure from a quiet run, for numbers taken on a busy machine",
    )
    return p.parse_args(argv)


def step_seconds(name, reps):
    from fastconv import models

    cfg = models.DEFAULTS[name]
    model = models.build(name, seed=0)
    batch = cfg["batch_size"]
    rng = np.random.default_rng(0)
    x = rng.random((batch, *model.input_shape), dtype=np.float32)
    y = rng.integers(0, 10, batch)
    if cfg["loss"] == "categorical_crossentropy":
        y = np.eye(10, dtype=np.float32)[y]
    times = []
    for i in range(reps + 2):
        t0 = time.perf_counter()
        model.train_on_batch(x, y)
        if i >= 2:
            times.append(time.perf_counter() - t0)
    return batch, model.count_params(), min(times), statistics.median(times)


def step_model(t_c, nbytes, gbps, latency, batch):
    """(p at 50% efficiency, p with the shortest step, speed-up there) for the formula above,
    p up to the global batch (fit gives every rank at least one sample of a batch)."""
    bw = gbps * 1e9 / 8

    def t(p):
        return t_c / p + 2 * (p - 1) / p * nbytes / bw + 2 * (p - 1) * latency

    p50 = next(
        (
            p
            for p in range(2, batch + 1)
            if 2 * (p - 1) / p * nbytes / bw + 2 * (p - 1) * latency >= t_c / p
        ),
        None,
    )
    best = min(range(1, batch + 1), key=t)
    return p50, best, t_c / t(best)


def run_steps(args):
    import fastconv
    from fastconv import models
    from fastconv.nn._blas import single_threaded_blas

    if args.threads:
        fastconv.set_num_threads(args.threads)
    names = args.models.split(",") if args.models else list(models.NAMES)
    with single_threaded_blas():
        measured = {name: step_seconds(name, args.reps) for name in names}
    print(
        f"# {fastconv.get_num_threads()} threads, {fastconv.get_cpu_isa()}; link {args.gbps:g} "
        f"Gbit/s, {args.latency_us:g} us per message, ring Allreduce"
    )
    scale = 1.0
    if args.calibrate:
        ref, ms = args.calibrate.split("=")
        scale = float(ms) * 1e-3 / measured[ref][2]
        print(
            f"# calibrated: every step time x {scale:.3f} ({ref}: measured "
            f"{measured[ref][2] * 1e3:.2f} ms, clean {ms} ms)"
        )
    print(
        "| network | global batch | parameters | bytes per step | compute per step (min, median) "
        "| ring exchange at p→∞ | p at 50% efficiency | best p | speed-up at best p "
        "| p at 50%, bandwidth only |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in names:
        batch, params, t_c, t_med = measured[name]
        t_c, t_med = t_c * scale, t_med * scale
        nbytes = 4 * params
        p50, best, speedup = step_model(t_c, nbytes, args.gbps, args.latency_us * 1e-6, batch)
        p50_bw, _, _ = step_model(t_c, nbytes, args.gbps, 0.0, batch)
        wire = 2 * nbytes / (args.gbps * 1e9 / 8)
        print(
            f"| {name} | {batch} | {params:,} | {nbytes / 1e3:,.1f} kB "
            f"| {t_c * 1e3:.2f} ms, {t_med * 1e3:.2f} ms | {wire * 1e3:.3f} ms | {p50} | {best} "
            f"| {speedup:.1f}x | {p50_bw or '-'} |"
        )


def run_allreduce(args):
    from fastconv import models
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    names = args.models.split(",") if args.models else list(models.NAMES)
    if comm.rank == 0:
        print(f"# {comm.size} ranks, {MPI.Get_library_version().splitlines()[0]}")
        print("| network | bytes | Allreduce median | min |")
        print("|---|---:|---:|---:|")
    for name in names:
        buf = np.ones(models.PARAMS[name], dtype=np.float32)
        times = []
        for i in range(args.reps * 5 + 5):
            comm.Barrier()
            t0 = time.perf_counter()
            comm.Allreduce(MPI.IN_PLACE, buf)
            if i >= 5:
                times.append(time.perf_counter() - t0)
        worst = comm.reduce(statistics.median(times), op=MPI.MAX)
        low = comm.reduce(min(times), op=MPI.MAX)
        if comm.rank == 0:
            print(
                f"| {name} | {4 * buf.size / 1e3:,.1f} kB | {worst * 1e6:.0f} us | {low * 1e6:.0f} us |",
                flush=True,
            )


def main(argv=None):
    args = parse_args(argv)
    if args.mode == "steps":
        run_steps(args)
    else:
        run_allreduce(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
