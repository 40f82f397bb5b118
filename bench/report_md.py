"""Write the measured tables into docs/BENCHMARKS.md (between its <!-- results --> markers).

    python bench/report_md.py                 # reads bench/results/{cpu_latest,cpu_latest_1t,train_latest}.json

Every number in the generated section comes from those JSON files, written by bench/conv_cpu.py and
bench/train_epoch.py; nothing is typed by hand.
"""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DOC = ROOT / "docs" / "BENCHMARKS.md"
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"


def _load(name):
    path = RESULTS / name
    return json.loads(path.read_text()) if path.exists() else None


def _shape(r):
    s = r["shape"]
    if r["op"] == "conv2d":
        pad = s["padding"][0]
        return f"({s['n']},{s['c_in']},{s['h']},{s['w']})→{s['c_out']} k{s['kernel'][0]} p{pad}"
    return f"({s['n']},{s['c']},{s['h']},{s['w']}) {s['kernel'][0]}×{s['kernel'][1]}/{s['stride'][0]}"


def _layer_table(data):
    recs = data["records"]
    by = {(r["layer"], r["pass"], r["backend"]): r for r in recs}
    rows = [
        "| layer | pass | fastconv ms (p25–p75) | PyTorch ms | NumPy ms | ratio | ratio (min) | goal | "
        "fastconv GFLOP/s or GB/s | % of peak |",
        "|---|---|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    seen = []
    for r in recs:
        if r["backend"] == "fastconv" and (r["layer"], r["pass"]) not in seen:
            seen.append((r["layer"], r["pass"]))
    for layer, pas in seen:
        fc = by[(layer, pas, "fastconv")]
        th = by.get((layer, pas, "torch"))
        npr = by.get((layer, pas, "numpy"))
        speed = f"{fc['gflops']:.0f}" if "gflops" in fc else f"{fc.get('gbytes_per_s', 0):.1f} GB/s"
        pct = f"{fc['pct_peak']:.0f}%" if "pct_peak" in fc else ""
        goal = ""
        if "goal_ratio" in fc:
            goal = f"≥{fc['goal_ratio']:g}× {'met' if fc.get('goal_met') else '**missed**'}"
        rows.append(
            f"| {layer} {_shape(fc)} | {pas} | {fc['median_ms']:.3g} ({fc['p25_ms']:.3g}–{fc['p75_ms']:.3g}) | "
            f"{th['median_ms']:.3g} | {npr['median_ms']:.3g} | " if npr else
            f"| {layer} {_shape(fc)} | {pas} | {fc['median_ms']:.3g} ({fc['p25_ms']:.3g}–{fc['p75_ms']:.3g}) | "
            f"{th['median_ms']:.3g} | – | "
        )
        rows[-1] += (
            f"{fc.get('speedup_vs_torch', float('nan')):.2f}× | {fc.get('speedup_vs_torch_min', float('nan')):.2f}× | "
            f"{goal} | {speed} | {pct} |"
        )
    return "\n".join(rows)


def _train_table(data):
    import statistics

    recs = [r for r in data["records"] if "seconds" in r]
    rows = [
        "| model | threads | images | fastconv s/epoch | PyTorch s/epoch | speed-up | goal |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    goals = {"cnn1": 3.0, "keras_cnn": 2.5}
    keys = []
    for r in recs:
        if (r["model"], r["threads"]) not in keys:
            keys.append((r["model"], r["threads"]))

    def med(model, threads, backend):
        xs = [r["seconds"] for r in recs if (r["model"], r["threads"], r["backend"]) == (model, threads, backend)]
        return statistics.median(xs), len(xs), xs

    for model, threads in keys:
        (fc, n, _), (th, _, _) = med(model, threads, "fastconv"), med(model, threads, "torch")
        images = next(r["images"] for r in recs if r["model"] == model)
        sp = th / fc
        goal = f"≥{goals[model]:g}× {'met' if sp >= goals[model] else '**missed**'}" if threads == 2 else ""
        rows.append(
            f"| {model} | {threads} | {images:,} | {fc:.2f} | {th:.2f} | {sp:.2f}× | {goal} |"
        )
    rows.append("")
    rows.append(f"Median of {n} epochs per framework, fastconv and PyTorch alternating.")
    return "\n".join(rows)


def main():
    two, one, train = _load("cpu_latest.json"), _load("cpu_latest_1t.json"), _load("train_latest.json")
    meta = two["meta"]
    parts = [
        BEGIN,
        "",
        f"Machine: {meta['cpu_model']}, {meta['cores_usable']} usable cores; fastconv "
        f"{meta['fastconv']['version']} ({meta['isa']}), PyTorch {meta['torch']} "
        f"({meta.get('torch_onednn', '').strip(' -')}), NumPy {meta['numpy']}; "
        f"git {meta['git_commit'][:7]}{' (dirty)' if meta.get('git_dirty') else ''}; "
        f"load average at start {', '.join(f'{x:.2f}' for x in meta['loadavg'])}; "
        f"peak = {meta['peak_gflops']:.0f} GFLOP/s at 2 threads (measured FMA ceiling).",
        "",
        "### Layers, 2 threads",
        "",
        _layer_table(two),
        "",
    ]
    if one:
        parts += ["### Layers, 1 thread", "", _layer_table(one), ""]
    if train:
        parts += ["### One training epoch on MNIST (60,000 images)", "", _train_table(train), ""]
    parts.append(END)
    text = DOC.read_text()
    if BEGIN in text:
        text = text[: text.index(BEGIN)] + "\n".join(parts) + text[text.index(END) + len(END):]
    else:
        text += "\n" + "\n".join(parts) + "\n"
    DOC.write_text(text)
    print(f"wrote {DOC}")


if __name__ == "__main__":
    main()
