"""Write the measured tables into docs/BENCHMARKS.md (between its <!-- results --> markers).

    python bench/report_md.py                 # reads bench/results/{cpu_latest,cpu_latest_1t,train_latest}.json,
                                              # conv_pool_latest[_1t].json
                                              # and bench/results/conv_cuda*.json (GPU section)

Every number in the generated sections comes from those JSON files, written by bench/conv_cpu.py,
bench/train_epoch.py and bench/conv_cuda.py (one GPU table per conv_cuda*.json, between the
<!-- gpu-results --> markers); nothing is typed by hand.
"""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DOC = ROOT / "docs" / "BENCHMARKS.md"
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
GPU_BEGIN, GPU_END = "<!-- gpu-results:begin -->", "<!-- gpu-results:end -->"
GPU_HEADING = "## GPU (CUDA) vs cuDNN"


def _load(name):
    path = RESULTS / name
    return json.loads(path.read_text()) if path.exists() else None


def _shape(r):
    s = r["shape"]
    if r["op"] == "conv2d":
        pad = s["padding"][0]
        return f"({s['n']},{s['c_in']},{s['h']},{s['w']})→{s['c_out']} k{s['kernel'][0]} p{pad}"
    return (
        f"({s['n']},{s['c']},{s['h']},{s['w']}) {s['kernel'][0]}×{s['kernel'][1]}/{s['stride'][0]}"
    )


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
            f"{th['median_ms']:.3g} | {npr['median_ms']:.3g} | "
            if npr
            else f"| {layer} {_shape(fc)} | {pas} | {fc['median_ms']:.3g} ({fc['p25_ms']:.3g}–{fc['p75_ms']:.3g}) | "
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
    # issue 19's goals for a run held to AVX2 (its fastconv records say isa="avx2"), else issue 5's
    avx2 = any(r.get("isa") == "avx2" for r in recs)
    goals = {"cnn1": 4.0, "keras_cnn": 3.5} if avx2 else {"cnn1": 3.0, "keras_cnn": 2.5}
    keys = []
    for r in recs:
        if (r["model"], r["threads"]) not in keys:
            keys.append((r["model"], r["threads"]))

    def med(model, threads, backend):
        xs = [
            r["seconds"]
            for r in recs
            if (r["model"], r["threads"], r["backend"]) == (model, threads, backend)
        ]
        return statistics.median(xs), len(xs), xs

    for model, threads in keys:
        (fc, n, _), (th, _, _) = med(model, threads, "fastconv"), med(model, threads, "torch")
        images = next(r["images"] for r in recs if r["model"] == model)
        sp = th / fc
        goal = (
            f"≥{goals[model]:g}× {'met' if sp >= goals[model] else '**missed**'}"
            if threads == 2
            else ""
        )
        rows.append(
            f"| {model} | {threads} | {images:,} | {fc:.2f} | {th:.2f} | {sp:.2f}× | {goal} |"
        )
    rows.append("")
    rows.append(f"Median of {n} epochs per framework, fastconv and PyTorch alternating.")
    return "\n".join(rows)


def _pair_table(data):
    """bench/conv_pool_cpu.py's records: the fused conv + ReLU + pool pair against PyTorch."""
    recs = data["records"]
    rows = [
        "| pair (conv + ReLU + 2×2 pool) | pass | computes | fastconv ms (p25–p75) | PyTorch ms (p25–p75) | speed-up |",
        "|---|---|---|---:|---:|---:|",
    ]
    for r in recs:
        if r["backend"] != "fastconv":
            continue
        t = next(
            q
            for q in recs
            if q["backend"] == "torch" and q["layer"] == r["layer"] and q["pass"] == r["pass"]
        )
        what = "pooled output + codes" if r["pass"] == "fwd" else r["grads"]
        rows.append(
            f"| {r['layer']} | {r['pass']} | {what} | {r['median_ms']:.3g} ({r['p25_ms']:.3g}–{r['p75_ms']:.3g}) "
            f"| {t['median_ms']:.3g} ({t['p25_ms']:.3g}–{t['p75_ms']:.3g}) | {r['speedup_vs_torch']:.2f}× |"
        )
    meta = data["meta"]
    rows.append("")
    rows.append(
        f"git {meta['git_commit'][:7]}{' (dirty)' if meta.get('git_dirty') else ''}; "
        f"{meta['threads']} thread(s); median of at least 30 calls each, alternating in turns of 10."
    )
    return "\n".join(rows)


def _gpu_shape(r):
    x = ",".join(map(str, r["x"]))
    if r["op"] == "conv2d":
        w, st = r["w"], r["stride"]
        pad = r["padding"] if isinstance(r["padding"], (int, str)) else r["padding"][0]
        return (
            f"({x})→{w[0]} k{w[2]}"
            + (f" s{st[0]}" if st[0] != 1 else "")
            + (f" {pad}" if isinstance(pad, str) else f" p{pad}")
        )
    return f"({x}) {r['kernel'][0]}×{r['kernel'][1]}/{r['stride'][0]}"


def _gpu_table(data):
    """One row per (layer, pass): the FP32 comparison, with the TF32 cuDNN time (peer cudnn-tf32) beside it."""
    rows = data["rows"]
    tf32 = {(r["shape"], r["pass"]): r for r in rows if r.get("peer") == "cudnn-tf32"}
    out = [
        "| layer | pass | fastconv ms | cuDNN ms | cuDNN TF32 ms | fastconv TFLOP/s or GB/s | "
        "ratio fastconv / cuDNN time | floor µs | rel. err |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        # Forced-family rows (conv_cuda.py --families) are the data for the automatic choice.
        if r.get("peer") == "cudnn-tf32" or r.get("family", "auto") != "auto":
            continue
        pool = r["op"] != "conv2d"
        tf = tf32.get((r["shape"], r["pass"]))
        speed = f"{r['fastconv_gbs']:.0f} GB/s" if pool else f"{r['fastconv_tflops']:.2f}"
        err = "" if pool else f"{r['rel_err_vs_cudnn']:.1e}"
        floor = "" if r.get("floor_ms") is None else f"{r['floor_ms'] * 1e3:.3g}"
        tf_ms = f"{tf['cudnn_ms']:.3g}" if tf else "–"
        out.append(
            f"| {r['shape']} {_gpu_shape(r)} | {'pool ' if pool else ''}{r['pass']} | {r['fastconv_ms']:.3g} | "
            f"{r['cudnn_ms']:.3g}{' †' if pool else ''} | {tf_ms} | {speed} | "
            f"{r['ratio']:.2f} | {floor} | {err} |"
        )
    return "\n".join(out)


def _gpu_parts(files):
    parts = [GPU_BEGIN, ""]
    for path in files:
        data = json.loads(path.read_text())
        meta = data["meta"]
        gpu = meta.get("fastconv_cuda_device") or meta.get("gpu") or "unknown GPU"
        parts += [
            f"### {meta.get('gpu', gpu)}",
            "",
            f"GPU: {gpu}; fastconv {meta.get('fastconv', '?')}, PyTorch {meta.get('torch', '?')}, "
            f"cuDNN {meta.get('cudnn', '?')}, Python {meta.get('python', '?')}; median of {meta.get('reps', '?')} "
            f"calls after {meta.get('warmup', '?')} warm-up calls (`bench/results/{path.name}`).",
            "",
            _gpu_table(data),
            "",
            "ratio = fastconv time / cuDNN FP32 time (> 1: fastconv slower — the inverse of the CPU tables' "
            "ratio). cuDNN TF32 ms: the same cuDNN call with TF32 tensor cores allowed, lower precision, "
            "for reference only; the fastconv column is its FP32 default (the opt-in tf32 family is not in "
            "this table). † pool rows: the peer is PyTorch's own CUDA "
            "max-pool kernel (with indices), not cuDNN. floor: max(FLOPs / FP32 peak, minimum bytes / HBM "
            "bandwidth), datasheet peaks (`PEAKS` in bench/conv_cuda.py, CUDA.md). "
            "rel. err: ‖fastconv − cuDNN‖ / ‖cuDNN‖.",
            "",
        ]
    parts.append(GPU_END)
    return parts


def _splice(text, begin, end, parts, heading=None):
    body = "\n".join(parts)
    if begin in text:
        return text[: text.index(begin)] + body + text[text.index(end) + len(end) :]
    return text.rstrip("\n") + "\n\n" + (f"{heading}\n\n" if heading else "") + body + "\n"


def main():
    two, one, train = (
        _load("cpu_latest.json"),
        _load("cpu_latest_1t.json"),
        _load("train_latest.json"),
    )
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
    for name, label in (
        ("conv_pool_latest.json", "2 threads"),
        ("conv_pool_latest_1t.json", "1 thread"),
    ):
        pair = _load(name)
        if pair:
            parts += [
                f"### Conv + ReLU + max-pool pairs as the layer API trains them, {label}",
                "",
                _pair_table(pair),
                "",
            ]
    parts.append(END)
    text = _splice(DOC.read_text(), BEGIN, END, parts)
    gpu_files = sorted(RESULTS.glob("conv_cuda*.json"))
    if gpu_files:
        text = _splice(text, GPU_BEGIN, GPU_END, _gpu_parts(gpu_files), GPU_HEADING)
    DOC.write_text(text)
    print(f"wrote {DOC}")


if __name__ == "__main__":
    main()
