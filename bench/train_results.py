"""Train the NETWORKS.md networks and write docs/RESULTS.md from the measured metrics.

    python bench/train_results.py run cnn1 --runs 3            # -> results/train/cnn1/seed{0,1,2}/metrics.json
    python bench/train_results.py run all --runs 1 --epochs 10 # every table network, shorter schedule
    python bench/train_results.py run cnn1 --device cuda       # -> results/train/cnn1_cuda/seed0 (GPU)
    python bench/train_results.py report                       # -> docs/RESULTS.md (+ docs/cnn1_curves.png)

`run` calls `python -m fastconv train MODEL --seed S --out DIR` once per (model, seed), one after the
other (the machine is shared: run it niced), and skips runs whose metrics.json already exists for
the same number of epochs.
`report` reads every metrics.json under results/train and tabulates published vs measured test
accuracy (mean ± std over runs), epochs, batch size, runs, seconds per epoch and the command.
Runs with "device" other than "cpu" in metrics.json (the `*_cuda` folders) get their own table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results" / "train"
TABLE = (
    "softmax",
    "mlp128",
    "mlp256",
    "mlp512",
    "mlp1024",
    "mlp2048",
    "cnn1",
    "cnn2",
    "keras_cnn",
    "lenet5",
    "fashion_dense",
    "fashion_cnn",
)


# Rough single-thread cost of one run (core-seconds on the AVX-512 machine of docs/RESULTS.md): the
# longest runs start first so that --jobs workers finish together.
_COST = {
    "keras_cnn": 300,
    "fashion_cnn": 150,
    "cnn2": 120,
    "cnn1": 110,
    "mlp2048": 120,
    "mlp1024": 70,
    "mlp512": 35,
    "lenet5": 25,
    "mlp256": 20,
    "mlp128": 12,
    "softmax": 8,
    "fashion_dense": 5,
}


def _git_commit():
    r = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    return r.stdout.strip() or None


def _one_run(name, seed, out, args, threads, commit):
    cmd = [sys.executable, "-m", "fastconv", "train", name, "--seed", str(seed)]
    cmd += ["--out", str(out), "--quiet", "--threads", str(threads)]
    if args.epochs:
        cmd += ["--epochs", str(args.epochs)]
    if args.device != "cpu":
        cmd += ["--device", args.device]
    # NumPy's BLAS (the Dense layers) gets the same thread budget as fastconv's kernels.
    env = dict(os.environ, **{v: str(threads) for v in _BLAS_THREADS})
    log = out.parent / f"{out.name}.log"
    out.parent.mkdir(parents=True, exist_ok=True)
    print("+", " ".join(cmd[1:]), flush=True)
    with open(log, "w") as f:
        rc = subprocess.run(cmd, env=env, stdout=f, stderr=subprocess.STDOUT).returncode
    if rc != 0:
        print(f"FAILED ({rc}): {name} seed {seed}; see {log}", flush=True)
        return False
    done = out / "metrics.json"
    m = json.loads(done.read_text())
    m["git_commit"] = commit
    m["runs_side_by_side"] = args.jobs
    done.write_text(json.dumps(m, indent=1) + "\n")
    log.unlink()
    print(f"done {name} seed {seed}: test {m['test_accuracy'] * 100:.2f}%", flush=True)
    return True


_BLAS_THREADS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def run(args):
    from concurrent.futures import ThreadPoolExecutor

    from fastconv import models

    names = TABLE if args.models == ["all"] else args.models
    jobs = []
    for name in names:
        if name not in models.NAMES:
            raise SystemExit(f"unknown model {name!r}; choose from {', '.join(models.NAMES)}")
        seed0 = models.DEFAULTS[name]["seed"] or 0
        epochs = args.epochs or models.DEFAULTS[name]["epochs"]
        folder = name if args.device == "cpu" else f"{name}_{args.device}"
        for r in range(args.runs):
            seed = seed0 + r
            out = RESULTS / folder / f"seed{seed}"
            done = out / "metrics.json"
            if (
                done.exists()
                and not args.force
                and json.loads(done.read_text())["epochs"] == epochs
            ):
                print(f"skip {name} seed {seed}: {done} exists")
                continue
            jobs.append((name, seed, out))
    jobs.sort(key=lambda j: -_COST.get(j[0], 50))
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.jobs)
    commit = _git_commit()
    with ThreadPoolExecutor(args.jobs) as pool:
        ok = list(pool.map(lambda j: _one_run(*j, args, threads, commit), jobs))
    if not all(ok):
        raise SystemExit(f"{ok.count(False)} of {len(ok)} runs failed")


def _load():
    """CPU runs and GPU runs, each as {model: [metrics, ...]}."""
    cpu, gpu = {}, {}
    for p in sorted(RESULTS.glob("*/seed*/metrics.json")):
        m = json.loads(p.read_text())
        (cpu if m.get("device", "cpu") == "cpu" else gpu).setdefault(m["model"], []).append(m)
    return cpu, gpu


def _command(m):
    cmd = (m["command"] or "").replace(f"--seed {m['seed']}", "--seed S").split(" --out")[0]
    cmd = cmd.replace(" --quiet", "")
    dev = m.get("device", "cpu")
    return cmd if dev == "cpu" or f"--device {dev}" in cmd else f"{cmd} --device {dev}"


def _run_line(name, m):
    va = m["history"].get("val_accuracy")
    best = "" if not va else f"; best val {max(va) * 100:.2f}% at epoch {int(np.argmax(va)) + 1}"
    where = (
        f"CPU {m['fastconv'].get('cpu_isa')} x{m['fastconv'].get('num_threads')}"
        if m.get("device", "cpu") == "cpu"
        else f"GPU {m.get('gpu') or m['fastconv'].get('cuda_device')}"
    )
    return (
        f"- `{name}` seed {m['seed']}: test {m['test_accuracy'] * 100:.2f}% after "
        f"{m['epochs']} epochs{best}; {m['seconds_per_epoch']:.1f} s/epoch "
        f"({np.mean(m['images_per_second']):,.0f} img/s), {where}"
    )


def _gpu_section(gpu):
    lines = [
        "",
        "## On the GPU",
        "",
        "The same schedule with `--device cuda` (results/train/*_cuda/): conv and max-pool on fastconv's",
        "CUDA kernels, the rest (Dense, activations, loss, Adam) as CuPy kernels, float32 (no TF32).",
        "s/epoch is the mean over the epochs, the range in brackets; one run per line.",
        "",
        "| network | GPU | published | ours | Δ (points) | epochs | batch | s/epoch (min–max) | img/s | command |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, ms in sorted(gpu.items()):
        for m in ms:
            acc, pub = m["test_accuracy"] * 100, m["published_accuracy"]
            es = m["epoch_seconds"]
            lines.append(
                f"| `{name}` | {m.get('gpu') or m['fastconv'].get('cuda_device')} | "
                f"{'-' if pub is None else f'{pub * 100:.2f}%'} | {acc:.2f}% | "
                f"{'' if pub is None else f'{acc - pub * 100:+.2f}'} | {m['epochs']} | {m['batch_size']} | "
                f"{m['seconds_per_epoch']:.1f} ({min(es):.1f}–{max(es):.1f}) | "
                f"{np.mean(m['images_per_second']):,.0f} | `{_command(m)}` |"
            )
    lines += ["", "Per-run figures:", ""]
    lines += [_run_line(name, m) for name, ms in sorted(gpu.items()) for m in ms]
    return lines


def report(args):
    runs, gpu = _load()
    lines = [
        "# Reproduction of the published accuracies (NETWORKS.md)",
        "",
        "Measured with `python bench/train_results.py run ...` then `python bench/train_results.py report`,",
        "which wrote this file from results/train/*/seed*/metrics.json. Test accuracy is on the full test",
        'set (10,000 images); "ours" is the mean (± standard deviation) over the runs; s/epoch is the',
        "training pass alone on this machine (2 cores, fastconv's CPU kernels, float32). GPU runs:",
        "[On the GPU](#on-the-gpu).",
        "",
        "s/epoch is indicative only: the runs were made while kernel work and benchmarks shared the",
        "2 cores, most with one kernel thread (`x1` in the per-run list), and some with the kernels of",
        "an earlier commit. Clean, same-process timings against PyTorch are in",
        "[BENCHMARKS.md](BENCHMARKS.md). The study behind section A averaged 10 runs of 30 epochs;",
        "where we ran fewer runs or epochs the table says so.",
        "",
        "The network with Dropout (keras_cnn) was trained before dropout masks moved",
        "to fastconv's native generator (git 1d783c4): the same `--seed` now draws other masks, so",
        "its runs repeat statistically, not bit for bit. The conv networks' runs predate the",
        "Winograd kernels (git 05c6564 on), which round differently (PERF_LOG.md, round 7); the",
        "mlp256/512/2048 runs (dense layers only) are of that later code.",
        "",
        "| network | data | published | ours | Δ (points) | epochs | batch | runs | s/epoch | command |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name in [*TABLE, *sorted(set(runs) - set(TABLE))]:
        ms = runs.get(name)
        if not ms:
            lines.append(f"| `{name}` | | | not run | | | | | | |")
            continue
        acc = np.array([m["test_accuracy"] for m in ms]) * 100
        pub = ms[0]["published_accuracy"]
        pub_s = "-" if pub is None else f"{pub * 100:.2f}%"
        delta = "" if pub is None else f"{acc.mean() - pub * 100:+.2f}"
        ours = f"{acc.mean():.2f}%" + (f" ± {acc.std(ddof=1):.2f}" if len(acc) > 1 else "")
        spe = np.mean([m["seconds_per_epoch"] for m in ms])
        epochs = sorted({m["epochs"] for m in ms})
        cmd = _command(ms[0])
        lines.append(
            f"| `{name}` | {ms[0]['dataset']} | {pub_s} | {ours} | {delta} | {'/'.join(map(str, epochs))} | "
            f"{ms[0]['batch_size']} | {len(ms)} | {spe:.1f} | `{cmd}` |"
        )
    lines += ["", "Per-run figures (test accuracy, best validation accuracy and its epoch):", ""]
    lines += [_run_line(name, m) for name, ms in sorted(runs.items()) for m in ms]
    if gpu:
        lines += _gpu_section(gpu)
    curves = sorted(RESULTS.glob("cnn1/seed*/curves.png"))
    if curves:
        shutil.copyfile(curves[0], ROOT / "docs" / "cnn1_curves.png")
        lines += [
            "",
            "## cnn1 training curves",
            "",
            "![cnn1 loss and accuracy per epoch](cnn1_curves.png)",
        ]
    notes = ROOT / "docs" / "results_notes.md"
    if notes.exists():  # hand-written reading of the table, kept across regenerations
        lines += ["", notes.read_text().rstrip()]
    out = ROOT / "docs" / "RESULTS.md"
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="train models (sequentially) into results/train")
    r.add_argument(
        "models", nargs="+", help="model names, or 'all' for the RESULTS table's networks"
    )
    r.add_argument(
        "--runs", type=int, default=1, help="runs per model (seeds default, default+1, ...)"
    )
    r.add_argument("--epochs", type=int, help="override the NETWORKS.md schedule")
    r.add_argument("--force", action="store_true", help="re-run even if metrics.json exists")
    r.add_argument(
        "--jobs", type=int, default=1, help="runs side by side (each with cores/jobs threads)"
    )
    r.add_argument("--threads", type=int, help="kernel and BLAS threads per run")
    r.add_argument(
        "--device", default="cpu", help="cpu (default) or cuda: results/train/MODEL_cuda/seedS"
    )
    sub.add_parser("report", help="write docs/RESULTS.md from results/train")
    args = p.parse_args(argv)
    os.chdir(ROOT)
    (run if args.cmd == "run" else report)(args)


if __name__ == "__main__":
    main()
