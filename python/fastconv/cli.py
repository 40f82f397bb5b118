"""Command line: `fastconv train MODEL ...` and `fastconv info` (also `python -m fastconv ...`).

    fastconv train cnn1 --epochs 1 --out runs/cnn1       # defaults per model from NETWORKS.md
    fastconv train cnn1 --device cuda                    # on the GPU (needs fastconv[cuda])
    fastconv info
    mpiexec -n 2 fastconv train cnn1                     # data-parallel on 2 MPI ranks (fastconv[mpi])

train prints a progress bar per epoch (tqdm if installed, else a plain line) with images/s, loss and
accuracy, then the test accuracy, and writes DIR/metrics.json and DIR/curves.png (the latter only
when matplotlib is installed; it says so otherwise).

Errors are one line on stderr, never a traceback. Exit status: 0 done; 2 a value argparse refuses
(unknown model or option, a number out of its range: the line names the option and the range);
1 anything found after parsing (options that cannot work together, an --out folder that cannot
be created or written, missing or corrupt data, an unavailable device, an internal error: the
last says so and that --debug shows the traceback); 130 interrupted (Ctrl-C). Everything that
can be checked is checked before training starts, --out by writing a probe file into it.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import platform
import sys
import tempfile
import time

import numpy as np

from ._atomic import atomic_write

__all__ = ["main"]


def _int_at_least(low):
    """argparse type: an int >= low (the error names the range; argparse adds the option)."""

    def parse(text):
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an int >= {low}, got {text!r}") from None
        if v < low:
            raise argparse.ArgumentTypeError(f"must be an int >= {low}, got {v}")
        return v

    return parse


def _float_in(low, high=None, low_open=False):
    """argparse type: a finite float in [low, high) (or (low, ...) when low_open)."""
    lo = f"> {low}" if low_open else f">= {low}"
    want = (
        f"a number {lo}"
        if high is None
        else f"a number in {'(' if low_open else '['}{low}, {high})"
    )

    def parse(text):
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {want}, got {text!r}") from None
        bad_low = v <= low if low_open else v < low
        if not math.isfinite(v) or bad_low or (high is not None and v >= high):
            raise argparse.ArgumentTypeError(f"must be {want}, got {text}")
        return v

    return parse


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
    t.add_argument(
        "--epochs", type=_int_at_least(1), help="default: the model's schedule from NETWORKS.md"
    )
    t.add_argument(
        "--batch-size",
        type=_int_at_least(1),
        help="default: the model's schedule from NETWORKS.md",
    )
    t.add_argument(
        "--lr", type=_float_in(0.0, low_open=True), help="learning rate (default 1e-3, Adam)"
    )
    t.add_argument(
        "--seed",
        type=_int_at_least(0),
        help="seed for weights, shuffling and dropout (default: the model's, else 0)",
    )
    t.add_argument(
        "--validation-split",
        type=_float_in(0.0, 1.0),
        help="held-out last fraction of the training set (default: the model's)",
    )
    t.add_argument(
        "--limit",
        type=_int_at_least(1),
        help="train on the first N training images only (quick runs)",
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
    t.add_argument(
        "--cuda-graph",
        action="store_true",
        help="with --device cuda and Adam: replay each training step as a CUDA graph "
        "(fit(cuda_graph=True); experimental, not yet run on a GPU)",
    )
    t.add_argument(
        "--threads", type=_int_at_least(1), help="CPU kernel threads (fastconv.set_num_threads)"
    )
    t.add_argument(
        "--out", default=None, help="folder for metrics.json and curves.png (default runs/MODEL)"
    )
    t.add_argument(
        "--quiet", action="store_true", help="one line per epoch instead of a progress bar"
    )
    t.add_argument(
        "--debug", action="store_true", help="show the Python traceback of an internal error"
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
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    atomic_write(path, lambda f: f.write(buf.getvalue()))
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
    # argparse checked each value's range; what remains needs several values or the system
    if args.limit is not None:
        _check_limit(args.limit, split)
    if args.cuda_graph and (args.device != "cuda" or cfg["optimizer"] != "adam"):
        raise SystemExit(
            f"fastconv train: --cuda-graph needs --device cuda and an Adam model; got --device "
            f"{args.device} and {args.model}'s optimizer {cfg['optimizer']!r}"
        )
    if args.threads is not None:
        try:
            fastconv.set_num_threads(args.threads)
        except (ValueError, TypeError) as e:
            msg = str(e).splitlines()[0]
            raise SystemExit(f"fastconv train: --threads {args.threads}: {msg}") from None
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
        _check_out(out)

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
        x, y = x[: args.limit], y[: args.limit]
        _check_limit(len(x), split)
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
        cuda_graph=args.cuda_graph,
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
        cuda_graph=args.cuda_graph,
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
    text = json.dumps(metrics, indent=1).encode()
    atomic_write(os.path.join(out, "metrics.json"), lambda f: f.write(text))
    png = os.path.join(out, "curves.png")
    try:
        plotted = _plot(
            hist, png, f"{args.model} on {dataset}: test accuracy {test_acc * 100:.2f}%"
        )
    except Exception as e:  # noqa: BLE001 - the metrics are written; a failing plot must not hide that
        plotted = f"the plot failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    if plotted is True:
        print(f"wrote {os.path.join(out, 'metrics.json')} and {png}")
    else:
        why = plotted or "matplotlib is not installed (pip install matplotlib, or fastconv[train])"
        print(f"wrote {os.path.join(out, 'metrics.json')}; no plot: {why}")
    return metrics


def _silent(*args, **kwargs):
    pass


def _check_limit(n, split):
    """SystemExit when --validation-split of n training images leaves either side empty."""
    from .nn.model import split_index

    def fits(k):
        try:
            split_index(k, split)
        except ValueError:
            return False
        return True

    if fits(n):
        return
    least = max(2, math.ceil((1.0 - 1e-9) / (1.0 - split)))  # floor(k (1 - split)) >= 1
    least = next(k for k in range(least, least + 4) if fits(k))
    raise SystemExit(
        f"fastconv train: --limit {n} with --validation-split {split:.6g} leaves no training or "
        f"no validation image: give --limit >= {least} or --validation-split 0"
    )


def _check_out(out):
    """Create the --out folder and write a probe file into it, so a run cannot lose its results
    at the end; SystemExit naming the folder when that fails."""
    try:
        if os.path.exists(out) and not os.path.isdir(out):
            raise NotADirectoryError(f"{out} is a file")
        os.makedirs(out, exist_ok=True)
        for name in ("metrics.json", "curves.png"):
            if os.path.isdir(os.path.join(out, name)):
                raise IsADirectoryError(f"{os.path.join(out, name)} is a folder")
        with tempfile.NamedTemporaryFile(dir=out, prefix=".fastconv-probe-"):
            pass
    except OSError as e:
        why = e.strerror if e.strerror else str(e)
        raise SystemExit(
            f"fastconv train: --out {out}: cannot create or write this folder ({why})"
        ) from None


def _gpu_name():
    """The GPU the "cuda" backend runs on, as fastconv.info() names it."""
    import fastconv

    name = fastconv.info().get("cuda_device")
    return None if name is None else str(name)


def main(argv=None):
    """Entry point of the `fastconv` script; returns the exit status (see the module doc)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    from . import distributed

    # under mpiexec every rank parses the same arguments: rank 0 alone reports a bad one
    other_rank = distributed.launched_size() > 1 and distributed.launched_rank() != 0
    try:
        with contextlib.redirect_stderr(io.StringIO()) if other_rank else contextlib.nullcontext():
            args = _parser().parse_args(argv)
    except KeyboardInterrupt:
        return _interrupted("fastconv")
    args.command_line = "fastconv " + " ".join(argv)
    prog = f"fastconv {args.command}"
    try:
        if args.command == "info":
            for k, v in _info().items():
                print(f"{k}: {v}")
            return 0
        _train(args)
    except SystemExit as e:
        # an argument error stops every rank alike before MPI starts: rank 0 alone says why
        if other_rank and e.code not in (0, None):
            sys.exit(1)
        raise
    except KeyboardInterrupt:
        return _interrupted(prog)
    except Exception as e:  # noqa: BLE001 - one line instead of a traceback, unless --debug
        if getattr(args, "debug", False):
            raise
        text = str(e).splitlines()[0] if str(e) else ""
        if isinstance(e, OSError) and e.filename is not None:  # e.g. disk full: the file says it
            print(f"{prog}: {text}", file=sys.stderr)
        else:
            print(
                f"{prog}: internal error: {type(e).__name__}: {text} "
                "(run again with --debug for the traceback, and please report it)",
                file=sys.stderr,
            )
        return 1
    return 0


def _interrupted(prog):
    """Ctrl-C: one line on a line of its own (a progress bar may hold the cursor), status 130."""
    if sys.stderr.isatty():
        sys.stderr.write("\n")
    print(f"{prog}: interrupted", file=sys.stderr)
    return 130


if __name__ == "__main__":
    sys.exit(main())
