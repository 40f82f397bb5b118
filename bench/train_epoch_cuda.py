#!/usr/bin/env python3
"""One MNIST training epoch on a GPU: fastconv's fit (eager, and CUDA-graph mode) vs a PyTorch GPU
eager loop of the same network, in one process.

The networks and batch sizes are bench/torch_train.py's (cnn1 batch 100, keras_cnn batch 200,
Adam 1e-3, epsilon 1e-7, softmax cross-entropy on integer labels). Both sides start from the same
weights: the fastconv model is built with a seed and its weights are copied into the PyTorch model
(Dense kernels transposed). Both see the same batches in the same order: the training subset is
permuted once with --seed (outside the timing) and both iterate it in order every epoch
(fit(shuffle=False)). The data lives on the GPU for both (CuPy / torch arrays), so no epoch pays
a host-to-device copy per batch.

Modes (--modes, any of):
  eager   fastconv fit(device "cuda"): one small sync per step (the loss and the correct count)
  graph   fastconv fit(..., cuda_graph=True): the training step captured once as a CUDA graph and
          replayed; loss and accuracy accumulated on the GPU and read once per epoch
  torch   PyTorch eager: forward, CrossEntropyLoss, backward, Adam (foreach); loss and correct
          count accumulated on the GPU and read once per epoch (cudnn.benchmark on, TF32 off)

Timing: synchronised wall time of each epoch (fastconv: fit's History.epoch_seconds, whose epoch
ends with a read of the device totals; torch: torch.cuda.synchronize() before and after). Each mode
trains --epochs epochs in one run on a fresh model; the first epoch (warm-up: kernel compilation,
cuDNN autotuning, graph capture) is reported apart, and the median is over the others. Modes
alternate their order from model to model. After training, each model's accuracy on the MNIST test
set is printed next to the others: a graph that replays stale inputs or masks trains to a visibly
worse accuracy than eager.

    python bench/train_epoch_cuda.py                                  # both models, 12,000 images
    python bench/train_epoch_cuda.py --models cnn1 --images 60000 --epochs 4 --json out.json

A mode that fails (an exception) is printed with its traceback and recorded with its error in
the table and the JSON; the other modes still run, and the exit status is then 1.

Needs a GPU, CuPy, PyTorch with CUDA and a CUDA build of fastconv; without them it exits with
status 1 and a message naming what is missing, before reading data. parse_args and check_gpu are
importable (tests/test_bench_train_epoch_cuda.py runs them on the CPU).
"""

from __future__ import annotations

import argparse
import inspect
import json
import statistics
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch_train  # noqa: E402  (bench/ on the path first)
from _util import machine_info, print_table, write_json  # noqa: E402

MODES = ("eager", "graph", "torch")


def _positive(text):
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an int >= 1, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected an int >= 1, got {text!r}")
    return v


def _choices(allowed, what):
    def parse(text):
        items = [s.strip() for s in text.split(",") if s.strip()]
        bad = [s for s in items if s not in allowed]
        if not items or bad:
            raise argparse.ArgumentTypeError(
                f"{what} must be a comma list of {', '.join(allowed)}; got {text!r}"
            )
        return items

    return parse


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description="one MNIST epoch on a GPU: fastconv eager / CUDA graph vs PyTorch eager"
    )
    p.add_argument("--models", type=_choices(torch_train.MODELS, "--models"), default="cnn1")
    p.add_argument("--modes", type=_choices(MODES, "--modes"), default=",".join(MODES))
    p.add_argument(
        "--images", type=_positive, default=12000, help="first N training images (default 12000)"
    )
    p.add_argument(
        "--epochs", type=_positive, default=4, help="epochs per mode; the first is warm-up"
    )
    p.add_argument("--seed", type=int, default=0, help="weights and data order (default 0)")
    p.add_argument("--json", default=None, metavar="PATH")
    a = p.parse_args(argv)
    if isinstance(a.models, str):  # the defaults are strings: parse them like the flags
        a.models = a.models.split(",")
    if isinstance(a.modes, str):
        a.modes = a.modes.split(",")
    if a.images > 60000:
        p.error(f"--images must be at most 60000 (the MNIST training set), got {a.images}")
    return a


def check_gpu(modes):
    """(cupy, torch) when every piece the modes need is present; SystemExit with a message naming
    the missing piece otherwise (before any data is read)."""
    cupy = torch = None
    if any(m in ("eager", "graph") for m in modes):
        from fastconv.nn import cuda as fc_cuda

        try:
            cupy = fc_cuda.require_cupy()
        except (ImportError, RuntimeError) as e:
            raise SystemExit(f"train_epoch_cuda: needs a GPU for fastconv's modes: {e}") from None
    if "torch" in modes:
        try:
            import torch
        except ImportError as e:
            raise SystemExit(f"train_epoch_cuda: the torch mode needs PyTorch: {e}") from None
        if not torch.cuda.is_available():
            raise SystemExit("train_epoch_cuda: PyTorch sees no CUDA device (torch mode)")
    return cupy, torch


def graph_supported():
    """Whether this fastconv's fit takes cuda_graph= (the graph mode exists)."""
    from fastconv.nn import Sequential

    return "cuda_graph" in inspect.signature(Sequential.fit).parameters


def load_data(n, seed):
    """(x, y) the first n training images permuted with seed, and the test set (x_test, y_test)."""
    import numpy as np
    from fastconv import datasets

    path = torch_train.data_dir()
    (x, y), (xt, yt) = datasets.load_mnist(path=str(path) if path else None, download=False)
    x = np.ascontiguousarray(x[:n], np.float32).reshape(-1, 1, 28, 28)
    y = np.asarray(y[:n], np.int64)
    order = np.random.default_rng(seed).permutation(n)
    xt = np.ascontiguousarray(xt, np.float32).reshape(-1, 1, 28, 28)
    return (x[order], y[order]), (xt, np.asarray(yt, np.int64))


def fastconv_model(name, seed, device="cuda"):
    from fastconv import models

    model = models.build(name, seed=seed, device=device, compile=False)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def copy_weights(fc_model, torch_model, torch):
    """Give torch_model fastconv's weights: conv kernels as they are (OIHW both), Dense kernels
    transposed ((in, out) -> Linear's (out, in)), biases as they are."""
    params = list(torch_model.parameters())
    weights = fc_model.get_weights()
    if len(params) != len(weights):
        raise ValueError(f"{len(weights)} fastconv weights but {len(params)} torch parameters")
    with torch.no_grad():
        for i, (p, w) in enumerate(zip(params, weights)):
            if w.ndim == 2:
                w = w.T
            if tuple(p.shape) != w.shape:
                raise ValueError(f"parameter {i}: torch {tuple(p.shape)} vs fastconv {w.shape}")
            p.copy_(torch.from_numpy(w.copy()))


def run_fastconv(name, mode, data, test, epochs, seed, cupy):
    (x, y), (xt, yt) = data, test
    model = fastconv_model(name, seed)
    xd, yd = cupy.asarray(x), cupy.asarray(y)
    kw = {"cuda_graph": True} if mode == "graph" else {}
    bs = torch_train.BATCH[name]
    hist = model.fit(xd, yd, batch_size=bs, epochs=epochs, shuffle=False, verbose=0, **kw)
    test_loss, test_acc = model.evaluate(xt, yt, batch_size=1000)
    return dict(
        seconds=list(hist.epoch_seconds),
        train_loss=hist.history["loss"][-1],
        train_accuracy=hist.history["accuracy"][-1],
        test_accuracy=test_acc,
        test_loss=test_loss,
    )


def run_torch(name, data, test, epochs, seed, torch):
    (x, y), (xt, yt) = data, test
    dev = torch.device("cuda")
    model = torch_train.build(name, torch, seed).to(dev)
    copy_weights(fastconv_model(name, seed, "cpu"), model, torch)  # the host draws the same weights
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
    loss_fn = torch.nn.CrossEntropyLoss()
    xd, yd = torch.from_numpy(x).to(dev), torch.from_numpy(y).to(dev)
    n, bs = len(xd), torch_train.BATCH[name]
    seconds, loss_sum, correct = [], None, None
    model.train()
    for _ in range(epochs):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        loss_sum = torch.zeros((), device=dev, dtype=torch.float64)
        correct = torch.zeros((), device=dev, dtype=torch.int64)
        for start in range(0, n, bs):
            xb, yb = xd[start : start + bs], yd[start : start + bs]
            logits = model(xb)
            loss = loss_fn(logits, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.detach().double() * len(yb)
            correct += (logits.argmax(1) == yb).sum()
        totals = (float(loss_sum), int(correct))  # the epoch's one read (syncs)
        seconds.append(time.perf_counter() - t0)
    model.eval()
    hits = 0
    with torch.no_grad():
        xtd, ytd = torch.from_numpy(xt).to(dev), torch.from_numpy(yt).to(dev)
        for start in range(0, len(xtd), 1000):
            pred = model(xtd[start : start + 1000]).argmax(1)
            hits += int((pred == ytd[start : start + 1000]).sum())
    return dict(
        seconds=seconds,
        train_loss=totals[0] / n,
        train_accuracy=totals[1] / n,
        test_accuracy=hits / len(xt),
        test_loss=None,
    )


def summarise(rec):
    """Adds first_s (warm-up epoch) and median_s (the others; the first when there is only one)."""
    s = rec["seconds"]
    rec["first_s"] = s[0]
    rec["median_s"] = statistics.median(s[1:] if len(s) > 1 else s)
    return rec


def main(argv=None):
    a = parse_args(argv)
    cupy, torch = check_gpu(a.modes)
    modes = list(a.modes)
    if "graph" in modes and not graph_supported():
        print("graph mode: this fastconv's fit has no cuda_graph= yet; skipped", flush=True)
        modes.remove("graph")
    if torch is not None:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    data, test = load_data(a.images, a.seed)
    meta = machine_info()
    if cupy is not None:
        from fastconv import _cuda_ops

        meta["gpu"] = _cuda_ops.device_name(int(cupy.cuda.Device().id))
        meta["cupy"] = cupy.__version__
    if torch is not None:
        meta["torch_gpu"] = torch.cuda.get_device_name()
        meta["cudnn"] = torch.backends.cudnn.version()
    meta.update(images=a.images, epochs=a.epochs, seed=a.seed, modes=modes)
    print(json.dumps({"gpu": meta.get("gpu"), "torch_gpu": meta.get("torch_gpu")}), flush=True)
    records = []
    for k, name in enumerate(a.models):
        for mode in modes if k % 2 == 0 else modes[::-1]:
            try:
                if mode == "torch":
                    rec = run_torch(name, data, test, a.epochs, a.seed, torch)
                else:
                    rec = run_fastconv(name, mode, data, test, a.epochs, a.seed, cupy)
            except Exception as e:  # noqa: BLE001 - one GPU session: keep the other modes' results
                traceback.print_exc()
                records.append(dict(model=name, mode=mode, images=a.images, error=repr(e)))
                print(f"  {name} {mode:5s} FAILED: {e!r}", flush=True)
                continue
            rec = summarise(dict(model=name, mode=mode, images=a.images, **rec))
            records.append(rec)
            print(
                f"  {name} {mode:5s} epochs {' '.join(f'{s:.3f}' for s in rec['seconds'])} s  "
                f"train acc {rec['train_accuracy']:.4f}  test acc {rec['test_accuracy']:.4f}",
                flush=True,
            )
    rows = []
    for name in a.models:
        by = {r["mode"]: r for r in records if r["model"] == name}
        torch_s = by["torch"].get("median_s") if "torch" in by else None
        for mode, r in by.items():
            if "error" in r:
                rows.append([name, mode, a.images, "error", "-", "-", "-", "-"])
                continue
            speed = f"{torch_s / r['median_s']:.2f}x" if torch_s and mode != "torch" else "-"
            r["speedup_vs_torch"] = torch_s / r["median_s"] if torch_s else None
            rows.append(
                [
                    name,
                    mode,
                    a.images,
                    f"{r['median_s']:.3f}",
                    f"{r['first_s']:.3f}",
                    f"{a.images / r['median_s']:.0f}",
                    speed,
                    f"{r['test_accuracy']:.4f}",
                ]
            )
    print("\nepoch seconds: median over epochs 2.. (first = warm-up); speed-up = torch / mode")
    print_table(
        ["model", "mode", "images", "epoch s", "first s", "img/s", "vs torch", "test acc"], rows
    )
    if a.json:
        write_json(a.json, meta, records)
        print(f"wrote {len(records)} records to {a.json}")
    return 1 if any("error" in r for r in records) else 0


if __name__ == "__main__":
    sys.exit(main())
