#!/usr/bin/env python3
"""The PyTorch peer of fastconv's training: cnn1 and keras_cnn from NETWORKS.md, one epoch on MNIST.

The networks are NETWORKS.md's, layer for layer (NCHW, float32, images scaled to [0, 1]):
  cnn1      Conv(20, 5x5, same)+ReLU -> MaxPool(2,2) -> Conv(20, 5x5, same)+ReLU -> MaxPool(2,2)
            -> Flatten(980) -> Dense(10); Adam(1e-3), softmax cross-entropy, batch 100     (20,350 params)
  keras_cnn Conv(75, 5x5, valid)+ReLU -> MaxPool(2) -> Dropout(0.2) -> Conv(100, 5x5, valid)+ReLU
            -> MaxPool(2) -> Dropout(0.2) -> Flatten(1600) -> Dense(500)+ReLU -> Dropout(0.5)
            -> Dense(10, softmax); Adam(1e-3), categorical cross-entropy, batch 200       (995,060 params)
The final softmax is folded into the loss (nn.CrossEntropyLoss on logits), exactly as fastconv's
Sequential folds it; that is the same mathematics as softmax + categorical cross-entropy.
Initialisation is PyTorch's default (not Glorot as in Keras/fastconv): it does not change the cost of
an epoch, and accuracy after one epoch is reported only as a sanity check.

One timed epoch = a seeded shuffle, then for every batch: gather, forward, loss, backward, Adam step,
and the accuracy count (the same work fastconv's Sequential.fit does with metrics=["accuracy"]).
bench/train_epoch.py imports this module and alternates it with fastconv; run alone, this prints
the PyTorch epoch times:
    python bench/torch_train.py --model cnn1 --threads 2 --reps 3
    python bench/torch_train.py --model keras_cnn --images 12000      # a fifth of an epoch
MNIST comes from fastconv.datasets.load_mnist() (FASTCONV_DATA, else ../shared/data next to the repo),
or, if that module is missing, from the IDX .gz files read here.
"""

from __future__ import annotations

import argparse
import gzip
import os
import struct
import sys
import time
from pathlib import Path

from _util import REPO, pin_threads

MODELS = ("cnn1", "keras_cnn")
BATCH = {"cnn1": 100, "keras_cnn": 200}
PARAMS = {"cnn1": 20350, "keras_cnn": 995060}


def data_dir():
    """$FASTCONV_DATA, else the shared data folder next to the repo (../shared/data), else None."""
    if os.environ.get("FASTCONV_DATA"):
        return Path(os.environ["FASTCONV_DATA"])
    for cand in (REPO.parent / "shared" / "data", REPO / "data"):
        if cand.is_dir():
            return cand
    return None


def load_mnist_train():
    """(x, y): float32 (60000, 1, 28, 28) in [0, 1] and int64 (60000,)."""
    import numpy as np

    path = data_dir()
    try:
        from fastconv import datasets
    except ImportError:
        datasets = None
    if datasets is not None and hasattr(datasets, "load_mnist"):
        (x, y), _ = datasets.load_mnist(path=str(path) if path else None)
        return np.ascontiguousarray(x, np.float32).reshape(-1, 1, 28, 28), np.asarray(y, np.int64)
    # Fallback until fastconv.datasets lands: read the IDX files ourselves.
    if path is None:
        raise FileNotFoundError("set FASTCONV_DATA to a folder holding mnist/train-*-idx*-ubyte.gz")
    folder = path / "mnist" if (path / "mnist").is_dir() else path
    x = _read_idx(folder / "train-images-idx3-ubyte.gz", np)
    y = _read_idx(folder / "train-labels-idx1-ubyte.gz", np)
    return (x.astype(np.float32) / 255.0).reshape(-1, 1, 28, 28), y.astype(np.int64)


def _read_idx(path, np):
    raw = gzip.open(path, "rb").read() if path.suffix == ".gz" else path.read_bytes()
    zero, dtype, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def build(name, torch, seed=0):
    nn = torch.nn
    torch.manual_seed(seed)
    if name == "cnn1":
        model = nn.Sequential(
            nn.Conv2d(1, 20, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2, 2),
            nn.Conv2d(20, 20, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2, 2),
            nn.Flatten(),
            nn.Linear(980, 10),
        )
    elif name == "keras_cnn":
        model = nn.Sequential(
            nn.Conv2d(1, 75, 5),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Dropout(0.2),
            nn.Conv2d(75, 100, 5),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Dropout(0.2),
            nn.Flatten(),
            nn.Linear(1600, 500),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(500, 10),
        )  # softmax folded into CrossEntropyLoss
    else:
        raise ValueError(f"model must be one of {MODELS}, got {name!r}")
    n = sum(p.numel() for p in model.parameters())
    assert n == PARAMS[name], (name, n)
    return model


class TorchTrainer:
    """A fresh model + Adam; epoch(x, y) trains one epoch and returns (seconds, loss, accuracy)."""

    def __init__(self, name, torch, seed=0, lr=1e-3):
        self.torch, self.name = torch, name
        self.model = build(name, torch, seed)
        self.opt = torch.optim.Adam(
            self.model.parameters(), lr=lr, eps=1e-7
        )  # Keras/fastconv epsilon
        self.loss_fn = torch.nn.CrossEntropyLoss()
        self.gen = torch.Generator().manual_seed(seed)
        self.batch = BATCH[name]

    def epoch(self, x, y):
        torch = self.torch
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        n, bs = len(xt), self.batch
        self.model.train()
        t0 = time.perf_counter()
        order = torch.randperm(n, generator=self.gen)
        total_loss, correct = 0.0, 0
        with torch.enable_grad():
            for start in range(0, n, bs):
                idx = order[start : start + bs].sort().values
                xb, yb = xt[idx], yt[idx]
                logits = self.model(xb)
                loss = self.loss_fn(logits, yb)
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                self.opt.step()
                total_loss += loss.item() * len(idx)
                correct += int((logits.argmax(1) == yb).sum())
        return time.perf_counter() - t0, total_loss / n, correct / n


def main(argv=None):
    p = argparse.ArgumentParser(description="PyTorch peer: one MNIST epoch of cnn1 / keras_cnn")
    p.add_argument("--model", choices=MODELS + ("all",), default="all")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reps", type=int, default=1, help="epochs to time (each on a fresh model)")
    p.add_argument("--images", type=int, default=None, help="train on the first N images only")
    a = p.parse_args(argv)
    pin_threads(a.threads)
    import torch

    torch.set_num_threads(a.threads)
    x, y = load_mnist_train()
    if a.images:
        x, y = x[: a.images], y[: a.images]
    for name in MODELS if a.model == "all" else (a.model,):
        for r in range(a.reps):
            sec, loss, acc = TorchTrainer(name, torch, seed=r).epoch(x, y)
            print(
                f"torch {name} threads={a.threads} images={len(x)}: {sec:.2f} s "
                f"({len(x) / sec:.0f} img/s) loss {loss:.4f} acc {acc:.4f}",
                flush=True,
            )


if __name__ == "__main__":
    sys.exit(main())
