"""bench/conv_cpu.py's records turned into ratios and table rows (the stdout table)."""

from __future__ import annotations

from _util import fmt_ms


def add_ratios(records, layer, pas, goal):
    """ratio_vs_fastconv on every record of (layer, pass): other median / fastconv median."""
    same = [r for r in records if r["layer"] == layer and r["pass"] == pas]
    fcr = next((r for r in same if r["backend"] == "fastconv" and "median_ms" in r), None)
    for r in same:
        r["goal_ratio"] = goal
        if fcr is not None and "median_ms" in r:
            r["ratio_vs_fastconv"] = r["median_ms"] / fcr["median_ms"]
    tr = next((r for r in same if r["backend"] == "torch" and "ratio_vs_fastconv" in r), None)
    if fcr is not None:
        fcr["speedup_vs_torch"] = tr["ratio_vs_fastconv"] if tr else None
        fcr["goal_met"] = (tr["ratio_vs_fastconv"] >= goal) if tr else None
        # best-case ratio: on a shared, noisy machine the minimum is the least disturbed figure
        fcr["speedup_vs_torch_min"] = tr["min_ms"] / fcr["min_ms"] if tr else None


def table_rows(records):
    rows = []
    keys = []
    for r in records:
        k = (r["layer"], r["pass"])
        if k not in keys:
            keys.append(k)
    for layer, pas in keys:
        by = {r["backend"]: r for r in records if r["layer"] == layer and r["pass"] == pas}
        fcr, tr, nr = by.get("fastconv", {}), by.get("torch", {}), by.get("numpy", {})
        ratio = fcr.get("speedup_vs_torch")
        goal = fcr.get("goal_ratio") or tr.get("goal_ratio")
        met = "" if ratio is None else (" ok" if ratio >= goal else " MISS")
        if "gflops" in fcr or "gflops" in tr:
            perf_fc = f"{fcr['gflops']:.1f}" if "gflops" in fcr else "-"
            pct = f"{fcr['pct_peak']:.0f}%" if "pct_peak" in fcr else "-"
            perf_t = f"{tr['gflops']:.1f}" if "gflops" in tr else "-"
        else:  # pools: GB/s
            perf_fc = f"{fcr['gbytes_per_s']:.1f} GB/s" if "gbytes_per_s" in fcr else "-"
            pct = ""
            perf_t = f"{tr['gbytes_per_s']:.1f} GB/s" if "gbytes_per_s" in tr else "-"
        rows.append(
            [
                layer,
                pas.replace("_", "-"),
                fmt_ms(fcr)
                if "median_ms" in fcr
                else ("FAIL" if fcr.get("check") == "FAIL" else "-"),
                fmt_ms(tr) if "median_ms" in tr else "-",
                fmt_ms(nr) if "median_ms" in nr else "-",
                f"{ratio:.2f}x" if ratio is not None else "-",
                f"{fcr['speedup_vs_torch_min']:.2f}x" if fcr.get("speedup_vs_torch_min") else "-",
                f">={goal:g}x{met}" if goal else "-",
                perf_fc,
                pct,
                perf_t,
                fcr.get("check") or "-",
            ]
        )
    return rows
