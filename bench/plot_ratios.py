#!/usr/bin/env python3
"""Bar chart of fastconv's speed-up over PyTorch (torch ms / fastconv ms) from the bench JSON.

    python bench/plot_ratios.py bench/results/cpu_latest.json -o docs/img/cpu_ratios.png
    python bench/plot_ratios.py bench/results/cpu_latest.json --train bench/results/train_latest.json \
        -o docs/img/cpu_ratios.png
One bar per (layer, pass), grouped by layer, log scale; a bar's error whisker spans the ratio from the
interquartile ranges (torch p25 / fastconv p75 to torch p75 / fastconv p25). Each layer's issue-5 goal
is drawn as a short dashed line over its group; 1x is the solid line. With --train, the end-to-end epoch
speed-ups (median torch s / median fastconv s) are added as a last group. Needs matplotlib
(pip install .[bench]).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

PASS_COLORS = {
    "fwd": "#4C72B0",
    "bwd_data": "#DD8452",
    "bwd_weight": "#55A868",
    "bwd": "#C44E52",
    "epoch": "#8172B2",
}


def load_pairs(path):
    doc = json.loads(Path(path).read_text())
    recs = doc["records"]
    out = []  # (layer, pass, ratio, lo, hi, goal)
    seen = []
    for r in recs:
        k = (r["layer"], r["pass"])
        if k not in seen:
            seen.append(k)
    for layer, pas in seen:
        by = {
            r["backend"]: r
            for r in recs
            if r["layer"] == layer and r["pass"] == pas and "median_ms" in r
        }
        f, t = by.get("fastconv"), by.get("torch")
        if not f or not t:
            continue
        out.append(
            (
                layer,
                pas,
                t["median_ms"] / f["median_ms"],
                t["p25_ms"] / f["p75_ms"],
                t["p75_ms"] / f["p25_ms"],
                f.get("goal_ratio"),
            )
        )
    return doc["meta"], out


def load_train(path):
    doc = json.loads(Path(path).read_text())
    out = []
    for s in doc["meta"]["summary"]:
        if s.get("speedup"):
            recs = [
                r
                for r in doc["records"]
                if r["model"] == s["model"] and r["threads"] == s["threads"]
            ]
            fc = [r["seconds"] for r in recs if r["backend"] == "fastconv"]
            tt = [r["seconds"] for r in recs if r["backend"] == "torch"]
            lo, hi = min(tt) / max(fc), max(tt) / min(fc)
            out.append(
                (f"epoch {s['model']}", f"{s['threads']}t", s["speedup"], lo, hi, s.get("goal"))
            )
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description="plot torch/fastconv speed ratios")
    p.add_argument("json", help="bench/conv_cpu.py --json output")
    p.add_argument("--train", default=None, help="bench/train_epoch.py --json output (optional)")
    p.add_argument("-o", "--out", default="docs/img/cpu_ratios.png")
    a = p.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    meta, pairs = load_pairs(a.json)
    if a.train:
        pairs += load_train(a.train)
    if not pairs:
        sys.exit("no (fastconv, torch) pairs in the JSON")
    layers = []
    for layer, *_ in pairs:
        if layer not in layers:
            layers.append(layer)
    fig, ax = plt.subplots(figsize=(max(8, 0.26 * len(pairs) + 2), 5))
    x, ticks, ticklabels, used = 0.0, [], [], set()
    for layer in layers:
        group = [q for q in pairs if q[0] == layer]
        x0 = x
        for _, pas, ratio, lo, hi, _goal in group:
            color = PASS_COLORS.get(pas, PASS_COLORS["epoch"])
            label = pas.replace("_", "-") if pas not in used and pas in PASS_COLORS else None
            used.add(pas)
            ax.bar(x, ratio, width=0.8, color=color, label=label)
            ax.errorbar(
                x,
                ratio,
                yerr=[[max(ratio - lo, 0)], [max(hi - ratio, 0)]],
                fmt="none",
                ecolor="black",
                elinewidth=0.8,
                capsize=2,
            )
            if pas not in PASS_COLORS:
                ax.text(x, ratio, pas, ha="center", va="bottom", fontsize=7)
            x += 1
        goal = next((q[5] for q in group if q[5]), None)
        if goal:
            ax.hlines(goal, x0 - 0.45, x - 0.55, colors="black", linestyles="dashed", linewidth=1)
        ticks.append((x0 + x - 1) / 2)
        ticklabels.append(layer)
        x += 0.7
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_yscale("log")
    ax.set_xticks(ticks)
    ax.set_xticklabels(ticklabels, rotation=40, ha="right", fontsize=8)
    ax.set_ylabel("speed-up over PyTorch (torch ms / fastconv ms), log")
    fc = meta.get("fastconv") if isinstance(meta.get("fastconv"), dict) else {}
    ax.set_title(
        f"fastconv vs PyTorch {meta.get('torch')} on {meta.get('cpu_model')}, "
        f"{meta.get('threads')} threads, fastconv {fc.get('cpu_isa', '?')}\n"
        f"median of alternating reps, whiskers from p25/p75; dashed = issue-5 goal",
        fontsize=9,
    )
    ax.legend(fontsize=8, loc="upper right")
    ax.grid(axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(a.out, dpi=110)
    print(
        f"wrote {a.out} ({len(pairs)} bars; median ratio {statistics.median(q[2] for q in pairs):.2f}x)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
