"""Train the NETWORKS.md networks with their sources' protocols and write docs/RESULTS.md.

    python bench/train_results.py run all --runs 10 --jobs 2   # every network, 10 seeds, 2 runs side by side
    python bench/train_results.py run cnn1 --runs 3            # -> results/train/cnn1/seed{0,1,2}/metrics.json
    python bench/train_results.py run cnn1 --device cuda       # -> results/train/cnn1_cuda/seed0 (GPU)
    python bench/train_results.py time                         # idle-machine s/epoch -> results/train/timing.json
    python bench/train_results.py report                       # -> docs/RESULTS.md and docs/img/results_*.png

`run` calls `python -m fastconv train MODEL --seed S --out DIR` once per (model, seed), `--jobs` of
them side by side with cores/jobs kernel and BLAS threads each (longest first), and skips runs whose
metrics.json already exists for the same number of epochs; each metrics.json records the git commit.
`time` trains each network for two epochs at 1 and at 2 threads, one network at a time (run it on an
idle machine), and keeps the second epoch's seconds: s/epoch in RESULTS.md comes only from there,
never from the accuracy runs, which share the cores.
`report` reads every metrics.json under results/train (and the PyTorch peer runs under
results/train/peers, bench/fashion_dense_peer.py) and tabulates published vs measured test accuracy
(mean ± std, min-max), draws the mean validation (or training) accuracy per epoch with the run-to-run
spread shaded, and appends docs/results_notes.md, the hand-written reading of the table.
Runs with "device" other than "cpu" in metrics.json (the `*_cuda` folders) get their own table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
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


def _schedule_epochs(name):
    from fastconv import models

    return models.DEFAULTS[name]["epochs"]


def _done(out, epochs):
    done = out / "metrics.json"
    return done.exists() and json.loads(done.read_text())["epochs"] == epochs


def _git_commit():
    """The last commit that changed the library (not bench/, docs/ or results/)."""
    paths = ["cpp", "cuda", "python", "CMakeLists.txt", "cmake", "pyproject.toml"]
    r = subprocess.run(
        ["git", "-C", str(ROOT), "log", "-1", "--format=%h", "--", *paths],
        capture_output=True,
        text=True,
    )
    return r.stdout.strip() or None


def _one_run(name, seed, out, args, threads, commit):
    epochs = args.epochs or _schedule_epochs(name)
    if _done(out, epochs) and not args.force:  # checked again here: another runner may have done it
        print(f"skip {name} seed {seed}: {out / 'metrics.json'} exists", flush=True)
        return True
    out.parent.mkdir(parents=True, exist_ok=True)
    running = out.parent / f"{out.name}.running"
    try:  # one runner per (model, seed), even with two batches going
        running.touch(exist_ok=False)
    except FileExistsError:
        print(f"skip {name} seed {seed}: another runner has it ({running})", flush=True)
        return True
    try:
        return _train(name, seed, out, args, threads, commit)
    finally:
        running.unlink()


def _train_command(name, out, threads, *extra, **env):
    """`fastconv train NAME` into OUT at THREADS threads, and its environment: NumPy's BLAS (the
    Dense layers) gets the same thread budget as fastconv's kernels."""
    cmd = [sys.executable, "-m", "fastconv", "train", name, "--out", str(out), "--quiet"]
    cmd += ["--threads", str(threads), *extra]
    return cmd, dict(os.environ, **{v: str(threads) for v in _BLAS_THREADS}, **env)


def _train(name, seed, out, args, threads, commit):
    extra = ["--seed", str(seed)]
    if args.epochs:
        extra += ["--epochs", str(args.epochs)]
    if args.device != "cpu":
        extra += ["--device", args.device]
    cmd, env = _train_command(name, out, threads, *extra)
    log = out.parent / f"{out.name}.log"
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
        epochs = args.epochs or _schedule_epochs(name)
        folder = name if args.device == "cpu" else f"{name}_{args.device}"
        for r in range(args.runs):
            seed = seed0 + r
            out = RESULTS / folder / f"seed{seed}"
            if _done(out, epochs) and not args.force:
                print(f"skip {name} seed {seed}: {out / 'metrics.json'} exists")
                continue
            jobs.append((r, name, seed, out))
    # Round by round (every network's first run, then every second run, ...), the longest first
    # within a round: an interrupted batch leaves every network with about the same number of runs.
    jobs = [j[1:] for j in sorted(jobs, key=lambda j: (j[0], -_COST.get(j[1], 50)))]
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.jobs)
    commit = _git_commit()
    with ThreadPoolExecutor(args.jobs) as pool:
        ok = list(pool.map(lambda j: _one_run(*j, args, threads, commit), jobs))
    if not all(ok):
        raise SystemExit(f"{ok.count(False)} of {len(ok)} runs failed")


def _load():
    """CPU runs and GPU runs, each as {model: [metrics, ...]} in seed order."""
    cpu, gpu = {}, {}
    for p in sorted(RESULTS.glob("*/seed*/metrics.json"), key=lambda p: (p.parts[-3], _seed(p))):
        m = json.loads(p.read_text())
        (cpu if m.get("device", "cpu") == "cpu" else gpu).setdefault(m["model"], []).append(m)
    return cpu, gpu


def _seed(path):
    return int(path.parent.name.removeprefix("seed"))


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


# The study's two families (NETWORKS.md A) and the other sources' networks, one figure each.
_FAMILIES = (
    ("dense", ("softmax", "mlp128", "mlp256", "mlp512", "mlp1024", "mlp2048")),
    ("cnn", ("cnn1", "cnn2")),
)
_OTHERS = ("keras_cnn", "lenet5", "fashion_dense", "fashion_cnn")


def _curve(ms):
    """Per-epoch accuracy of each run (runs x epochs) and which history it is."""
    key = "val_accuracy" if ms[0]["history"].get("val_accuracy") else "accuracy"
    return np.array([m["history"][key] for m in ms]) * 100, key


def _best_epoch(curves):
    """Epoch (1-based) of the best mean accuracy, and the first epoch within 0.1 point of it."""
    mean = curves.mean(axis=0)
    best = int(np.argmax(mean))
    return best + 1, int(np.argmax(mean >= mean[best] - 0.1)) + 1


def _plot(runs, out_dir):
    """docs/img/results_study.png (section A families) and results_others.png; returns the names."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, (family, names) in zip(axes, _FAMILIES):
        for name in names:
            if name not in runs:
                continue
            c = _curve(runs[name])[0] / 100
            ep = np.arange(1, c.shape[1] + 1)
            mean = c.mean(axis=0)
            (line,) = ax.plot(ep, mean, label=f"{name} ({len(c)} runs)")
            ax.fill_between(ep, c.min(axis=0), c.max(axis=0), color=line.get_color(), alpha=0.15)
            b, _ = _best_epoch(c)
            ax.plot([b], [mean[b - 1]], "o", color=line.get_color())
        ax.set_title(f"{'Dense' if family == 'dense' else 'Convolutional'} networks (MNIST study)")
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="lower right")
    axes[0].set_ylabel("validation accuracy (%, logit scale)")
    # A logit axis spreads 92% (softmax) to 99.3% (the CNNs) so every family's plateau shows.
    axes[0].set_yscale("logit")
    axes[0].set_ylim(0.90, 0.996)
    axes[0].yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v * 100:g}"))
    axes[0].yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    axes[0].set_yticks([0.9, 0.95, 0.97, 0.98, 0.985, 0.99, 0.993])
    fig.suptitle("Mean over runs, min-max shaded; dot = best mean epoch", fontsize=9)
    fig.tight_layout()
    fig.savefig(out_dir / "results_study.png", dpi=110)
    plt.close(fig)
    written.append("results_study.png")

    others = [n for n in _OTHERS if n in runs]
    if others:
        fig, axes = plt.subplots(1, len(others), figsize=(3.4 * len(others), 3.6))
        for ax, name in zip(np.atleast_1d(axes), others):
            c, key = _curve(runs[name])
            ep = np.arange(1, c.shape[1] + 1)
            label = "validation accuracy" if key == "val_accuracy" else "training accuracy"
            (line,) = ax.plot(ep, c.mean(axis=0), label=label)
            ax.fill_between(ep, c.min(axis=0), c.max(axis=0), color=line.get_color(), alpha=0.2)
            test = np.array([m["test_accuracy"] for m in runs[name]]) * 100
            ax.errorbar(
                [c.shape[1]],
                [test.mean()],
                yerr=[[test.mean() - test.min()], [test.max() - test.mean()]],
                fmt="s",
                color="k",
                label="test (end)",
            )
            pub = runs[name][0]["published_accuracy"]
            if pub is not None:
                ax.axhline(pub * 100, ls="--", color="gray", lw=1, label="published")
            ax.set_title(f"{name} ({len(c)} runs)", fontsize=10)
            ax.set_xlabel("epoch")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7, loc="lower right")
        np.atleast_1d(axes)[0].set_ylabel("accuracy (%)")
        fig.tight_layout()
        fig.savefig(out_dir / "results_others.png", dpi=110)
        plt.close(fig)
        written.append("results_others.png")
    return written


def _timing_section():
    path = RESULTS / "timing.json"
    if not path.exists():
        return [
            "",
            "## Seconds per epoch",
            "",
            "Not measured yet: `python bench/train_results.py time`.",
        ]
    t = json.loads(path.read_text())
    isas = sorted({k.split(":")[0] for r in t["rows"].values() for k in r})
    cols = [f"{isa}:{n}" for isa in isas for n in t["threads"]]
    lines = [
        "",
        "## Seconds per epoch",
        "",
        f"Measured by `python bench/train_results.py time` on an idle machine ({t['cpu']}, "
        f"{t['cores']} cores; git {t['git_commit']}, {t['date']}; load average before: "
        f"{t['load_before']}): the second of two epochs, one network at a time, fastconv's CPU "
        "kernels and NumPy's BLAS held to the same thread count. One epoch is the training pass "
        "over the training images (validation and test evaluation excluded).",
        "",
        "| network | train images | "
        + " | ".join(f"{c.split(':')[0]}, {c.split(':')[1]} thread(s)" for c in cols)
        + " |",
        "|---|---:|" + "---:|" * len(cols),
    ]
    for name, r in t["rows"].items():
        cells = [f"{r[c]:.2f} s" if c in r else "" for c in cols]
        lines.append(f"| `{name}` | {t['train_images'][name]:,} | " + " | ".join(cells) + " |")
    return lines


def _peer_lines():
    lines = []
    for p in sorted((RESULTS / "peers").glob("*.json")):
        r = json.loads(p.read_text())
        lines.append(
            f"- `{r['model']}` in {r['engine']} ({r['variant']} defaults, {r['runs']} runs, "
            f"{r['epochs']} epochs, batch {r['batch_size']}): {r['mean']:.2f}% ± {r['std']:.2f} "
            f"(min {r['min']:.2f}%, max {r['max']:.2f}%) — `bench/fashion_dense_peer.py "
            f"--variant {r['variant']}`"
        )
    return lines


def report(args):
    runs, gpu = _load()
    commits = sorted({m.get("git_commit") or "?" for ms in runs.values() for m in ms})
    lines = [
        "# Reproduction of the published accuracies (NETWORKS.md)",
        "",
        "Written by `python bench/train_results.py report` from results/train/*/seed*/metrics.json",
        "(one file per run, machine-readable); rerun any row with the command in its last column",
        "(`python bench/train_results.py run NAME --runs 10` for the whole row). Each network is",
        "trained with its source's protocol: the MNIST study's networks 30 epochs at batch 100 with",
        "Adam and 5,000 training images held out (10 runs: seeds 0-9), keras_cnn the course's",
        "10 epochs at batch 200 with validation_split 0.2 (seeds 42-51, the course's seed first),",
        "the Fashion-MNIST course's networks 5 and 10 epochs at batch 32, lenet5 10 epochs at",
        "batch 100. Test accuracy is on the full test set (10,000 images) after the last epoch;",
        '"ours" is the mean ± sample standard deviation over the runs, then min-max.',
        f"All runs on git {', '.join(commits)}, CPU kernels (float32), two runs side by side at one",
        "thread each; seconds per epoch come from a separate idle-machine timing, below.",
        "",
        "| network | data | published | ours (mean ± std) | min–max | Δ mean (points) | epochs "
        "| batch | runs | best epoch (val) | command |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name in [*TABLE, *sorted(set(runs) - set(TABLE))]:
        ms = runs.get(name)
        if not ms:
            lines.append(f"| `{name}` | | | not run | | | | | | | |")
            continue
        acc = np.array([m["test_accuracy"] for m in ms]) * 100
        pub = ms[0]["published_accuracy"]
        pub_s = "-" if pub is None else f"{pub * 100:.2f}%"
        delta = "" if pub is None else f"{acc.mean() - pub * 100:+.2f}"
        ours = f"{acc.mean():.2f}%" + (f" ± {acc.std(ddof=1):.2f}" if len(acc) > 1 else "")
        epochs = sorted({m["epochs"] for m in ms})
        c, key = _curve(ms)
        best = ""
        if key == "val_accuracy":
            b, near = _best_epoch(c)
            best = f"{b} (within 0.1 from {near})"
        lines.append(
            f"| `{name}` | {ms[0]['dataset']} | {pub_s} | {ours} | {acc.min():.2f}–{acc.max():.2f} | "
            f"{delta} | {'/'.join(map(str, epochs))} | {ms[0]['batch_size']} | {len(ms)} | {best} | "
            f"`{_command(ms[0])}` |"
        )
    lines += [
        "",
        '"best epoch": the epoch of the best mean validation accuracy over the runs, and the',
        "first epoch whose mean is within 0.1 point of it.",
    ]
    if runs:
        for png in _plot(runs, ROOT / "docs" / "img"):
            title = "the study's families" if "study" in png else "the other sources' networks"
            lines += ["", f"![Accuracy per epoch, {title}](img/{png})"]
    lines += _timing_section()
    peers = _peer_lines()
    if peers:
        lines += ["", "## Peer runs (another engine, the same protocol)", "", *peers]
    lines += ["", "## Test accuracy of every run", ""]
    for name in [n for n in dict.fromkeys([*TABLE, *sorted(runs)]) if n in runs]:
        ms = runs[name]
        accs = ", ".join(f"{m['test_accuracy'] * 100:.2f}" for m in ms)
        lines.append(f"- `{name}` (seeds {ms[0]['seed']}–{ms[-1]['seed']}): {accs}")
    if gpu:
        lines += _gpu_section(gpu)
    notes = ROOT / "docs" / "results_notes.md"
    if notes.exists():  # hand-written reading of the table, kept across regenerations
        lines += ["", notes.read_text().rstrip()]
    out = ROOT / "docs" / "RESULTS.md"
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


def time_epochs(args):
    """Idle-machine seconds per epoch: two epochs per (network, ISA, threads), keep the second."""
    import platform
    import tempfile

    names = TABLE if args.models == ["all"] else args.models
    path = RESULTS / "timing.json"
    t = json.loads(path.read_text()) if path.exists() else {"rows": {}, "train_images": {}}
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    t.update(
        cpu=cpu,
        cores=os.cpu_count(),
        git_commit=_git_commit(),
        date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        load_before=" ".join(f"{x:.2f}" for x in os.getloadavg()),
        threads=args.threads_list,
    )
    for name in names:
        for isa in args.isa:
            for n in args.threads_list:
                with tempfile.TemporaryDirectory() as tmp:
                    cmd, env = _train_command(name, tmp, n, "--epochs", "2", FASTCONV_CPU_ISA=isa)
                    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
                    m = json.loads((Path(tmp) / "metrics.json").read_text())
                t["rows"].setdefault(name, {})[f"{isa}:{n}"] = m["epoch_seconds"][1]
                t["train_images"][name] = m["train_samples"]
                print(f"{name} {isa} x{n}: {m['epoch_seconds'][1]:.2f} s/epoch", flush=True)
                path.write_text(json.dumps(t, indent=1) + "\n")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="train models into results/train")
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
    t = sub.add_parser("time", help="idle-machine seconds per epoch -> results/train/timing.json")
    t.add_argument("models", nargs="+", help="model names, or 'all'")
    t.add_argument("--isa", nargs="+", default=["avx512"], help="FASTCONV_CPU_ISA values to time")
    t.add_argument(
        "--threads", dest="threads_list", type=int, nargs="+", default=[1, 2], help="thread counts"
    )
    sub.add_parser("report", help="write docs/RESULTS.md and its plots from results/train")
    args = p.parse_args(argv)
    os.chdir(ROOT)
    {"run": run, "time": time_epochs, "report": report}[args.cmd](args)


if __name__ == "__main__":
    main()
