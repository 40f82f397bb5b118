"""fashion_dense trained in PyTorch with Keras's defaults: is the course's 87.8% one lucky run?

    python bench/fashion_dense_peer.py --runs 10     # -> results/train/peers/fashion_dense_torch.json

The TensorFlow course trains Flatten -> Dense(128, relu) -> Dense(10, softmax) for 5 epochs at batch
32 with Adam and reports one run's test accuracy (87.8%). fastconv's 10 runs average lower; this
script trains the same network with a second, independent engine (PyTorch, float32, one thread) set
up the way Keras sets it up, so the two spreads can be compared:
  - glorot_uniform kernels and zero biases (Keras Dense defaults; PyTorch's own default is
    kaiming_uniform with a uniform bias);
  - Adam lr 1e-3, beta 0.9 / 0.999, epsilon 1e-7 (Keras; PyTorch's default is 1e-8);
  - a fresh shuffle every epoch, the last batch short (60,000 / 32 = 1,875 batches exactly);
  - images scaled to [0, 1], no hold-out.
`--variant torch` uses PyTorch's own defaults instead (init and epsilon), as a sensitivity check.
Needs the bench extra (torch).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "results" / "train" / "peers"


def train_once(data, seed, variant, epochs=5, batch=32):
    import torch

    (x, y), (xt, yt) = data
    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(784, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10)
    )
    eps = 1e-8
    if variant == "keras":
        eps = 1e-7
        for m in model:
            if isinstance(m, torch.nn.Linear):
                torch.nn.init.xavier_uniform_(m.weight)
                torch.nn.init.zeros_(m.bias)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=eps)
    loss_fn = torch.nn.CrossEntropyLoss()
    gen = np.random.default_rng(seed)
    xs, ys = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(epochs):
        order = torch.from_numpy(gen.permutation(len(x)))
        for i in range(0, len(x), batch):
            idx = order[i : i + batch]
            opt.zero_grad(set_to_none=True)
            loss_fn(model(xs[idx]), ys[idx]).backward()
            opt.step()
    with torch.no_grad():
        pred = model(torch.from_numpy(xt)).argmax(1).numpy()
    return float((pred == yt).mean())


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--variant", choices=("keras", "torch"), default="keras")
    args = p.parse_args(argv)

    import torch
    from fastconv import datasets

    torch.set_num_threads(1)
    data = datasets.load_fashion_mnist()
    accs = []
    t0 = time.perf_counter()
    for seed in range(args.runs):
        accs.append(train_once(data, seed, args.variant))
        print(f"seed {seed}: test {accs[-1] * 100:.2f}%", flush=True)
    a = np.array(accs) * 100
    result = dict(
        model="fashion_dense",
        engine=f"torch {torch.__version__}",
        variant=args.variant,
        epochs=5,
        batch_size=32,
        runs=len(accs),
        test_accuracy=accs,
        mean=a.mean(),
        std=a.std(ddof=1) if len(a) > 1 else 0.0,
        min=a.min(),
        max=a.max(),
        seconds=time.perf_counter() - t0,
    )
    OUT.mkdir(parents=True, exist_ok=True)
    out = OUT / f"fashion_dense_torch_{args.variant}.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"{a.mean():.2f}% ± {result['std']:.2f} (min {a.min():.2f}, max {a.max():.2f}) -> {out}")


if __name__ == "__main__":
    main()
