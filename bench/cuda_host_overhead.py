"""Per-call host overhead of fastconv's CUDA ops (issue 21's goal: <= 15 us per call).

    python bench/cuda_host_overhead.py --json gpu_out/overhead.json          # on a GPU
    python bench/cuda_host_overhead.py --fake [--json overhead_fake.json]    # on any CPU

GPU mode (needs CuPy, PyTorch with CUDA, fastconv built with CUDA): on a tiny problem (the GPU
work is a few microseconds), each op is called --calls times back to back through the public
functional API, with cudaDeviceSynchronize before and after; wall time / calls is the per-call
cost the goal names. The same run times torch.nn.functional / aten on CUDA tensors, and fastconv
with its fast path off (_cuda_ops._FAST = False: the checked path every call took before), so
before, after and PyTorch come from one process on one GPU. CPU time per call (process_time)
is printed beside it: where it is close to the wall time, the host is the limit.

Fake mode (no GPU; tests/fake_cupy.py and tests/fake_cuda_native.py stand in for CuPy and the
native entries, the latter doing nothing): the CPU time per call of fastconv's own Python, before
(checked path, and ops.py's routing as it was: __cuda_array_interface__ read per array, the
package import per call) and after, alternating in one process, medians over rounds; plus how
many CuPy calls (allocations, copies, device/stream queries, syncing reductions) each op makes,
and the pybind11 share: a raw entry's per-call argument conversion and geometry check
(proxy: constructing the ConvPlan it builds inside) against a planned entry's scalar arguments
(proxy: a ConvPlan method call that returns at once). What fake mode cannot see: CuPy's own
costs (its allocator, its Device context, its stream lookup), the driver's launch latency and
cudaSetDevice; those need GPU mode.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time

from _util import add_tests_to_path, machine_info, write_json

X_SHAPE, W_SHAPE = (1, 4, 8, 8), (4, 4, 3, 3)  # tiny: 1-2 us of GPU work per pass
CONV_KW = dict(stride=1, padding=1)
POOL = 2


def _problem(xp, np):
    """(x, w, b, dy, dy_pool, indices) as `xp` arrays, float32 (indices int64)."""
    import fastconv

    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, X_SHAPE).astype(np.float32)
    w = rng.uniform(-1, 1, W_SHAPE).astype(np.float32)
    b = rng.uniform(-1, 1, W_SHAPE[0]).astype(np.float32)
    y = fastconv.conv2d(x, w, b, **CONV_KW)
    dy = rng.uniform(-1, 1, y.shape).astype(np.float32)
    p, idx = fastconv.max_pool2d(x, POOL, return_indices=True)
    dp = rng.uniform(-1, 1, p.shape).astype(np.float32)
    return tuple(xp.asarray(a) for a in (x, w, b, dy, dp, idx))


def fastconv_ops(arrays):
    """name -> zero-argument callable running that op once through fastconv's public API (and
    the layer API's max-pool backward, which skips the public op's index check)."""
    import fastconv
    from fastconv import _cuda_ops
    from fastconv.nn import cuda as nn_cuda

    x, w, b, dy, dp, idx = arrays
    layer, public = nn_cuda.LAYER_OPS.max_pool2d_backward, fastconv.max_pool2d_backward

    def layer_pool_bwd(*args, **kwargs):
        # before this change the layer called the public op (index check included)
        return (layer if _cuda_ops._FAST else public)(*args, **kwargs)

    return {
        "conv2d_fwd": lambda: fastconv.conv2d(x, w, b, **CONV_KW),
        "conv2d_bwd_data": lambda: fastconv.conv2d_bwd_data(dy, w, X_SHAPE, **CONV_KW),
        "conv2d_bwd_weights": lambda: fastconv.conv2d_bwd_weights(dy, x, W_SHAPE, **CONV_KW),
        "max_pool2d_fwd": lambda: fastconv.max_pool2d(x, POOL, return_indices=True),
        "max_pool2d_bwd": lambda: fastconv.max_pool2d_backward(dp, idx, X_SHAPE, kernel_size=POOL),
        "max_pool2d_bwd_layer": lambda: layer_pool_bwd(dp, idx, X_SHAPE, kernel_size=POOL),
    }


def _median_us(samples):
    return round(statistics.median(samples) * 1e6, 3)


# ---- fake mode -------------------------------------------------------------------------------------


def _legacy_routing(ops):
    """ops.py's routing as it was before the fast path: the interface dict read for every
    argument, the backend module imported on every call."""

    def is_cuda(a):
        return hasattr(a, "__cuda_array_interface__")

    def cuda():
        from fastconv import _cuda_ops

        return _cuda_ops

    return {"_is_cuda": is_cuda, "_cuda": cuda}


def _set_variant(variant, ops, cuda_ops, current, legacy):
    routing = legacy if variant == "before" else current
    for name, fn in routing.items():
        setattr(ops, name, fn)
    cuda_ops._FAST = variant == "after"


def run_fake(args):
    import numpy as np

    add_tests_to_path()
    import fake_cupy
    import pytest
    from fake_cuda_native import install
    from fastconv import _C, _cuda_ops, ops

    records = []
    with pytest.MonkeyPatch.context() as mp:
        install(mp, compute=False, record=False, workspace_bytes=1024)
        fns = fastconv_ops(_problem(fake_cupy, np))
        current = {"_is_cuda": ops._is_cuda, "_cuda": ops._cuda}
        legacy = _legacy_routing(ops)
        variants = ("before", "after")
        try:
            for op, fn in fns.items():
                counts = {}
                for v in variants:  # CuPy calls of one call, after a warm-up call
                    _set_variant(v, ops, _cuda_ops, current, legacy)
                    fn()
                    fake_cupy.CALLS.clear()
                    fn()
                    counts[v] = dict(fake_cupy.CALLS)
                samples = {v: [] for v in variants}
                gc.disable()
                for r in range(args.rounds):
                    for v in variants if r % 2 == 0 else variants[::-1]:
                        _set_variant(v, ops, _cuda_ops, current, legacy)
                        t0 = time.process_time()
                        for _ in range(args.calls):
                            fn()
                        samples[v].append((time.process_time() - t0) / args.calls)
                gc.enable()
                for v in variants:
                    records.append(
                        {
                            "op": op,
                            "impl": f"fastconv_{v}",
                            "cpu_us_per_call_median": _median_us(samples[v]),
                            "cpu_us_per_call_min": round(min(samples[v]) * 1e6, 3),
                            "cupy_calls": counts[v],
                        }
                    )
        finally:
            _set_variant("after", ops, _cuda_ops, current, legacy)
        unit = _fake_unit_costs(args, fake_cupy, np)
    for r in records:
        fake_us = sum(n * unit.get(k, 0.0) for k, n in r["cupy_calls"].items())
        r["fake_cupy_us_estimate"] = round(fake_us, 3)
        r["fastconv_us_estimate"] = round(r["cpu_us_per_call_median"] - fake_us, 3)
    records += _pybind_proxies(args, _C)
    return records


def _fake_unit_costs(args, cp, np):
    """CPU us per call of each counted fake CuPy entry (its own cost, to subtract)."""
    x = cp.asarray(np.ones(X_SHAPE, np.float32))
    idx = cp.asarray(np.zeros(X_SHAPE, np.int64))

    def device():
        with cp.cuda.Device(0):
            pass

    fns = {
        "ndarray": lambda: cp.ndarray(X_SHAPE, np.float32),
        "empty": lambda: cp.empty(X_SHAPE, np.float32),
        "asarray": lambda: cp.asarray(x),
        "ascontiguousarray": lambda: cp.ascontiguousarray(x),
        "Device.__enter__": device,
        "get_current_stream": lambda: cp.cuda.get_current_stream().ptr,
        "runtime.getDevice": cp.cuda.runtime.getDevice,
        "alloc": lambda: cp.cuda.alloc(1024),
        "reduction": lambda: int(idx.min()),
    }
    samples = {k: [] for k in fns}
    for r in range(args.rounds):
        for k, fn in fns.items() if r % 2 == 0 else reversed(fns.items()):
            t0 = time.process_time()
            for _ in range(args.calls):
                fn()
            samples[k].append((time.process_time() - t0) / args.calls)
    costs = {k: statistics.median(v) * 1e6 for k, v in samples.items()}
    # nested calls are counted twice (empty -> ndarray, ascontiguousarray -> asarray): net them
    costs["empty"] -= costs["ndarray"]
    costs["ascontiguousarray"] -= costs["asarray"]
    return costs


def _pybind_proxies(args, _C):
    """The native side's per-call argument handling, before and after (see the docstring)."""
    geometry = ((1, 1), "explicit", (1, 1), (1, 1), 1)
    empty = _C.plan.ConvPlan((0,) + X_SHAPE[1:], W_SHAPE, None, *geometry)
    fns = {
        "raw_entry_args (ConvPlan per call)": lambda: _C.plan.ConvPlan(
            X_SHAPE, W_SHAPE, None, *geometry
        ),
        "planned_entry_args (scalar call)": lambda: empty.conv2d_fwd(0, 0, 0, 0, False),
    }
    samples = {k: [] for k in fns}
    for r in range(args.rounds):
        for k in list(fns) if r % 2 == 0 else list(fns)[::-1]:
            t0 = time.process_time()
            for _ in range(args.calls):
                fns[k]()
            samples[k].append((time.process_time() - t0) / args.calls)
    return [
        {"op": "native_arguments", "impl": k, "cpu_us_per_call_median": _median_us(v)}
        for k, v in samples.items()
    ]


# ---- GPU mode --------------------------------------------------------------------------------------


def torch_ops(torch):
    F = torch.nn.functional
    dev = torch.device("cuda")
    g = torch.Generator(device="cpu").manual_seed(0)

    def t(shape):
        return (torch.rand(shape, generator=g) * 2 - 1).to(dev)

    x, w, b = t(X_SHAPE), t(W_SHAPE), t(W_SHAPE[0])
    y = F.conv2d(x, w, b, padding=1)
    dy = t(tuple(y.shape))
    p, idx = F.max_pool2d(x, POOL, return_indices=True)
    dp = t(tuple(p.shape))
    conv_bwd = torch.ops.aten.convolution_backward
    geo = ([1, 1], [1, 1], [1, 1], False, [0, 0], 1)
    return {
        "conv2d_fwd": lambda: F.conv2d(x, w, b, padding=1),
        "conv2d_bwd_data": lambda: conv_bwd(dy, x, w, None, *geo, [True, False, False]),
        "conv2d_bwd_weights": lambda: conv_bwd(dy, x, w, [4], *geo, [False, True, True]),
        "max_pool2d_fwd": lambda: F.max_pool2d(x, POOL, return_indices=True),
        "max_pool2d_bwd": lambda: torch.ops.aten.max_pool2d_with_indices_backward(
            dp, x, [POOL, POOL], [POOL, POOL], [0, 0], [1, 1], False, idx
        ),
    }


def _time_gpu(fn, calls, sync):
    """(wall s, CPU s) per call over `calls` back-to-back calls, synchronised at both ends."""
    sync()
    w0, c0 = time.perf_counter(), time.process_time()
    for _ in range(calls):
        fn()
    sync()
    return (time.perf_counter() - w0) / calls, (time.process_time() - c0) / calls


def run_gpu(args):
    import cupy
    import numpy as np
    import torch
    from fastconv import _cuda_ops

    if not torch.cuda.is_available():
        raise SystemExit("GPU mode needs a CUDA device visible to PyTorch (or use --fake)")
    torch.backends.cudnn.allow_tf32 = False
    fc = fastconv_ops(_problem(cupy, np))
    th = torch_ops(torch)

    def sync():
        cupy.cuda.runtime.deviceSynchronize()  # cudaDeviceSynchronize: both libraries' work

    impls = {}  # (op, impl) -> callable; the fast-path switch is flipped around fastconv's calls
    for op, fn in fc.items():
        impls[(op, "fastconv")] = (fn, True)
        impls[(op, "fastconv_checked")] = (fn, False)
        if op in th:
            impls[(op, "torch")] = (th[op], True)
    samples = {k: [] for k in impls}
    keys = list(impls)
    for fn, fast in impls.values():  # warm-up: plans cached, cuDNN's choice made, pools filled
        _cuda_ops._FAST = fast
        for _ in range(50):
            fn()
    sync()
    # plans are cached only by the fast path: none means it never ran (then "fastconv" is the
    # checked path too, and the comparison says nothing)
    plans = len(_cuda_ops._CONV_PLANS) + len(_cuda_ops._POOL_PLANS)
    if plans == 0:
        print("WARNING: the fast path was never taken (no plan cached)", file=sys.stderr)
    gc.disable()
    try:
        for r in range(args.rounds):
            for k in keys if r % 2 == 0 else keys[::-1]:
                fn, fast = impls[k]
                _cuda_ops._FAST = fast
                samples[k].append(_time_gpu(fn, args.calls, sync))
    finally:
        _cuda_ops._FAST = True
        gc.enable()
    records = []
    for (op, impl), s in samples.items():
        wall, cpu = [a for a, _ in s], [c for _, c in s]
        records.append(
            {
                "op": op,
                "impl": impl,
                "us_per_call_median": _median_us(wall),
                "us_per_call_min": round(min(wall) * 1e6, 3),
                "cpu_us_per_call_median": _median_us(cpu),
                "calls": args.calls,
                "rounds": args.rounds,
            }
        )
    return records, {
        "fast_path_plans": plans,
        "gpu": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "cupy": cupy.__version__,
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fake", action="store_true", help="no GPU: fake CuPy, CPU time per call")
    ap.add_argument("--calls", type=int, default=1000, help="calls per timed block (default 1000)")
    ap.add_argument("--rounds", type=int, default=None, help="timed blocks per variant")
    ap.add_argument("--json", help="write the records here")
    args = ap.parse_args(argv)
    if args.rounds is None:
        args.rounds = 15 if args.fake else 7
    meta = {
        "mode": "fake" if args.fake else "gpu",
        "x_shape": X_SHAPE,
        "w_shape": W_SHAPE,
        "conv": CONV_KW,
        "pool": POOL,
        "goal_us_per_call": 15,
        "machine": machine_info(),
    }
    if args.fake:
        records = run_fake(args)
        unit, key = "CPU us/call (fake CuPy, native entries stubbed)", "cpu_us_per_call_median"
    else:
        records, gpu = run_gpu(args)
        meta.update(gpu)
        unit, key = "wall us/call (cudaDeviceSynchronize at the ends)", "us_per_call_median"
    print(f"{meta['mode']} mode, x {X_SHAPE}, w {W_SHAPE}, {args.calls} calls x {args.rounds}")
    print(f"{'op':<22} {'impl':<36} {unit}")
    for r in records:
        extra = f"   (CPU {r['cpu_us_per_call_median']})" if key != "cpu_us_per_call_median" else ""
        calls = r.get("cupy_calls")
        if calls is not None:
            extra += (
                f"   fastconv ~{r['fastconv_us_estimate']:.2f} + fake CuPy ~"
                f"{r['fake_cupy_us_estimate']:.2f}; CuPy calls: {sum(calls.values())} {calls}"
            )
        print(f"{r['op']:<22} {r['impl']:<36} {r[key]:>9.2f}{extra}")
    if args.json:
        write_json(args.json, meta, records)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
