"""Command line: `fastconv train MODEL ...` and `fastconv info` (also `python -m fastconv ...`).

    fastconv train cnn1 --epochs 1 --out runs/cnn1       # defaults per model from NETWORKS.md
    fastconv train cnn1 --device cuda                    # on the GPU (needs fastconv[cuda])
    fastconv info
    mpiexec -n 2 fastconv train cnn1                     # data-parallel on 2 MPI ranks (fastconv[mpi])

train prints a progress bar per epoch (tqdm if installed, else a plain line) with images/s, loss and
accuracy, then the test accuracy, and writes DIR/metrics.json and DIR/curves.png (the latter only
when matplotlib is installed; it says so otherwise).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

__all__ = ["main"]


def _parser():
    from . import models

    p = argparse.ArgumentParser(
        prog="fastconv",
        description="fastconv: fast Conv2D/MaxPool kernels and a Keras-like layer API (NCHW)",
    )
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train a NETWORKS.md model on MNIST or Fashion-MNIST")
    t.add_argument("model", choices=models.NAMES, help="network name")
    t.add_argument(
        "--dataset",
        choices=("mnist", "fashion"),
        help="default: the model's (fashion_* use fashion)",
    )
    t.add_argument("--epochs", type=int, help="default: the model's schedule from NETWORKS.md")
    t.add_argument("--batch-size", type=int, help="default: the model's schedule from NETWORKS.md")
    t.add_argument("--lr", type=float, help="learning rate (default 1e-3, Adam)")
    t.add_argument(
        "--seed",
        type=int,
        help="seed for weights, shuffling and dropout (default: the model's, else 0)",
    )
    t.add_argument(
        "--validation-split",
        type=float,
        help="held-out last fraction of the training set (default: the model's)",
    )
    t.add_argument(
        "--limit", type=int, help="train on the first N training images only (quick runs)"
    )
    t.add_argument(
        "--data",
        help="folder with the IDX files (default: FASTCONV_DATA, the cache, the system, "
        "then a download)",
    )
    t.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default="cpu",
        help="where to train: cpu (default) or cuda (CuPy + fastconv's CUDA kernels; "
        'pip install "fastconv[cuda]")',
    )
    t.add_argument("--threads", type=int, help="CPU kernel threads (fastconv.set_num_threads)")
    t.add_argument(
        "--out", default=None, help="folder for metrics.json and curves.png (default runs/MODEL)"
    )
    t.add_argument(
        "--quiet", action="store_true", help="one line per epoch instead of a progress bar"
    )
    sub.add_parser(
        "info", help="print version, CPU kernel path, threads, CUDA status and data locations"
    )
    return p


def _info():
    import fastconv

    from . import datasets, models

    info = dict(fastconv.info())
    info["python"] = platform.python_version()
    info["numpy"] = np.__version__
    info["models"] = list(models.NAMES)
    info["data"] = {}
    for ds in ("mnist", "fashion"):
        try:
            src, files = datasets.find_files(ds, download=False, verify=False)
            info["data"][ds] = f"{src}: {os.path.dirname(str(next(iter(files.values()))))}"
        except (datasets.DatasetError, ValueError) as e:
            info["data"][ds] = f"not found locally ({str(e).splitlines()[0][:120]})"
    return info


def _plot(history, path, title):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    h = history.history
    ep = np.arange(1, len(h["loss"]) + 1)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    for key, ax in (("loss", a1), ("accuracy", a2)):
        ax.plot(ep, h[key], "o-", label=f"train {key}")
        if f"val_{key}" in h:
            ax.plot(ep, h[f"val_{key}"], "s-", label=f"validation {key}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def _train(args):
    import fastconv

    from . import distributed, models

    cfg = models.DEFAULTS[args.model]
    dataset = args.dataset or cfg["dataset"]
    epochs = cfg["epochs"] if args.epochs is None else args.epochs
    batch = cfg["batch_size"] if args.batch_size is None else args.batch_size
    lr = cfg["learning_rate"] if args.lr is None else args.lr
    seed = args.seed if args.seed is not None else (cfg["seed"] if cfg["seed"] is not None else 0)
    split = cfg["validation_split"] if args.validation_split is None else args.validation_split
    for name, v in (("--epochs", epochs), ("--batch-size", batch)):
        if v < 1:
            raise SystemExit(f"fastconv train: {name} must be >= 1, got {v}")
    if lr <= 0:
        raise SystemExit(f"fastconv train: --lr must be > 0, got {lr}")
    if not 0.0 <= split < 1.0:
        raise SystemExit(f"fastconv train: --validation-split must be in [0, 1), got {split}")
    if args.threads is not None:
        fastconv.set_num_threads(args.threads)
    # the device first: a missing CuPy / CUDA build / GPU fails here, before any data is read
    from .nn import get_backend

    try:
        get_backend(args.device)
    except (ImportError, RuntimeError, ValueError) as e:
        raise SystemExit(f"fastconv train: --device {args.device}: {e}") from None
    group = _mpi_group()
    with distributed.abort_on_error(group):  # from here on, a failing rank stops them all
        return _train_on(args, group, cfg, dataset, epochs, batch, lr, seed, split)


def _mpi_group():
    """The MPI group when mpiexec started several ranks, else a group of one. Launched on several
    ranks without a working mpi4py, it stops every rank with one line (from rank 0), instead of
    running N independent trainings."""
    from . import distributed

    launched = distributed.launched_size()
    if launched == 1:
        return distributed.Group()
    try:
        return distributed.get_group(True)
    except (ImportError, RuntimeError) as e:
        if distributed.launched_rank() == 0:
            print(
                f"fastconv train: started on {launched} MPI ranks, but {e}; not training "
                "(each rank would train alone)",
                file=sys.stderr,
                flush=True,
            )
        raise SystemExit(1) from None


def _train_on(args, group, cfg, dataset, epochs, batch, lr, seed, split):
    import fastconv

    from . import datasets, models
    from .nn import optimizers

    gpu = _gpu_name() if args.device == "cuda" else None
    out = args.out or os.path.join("runs", args.model)
    root = group.is_root  # only rank 0 prints and writes files
    if root:
        os.makedirs(out, exist_ok=True)

    t0 = time.perf_counter()
    for turn in (True, False) if group.size > 1 else (True,):
        if turn == root:  # rank 0 first (it may download), then the others read its cache
            try:
                ((x, y), (xt, yt)), source = datasets.load_dataset(
                    dataset, path=args.data, return_source=True
                )
            except datasets.DatasetError as e:
                raise SystemExit(f"fastconv train: {e}") from None
        if group.size > 1:
            group.comm.Barrier()
    load_s = time.perf_counter() - t0
    if args.limit is not None:
        if args.limit < 1:
            raise SystemExit(f"fastconv train: --limit must be >= 1, got {args.limit}")
        x, y = x[: args.limit], y[: args.limit]
    if cfg["loss"] == "categorical_crossentropy":  # one-hot targets, as the Keras course does
        y, yt = np.eye(10, dtype=np.float32)[y], np.eye(10, dtype=np.float32)[yt]

    model = models.build(args.model, seed=seed, device=args.device, compile=False)
    model.compile(optimizers.get(cfg["optimizer"], lr), cfg["loss"], metrics=["accuracy"])
    ranks = "" if group.size == 1 else f"{group.size} MPI ranks, data-parallel; "
    say = print if root else _silent
    say(
        f"fastconv {fastconv.__version__}: {ranks}{args.model} ({model.count_params():,} parameters) on {dataset} "
        f"[{source}, {len(x)} training images]; {epochs} epochs, batch {batch}, {cfg['optimizer']} lr {lr}, "
        f"seed {seed}, validation_split {split:.4g}; "
        + (
            f"GPU {gpu}"
            if gpu is not None
            else f"CPU {fastconv.info().get('cpu_isa')} x{fastconv.info().get('num_threads')} threads"
            + ("" if group.size == 1 else " per rank")
        ),
        flush=True,
    )
    hist = model.fit(
        x,
        y,
        batch_size=batch,
        epochs=epochs,
        validation_split=split,
        seed=seed,
        verbose=2 if args.quiet else 1,
        distributed=group,
    )
    t1 = time.perf_counter()
    test_loss, test_acc = model.evaluate(xt, yt, distributed=group)
    eval_s = time.perf_counter() - t1
    pub = "-" if cfg["published"] is None else f"{cfg['published'] * 100:.2f}%"
    say(
        f"test accuracy {test_acc * 100:.2f}% (loss {test_loss:.4f}); published {pub}; "
        f"{np.mean(hist.epoch_seconds):.1f} s/epoch"
    )
    metrics = dict(
        model=args.model,
        dataset=dataset,
        data_source=source,
        parameters=model.count_params(),
        epochs=epochs,
        batch_size=batch,
        optimizer=cfg["optimizer"],
        learning_rate=lr,
        loss=cfg["loss"],
        seed=seed,
        validation_split=split,
        train_samples=hist.params["samples"],
        validation_samples=hist.params["validation_samples"],
        limit=args.limit,
        history=hist.history,
        epoch_seconds=hist.epoch_seconds,
        images_per_second=hist.images_per_second,
        seconds_per_epoch=float(np.mean(hist.epoch_seconds)),
        test_loss=test_loss,
        test_accuracy=test_acc,
        eval_seconds=eval_s,
        load_seconds=load_s,
        published_accuracy=cfg["published"],
        command=args.command_line,
        device=args.device,
        gpu=gpu,
        mpi_ranks=group.size,
        fastconv=fastconv.info(),
        python=platform.python_version(),
        numpy=np.__version__,
        machine=platform.machine(),
        cpu_count=os.cpu_count(),
        time=time.strftime("%Y-%m-%dT%H:%M:%S"),
    )
    if not root:
        return metrics
    with open(os.path.join(out, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=1)
    png = os.path.join(out, "curves.png")
    if _plot(hist, png, f"{args.model} on {dataset}: test accuracy {test_acc * 100:.2f}%"):
        print(f"wrote {os.path.join(out, 'metrics.json')} and {png}")
    else:
        print(
            f"wrote {os.path.join(out, 'metrics.json')}; no plot: matplotlib is not installed "
            "(pip install matplotlib, or fastconv[train])"
        )
    return metrics


def _silent(*args, **kwargs):
    pass


def _gpu_name():
    """The GPU the "cuda" backend runs on, as fastconv.info() names it."""
    import fastconv

    name = fastconv.info().get("cuda_device")
    return None if name is None else str(name)


def main(argv=None):
    """Entry point of the `fastconv` script; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parser().parse_args(argv)
    args.command_line = "fastconv " + " ".join(argv)
    if args.command == "info":
        for k, v in _info().items():
            print(f"{k}: {v}")
        return 0
    try:
        _train(args)
    except SystemExit as e:
        from . import distributed

        # an argument error stops every rank alike before MPI starts: rank 0 alone says why
        if distributed.launched_rank() != 0 and e.code not in (0, None):
            sys.exit(1)
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
