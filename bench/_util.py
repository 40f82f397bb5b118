"""Shared pieces of the CPU benchmarks: thread pinning, an alternating timer, statistics, machine
info, FLOP/peak bookkeeping and the JSON writer.

    from _util import pin_threads      # call BEFORE numpy/torch are imported (sets the env vars)
    pin_threads(2)
    from _util import alternate, machine_info, write_json

Timing method (the same for every script in bench/): every backend is warmed up, then the backends
run one repetition each in turn (A B C, C B A, A B C, ...; the order flips every round so neither
side always runs right after the other), and each repetition is timed on its own with
time.perf_counter_ns. Machine noise therefore lands on all backends alike. We report the median and
the interquartile range (p25/p75) plus the minimum; the ratio columns use medians.

This file imports only the standard library at module level, so pin_threads() can run before NumPy
or PyTorch start their thread pools.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# This machine's float32 FMA ceilings per core, measured with bench/fma_peak.cpp (best of 5, one
# core): AVX-512 239 GFLOP/s, AVX2 120 GFLOP/s (2 FMA pipes). Issue 5 quoted 127 / 70, about half:
# oneDNN itself runs above 127 per core here, so the measured figures are the yardstick. On another
# CPU, re-run fma_peak and read "% of peak" as relative only.
PEAK_GFLOPS_PER_CORE = {"avx512": 239.0, "avx2": 120.0, "portable": 120.0}

_THREAD_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)


def pin_threads(n: int) -> None:
    """Limit every thread pool (OpenBLAS for NumPy, OpenMP for torch) to n threads.

    Must run before numpy/torch are imported: the BLAS pools read these variables at load time.
    fastconv and torch are also set explicitly later (set_num_threads), which this cannot do.
    """
    if "numpy" in sys.modules:
        print(
            "warning: numpy already imported; its BLAS thread count may not follow --threads",
            file=sys.stderr,
        )
    for var in _THREAD_VARS:
        os.environ[var] = str(n)
    os.environ["FASTCONV_NUM_THREADS"] = str(n)


# --isa for both libraries: fastconv's path and the same ISA ceiling for PyTorch (ATen's
# vectorised kernels) and oneDNN (its convolutions). Both are read once, when torch loads.
_TORCH_ISA = {
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
    "avx512": {"ATEN_CPU_CAPABILITY": "avx512", "ONEDNN_MAX_CPU_ISA": "AVX512_CORE"},
    "portable": {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41"},
}
# ... and the BLAS and NumPy's own SIMD loops, which pick their kernels by CPUID at load time:
# PyTorch's Linear layers call MKL's SGEMM (MKL_ENABLE_INSTRUCTIONS; on AMD CPUs MKL ignores it and
# runs its AVX2 code anyway: a 1024^3 SGEMM ran 87 GFLOP/s on one Zen 4 core with AVX2, AVX512 or
# SSE4_2 named); NumPy's OpenBLAS (the NumPy baseline's matmuls; fastconv's Dense layers use
# fastconv's own GEMM) takes its core type from OPENBLAS_CORETYPE (SkylakeX by CPUID on Zen 4);
# NumPy's ufunc loops (the losses' exp/max/sum) leave out the features NPY_DISABLE_CPU_FEATURES
# names. avx512 holds nothing here: each library then picks its best, as it would by default.
_BLAS_ISA = {
    "avx2": {
        "MKL_ENABLE_INSTRUCTIONS": "AVX2",
        "OPENBLAS_CORETYPE": "Haswell",
        "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR",
    },
    "avx512": {},
    "portable": {
        "MKL_ENABLE_INSTRUCTIONS": "SSE4_2",
        "OPENBLAS_CORETYPE": "Nehalem",
        "NPY_DISABLE_CPU_FEATURES": "X86_V3 X86_V4 AVX512_ICL AVX512_SPR",
    },
}
# OpenBLAS's core type (threadpoolctl's "architecture") each hold must give.
_OPENBLAS_CORE = {"avx2": "haswell", "portable": "nehalem"}

# The speed-up goals (torch time / fastconv time) per ISA path: issue 5's on the default
# (AVX-512) path, issue 19's on the AVX2 path. conv: "mnist" for the MNIST-scale layers, "compute"
# for the compute-bound ones (conv_cpu.COMPUTE_BOUND); pool: per pass; epoch: per model at 2 threads.
_GOALS = {
    "avx512": {
        "conv": {"mnist": 2.0, "compute": 1.1},
        "pool": {"fwd": 5.0, "bwd": 5.0},
        "epoch": {"cnn1": 3.0, "keras_cnn": 2.5},
    },
    "avx2": {
        "conv": {"mnist": 2.0, "compute": 1.3},
        "pool": {"fwd": 4.0, "bwd": 1.5},
        "epoch": {"cnn1": 4.0, "keras_cnn": 3.5},
    },
}


def goals(isa: str | None) -> dict:
    """The goal table for a run held to `isa` (None: the default path, i.e. the AVX-512 goals)."""
    return _GOALS["avx2" if isa == "avx2" else "avx512"]


def hold_isa(isa: str | None) -> None:
    """Hold fastconv, PyTorch/oneDNN, MKL, OpenBLAS and NumPy's loops to one ISA (portable, avx2,
    avx512).

    Must run before numpy and torch are imported (their capability, oneDNN's ceiling and the BLAS
    core types are read at load time); check_isa() then asserts that they took.
    """
    if isa is None:
        return
    if isa not in _TORCH_ISA:
        raise SystemExit(f"--isa must be one of {sorted(_TORCH_ISA)}, got {isa!r}")
    for mod in ("torch", "numpy"):
        if mod in sys.modules:
            raise SystemExit(f"hold_isa() must run before {mod} is imported")
    os.environ["FASTCONV_CPU_ISA"] = isa
    os.environ.update(_TORCH_ISA[isa])
    os.environ.update(_BLAS_ISA[isa])


def isa_holds() -> dict:
    """What each library actually runs: fastconv's path, ATen's capability, MKL's setting, OpenBLAS's
    core type (with threadpoolctl) and whether NumPy's AVX-512 loops are on. For the JSON and the
    table header, so a reader sees the holds rather than trusting the flag."""
    out = {"MKL_ENABLE_INSTRUCTIONS": os.environ.get("MKL_ENABLE_INSTRUCTIONS")}
    if "fastconv" in sys.modules:
        out["fastconv"] = sys.modules["fastconv"].get_cpu_isa()
    if "torch" in sys.modules:
        out["aten"] = sys.modules["torch"].backends.cpu.get_cpu_capability()
        out["onednn_max"] = os.environ.get("ONEDNN_MAX_CPU_ISA")
    if "numpy" in sys.modules:
        try:
            from numpy._core._multiarray_umath import __cpu_features__ as feats
        except ImportError:  # NumPy 1.x
            from numpy.core._multiarray_umath import __cpu_features__ as feats
        out["numpy_avx512"] = bool(feats.get("X86_V4", feats.get("AVX512_SKX", False)))
        try:
            from threadpoolctl import threadpool_info

            arch = [
                i.get("architecture") for i in threadpool_info() if i["internal_api"] == "openblas"
            ]
            out["openblas"] = arch[0] if arch else None
        except ImportError:
            out["openblas"] = f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE')}"
    return out


def check_isa(isa: str | None, fastconv, torch) -> None:
    """Fail loudly if --isa did not hold every library (e.g. the CPU lacks the ISA)."""
    if isa is None:
        return
    got = fastconv.get_cpu_isa()
    if got != isa:
        raise SystemExit(f"--isa {isa}: fastconv runs {got!r}")
    if torch is not None:
        cap = torch.backends.cpu.get_cpu_capability().lower()
        want = _TORCH_ISA[isa]["ATEN_CPU_CAPABILITY"]
        if cap != want:
            raise SystemExit(f"--isa {isa}: torch reports CPU capability {cap!r}, not {want!r}")
    holds = isa_holds()
    if isa != "avx512" and holds.get("numpy_avx512"):
        raise SystemExit(f"--isa {isa}: NumPy still runs its AVX-512 loops")
    core = str(holds.get("openblas") or "").lower()
    if isa in _OPENBLAS_CORE and core and not core.startswith("openblas_coretype"):
        if core != _OPENBLAS_CORE[isa]:
            raise SystemExit(f"--isa {isa}: OpenBLAS runs core type {core!r}")


def add_tests_to_path() -> None:
    """Make tests/shapes.py importable as `shapes` (it imports only the standard library)."""
    p = str(REPO / "tests")
    if p not in sys.path:
        sys.path.insert(0, p)


# ---- timing ----------------------------------------------------------------------------------------


def stats_ms(samples_ns):
    """median, p25, p75, min, max (ms) and n of a list of nanosecond timings."""
    ms = sorted(s / 1e6 for s in samples_ns)
    if not ms:
        return None
    if len(ms) >= 2:
        q = statistics.quantiles(ms, n=4, method="inclusive")
        p25, p75 = q[0], q[2]
    else:
        p25 = p75 = ms[0]
    return {
        "median_ms": statistics.median(ms),
        "p25_ms": p25,
        "p75_ms": p75,
        "min_ms": ms[0],
        "max_ms": ms[-1],
        "reps": len(ms),
    }


@contextlib.contextmanager
def _gc_paused():
    """Python's cyclic garbage collector off while timing, as in timeit: a collection pass (the
    bench process holds PyTorch's and the records' objects) otherwise lands inside whichever timed
    call crosses the allocation threshold. Results are freed by reference counting either way."""
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def alternate(
    fns,
    reps,
    warmup=2,
    max_reps=None,
    min_seconds=0.0,
    budget_seconds=None,
    block=3,
    switch_warmup=1,
    settle=0.0,
    handover_ms=0.0,
):
    """Time several callables by turns; returns {name: stats_ms(...)}.

    fns: {name: callable(i)}; the callable gets a running call number (to rotate input buffers).
    A name may map to (callable, reps_cap) to give a slow backend (plain NumPy) fewer repetitions.
    Each turn of a backend is `switch_warmup` untimed calls, then `block` timed calls; turns go
    A B C, C B A, A B C, ... until every backend has `reps` timed samples (and, up to max_reps,
    has spent min_seconds in timed calls). The untimed call after each switch absorbs the hand-over
    between libraries: torch's libgomp workers spin ~300k iterations after a parallel region and
    OpenBLAS's up to 2^28 cycles, so the first call after a switch shares the cores with the
    previous library's spinning threads, and a library whose workers went to sleep pays their
    wake-up once. Timed calls then see each library in its steady state, as in a training loop
    (back-to-back calls), while machine noise still falls on all backends alike.
    budget_seconds: stop once the whole call took this long (at least 3 samples each).
    settle: optional untimed sleep before each turn (0 by default).
    handover_ms: the untimed hand-over goes on (after its switch_warmup calls) until it has lasted
    this long. One call is not enough for sub-millisecond calls at 2 threads: torch's workers
    spin ~9 ms of CPU after each of its calls (measured here), so a block of ten 0.1 ms calls
    right after torch's turn ran entirely beside a spinning thread, while torch's turns after
    fastconv's saw its workers spin 0.2 ms. A hand-over longer than both spins is fair to both.
    """
    with _gc_paused():
        items = []
        for name, f in fns.items():
            cap = None
            if isinstance(f, tuple):
                f, cap = f
            items.append([name, f, cap, []])
        calls = 0
        # warm-up: first-touch allocation, packing caches, primitive caches
        for _name, f, cap, _ in items:
            for _ in range(warmup if cap is None or cap > 0 else 0):
                f(calls)
                calls += 1
        max_reps = max(reps, max_reps or reps)
        block = max(1, block)
        t_start = time.perf_counter()
        turn = 0
        while True:
            order = items if turn % 2 == 0 else items[::-1]
            turn += 1
            for _name, f, cap, samples in order:
                if (cap is not None and len(samples) >= cap) or len(samples) >= max_reps:
                    continue
                if settle:
                    time.sleep(settle)
                t_hand = time.perf_counter()
                for _ in range(switch_warmup):
                    f(calls)
                    calls += 1
                while (time.perf_counter() - t_hand) * 1e3 < handover_ms:
                    f(calls)
                    calls += 1
                for _ in range(block):
                    t0 = time.perf_counter_ns()
                    f(calls)
                    samples.append(time.perf_counter_ns() - t0)
                    calls += 1
            open_ = [
                s for _, _, cap, s in items if (cap is None or len(s) < cap) and len(s) < max_reps
            ]
            if not open_:
                break
            if (
                budget_seconds is not None
                and time.perf_counter() - t_start > budget_seconds
                and min(len(s) for s in open_) >= 3
            ):
                break
            if (
                min(len(s) for s in open_) >= reps
                and min(sum(s) for s in open_) / 1e9 >= min_seconds
            ):
                break
        return {name: stats_ms(samples) for name, _, _, samples in items}


def peak_gflops(isa: str, threads: int) -> float:
    return PEAK_GFLOPS_PER_CORE.get(isa, PEAK_GFLOPS_PER_CORE["avx2"]) * threads


# ---- machine info ----------------------------------------------------------------------------------


def _cpuinfo():
    model, flags = platform.processor() or "unknown", set()
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return model, flags
    for line in text.splitlines():
        key, _, val = line.partition(":")
        key = key.strip()
        if key == "model name" and model in ("unknown", "", platform.machine()):
            model = val.strip()
        elif key == "flags" and not flags:
            flags = set(val.split())
    return model, flags


def machine_info(threads=None):
    """CPU model/flags, cores, load, Python/NumPy/fastconv/torch versions and torch's oneDNN line."""
    model, flags = _cpuinfo()
    info = {
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cpu_model": model,
        "cpu_flags": sorted(f for f in flags if f.startswith(("avx", "fma", "sse4", "amx"))),
        "cores_online": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "loadavg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "threads": threads,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "argv": sys.argv,
    }
    try:
        info["git_commit"] = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        info["git_dirty"] = bool(dirty)
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        import numpy as np

        info["numpy"] = np.__version__
    except ImportError:
        pass
    try:
        import fastconv

        info["fastconv"] = fastconv.info()
    except ImportError as e:
        info["fastconv"] = f"not importable: {e}"
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_num_threads"] = torch.get_num_threads()
        cfg = torch.__config__.show()
        info["torch_onednn"] = next(
            (ln.strip() for ln in cfg.splitlines() if "oneDNN" in ln or "MKL-DNN" in ln), None
        )
        info["torch_cpu_capability"] = next(
            (ln.strip() for ln in cfg.splitlines() if "CPU capability" in ln), None
        )
    except ImportError:
        info["torch"] = None
    info["isa_holds"] = isa_holds()
    return info


def describe(info) -> str:
    """Two or three human lines about the machine for the top of a printed table."""
    fc = info.get("fastconv")
    fc_s = (
        f"fastconv {fc['version']} isa={fc['cpu_isa']} threads={fc['num_threads']}"
        if isinstance(fc, dict)
        else str(fc)
    )
    lines = [
        f"{info['cpu_model']} | {info['cores_usable']} usable cores | load {info.get('loadavg')}",
        f"{fc_s} | torch {info.get('torch')} ({info.get('torch_onednn')}, "
        f"{info.get('torch_cpu_capability')}) | numpy {info.get('numpy')} | git {info.get('git_commit')}"
        + (" (dirty)" if info.get("git_dirty") else ""),
    ]
    holds = info.get("isa_holds")
    if holds:
        lines.append("ISA holds: " + ", ".join(f"{k}={v}" for k, v in holds.items()))
    return "\n".join(lines)


# ---- output ----------------------------------------------------------------------------------------


def write_json(path, meta, records):
    """Write {"meta": ..., "records": [...]} atomically (tmp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps({"meta": meta, "records": records}, indent=1, default=str) + "\n")
    tmp.replace(path)


def fmt_ms(st):
    """'1.234 (1.20-1.30)' or '-' for a stats dict."""
    if not st:
        return "-"
    return f"{_g(st['median_ms'])} ({_g(st['p25_ms'])}-{_g(st['p75_ms'])})"


def _g(v):
    return f"{v:.3g}" if v < 100 else f"{v:.0f}"


def print_table(headers, rows, out=sys.stdout):
    """Plain fixed-width table (also valid-ish Markdown when pasted between pipes)."""
    cols = [[str(h)] + [str(r[i]) for r in rows] for i, h in enumerate(headers)]
    widths = [max(len(c) for c in col) for col in cols]

    def line(cells):
        return (
            "| "
            + " | ".join(
                str(c).rjust(w) if i > 1 else str(c).ljust(w)
                for i, (c, w) in enumerate(zip(cells, widths))
            )
            + " |"
        )

    print(line(headers), file=out)
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|", file=out)
    for r in rows:
        print(line(r), file=out)


# ---- GPU interop ---------------------------------------------------------------------------------


def cupy_stream_of(torch_stream, cp):
    """A CuPy stream object for a torch CUDA stream (`with` it, fastconv's ops queue there):
    cupy.cuda.Stream.from_external (CuPy >= 14, the CUDA stream protocol's __cuda_stream__) where
    both sides have it, else cupy.cuda.ExternalStream on the raw handle, which CuPy 14 deprecates
    (its DeprecationWarning silenced here: the fallback is for older CuPy or PyTorch). Neither
    destroys the stream when dropped."""
    from_external = getattr(cp.cuda.Stream, "from_external", None)
    if from_external is not None and hasattr(torch_stream, "__cuda_stream__"):
        return from_external(torch_stream)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return cp.cuda.ExternalStream(torch_stream.cuda_stream)
