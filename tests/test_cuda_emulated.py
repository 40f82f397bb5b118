"""The CUDA kernels' own source (cuda/*.cu), run on the CPU by the emulator (cuda/emu), against the
float64 NumPy reference — on any machine with a C++ compiler, no GPU or CUDA toolkit needed.

tests/cuda_emu.py compiles cuda/conv2d.cu, cuda/maxpool2d.cu, cuda/train_step.cu and
cuda/device.cu with the host compiler (once per source change, cached under build/cuda_emu/) and
loads them with ctypes.
Every emulated thread runs the kernel body on its own fiber, meets the others at __syncthreads,
and reads NaN from any shared-memory slot no thread of its block wrote; outputs are NaN-poisoned
and surrounded by guard bands. Each conv pass runs every kernel family ('auto', 'direct',
'tiled') on small geometries (strides, same/valid/asymmetric padding, dilation, groups, tails
that are not multiples of the tiles), the tiled bwd_data on every tile shape, bwd_weights with and
without the split reduction; max-pool fwd, and bwd by the gather and by the atomicAdd scatter;
the training step's dropout mask and Adam update, bit for bit against the CPU's;
then the emulation itself (cuda/emu/selftest.cu): results independent of the thread order, a
missing barrier and an unwritten shared slot caught, warp shuffles and ballots, the cp.async
wrappers (cuda/async_copy.cuh) and the TF32 mma fragments (cuda/warp_mma.cuh); and (slow) a
ThreadSanitizer racecheck of the kernels, whose only orderings are CUDA's barriers, and an
AddressSanitizer memcheck on exactly sized buffers.
What this cannot prove (timing, the real memory model, warp scheduling): docs/CUDA.md.
"""

from __future__ import annotations

import subprocess

import cuda_emu
import numpy as np
import pytest
from conftest import assert_close, assert_identical, conv_tolerance
from fastconv import _C
from fastconv import reference as ref
from shapes import ConvShape as C

ALGOS = (None, "direct", "tiled")

CONV_CASES = [
    C("emu.basic", 2, 3, 9, 7, 5, padding=1),
    C("emu.tails.k37", 1, 5, 11, 13, 37, padding=1),
    C("emu.two_row_tiles.k70", 1, 2, 6, 5, 70, padding=1, bias=False),
    C("emu.same.k4.asymmetric", 2, 4, 10, 9, 6, kernel=4, padding="same"),
    C("emu.s2.pad(1,0)", 2, 4, 10, 9, 6, stride=2, padding=(1, 0)),
    C("emu.s3.d2", 1, 3, 13, 12, 4, stride=3, padding=2, dilation=2),
    C("emu.s3.k2.empty_phases", 1, 4, 10, 11, 5, kernel=2, stride=3),
    C("emu.s4.k5", 1, 3, 17, 15, 8, kernel=5, stride=4, padding=2),
    C("emu.groups4", 2, 8, 7, 6, 12, padding=1, groups=4),
    C("emu.depthwise.s2", 1, 6, 9, 10, 6, kernel=5, stride=2, padding=2, groups=6),
    C("emu.1x1", 3, 16, 5, 5, 20, kernel=1),
    C("emu.rect", 2, 3, 8, 9, 5, kernel=(1, 3), stride=(2, 1), padding=(0, 1), dilation=(1, 2)),
    C("emu.valid.k33", 2, 4, 8, 8, 33, padding="valid"),
    C("emu.long_reduction", 3, 4, 12, 12, 16, padding=1),
]
CONV_PARAMS = [pytest.param(s, id=s.name) for s in CONV_CASES]
ORDER_CASES = [
    s for s in CONV_CASES if s.name in ("emu.tails.k37", "emu.s2.pad(1,0)", "emu.groups4")
]


@pytest.fixture(scope="module")
def emu():
    try:
        e = cuda_emu.load()
    except cuda_emu.Unavailable as exc:
        pytest.skip(str(exc))
    e.configure(schedule="reverse", workers=2)
    e.set_device(0)
    return e


@pytest.fixture(params=ALGOS, ids=["auto", "direct", "tiled"])
def algo(request, emu):
    for p in cuda_emu.PASSES:
        emu.set_conv_algo(p, request.param)
    yield request.param
    for p in cuda_emu.PASSES:
        emu.set_conv_algo(p, None)


def _kernels(emu):
    return [launch["kernel"] for launch in emu.launches()]


def _family(kernels):
    """'tiled128', 'tiled' or 'direct': the family of the first conv kernel that ran."""
    for k in kernels:
        if "conv_gemm_tiled128" in k:
            return "tiled128"
        if "conv_gemm_tiled" in k:
            return "tiled"
        if "_direct" in k:
            return "direct"
    raise AssertionError(f"no conv kernel ran: {kernels}")


def _check_family(emu, kernels, algo, pass_name, s):
    expected = algo or emu.chosen_conv_algo(pass_name, s.x_shape, s.w_shape, **s.kwargs())
    assert _family(kernels) == expected, kernels


# ----------------------------------------------------------------------------------------------
# conv2d: every pass x kernel family vs the reference


@pytest.mark.parametrize("s", CONV_PARAMS)
def test_conv2d_fwd_emulated(emu, algo, rng, s):
    x, w, b, _ = s.random_arrays(rng)
    emu.launches()
    y = emu.conv2d_fwd(x, w, b, **s.kwargs())
    _check_family(emu, _kernels(emu), algo, "fwd", s)
    expected = ref.conv2d_fwd(x, w, b, **s.kwargs())
    tol = conv_tolerance((s.c // s.groups) * s.kernel[0] * s.kernel[1])
    assert_close(y, expected, *tol, f"{s.name} [{algo}]: y")
    y = emu.conv2d_fwd(x, w, b, **s.kwargs(), relu=True)
    assert_close(y, np.maximum(expected, 0), *tol, f"{s.name} [{algo}]: relu(y)")


@pytest.mark.parametrize("s", CONV_PARAMS)
def test_conv2d_bwd_data_emulated(emu, algo, rng, s):
    _, w, _, dy = s.random_arrays(rng)
    emu.launches()
    dx = emu.conv2d_bwd_data(dy, w, s.x_shape, **s.kwargs())
    _check_family(emu, _kernels(emu), algo, "bwd_data", s)
    tol = conv_tolerance((s.k // s.groups) * s.kernel[0] * s.kernel[1])
    assert_close(
        dx, ref.conv2d_bwd_data(dy, w, s.x_shape, **s.kwargs()), *tol, f"{s.name} [{algo}]: dx"
    )


@pytest.mark.parametrize("s", CONV_PARAMS)
def test_conv2d_bwd_weights_emulated(emu, algo, rng, s):
    x, _, _, dy = s.random_arrays(rng)
    emu.launches()
    dw, db = emu.conv2d_bwd_weights(dy, x, s.w_shape, **s.kwargs(), bias=s.bias)
    kernels = _kernels(emu)
    _check_family(emu, kernels, algo, "bwd_weights", s)
    assert ("conv2d_bias_grad" in " ".join(kernels)) == s.bias
    rdw, rdb = ref.conv2d_bwd_weights(dy, x, s.w_shape, **s.kwargs())
    tol = conv_tolerance(s.n * s.out_hw[0] * s.out_hw[1])
    assert_close(dw, rdw, *tol, f"{s.name} [{algo}]: dw")
    if s.bias:
        assert_close(db, rdb, *tol, f"{s.name} [{algo}]: db")


# Tiled bwd_data picks its tile height from C_in / groups (bwd_data_choice): each tile shape once,
# at stride 1 and 2 (phases), the row count a multiple of the tile height or not.
TILE_CASES = [
    (1, "Tile<1, 256, 1, 1>"),
    (3, "Tile<4, 256, 4, 1>"),
    (4, "Tile<4, 256, 4, 1>"),
    (8, "Tile<8, 256, 8, 1>"),
    (13, "Tile<16, 256, 4, 4>"),
    (16, "Tile<16, 256, 4, 4>"),
    (29, "Tile<32, 128, 4, 4>"),
    (64, "Tile<64, 64, 4, 4>"),
]


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize(("cin_g", "tile"), TILE_CASES, ids=[f"cin_g{c}" for c, _ in TILE_CASES])
def test_conv2d_bwd_data_every_tile_emulated(emu, rng, cin_g, tile, stride):
    s = C(f"emu.tile.cin_g{cin_g}", 2, 2 * cin_g, 7, 9, 6, stride=stride, padding=1, groups=2)
    _, w, _, dy = s.random_arrays(rng)
    emu.set_conv_algo("bwd_data", "tiled")
    try:
        emu.launches()
        dx = emu.conv2d_bwd_data(dy, w, s.x_shape, **s.kwargs())
        kernels = _kernels(emu)
    finally:
        emu.set_conv_algo("bwd_data", None)
    assert len(kernels) == 1, kernels
    assert f"BwdDataGemm, fastconv::gpu::{tile}" in kernels[0], kernels
    tol = conv_tolerance(3 * 9)
    assert_close(dx, ref.conv2d_bwd_data(dy, w, s.x_shape, **s.kwargs()), *tol, f"{s.name}: dx")


# bwd_weights splits its reduction (N*OH*OW) into chunks summed in order by sum_splits: how many
# depends on the SM count (emulated device 0: 132 SMs, device 1: 4) and the reduction length.
@pytest.mark.parametrize(
    ("device", "s", "splits"),
    [
        (0, C("emu.split.short", 1, 4, 6, 6, 16, padding=1), False),  # R = 36: one chunk
        (0, C("emu.split.long", 3, 4, 12, 12, 16, padding=1), True),  # R = 432: several
        (0, C("emu.split.wide", 2, 20, 8, 8, 130, padding=1), True),  # 9 tiles, 132 SMs to fill
        (1, C("emu.split.wide", 2, 20, 8, 8, 130, padding=1), False),  # 9 tiles fill 4 SMs
        (1, C("emu.split.small_gpu", 2, 4, 12, 12, 8, padding=1), True),
    ],
    ids=["132sm-short", "132sm-long", "132sm-wide", "4sm-wide", "4sm-long"],
)
def test_conv2d_bwd_weights_split_emulated(emu, rng, device, s, splits):
    x, _, _, dy = s.random_arrays(rng)
    emu.set_device(device)
    emu.set_conv_algo("bwd_weights", "tiled")
    try:
        emu.launches()
        dw, db = emu.conv2d_bwd_weights(dy, x, s.w_shape, **s.kwargs())
        kernels = _kernels(emu)
    finally:
        emu.set_device(0)
        emu.set_conv_algo("bwd_weights", None)
    assert ("sum_splits" in " ".join(kernels)) == splits, kernels
    rdw, rdb = ref.conv2d_bwd_weights(dy, x, s.w_shape, **s.kwargs())
    tol = conv_tolerance(s.n * s.out_hw[0] * s.out_hw[1])
    assert_close(dw, rdw, *tol, f"{s.name}: dw")
    assert_close(db, rdb, *tol, f"{s.name}: db")


def _random_problem(rng, i):
    """A small random conv problem: any stride, dilation, padding mode and group count."""
    kh, kw = (int(v) for v in rng.integers(1, 6, 2))
    sh, sw = (int(v) for v in rng.integers(1, 5, 2))
    dh, dw = (int(v) for v in rng.integers(1, 4, 2))
    groups = int(rng.integers(1, 4))
    mode = rng.choice(["explicit", "valid", "same"], p=[0.6, 0.2, 0.2])
    if mode == "same":
        sh = sw = 1
        padding = "same"
    elif mode == "valid":
        padding = "valid"
    else:
        padding = (int(rng.integers(0, kh + 1)), int(rng.integers(0, kw + 1)))
    span_h, span_w = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    h, w = span_h + int(rng.integers(0, 9)), span_w + int(rng.integers(0, 9))
    cin_g, cout_g = int(rng.integers(1, 7)), int(rng.choice([1, 5, 17, 40]))
    return C(
        f"emu.random{i}",
        int(rng.integers(1, 4)),
        cin_g * groups,
        h,
        w,
        cout_g * groups,
        kernel=(kh, kw),
        stride=(sh, sw),
        padding=padding,
        dilation=(dh, dw),
        groups=groups,
        bias=bool(rng.integers(0, 2)),
    )


@pytest.mark.parametrize("i", range(40))
def test_conv2d_random_geometry_emulated(emu, rng, i):
    """Every kernel family, all three passes, on a random geometry (seeded by the test id); tf32
    (on the first 20: its shuffle-built mma is the emulator's slowest kernel) against the
    reference of its TF32-rounded operands (the bias stays FP32)."""
    s = _random_problem(rng, i)
    x, w, b, dy = s.random_arrays(rng)
    red = (s.c // s.groups) * s.kernel[0] * s.kernel[1]

    def references(x, w, dy):
        return {
            "y": (ref.conv2d_fwd(x, w, b, **s.kwargs()), conv_tolerance(red)),
            "dx": (ref.conv2d_bwd_data(dy, w, s.x_shape, **s.kwargs()), conv_tolerance(s.k * red)),
            "dw": (
                ref.conv2d_bwd_weights(dy, x, s.w_shape, **s.kwargs())[0],
                conv_tolerance(s.n * s.out_hw[0] * s.out_hw[1]),
            ),
        }

    exact, rounded = references(x, w, dy), references(_tf32(x), _tf32(w), _tf32(dy))
    for a in ("direct", "tiled", "tiled128", "tf32") if i < 20 else ("direct", "tiled", "tiled128"):
        for p in cuda_emu.PASSES:
            emu.set_conv_algo(p, a)
        try:
            got = {
                "y": emu.conv2d_fwd(x, w, b, **s.kwargs()),
                "dx": emu.conv2d_bwd_data(dy, w, s.x_shape, **s.kwargs()),
                "dw": emu.conv2d_bwd_weights(dy, x, s.w_shape, **s.kwargs(), bias=False)[0],
            }
        finally:
            for p in cuda_emu.PASSES:
                emu.set_conv_algo(p, None)
        for name, (want, tol) in (rounded if a == "tf32" else exact).items():
            assert_close(got[name], want, *tol, f"{s!r} [{a}]: {name}")


# ----------------------------------------------------------------------------------------------
# tiled128 (conv2d_pipelined.cuh): 128x128 tiles, two-stage cp.async pipeline, forced only.
# Shapes with M (rows) and N (columns) past one tile and not a multiple of it, reductions that end
# inside an 8-deep step, several steps, strides with empty phases, dilation, groups, padding.
# Each output sums r ascending with one fmaf per r, as the 64x64 kernel does: fwd and bwd_data
# must equal 'tiled' bit for bit; bwd_weights too when neither splits its reduction.
TILED128_CASES = [
    C("emu.t128.m130.n144", 1, 3, 12, 12, 130, padding=1),  # fwd: 2 x 2 tiles, R = 27
    C("emu.t128.s2.d2.g2", 2, 6, 11, 10, 10, stride=2, padding=(2, 1), dilation=2, groups=2),
    C("emu.t128.s3.k2.empty_phases", 1, 4, 10, 11, 5, kernel=2, stride=3),
    C("emu.t128.same.k4", 1, 5, 9, 8, 7, kernel=4, padding="same", bias=False),
    C("emu.t128.rect.s(2,1)", 2, 3, 8, 9, 5, kernel=(1, 3), stride=(2, 1), padding=(0, 1)),
]


def _run_family(emu, family, s, x, w, b, dy):
    """y, dx, dw, db and the kernels that ran, with every pass forced to `family`."""
    for p in cuda_emu.PASSES:
        emu.set_conv_algo(p, family)
    try:
        emu.launches()
        out = (
            emu.conv2d_fwd(x, w, b, **s.kwargs()),
            emu.conv2d_bwd_data(dy, w, s.x_shape, **s.kwargs()),
            *emu.conv2d_bwd_weights(dy, x, s.w_shape, **s.kwargs(), bias=s.bias),
        )
        return out, _kernels(emu)
    finally:
        for p in cuda_emu.PASSES:
            emu.set_conv_algo(p, None)


@pytest.mark.parametrize("s", TILED128_CASES, ids=lambda s: s.name)
def test_conv2d_tiled128_emulated(emu, rng, s):
    x, w, b, dy = s.random_arrays(rng)
    (y, dx, dw, db), kernels = _run_family(emu, "tiled128", s, x, w, b, dy)
    gemms = [k for k in kernels if "conv_gemm" in k]
    assert len(gemms) == 3, kernels
    assert all("conv_gemm_tiled128<" in k for k in gemms), kernels
    for p in cuda_emu.PASSES:
        assert emu.chosen_conv_algo(p, s.x_shape, s.w_shape, **s.kwargs()) != "tiled128"
    red = (s.c // s.groups) * s.kernel[0] * s.kernel[1]
    rdw, rdb = ref.conv2d_bwd_weights(dy, x, s.w_shape, **s.kwargs())
    tol_w = conv_tolerance(s.n * s.out_hw[0] * s.out_hw[1])
    assert_close(y, ref.conv2d_fwd(x, w, b, **s.kwargs()), *conv_tolerance(red), f"{s.name}: y")
    assert_close(
        dx,
        ref.conv2d_bwd_data(dy, w, s.x_shape, **s.kwargs()),
        *conv_tolerance((s.k // s.groups) * s.kernel[0] * s.kernel[1]),
        f"{s.name}: dx",
    )
    assert_close(dw, rdw, *tol_w, f"{s.name}: dw")
    (ty, tdx, tdw, _), tkernels = _run_family(emu, "tiled", s, x, w, b, dy)
    assert_identical(y, ty, f"{s.name}: y, tiled128 vs tiled")
    assert_identical(dx, tdx, f"{s.name}: dx, tiled128 vs tiled")
    if "sum_splits" not in " ".join(kernels + tkernels):
        assert_identical(dw, tdw, f"{s.name}: dw, tiled128 vs tiled")


def test_conv2d_tiled128_split_reduction_emulated(emu, rng):
    """bwd_weights with tiled128 splits a long reduction for its own (fewer, larger) tiles."""
    s = C("emu.t128.split", 2, 4, 12, 12, 6, padding=1)  # R = 288: 2 chunks on 132 SMs
    x, w, b, dy = s.random_arrays(rng)
    emu.set_conv_algo("bwd_weights", "tiled128")
    try:
        emu.launches()
        dw, db = emu.conv2d_bwd_weights(dy, x, s.w_shape, **s.kwargs())
        kernels = _kernels(emu)
    finally:
        emu.set_conv_algo("bwd_weights", None)
    assert "sum_splits" in " ".join(kernels), kernels
    rdw, rdb = ref.conv2d_bwd_weights(dy, x, s.w_shape, **s.kwargs())
    tol = conv_tolerance(s.n * s.out_hw[0] * s.out_hw[1])
    assert_close(dw, rdw, *tol, f"{s.name}: dw")
    assert_close(db, rdb, *tol, f"{s.name}: db")


def test_conv2d_tiled128_independent_of_thread_order_emulated(emu, rng):
    """The pipeline's one barrier per step: a missing one would make results order-dependent."""
    s = TILED128_CASES[1]
    x, w, b, dy = s.random_arrays(rng)
    results = []
    try:
        for schedule, workers in (("forward", 1), ("shuffle", 2)):
            emu.configure(schedule=schedule, seed=11, workers=workers)
            results.append(_run_family(emu, "tiled128", s, x, w, b, dy)[0])
    finally:
        emu.configure(schedule="reverse", workers=2)
    for name, got, first in zip(("y", "dx", "dw", "db"), results[1], results[0]):
        assert_identical(got, first, f"{s.name} tiled128 {name}: shuffled vs forward order")


# ----------------------------------------------------------------------------------------------
# tf32 (conv2d_tf32.cuh): tiled128's pipeline with mma.sync m16n8k8 TF32 products (the emulator
# runs warp_mma.cuh's fallback on the hardware's fragment layout). Exactly what it computes: the
# float64 reference of the TF32-rounded operands, within FP32 summation error; against the exact
# reference, within the TF32 bound K * 2^-10 for operands in [-1, 1] (each operand off by at most
# 2^-11 relative). The bias gradient stays FP32.


def _tf32_bound(k):
    """(atol, rtol) for a K-term sum of products of TF32-rounded operands in [-1, 1]."""
    atol, rtol = conv_tolerance(k)
    return atol + k * 2.0**-10, rtol


@pytest.mark.parametrize("s", TILED128_CASES[:4], ids=lambda s: s.name)
def test_conv2d_tf32_emulated(emu, rng, s):
    x, w, b, dy = s.random_arrays(rng)
    (y, dx, dw, db), kernels = _run_family(emu, "tf32", s, x, w, b, dy)
    gemms = [k for k in kernels if "conv_gemm" in k]
    assert len(gemms) == 3, kernels
    assert all("conv_gemm_tf32<" in k for k in gemms), kernels
    kw = s.kwargs()
    k_fwd = (s.c // s.groups) * s.kernel[0] * s.kernel[1]
    k_data = (s.k // s.groups) * s.kernel[0] * s.kernel[1]
    k_wgt = s.n * s.out_hw[0] * s.out_hw[1]
    tx, tw, tdy = _tf32(x), _tf32(w), _tf32(dy)
    checks = (
        ("y", y, ref.conv2d_fwd(tx, tw, b, **kw), ref.conv2d_fwd(x, w, b, **kw), k_fwd),
        (
            "dx",
            dx,
            ref.conv2d_bwd_data(tdy, tw, s.x_shape, **kw),
            ref.conv2d_bwd_data(dy, w, s.x_shape, **kw),
            k_data,
        ),
        (
            "dw",
            dw,
            ref.conv2d_bwd_weights(tdy, tx, s.w_shape, **kw)[0],
            ref.conv2d_bwd_weights(dy, x, s.w_shape, **kw)[0],
            k_wgt,
        ),
    )
    for name, got, rounded, exact, k in checks:
        assert_close(got, rounded, *conv_tolerance(k), f"{s.name} tf32 {name} vs TF32 operands")
        assert_close(got, exact, *_tf32_bound(k), f"{s.name} tf32 {name} vs exact")
    if s.bias:
        rdb = ref.conv2d_bwd_weights(dy, x, s.w_shape, **kw)[1]
        assert_close(db, rdb, *conv_tolerance(k_wgt), f"{s.name} tf32 db (FP32)")
    assert np.abs(y - checks[0][3]).max() > 1e-5  # the rounding did happen


def test_conv2d_bad_geometry_is_a_value_error_emulated(emu, rng):
    x = rng.uniform(-1, 1, (1, 2, 3, 3)).astype(np.float32)
    w = rng.uniform(-1, 1, (4, 2, 5, 5)).astype(np.float32)
    with pytest.raises(ValueError, match="kernel"):
        emu.conv2d_fwd(x, w)


# ----------------------------------------------------------------------------------------------
# max-pool: values and indices exactly (ties, NaN), backward by gather and by scatter

POOL_CASES = [
    # name, x shape, kernel, stride, padding, dilation, ceil_mode
    ("2x2", (2, 3, 8, 9), 2, None, 0, 1, False),
    ("3x3s2.overlap", (1, 4, 9, 11), 3, 2, 1, 1, False),
    ("3x3s1.pad1", (2, 2, 6, 5), 3, 1, 1, 1, False),
    ("rect.2x3s(1,2)", (1, 3, 7, 10), (2, 3), (1, 2), (1, 0), 1, False),
    ("ceil.3x3s2", (1, 2, 10, 8), 3, 2, 0, 1, True),
    ("dilated.3x3d2", (1, 2, 11, 12), 3, 1, 1, 2, False),
    ("global.5x7", (3, 2, 5, 7), (5, 7), None, 0, 1, False),
]
POOL_PARAMS = [pytest.param(*c[1:], id=c[0]) for c in POOL_CASES]


def _pool_input(rng, shape):
    """Values from a small set (ties in most windows), a few NaN."""
    x = rng.integers(-3, 4, shape).astype(np.float32)
    x.reshape(-1)[rng.choice(x.size, max(1, x.size // 40), replace=False)] = np.nan
    return x


@pytest.mark.parametrize(
    ("shape", "kernel", "stride", "padding", "dilation", "ceil_mode"), POOL_PARAMS
)
def test_maxpool2d_emulated(emu, rng, shape, kernel, stride, padding, dilation, ceil_mode):
    geo = dict(
        kernel_size=kernel, stride=stride, padding=padding, dilation=dilation, ceil_mode=ceil_mode
    )
    x = _pool_input(rng, shape)
    y, idx = emu.maxpool2d_fwd(x, **geo)
    ry, ridx = ref.maxpool2d_fwd(x, **geo)
    assert_identical(y, ry.astype(np.float32), "y")
    assert_identical(idx, ridx, "indices")
    dy = rng.uniform(-1, 1, y.shape).astype(np.float32)
    expected = ref.maxpool2d_bwd(dy, idx, shape)
    tol = conv_tolerance(9)
    assert_close(
        emu.maxpool2d_bwd(dy, idx, shape, **geo, gather=True), expected, *tol, "dx (gather)"
    )
    assert_close(
        emu.maxpool2d_bwd(dy, idx, shape, **geo, gather=False), expected, *tol, "dx (scatter)"
    )


# ----------------------------------------------------------------------------------------------
# the graph-captured training step's kernels (cuda/train_step.cu): the CPU's bits exactly


@pytest.mark.parametrize("n", [1, 15, 16, 1000, 4099])
def test_dropout_mask_emulated(emu, n):
    seeds = np.array([3, 1234567890123, 42], np.uint64)
    for keep in (0.5, 0.8, 1.0):
        for step in (0, 2):
            mask = emu.dropout_mask(n, keep, seeds, step)
            expected = _C._dropout_mask_lanes((n,), keep, int(seeds[step]))
            assert_identical(mask, expected, f"n={n} keep={keep} step={step}")


@pytest.mark.parametrize("n", [1, 300, 256 * 4096 + 5])  # the last one strides the grid
def test_adam_update_emulated(emu, rng, n):
    p, g = rng.standard_normal(n).astype(np.float32), rng.standard_normal(n).astype(np.float32)
    m = rng.standard_normal(n).astype(np.float32) * 0.1
    v = np.abs(rng.standard_normal(n)).astype(np.float32) * 0.01
    lr_table = np.array([1e-3, 5e-4, 2.5e-4], np.float32)
    hyper = dict(beta_1=0.9, beta_2=0.999, epsilon=1e-7)
    got = emu.adam_update(p, m, v, g, lr_table, 1, **hyper)
    cp, cm, cv = p.copy(), m.copy(), v.copy()
    _C.adam_update(cp, g, cm, cv, float(lr_table[1]), **hyper)
    for name, a, e in zip("pmv", got, (cp, cm, cv)):
        assert_identical(a, e, f"adam {name}")


# ----------------------------------------------------------------------------------------------
# the emulation itself: order independence, poisoned shared memory, what it catches


@pytest.mark.parametrize("s", ORDER_CASES, ids=lambda s: s.name)
def test_results_do_not_depend_on_thread_order_emulated(emu, rng, s):
    """A race between two barriers would make results depend on the order threads run in."""
    x, w, b, dy = s.random_arrays(rng)
    results = {}
    try:
        for schedule, workers in (("forward", 1), ("reverse", 2), ("shuffle", 2)):
            emu.configure(schedule=schedule, seed=7, workers=workers)
            for a in ("direct", "tiled"):
                for p in cuda_emu.PASSES:
                    emu.set_conv_algo(p, a)
                results[schedule, a] = (
                    emu.conv2d_fwd(x, w, b, **s.kwargs()),
                    emu.conv2d_bwd_data(dy, w, s.x_shape, **s.kwargs()),
                    *emu.conv2d_bwd_weights(dy, x, s.w_shape, **s.kwargs()),
                )
    finally:
        emu.configure(schedule="reverse", workers=2)
        for p in cuda_emu.PASSES:
            emu.set_conv_algo(p, None)
    for (schedule, a), outs in results.items():
        for name, got, first in zip(("y", "dx", "dw", "db"), outs, results["forward", a]):
            assert_identical(got, first, f"{s.name} [{a}] {name}: {schedule} vs forward order")


def test_shared_memory_is_poisoned_every_block_emulated(emu, rng):
    emu.reset_stats()
    s = CONV_CASES[1]
    x, w, b, _ = s.random_arrays(rng)
    emu.conv2d_fwd(x, w, b, **s.kwargs())
    st = emu.stats()
    assert st["blocks"] > 0, st
    assert st["poisoned_blocks"] == st["blocks"], st
    assert st["barriers"] > 0, st
    out = emu.selftest(
        "read_unwritten_shared", rng.uniform(-1, 1, 256).astype(np.float32), blocks=2
    )
    nan = np.flatnonzero(np.isnan(out))
    assert list(nan) == [254, 510], nan  # the thread that reads the slot no thread wrote


def test_missing_barrier_shows_as_order_dependence_emulated(emu, rng):
    x = rng.uniform(-1, 1, 4 * 256).astype(np.float32)
    sums = {}
    try:
        for schedule in ("forward", "reverse"):
            emu.configure(schedule=schedule, workers=1)
            sums[schedule] = emu.selftest("sum_missing_barrier", x, blocks=4)[:4]
    finally:
        emu.configure(schedule="reverse", workers=2)
    exact = x.reshape(4, 256).astype(np.float64).sum(axis=1)
    assert not np.allclose(sums["forward"], exact, atol=1e-3)
    assert not np.array_equal(sums["forward"], sums["reverse"])


def test_divergent_barrier_bad_launch_and_trap_are_errors_emulated(emu):
    x = np.zeros(256, np.float32)
    with pytest.raises(RuntimeError, match="divergent"):
        emu.selftest("divergent_barrier", x)
    with pytest.raises(RuntimeError, match="cudaErrorInvalidConfiguration"):
        emu.selftest("oversized_block", x)
    with pytest.raises(RuntimeError, match=r"__trap\(\) by thread 17"):
        emu.selftest("trap_one_thread", x, blocks=2)


def test_vector_types_emulated(emu, rng):
    x = rng.uniform(-1, 1, 2 * 256 * 4).astype(np.float32)
    out = emu.selftest("vector_reverse4", x, out_per_thread=4, blocks=2)
    assert_identical(out.reshape(-1, 4), x.reshape(-1, 4)[:, ::-1])


def test_warp_operations_emulated(emu, rng):
    x = rng.uniform(-1, 1, 2 * 256).astype(np.float32)
    out = emu.selftest("warp_ops", x, out_per_thread=5, blocks=2).reshape(-1, 32, 5)
    warps = x.reshape(-1, 32).astype(np.float64)
    tol = conv_tolerance(32)
    assert_close(out[:, 0, 0], warps.sum(axis=1), *tol, "__shfl_down_sync sum")
    assert (out[:, 1:, 0] == 0).all()
    assert_close(
        out[:, :, 1], np.repeat(warps.sum(axis=1)[:, None], 32, axis=1), *tol, "xor butterfly"
    )
    assert_close(out[:, :, 2], np.cumsum(warps, axis=1), *tol, "__shfl_up_sync scan")
    assert_identical(out[:, :, 3], np.repeat(x.reshape(-1, 32)[:, :1], 32, axis=1), "__shfl_sync")
    bits = (warps > 0) * (2.0 ** np.arange(32))
    assert_identical(
        out[:, :, 4], np.repeat(bits.sum(axis=1)[:, None], 32, axis=1).astype(np.float32), "ballot"
    )


def test_blocks_on_several_workers_keep_their_shared_memory_emulated(emu):
    out = emu.selftest("shared_isolation", np.zeros(1, np.float32), blocks=64)
    assert_identical(
        out.reshape(64, 256), np.repeat(np.arange(64, dtype=np.float32)[:, None], 256, axis=1)
    )


def test_dynamic_shared_memory_emulated(emu, rng):
    """cuda/dynamic_shared.cuh and launch_with_shared: the buffer works, starts poisoned, and more
    than 48 KB needs the kernel's limit raised first, as on the GPU."""
    x = rng.uniform(-1, 1, 3 * 256).astype(np.float32)
    expected = x.reshape(3, 256)[:, ::-1]
    assert_identical(emu.selftest_dynamic_shared(x, 3, 1024, False).reshape(3, 256), expected)
    partial = emu.selftest_dynamic_shared(x, 3, 1024, False, n_written=200).reshape(3, 256)
    assert np.isnan(partial[:, :56]).all()
    assert_identical(partial[:, 56:], expected[:, 56:])
    with pytest.raises(RuntimeError, match="cudaFuncSetAttribute"):
        emu.selftest_dynamic_shared(x, 3, 64 * 1024, False)
    big = emu.selftest_dynamic_shared(x, 3, 64 * 1024, True)
    assert_identical(big.reshape(3, 256), expected)


def _sanitized(target, sanitizer):
    reason = cuda_emu.sanitizer_reason(sanitizer)
    if reason is not None:
        pytest.skip(reason)
    return cuda_emu.build(target=target)


@pytest.fixture(scope="module")
def racecheck(emu):
    """The ThreadSanitizer build of cuda/emu/check_kernels.cpp, or a skip saying why."""
    return _sanitized("racecheck", "thread")


@pytest.fixture(scope="module")
def memcheck(emu):
    """The AddressSanitizer build of cuda/emu/check_kernels.cpp, or a skip saying why."""
    return _sanitized("memcheck", "address")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("case", "races"),
    [
        ("kernels", False),  # every conv kernel family and tile, split bwd_weights, max-pool
        ("async_pipeline", False),
        ("warp_ops", False),
        ("sum_missing_barrier", True),
        ("async_pipeline_early_refill", True),
        ("async_pipeline_early_read", True),
    ],
)
def test_racecheck_emulated(racecheck, case, races):
    """ThreadSanitizer over the emulated threads, whose only ordering is CUDA's barriers: the
    kernels are race-free, the deliberately racy self-tests are reported (race_annotations.h)."""
    r = subprocess.run([str(racecheck), case], capture_output=True, text=True, timeout=300)
    reported = "WARNING: ThreadSanitizer: data race" in r.stderr
    assert reported == races, r.stderr[-4000:]
    assert r.returncode == (66 if races else 0), r.stderr[-4000:]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("case", "error"), [("kernels", False), ("mma_tf32", False), ("read_past_end", True)]
)
def test_memcheck_emulated(memcheck, case, error):
    """AddressSanitizer over the emulated kernels on exactly sized buffers: no access outside
    them; the self-test that reads one element past its input is reported."""
    r = subprocess.run([str(memcheck), case], capture_output=True, text=True, timeout=300)
    reported = "ERROR: AddressSanitizer: heap-buffer-overflow" in r.stderr
    assert reported == error, r.stderr[-4000:]
    assert (r.returncode != 0) == error, r.stderr[-4000:]


def test_gpu_check_program_passes_in_the_emulator(emu, tmp_path):
    """cuda/dev/emu_vs_gpu.cu holds the GPU to the emulator's model (bench/gpu_check.sh emu); here
    it runs on the emulator, which must pass it, so its expectations are right before a GPU runs it."""
    exe = cuda_emu.build_program("cuda/dev/emu_vs_gpu.cu", tmp_path)
    r = subprocess.run([str(exe)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("PASS") == 6, r.stdout


def _tf32(a):
    """cvt.rna.tf32.f32 in NumPy: 10 mantissa bits, ties away from zero (finite inputs)."""
    bits = a.astype(np.float32).view(np.uint32).astype(np.uint64)
    return ((bits + 0x1000) & 0xFFFFE000).astype(np.uint32).view(np.float32)


def test_cp_async_pipeline_emulated(emu, rng):
    """cuda/async_copy.cuh: a double-buffered pipeline copies exactly whenever the copies land;
    reading a buffer before its wait shows with copies deferred to the wait, refilling a buffer
    before the others have read it shows with copies landing at once."""
    x = rng.uniform(-1, 1, (2, 4, 256)).astype(np.float32)
    expected = x.copy()
    expected[:, 3, 256 - 10 :] = 0  # the loader's invalid (zero-filled) elements
    expected = np.roll(expected, -1, axis=2)  # each thread stores its neighbour's element

    def run(name):
        return emu.selftest(name, x.reshape(-1), out_per_thread=4, blocks=2).reshape(x.shape)

    try:
        for eager in (False, True):
            for schedule in ("forward", "reverse", "shuffle"):
                emu.configure(schedule=schedule, workers=2, eager_async_copies=eager)
                assert_identical(run("async_pipeline"), expected, f"{schedule}, eager {eager}")
        emu.configure(schedule="forward", eager_async_copies=False)
        assert np.isnan(run("async_pipeline_early_read")).any()
        assert_identical(run("async_pipeline_early_refill"), expected, "deferred copies hide it")
        emu.configure(schedule="forward", eager_async_copies=True)
        assert not np.array_equal(run("async_pipeline_early_refill"), expected)
    finally:
        emu.configure(schedule="reverse", workers=2)


def test_mma_tf32_fragments_emulated(emu, rng):
    """cuda/warp_mma.cuh: D = A*B + 1 per warp through the m16n8k8 TF32 fragment layout."""
    a = rng.uniform(-1, 1, (16, 192)).astype(np.float32)  # 2 blocks x 8 warps
    out = emu.selftest("mma_tf32", a.reshape(-1), out_per_thread=4, blocks=2).reshape(16, 16, 8)
    A = _tf32(a[:, :128]).reshape(16, 16, 8).astype(np.float64)
    B = _tf32(a[:, 128:]).reshape(16, 8, 8).astype(np.float64)
    assert_close(out, A @ B + 1, *conv_tolerance(8), "mma_m16n8k8_tf32")
    # Without the TF32 rounding the product differs far beyond that: the rounding is applied.
    exact = a[:, :128].reshape(16, 16, 8).astype(np.float64) @ a[:, 128:].reshape(16, 8, 8) + 1
    assert np.abs(out - exact).max() > 1e-4
