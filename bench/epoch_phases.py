#!/usr/bin/env python3
"""Where a fastconv training step spends its time, phase by phase (the layer API, one model).

Each phase of Sequential's training step is wrapped with a timer: the batch gather, every layer's
forward and backward (the conv layers' backward split into its weight-gradient and data-gradient
ops), the loss with the accuracy count and the optimizer step; "python" is the rest of the step (the
loop, the per-step bookkeeping). Both CPU time (time.process_time: all of this process's threads,
so pool threads that spin count too; robust to other processes on the machine) and wall time are
summed per phase, and the ISA paths given alternate in blocks of steps in one process
(fastconv.set_cpu_isa), so a loaded machine hurts them alike. Only fastconv's path alternates:
NumPy's loops (the Python-side glue) run its best ISA throughout (train_epoch.py --isa holds them).

    python bench/epoch_phases.py --model cnn1 --threads 1 --isa avx2,avx512 --steps 60
    python bench/epoch_phases.py --model keras_cnn --threads 2 --isa avx2

Prints one table per ISA: per-step milliseconds (CPU and wall) and the share of the step.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict

from _util import pin_threads


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="per-phase CPU/wall time of fastconv training steps")
    p.add_argument("--model", default="cnn1")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--isa", default="avx2", help="comma list of fastconv ISA paths to alternate")
    p.add_argument("--steps", type=int, default=60, help="timed steps per ISA (default 60)")
    p.add_argument("--block", type=int, default=10, help="steps per turn of one ISA (default 10)")
    return p.parse_args(argv)


class PhaseClock:
    """Sums CPU and wall nanoseconds per phase name for the ISA now `current`."""

    def __init__(self):
        self.cpu = defaultdict(lambda: defaultdict(int))
        self.wall = defaultdict(lambda: defaultdict(int))
        self.current = None
        self.layer = ""  # the layer whose forward/backward runs (names the ops inside it)
        self.on = False

    def wrap(self, name, fn):
        def timed(*args, **kwargs):
            if not self.on:
                return fn(*args, **kwargs)
            key = name.replace("{layer}", self.layer)
            c0, w0 = time.process_time_ns(), time.perf_counter_ns()
            try:
                return fn(*args, **kwargs)
            finally:
                self.cpu[self.current][key] += time.process_time_ns() - c0
                self.wall[self.current][key] += time.perf_counter_ns() - w0

        return timed


class _Proxy:
    """Attribute access falls through to `target`; the names given are timed wrappers."""

    def __init__(self, target, clock, prefix, names):
        self._target = target
        for n in names:
            setattr(self, n, clock.wrap(f"{prefix}{n}", getattr(target, n)))

    def __getattr__(self, name):
        return getattr(self._target, name)


class _TimedLoss(_Proxy):
    """The loss, its call and with_accuracy (the training step's loss + accuracy count) timed as
    "loss" (Python looks __call__ up on the type, hence a class of its own)."""

    def __init__(self, loss, clock):
        super().__init__(loss, clock, "", ())
        self._call = clock.wrap("loss", loss)
        self.with_accuracy = clock.wrap("loss", loss.with_accuracy)

    def __call__(self, z, y):
        return self._call(z, y)


def instrument(model, clock):
    """Wrap the model's phases with clock's timers (nested phases are subtracted at print time)."""

    def entering(layer, fn):
        def run(*args, **kwargs):
            clock.layer = layer.name
            return fn(*args, **kwargs)

        return run

    for layer in model.layers:
        layer.forward = clock.wrap(f"{layer.name} fwd", entering(layer, layer.forward))
        layer.backward = clock.wrap(f"{layer.name} bwd", entering(layer, layer.backward))
    model._batch = clock.wrap("batch gather", model._batch)
    model.loss = _TimedLoss(model.loss, clock)
    model.optimizer.step = clock.wrap("optimizer step", model.optimizer.step)
    b = model.backend
    ops = b.conv_relu_pool
    if ops is not None:
        b.conv_relu_pool = _Proxy(
            ops,
            clock,
            "  {layer} ",
            (
                "conv2d_relu_maxpool2d_bwd_weights",
                "conv2d_relu_maxpool2d_bwd_data",
            ),
        )
    for n in ("conv2d_bwd_weights", "conv2d_bwd_data"):
        setattr(b, n, clock.wrap(f"  {{layer}} {n}", getattr(b, n)))


def main(argv=None):
    a = parse_args(argv)
    pin_threads(a.threads)
    import fastconv
    import numpy as np
    from fastconv import models

    sys.path.insert(0, __file__.rsplit("/", 1)[0])
    import torch_train

    fastconv.set_num_threads(a.threads)
    isas = a.isa.split(",")
    x, y = torch_train.load_mnist_train()
    bs = torch_train.BATCH.get(a.model, 100)
    model = models.build(a.model, seed=0, compile=False)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    clock = PhaseClock()
    instrument(model, clock)
    rng = np.random.default_rng(0)
    xs = model._prep_x(x)

    def steps(k):
        for _ in range(k):
            idx = np.sort(rng.choice(len(xs), bs, replace=False))
            c0, w0 = time.process_time_ns(), time.perf_counter_ns()
            model._train_step(xs, y, idx, bs, _ONE)
            if clock.on:
                clock.cpu[clock.current]["step"] += time.process_time_ns() - c0
                clock.wall[clock.current]["step"] += time.perf_counter_ns() - w0

    from fastconv import distributed

    _ONE = distributed.get_group(None)
    for isa in isas:  # warm-up: buffers, caches
        fastconv.set_cpu_isa(isa)
        steps(3)
    clock.on = True
    done = dict.fromkeys(isas, 0)
    turn = 0
    while min(done.values()) < a.steps:
        for isa in isas if turn % 2 == 0 else isas[::-1]:
            fastconv.set_cpu_isa(isa)
            clock.current = isa
            k = min(a.block, a.steps - done[isa])
            steps(k)
            done[isa] += k
        turn += 1
    clock.on = False

    print(f"{a.model}, batch {bs}, threads {a.threads}, {a.steps} steps per ISA; ms per step")
    for isa in isas:
        cpu, wall = clock.cpu[isa], clock.wall[isa]
        n = done[isa]
        # conv bwd sub-phases are inside the conv layers' "bwd": subtract them there
        subs = [k for k in cpu if k.startswith("  ")]
        top = [k for k in cpu if k not in subs and k != "step"]
        inner_cpu = sum(cpu[k] for k in top)
        inner_wall = sum(wall[k] for k in top)
        cpu["python"] = cpu["step"] - inner_cpu
        wall["python"] = wall["step"] - inner_wall
        print(
            f"\n[{isa}] step: cpu {cpu['step'] / n / 1e6:.2f} ms, wall {wall['step'] / n / 1e6:.2f} ms"
        )
        print(f"{'phase':42s} {'cpu ms':>8s} {'wall ms':>8s} {'cpu %':>6s}")
        order = [k for k in cpu if k != "step"]
        for k in order:
            print(
                f"{k:42s} {cpu[k] / n / 1e6:8.3f} {wall[k] / n / 1e6:8.3f} "
                f"{100 * cpu[k] / cpu['step']:6.1f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
