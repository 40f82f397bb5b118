"""Native conv2d (fwd, bwd_data, bwd_weights) against the float64 NumPy reference, every CPU path.

Link (b) of STYLE.md item 11: each native pass is compared with fastconv.reference over the named
problems in shapes.py and a fixed set of seeded random configurations, for each `isa` (portable,
avx2, avx512), with debug poison on (unwritten outputs are NaN). Inputs are float32 in [-1, 1); the
reference sees the same float32 values, so the tolerance only has to cover float32 accumulation:
atol + rtol*|ref| with atol growing with the pass's reduction length (conftest.conv_tolerance).
Also: inputs never modified, non-contiguous inputs, dtype conversion, N = 0, the NETWORKS.md
hand-made filters, and PyTorch when installed.
"""

from __future__ import annotations

import dataclasses
import functools
import zlib

import fastconv
import numpy as np
import pytest
import shapes
from conftest import (
    RTOL,
    assert_close,
    assert_identical,
    conv_algo,
    conv_tolerance,
    cpu_isa,
    winograd_5x5,
)
from fastconv import reference as ref

# ----------------------------------------------------------------------------------------------
# problems


def _random_configs(count, seed=20251122):
    """count seeded random conv problems (fixed at collection time, so test ids are stable)."""
    r = np.random.default_rng(seed)
    out = []
    for i in range(count):
        groups = int(r.choice([1, 1, 1, 2, 3, 4, 0]))  # 0: depthwise
        cg = 1 if groups == 0 else int(r.integers(1, 10))
        kg = int(r.integers(1, 3)) if groups == 0 else int(r.integers(1, 10))
        if groups == 0:
            groups = int(r.integers(2, 17))
        kernel = (int(r.integers(1, 6)), int(r.integers(1, 6)))
        stride = (int(r.integers(1, 4)), int(r.integers(1, 4)))
        dilation = (int(r.integers(1, 3)), int(r.integers(1, 3))) if r.random() < 0.3 else (1, 1)
        options = ["int", "pair", "valid"] + (["same"] if stride == (1, 1) else [])
        choice = str(r.choice(options))
        padding = {
            "int": int(r.integers(0, 3)),
            "pair": (int(r.integers(0, 3)), int(r.integers(0, 3))),
            "valid": "valid",
            "same": "same",
        }[choice]
        shape = shapes.ConvShape(
            f"random.{i:02d}",
            int(r.integers(1, 4)),
            cg * groups,
            1,
            1,
            kg * groups,
            kernel,
            stride,
            padding,
            dilation,
            groups,
            bias=bool(r.random() < 0.8),
        )
        pt, pb, pl, pr = shape.pads()
        extent = (dilation[0] * (kernel[0] - 1) + 1, dilation[1] * (kernel[1] - 1) + 1)
        h = max(1, extent[0] - pt - pb) + int(r.integers(0, 9))
        w = max(1, extent[1] - pl - pr) + int(r.integers(0, 12))
        out.append(dataclasses.replace(shape, h=h, w=w))
    return out


RANDOM = _random_configs(40)
CASES = [pytest.param(s, id=s.name) for s in shapes.CONV_TEST + RANDOM]
# VGG / AlexNet / Inception layers at batch 1 (a few seconds in all), and the MNIST-size layers at
# their real training batch (slow: the float64 reference dominates)
BIG_CASES = [pytest.param(s, id=s.name) for s in shapes.CONV_BIG_TEST] + [
    pytest.param(s, id=f"{s.name}@n{s.n}", marks=pytest.mark.slow)
    for s in shapes.CONV_LAYERS
    if not s.bench_only
]
# the two single-output entry points share code with conv2d_backward; a cross-section is enough
ENTRY_CASES = [
    pytest.param(shapes.conv(n), id=n)
    for n in (
        "tails.c19k23",
        "tails.w19.ow17",
        "edges.nobias",
        "kernels.1x1",
        "kernels.2x5",
        "strides.s3",
        "strides.s1x3",
        "padding.pair0x3",
        "padding.same_even4x2",
        "dilation.d2.s2",
        "groups.g3.tails",
        "groups.depthwise17",
        "cnn1.conv2@n2",
        "fashion.conv2@n2",
    )
]


def _arrays(rng, s, dtype=np.float32):
    """x, w, b (or None) and a dy for problem s, all uniform in [-1, 1)."""
    x = rng.uniform(-1, 1, s.x_shape).astype(dtype)
    w = rng.uniform(-1, 1, s.w_shape).astype(dtype)
    b = rng.uniform(-1, 1, s.k).astype(dtype) if s.bias else None
    dy = rng.uniform(-1, 1, s.y_shape).astype(dtype)
    return x, w, b, dy


def _tolerances(s):
    """(atol, rtol) per pass: the reduction each output element sums over.

    y and dx of a 5x5 stride-1 conv may run Winograd F(2x2, 5x5) on AVX-512, whose transforms
    (B^T's 4s and 5s, G's 1/6s) round a few times coarser than a direct sum: 4x the atol there.
    """
    oh, ow = s.out_hw
    kh, kw = s.kernel
    f = 4 if winograd_5x5(s) else 1
    return {
        "y": (f * conv_tolerance((s.c // s.groups) * kh * kw)[0], RTOL),
        "dx": (f * conv_tolerance((s.k // s.groups) * kh * kw)[0], RTOL),
        "dw": conv_tolerance(s.n * oh * ow),
        "db": conv_tolerance(s.n * oh * ow),
    }


def check_fwd(s, x, w, b):
    y = fastconv.conv2d(x, w, b, **s.kwargs())
    assert isinstance(y, np.ndarray)
    assert y.dtype == np.float32
    assert y.shape == s.y_shape
    atol, rtol = _tolerances(s)["y"]
    assert_close(y, ref.conv2d_fwd(x, w, b, **s.kwargs()), atol, rtol, f"{s.name}: conv2d_fwd y")
    return y


def check_backward(s, x, w, dy):
    dx, dw, db = fastconv.conv2d_backward(dy, x, w, **s.kwargs())
    tol = _tolerances(s)
    for name, got, shape in (("dx", dx, s.x_shape), ("dw", dw, s.w_shape), ("db", db, (s.k,))):
        assert got.dtype == np.float32, f"{name} dtype {got.dtype}"
        assert got.shape == shape, f"{name} shape {got.shape}, expected {shape}"
    rdx = ref.conv2d_bwd_data(dy, w, x.shape, **s.kwargs())
    rdw, rdb = ref.conv2d_bwd_weights(dy, x, w.shape, **s.kwargs())
    assert_close(dx, rdx, *tol["dx"], f"{s.name}: conv2d_bwd_data dx")
    assert_close(dw, rdw, *tol["dw"], f"{s.name}: conv2d_bwd_weights dw")
    assert_close(db, rdb, *tol["db"], f"{s.name}: conv2d_bwd_weights db")
    return dx, dw, db


# ----------------------------------------------------------------------------------------------
# native vs reference


@pytest.mark.parametrize("s", CASES + BIG_CASES)
def test_conv2d_fwd(isa, rng, s):
    x, w, b, _ = _arrays(rng, s)
    check_fwd(s, x, w, b)


@pytest.mark.parametrize("s", CASES + BIG_CASES)
def test_conv2d_backward(isa, rng, s):
    x, w, _, dy = _arrays(rng, s)
    check_backward(s, x, w, dy)


@pytest.mark.parametrize("s", ENTRY_CASES)
def test_conv2d_bwd_data_and_bwd_weights_entries(isa, rng, s):
    x, w, _, dy = _arrays(rng, s)
    tol = _tolerances(s)
    dx = fastconv.conv2d_bwd_data(dy, w, x.shape, **s.kwargs())
    assert dx.dtype == np.float32
    assert_close(dx, ref.conv2d_bwd_data(dy, w, x.shape, **s.kwargs()), *tol["dx"], f"{s.name}: dx")
    dw, db = fastconv.conv2d_bwd_weights(dy, x, w.shape, **s.kwargs())
    assert dw.dtype == np.float32
    assert db.dtype == np.float32
    rdw, rdb = ref.conv2d_bwd_weights(dy, x, w.shape, **s.kwargs())
    assert_close(dw, rdw, *tol["dw"], f"{s.name}: dw")
    assert_close(db, rdb, *tol["db"], f"{s.name}: db")


CL_CASES = [
    c
    for c in CASES + BIG_CASES
    if c.values[0].stride == (1, 1) and c.values[0].dilation == (1, 1) and c.values[0].groups == 1
]


# Every CPU conv algorithm of every pass (the registry's order), forced on each CPU path whose
# kernel table has it, on every stride-1 problem it can run. Arrays and references are made once
# per problem and pass (the float64 reference dominates the time).
FORCED = [(ps, name) for ps in fastconv.ops.CONV_PASSES for name in fastconv._C.conv_algos(ps)]


@functools.lru_cache(maxsize=None)
def _forced_problem(name, pass_name):
    s = next(c.values[0] for c in CL_CASES if c.values[0].name == name)
    x, w, b, dy = _arrays(np.random.default_rng(zlib.crc32(name.encode())), s)
    if pass_name == "fwd":
        want = (ref.conv2d_fwd(x, w, b, **s.kwargs()),)
    elif pass_name == "bwd_data":
        want = (ref.conv2d_bwd_data(dy, w, x.shape, **s.kwargs()),)
    else:
        want = ref.conv2d_bwd_weights(dy, x, w.shape, **s.kwargs())
    return s, (x, w, b, dy), want


@pytest.mark.parametrize(("pass_name", "algo"), FORCED, ids=[f"{p}-{a}" for p, a in FORCED])
def test_conv2d_forced_algorithm(isa, pass_name, algo):
    """Each algorithm forced with set_conv_algo against the reference, on every stride-1 problem
    it can run on this CPU path (conv2d_algos); skipped where the path has none of its kernels."""
    ran = 0
    with conv_algo(pass_name, algo):
        for case in CL_CASES:
            s = case.values[0]
            if algo not in fastconv.conv2d_algos(pass_name, s.x_shape, s.w_shape, **s.kwargs()):
                continue
            assert fastconv.conv2d_algo(pass_name, s.x_shape, s.w_shape, **s.kwargs()) == algo
            s, (x, w, b, dy), want = _forced_problem(s.name, pass_name)
            tol = _tolerances(s)
            what = f"{s.name}: {pass_name} by {algo}"
            if pass_name == "fwd":
                got = (fastconv.conv2d(x, w, b, **s.kwargs()),)
                assert_close(got[0], want[0], *tol["y"], what)
            elif pass_name == "bwd_data":
                dx = fastconv.conv2d_bwd_data(dy, w, x.shape, **s.kwargs())
                assert_close(dx, want[0], *tol["dx"], what)
            else:
                dw, db = fastconv.conv2d_bwd_weights(dy, x, w.shape, **s.kwargs())
                assert_close(dw, want[0], *tol["dw"], f"{what} dw")
                assert_close(db, want[1], *tol["db"], f"{what} db")
            ran += 1
    if ran == 0:
        pytest.skip(f"the {isa} path has no kernels for {pass_name} algorithm {algo!r}")


# The one-dx-plane bwd_data tile (conv2d_direct.inl fwd_one_tile: 4 rows x 2 vectors, a 2-row
# tile for the last 1-2 rows): heights leaving 0-3 rows after the 4-row tiles, widths around the
# vectors, 3x3 and 5x5, same and valid padding, 1 and 3 dy channels.
ONE_PLANE = [
    shapes.ConvShape(f"one.h{h}w{w}k{k}c{c}{p}", 2, 1, h, w, c, k, padding=p)
    for (h, w) in ((9, 9), (10, 17), (11, 24), (12, 33), (13, 16))
    for k in (3, 5)
    for c in (1, 3)
    for p in ("same", "valid")
]


@pytest.mark.parametrize("s", ONE_PLANE, ids=[s.name for s in ONE_PLANE])
def test_one_plane_bwd_data_tiles(isa, rng, s):
    """bwd_data of a C_in = 1 layer by the direct kernel (one dx plane) against the reference."""
    if "direct" not in fastconv.conv2d_algos("bwd_data", s.x_shape, s.w_shape, **s.kwargs()):
        pytest.skip(f"the {isa} path has no direct bwd_data")
    x, w, _, dy = _arrays(rng, s)
    with conv_algo("bwd_data", "direct"):
        dx = fastconv.conv2d_bwd_data(dy, w, x.shape, **s.kwargs())
    want = ref.conv2d_bwd_data(dy, w, x.shape, **s.kwargs())
    assert_close(dx, want, *_tolerances(s)["dx"], f"{s.name}: dx by direct")


# F(2, 5) along the rows (conv2d_winograd_one_plane.inl, C_in = 1, 5x5): rows of fewer tiles than
# a vector and of a vector and a part, flat tile counts that leave 1..NQ-1 vectors (and a part)
# after the whole chunks, channel counts below, at and past the channel blocks (4 AVX2, 5
# AVX-512), same and valid padding, with the bias and ReLU of the store.
WINOGRAD_ONE_PLANE = [
    shapes.ConvShape(f"one_plane.h{h}w{w}k{k}{p}", 2, 1, h, w, k, 5, padding=p)
    for (h, w) in ((5, 6), (9, 14), (12, 30), (28, 28), (7, 20))
    for k in (3, 4, 7, 20)
    for p in ("same", "valid")
]


@pytest.mark.parametrize("s", WINOGRAD_ONE_PLANE, ids=[s.name for s in WINOGRAD_ONE_PLANE])
@pytest.mark.parametrize("activation", [None, "relu"])
def test_winograd_one_plane_fwd(isa, rng, s, activation):
    """The forward of a C_in = 1 5x5 layer by winograd_one_plane against the reference."""
    if "winograd_one_plane" not in fastconv.conv2d_algos("fwd", s.x_shape, s.w_shape, **s.kwargs()):
        pytest.skip(f"the {isa} path has no winograd_one_plane")
    x, w, b, _ = _arrays(rng, s)
    with conv_algo("fwd", "winograd_one_plane"):
        y = fastconv.conv2d(x, w, b, activation=activation, **s.kwargs())
    want = ref.conv2d_fwd(x, w, b, **s.kwargs())
    if activation == "relu":
        want = np.maximum(want, 0.0)
    assert_close(y, want, *_tolerances(s)["y"], f"{s.name}: y by winograd_one_plane")


# F(4x2, 5x5) tiles in the lanes (conv2d_winograd_tiles.inl with MY = 4): output heights whose
# last 4-row tile has 2 junk rows or none, one tile row or a few, rows of <= W/2 tiles (two tile
# rows to a vector, an odd count of tile rows leaving the second half junk) and of a vector and
# more, output channels below, at and past the point GEMM's channel blocks.
WINOGRAD_TILES_4X2 = [
    shapes.ConvShape(f"tiles4x2.h{h}w{w}c{c}k{k}", 2, c, h, w, k, 5, padding=2)
    for (h, w) in ((2, 2), (4, 8), (6, 6), (10, 14), (14, 14), (8, 18), (12, 34))
    for (c, k) in ((8, 4), (9, 13))
]


@pytest.mark.parametrize("s", WINOGRAD_TILES_4X2, ids=[s.name for s in WINOGRAD_TILES_4X2])
def test_winograd_tiles_4x2(isa, rng, s, restore_threads):
    """The forward (with bias and ReLU, and fused with the max-pool) and bwd_data of a 5x5 layer
    by winograd_tiles_4x2 against the reference, at 1 and 2 threads."""
    if "winograd_tiles_4x2" not in fastconv.conv2d_algos("fwd", s.x_shape, s.w_shape, **s.kwargs()):
        pytest.skip(f"the {isa} path has no winograd_tiles_4x2")
    x, w, b, dy = _arrays(rng, s)
    tol = _tolerances(s)
    want_y = np.maximum(ref.conv2d_fwd(x, w, b, **s.kwargs()), 0.0)
    want_dx = ref.conv2d_bwd_data(dy, w, x.shape, **s.kwargs())
    for threads in (1, 2):
        fastconv.set_num_threads(threads)
        with conv_algo("fwd", "winograd_tiles_4x2"):
            y = fastconv.conv2d(x, w, b, activation="relu", **s.kwargs())
            pooled, _ = fastconv.conv2d_relu_maxpool2d(x, w, b, **s.kwargs())
        assert_close(y, want_y, *tol["y"], f"{s.name}: y by winograd_tiles_4x2")
        assert_close(pooled, fastconv.max_pool2d(y, 2), 0.0, 0.0, f"{s.name}: fused pool")
        with conv_algo("bwd_data", "winograd_tiles_4x2"):
            dx = fastconv.conv2d_bwd_data(dy, w, x.shape, **s.kwargs())
        assert_close(dx, want_dx, *tol["dx"], f"{s.name}: dx by winograd_tiles_4x2")


@pytest.mark.parametrize("k_out", range(1, 18))
@pytest.mark.parametrize(("c_in", "kernel"), [(6, 5), (17, 3)])
def test_channel_lane_weight_gradient_channel_blocks(rng, c_in, kernel, k_out):
    """The per-kernel-row (kx, ci)-lane weight gradient cuts the output channels into equal blocks
    of up to 8 (rows of <= 3 vectors: 6 x 5 = 30 lanes) or 3 (17 x 3 = 51 lanes: 4 vectors); every
    remainder of both against the reference."""
    if "avx512" not in fastconv.cpu_isas():
        pytest.skip("the tap-lane weight gradient is AVX-512 only; this CPU has no AVX-512")
    s = shapes.ConvShape(f"blocks.c{c_in}k{k_out}", 2, c_in, 9, 11, k_out, kernel, padding=1)
    with cpu_isa("avx512"), conv_algo("bwd_weights", "tap_lanes"):
        x, w, _, dy = _arrays(rng, s)
        check_backward(s, x, w, dy)


def _check_forced_weight_gradient(rng, s, algo):
    """dW and db of s by the forced bwd_weights algorithm `algo` against the reference, at 1 and 2
    threads."""
    x, _, _, dy = _arrays(rng, s)
    want = ref.conv2d_bwd_weights(dy, x, s.w_shape, **s.kwargs())
    tol = _tolerances(s)
    previous = fastconv.get_num_threads()
    try:
        for threads in (1, 2):
            fastconv.set_num_threads(threads)
            with conv_algo("bwd_weights", algo):
                dw, db = fastconv.conv2d_bwd_weights(dy, x, s.w_shape, **s.kwargs())
            assert_close(dw, want[0], *tol["dw"], f"{s.name}: dw by {algo}, {threads} threads")
            assert_close(db, want[1], *tol["db"], f"{s.name}: db by {algo}, {threads} threads")
    finally:
        fastconv.set_num_threads(previous)


# The row-pair Winograd weight gradient (conv2d_bww_rows.inl): kernels 5 high of any width, even
# output heights down to 2, odd output widths, input channels around the lanes (1, 4, 17, 20),
# same / valid / mixed padding; 3 images, so 2 threads sum 3 parts.
ROWS_WINOGRAD = [
    shapes.ConvShape("rows.k5c17same", 3, 17, 6, 7, 5, 5, padding="same"),
    shapes.ConvShape("rows.k5x3c4", 3, 4, 10, 9, 7, (5, 3), padding=(1, 2)),
    shapes.ConvShape("rows.k5c20valid", 3, 20, 6, 12, 9, 5, padding="valid"),
    shapes.ConvShape("rows.k5c1", 3, 1, 8, 8, 3, 5, padding=2),
    shapes.ConvShape("rows.k5x7c9", 3, 9, 8, 11, 4, (5, 7), padding=(2, 0)),
]


@pytest.mark.parametrize("s", ROWS_WINOGRAD, ids=[s.name for s in ROWS_WINOGRAD])
def test_rows_winograd_weight_gradient(isa, rng, s):
    """winograd_rows forced against the reference at 1 and 2 threads; odd output heights are not
    its geometry."""
    args = (s.x_shape, s.w_shape)
    if "winograd_rows" not in fastconv.conv2d_algos("bwd_weights", *args, **s.kwargs()):
        pytest.skip(f"the {isa} path has no row-pair Winograd weight gradient")
    odd = shapes.ConvShape("rows.odd", 3, 8, 7, 8, 4, 5, padding=2)
    assert "winograd_rows" not in fastconv.conv2d_algos(
        "bwd_weights", odd.x_shape, odd.w_shape, **odd.kwargs()
    )
    _check_forced_weight_gradient(rng, s, "winograd_rows")


# The row-triple Winograd weight gradient (conv2d_bww_rows3.inl): output heights 1..5, 8, 13 and
# 14 (oh % 3 = 0, 1, 2: the last triple's missing rows, and its zero g2 rows skipped), odd widths,
# input channels around the lanes, same / valid / mixed padding; 3 images, so 2 threads sum 3
# parts and a group of up to 3 images may be cut short.
ROWS3_WINOGRAD = [
    shapes.ConvShape("rows3.cnn1", 3, 20, 14, 14, 7, 5, padding="same"),
    shapes.ConvShape("rows3.oh13", 3, 17, 13, 9, 5, 5, padding="same"),
    shapes.ConvShape("rows3.oh8valid", 3, 16, 12, 12, 9, 5, padding="valid"),
    shapes.ConvShape("rows3.k5x3c4", 3, 4, 10, 9, 7, (5, 3), padding=(1, 2)),
    shapes.ConvShape("rows3.c1", 3, 1, 9, 8, 3, 5, padding=(0, 2)),
] + [shapes.ConvShape(f"rows3.oh{h - 4}", 3, 9, h, 7, 4, 5, padding=(0, 1)) for h in range(5, 10)]


@pytest.mark.parametrize("s", ROWS3_WINOGRAD, ids=[s.name for s in ROWS3_WINOGRAD])
def test_rows3_winograd_weight_gradient(isa, rng, s):
    """winograd_rows3 forced against the reference at 1 and 2 threads (outputs and workspace
    poisoned)."""
    args = (s.x_shape, s.w_shape)
    if "winograd_rows3" not in fastconv.conv2d_algos("bwd_weights", *args, **s.kwargs()):
        pytest.skip(f"the {isa} path has no row-triple Winograd weight gradient")
    _check_forced_weight_gradient(rng, s, "winograd_rows3")


# The images-in-lanes Winograd bwd_data (conv2d_bwd_data_image_lanes.inl, AVX2): batches around the
# 8-image lane groups (1, 5, 8, 9, 17: empty lanes, a partial last group, groups cut into two tile
# ranges), kernels 1-5 high and 5 wide, dx widths leaving 1-3 columns in the last tile and under
# one 8-column block, dy planes under 8 pixels, dx channels around the 6-channel block (1, 6, 7,
# 13), valid / same / mixed padding.
IMAGE_LANES = [
    shapes.ConvShape("lanes.lenet", 9, 6, 14, 14, 16, 5, padding="valid"),
    shapes.ConvShape("lanes.n17c7", 17, 7, 12, 13, 5, (4, 5), padding=(2, 0)),
    shapes.ConvShape("lanes.n8c13same", 8, 13, 9, 11, 9, 5, padding="same"),
    shapes.ConvShape("lanes.n5c1", 5, 1, 5, 5, 3, (1, 5), padding=(0, 4)),
    shapes.ConvShape("lanes.n1k3", 1, 5, 9, 6, 7, (3, 5), padding=(1, 2)),
    shapes.ConvShape("lanes.n9tiny", 9, 6, 3, 7, 4, (2, 5), padding=(0, 1)),
]


@pytest.mark.parametrize("s", IMAGE_LANES, ids=[s.name for s in IMAGE_LANES])
def test_image_lanes_bwd_data(isa, rng, s):
    """winograd_images forced against the reference at 1 and 2 threads (outputs poisoned)."""
    args = (s.x_shape, s.w_shape)
    if "winograd_images" not in fastconv.conv2d_algos("bwd_data", *args, **s.kwargs()):
        pytest.skip(f"the {isa} path has no images-in-lanes bwd_data")
    x, w, _, dy = _arrays(rng, s)
    want = ref.conv2d_bwd_data(dy, w, x.shape, **s.kwargs())
    previous = fastconv.get_num_threads()
    try:
        for threads in (1, 2):
            fastconv.set_num_threads(threads)
            with conv_algo("bwd_data", "winograd_images"):
                dx = fastconv.conv2d_bwd_data(dy, w, x.shape, **s.kwargs())
            assert_close(dx, want, *_tolerances(s)["dx"], f"{s.name}: dx, {threads} threads")
    finally:
        fastconv.set_num_threads(previous)


def test_conv_algo_switch_validates():
    """Unknown passes and names fail at set time; a forced name that cannot run a call fails it."""
    with pytest.raises(ValueError, match="pass"):
        fastconv.set_conv_algo("forward", "gemm")
    with pytest.raises(ValueError, match="'gemm'.*got 'fft'"):
        fastconv.set_conv_algo("fwd", "fft")
    with pytest.raises(TypeError, match="name"):
        fastconv.set_conv_algo("fwd", 1)
    with pytest.raises(ValueError, match="pass"):
        fastconv.conv2d_algo("bwd", (1, 1, 8, 8), (2, 1, 3, 3))
    assert fastconv.get_conv_algo("fwd") is None
    x = np.ones((1, 1, 8, 8), np.float32)
    w = np.ones((2, 1, 3, 3), np.float32)
    with cpu_isa("portable"), conv_algo("fwd", "direct"):
        assert fastconv.get_conv_algo("fwd") == "direct"
        with pytest.raises(ValueError, match="'direct'.*cannot run.*portable.*usable here: gemm"):
            fastconv.conv2d(x, w)
        with pytest.raises(ValueError, match="'direct'"):
            fastconv.conv2d_algo("fwd", x.shape, w.shape)
        assert fastconv.conv2d_algos("fwd", x.shape, w.shape) == ["gemm"]
    assert fastconv.get_conv_algo("fwd") is None
    assert fastconv.conv2d(x, w).shape == (1, 2, 6, 6)


def test_set_winograd_switches_every_winograd_kernel(rng):
    """set_winograd(False) keeps 5x5 and 3x3 layers on direct sums: small integers come out exact
    (Winograd F(2x2, 5x5)'s 1/6 factors round them); True restores the default choice."""
    with pytest.raises(TypeError, match="enabled"):
        fastconv.set_winograd(1)
    assert fastconv.get_winograd() is True
    assert fastconv.info()["winograd"] is True
    previous_isa = fastconv.get_cpu_isa()
    try:
        for name in ("keras.conv2@n2", "fashion.conv2@n2", "cnn1.conv2@n2", "lenet.conv2@n2"):
            s = shapes.conv(name)
            x = rng.integers(-2, 3, s.x_shape).astype(np.float32)
            w = rng.integers(-1, 2, s.w_shape).astype(np.float32)
            dy = rng.integers(-1, 2, s.y_shape).astype(np.float32)
            fastconv.set_winograd(False)
            assert fastconv.get_winograd() is False
            y = fastconv.conv2d(x, w, **s.kwargs())
            dx, dw, _ = fastconv.conv2d_backward(dy, x, w, **s.kwargs())
            assert_identical(y, ref.conv2d_fwd(x, w, None, **s.kwargs()).astype(np.float32), name)
            rdx = ref.conv2d_bwd_data(dy, w, x.shape, **s.kwargs())
            assert_identical(dx, rdx.astype(np.float32), f"{name} dx")
            rdw, _ = ref.conv2d_bwd_weights(dy, x, w.shape, **s.kwargs())
            assert_identical(dw, rdw.astype(np.float32), f"{name} dw")
            fastconv.set_winograd(True)
            assert_close(fastconv.conv2d(x, w, **s.kwargs()), y, *_tolerances(s)["y"], name)
    finally:
        fastconv.set_winograd(True)
        fastconv.set_cpu_isa(previous_isa)
    assert fastconv.get_winograd() is True


def test_isa_paths_agree_on_a_real_layer(rng):
    """Every supported CPU path gives the same answer (within float32 rounding) on cnn1.conv2."""
    s = shapes.conv("cnn1.conv2@n2")
    x, w, b, dy = _arrays(rng, s)
    previous = fastconv.get_cpu_isa()
    results = {}
    try:
        for name in fastconv.cpu_isas():
            fastconv.set_cpu_isa(name)
            assert fastconv.get_cpu_isa() == name
            results[name] = (
                fastconv.conv2d(x, w, b, **s.kwargs()),
                *fastconv.conv2d_backward(dy, x, w, **s.kwargs()),
            )
    finally:
        fastconv.set_cpu_isa(previous)
    tol = _tolerances(s)
    base = results.pop("portable")
    for name, outs in results.items():
        for key, got, want in zip(("y", "dx", "dw", "db"), outs, base):
            assert_close(got, want, 2 * tol[key][0], 2 * tol[key][1], f"{name} vs portable: {key}")


# ----------------------------------------------------------------------------------------------
# the NETWORKS.md hand-made filters, on the native path (exact: the values are dyadic)


@pytest.mark.parametrize("value", [0.0, 0.5, 1.0, 0.296875])
def test_known_filters_exact(isa, value):
    x = np.full((3, 1, 9, 17), value, dtype=np.float32)
    edge = np.array([[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]], np.float32).reshape(1, 1, 3, 3)
    sharpen = np.array([[0, -1, 0], [-1, 5, -1], [0, -1, 0]], np.float32).reshape(1, 1, 3, 3)
    y = fastconv.conv2d(x, edge, padding="valid")
    assert y.shape == (3, 1, 7, 15)
    assert_identical(y, np.zeros_like(y), "edge filter on a uniform image")
    y = fastconv.conv2d(x, sharpen, padding="valid")
    assert_identical(y, np.full_like(y, value), "sharpen filter on a uniform image")
    both = np.concatenate(
        [edge, sharpen, np.full((1, 1, 3, 3), 0.125, np.float32)]
    )  # 3 filters at once
    y = fastconv.conv2d(x, both)
    assert_identical(y[:, 0], np.zeros_like(y[:, 0]), "edge (of 3 filters)")
    assert_identical(y[:, 1], np.full_like(y[:, 1], value), "sharpen (of 3 filters)")
    assert_identical(y[:, 2], np.full_like(y[:, 2], value * 9 / 8), "ones/8 (of 3 filters)")


def test_blur_filter_averages(isa, rng):
    x = rng.random((2, 1, 10, 12)).astype(np.float32)
    y = fastconv.conv2d(x, np.full((1, 1, 3, 3), 1 / 9, np.float32))
    windows = np.lib.stride_tricks.sliding_window_view(x.astype(np.float64), (3, 3), axis=(2, 3))
    assert_close(y, windows.mean(axis=(-2, -1)), 1e-6, 1e-6, "blur")


# ----------------------------------------------------------------------------------------------
# input handling


def test_inputs_are_not_modified_and_outputs_are_new(isa, rng):
    s = shapes.conv("groups.g3.tails")
    x, w, b, dy = _arrays(rng, s)
    copies = [a.copy() for a in (x, w, b, dy)]
    y = fastconv.conv2d(x, w, b, **s.kwargs())
    grads = fastconv.conv2d_backward(dy, x, w, **s.kwargs())
    dx = fastconv.conv2d_bwd_data(dy, w, x.shape, **s.kwargs())
    dw, db = fastconv.conv2d_bwd_weights(dy, x, w.shape, **s.kwargs())
    for name, a, c in zip(("x", "w", "b", "dy"), (x, w, b, dy), copies):
        assert_identical(a, c, f"{name} after the calls")
    for out in (y, *grads, dx, dw, db):
        assert out.flags.writeable
        for a in (x, w, b, dy):
            assert not np.shares_memory(out, a)


def _noncontiguous(rng, a, how):
    """a's values in a non-contiguous view.

    Every other element of a bigger buffer, an NHWC buffer seen as NCHW, Fortran order, or the
    last axis reversed (negative stride). 1-D arrays always get the slice.
    """
    if how == "slice" or a.ndim == 1:
        big = rng.uniform(-1, 1, tuple(2 * d + 1 for d in a.shape)).astype(a.dtype)
        view = big[tuple(slice(1, None, 2) for _ in a.shape)]
    elif how == "nhwc":
        n, c, h, w = a.shape
        view = np.empty((n, h, w, c), a.dtype).transpose(0, 3, 1, 2)
    elif how == "fortran":
        view = np.empty(a.shape, a.dtype, order="F")
    elif how == "reversed":
        view = np.empty(a.shape, a.dtype)[..., ::-1]
    else:
        raise AssertionError(how)
    view[...] = a
    assert not view.flags.c_contiguous
    return view


@pytest.mark.parametrize("how", ["slice", "nhwc", "fortran", "reversed"])
def test_noncontiguous_inputs(isa, rng, how):
    s = shapes.conv("strides.s2")
    x, w, b, dy = _arrays(rng, s)
    xv, wv, bv, dyv = (_noncontiguous(rng, a, how) for a in (x, w, b, dy))
    tol = _tolerances(s)
    y = fastconv.conv2d(xv, wv, bv, **s.kwargs())
    assert_close(y, ref.conv2d_fwd(x, w, b, **s.kwargs()), *tol["y"], f"y ({how} inputs)")
    dx, dw, db = fastconv.conv2d_backward(dyv, xv, wv, **s.kwargs())
    rdx, rdw, rdb = ref.conv2d_backward(dy, x, w, **s.kwargs())
    assert_close(dx, rdx, *tol["dx"], f"dx ({how} inputs)")
    assert_close(dw, rdw, *tol["dw"], f"dw ({how} inputs)")
    assert_close(db, rdb, *tol["db"], f"db ({how} inputs)")
    assert_close(
        fastconv.conv2d_bwd_data(dyv, wv, x.shape, **s.kwargs()), rdx, *tol["dx"], "bwd_data"
    )
    dw2, db2 = fastconv.conv2d_bwd_weights(dyv, xv, w.shape, **s.kwargs())
    assert_close(dw2, rdw, *tol["dw"], "bwd_weights dw")
    assert_close(db2, rdb, *tol["db"], "bwd_weights db")


def test_float64_inputs_are_converted_to_float32(isa, rng):
    s = shapes.conv("tails.c17k15")
    x, w, b, dy = _arrays(rng, s, dtype=np.float64)
    tol = _tolerances(s)
    f32 = [a.astype(np.float32) for a in (x, w, b, dy)]
    y = fastconv.conv2d(x, w, b, **s.kwargs())
    assert y.dtype == np.float32
    assert_close(y, ref.conv2d_fwd(*f32[:3], **s.kwargs()), *tol["y"], "y from float64")
    dx, dw, db = fastconv.conv2d_backward(dy, x, w, **s.kwargs())
    assert dx.dtype == dw.dtype == db.dtype == np.float32
    rdx, rdw, rdb = ref.conv2d_backward(f32[3], f32[0], f32[1], **s.kwargs())
    assert_close(dx, rdx, *tol["dx"], "dx from float64")
    assert_close(dw, rdw, *tol["dw"], "dw from float64")
    assert_close(db, rdb, *tol["db"], "db from float64")


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint8, np.int16])
def test_integer_inputs_are_converted(isa, rng, dtype):
    x = rng.integers(0, 8, (2, 3, 7, 6)).astype(dtype)
    w = rng.integers(0, 4, (5, 3, 3, 3)).astype(dtype)
    b = np.arange(5).astype(dtype)
    y = fastconv.conv2d(x, w, b, padding=1)
    assert y.dtype == np.float32
    assert_identical(
        y, ref.conv2d_fwd(x, w, b, padding=1).astype(np.float32), "integer conv (exact)"
    )
    dy = rng.integers(0, 3, y.shape).astype(dtype)
    for got, want, name in zip(
        fastconv.conv2d_backward(dy, x, w, padding=1),
        ref.conv2d_backward(dy, x, w, padding=1),
        ("dx", "dw", "db"),
    ):
        assert got.dtype == np.float32
        assert_identical(got, want.astype(np.float32), f"integer {name} (exact)")


def test_mixed_dtypes(isa, rng):
    x = rng.uniform(-1, 1, (2, 3, 6, 6))  # float64
    w = rng.uniform(-1, 1, (4, 3, 3, 3)).astype(np.float32)
    b = np.arange(4)  # int64
    y = fastconv.conv2d(x, w, b)
    assert y.dtype == np.float32
    assert_close(y, ref.conv2d_fwd(x.astype(np.float32), w, b), *conv_tolerance(27), "mixed dtypes")


@pytest.mark.parametrize(
    "s", [pytest.param(shapes.conv(n), id=n) for n in ("padding.p1", "groups.g2", "strides.s4")]
)
def test_zero_batch(isa, s):
    s = dataclasses.replace(s, n=0)
    x = np.zeros(s.x_shape, np.float32)
    w = np.ones(s.w_shape, np.float32)
    b = np.ones(s.k, np.float32)
    y = fastconv.conv2d(x, w, b, **s.kwargs())
    assert y.dtype == np.float32
    assert y.shape == s.y_shape
    dy = np.zeros(s.y_shape, np.float32)
    dx, dw, db = fastconv.conv2d_backward(dy, x, w, **s.kwargs())
    assert dx.shape == s.x_shape
    assert_identical(dw, np.zeros(s.w_shape, np.float32), "dw for N=0")
    assert_identical(db, np.zeros(s.k, np.float32), "db for N=0")
    assert fastconv.conv2d_bwd_data(dy, w, s.x_shape, **s.kwargs()).shape == s.x_shape
    dw, db = fastconv.conv2d_bwd_weights(dy, x, s.w_shape, **s.kwargs())
    assert_identical(dw, np.zeros(s.w_shape, np.float32), "bwd_weights dw for N=0")
    assert_identical(db, np.zeros(s.k, np.float32), "bwd_weights db for N=0")


def test_padding_spellings_agree(isa, rng):
    """padding=1, (1, 1) and "same" are the same problem for a 3x3 kernel; 0 and "valid" too."""
    x = rng.uniform(-1, 1, (2, 5, 8, 9)).astype(np.float32)
    w = rng.uniform(-1, 1, (6, 5, 3, 3)).astype(np.float32)
    y1 = fastconv.conv2d(x, w, padding=1)
    assert_close(fastconv.conv2d(x, w, padding=(1, 1)), y1, 1e-6, 1e-6, "(1, 1) vs 1")
    assert_close(fastconv.conv2d(x, w, padding="same"), y1, 1e-6, 1e-6, "same vs 1")
    assert_close(
        fastconv.conv2d(x, w, padding="valid"), fastconv.conv2d(x, w), 1e-6, 1e-6, "valid vs 0"
    )
    assert_close(
        fastconv.conv2d(x, w, stride=(1, 1), dilation=(1, 1), groups=1),
        fastconv.conv2d(x, w),
        1e-6,
        1e-6,
        "explicit defaults",
    )


# ----------------------------------------------------------------------------------------------
# PyTorch cross-check (optional)

TORCH_CASES = [
    pytest.param(shapes.conv(n), id=n)
    for n in (
        "tails.c19k23",
        "padding.same_even4x2",
        "groups.g2.dil2.s2",
        "strides.s4",
        "cnn1.conv2@n2",
    )
]


@pytest.mark.parametrize("s", TORCH_CASES)
def test_conv2d_matches_torch(isa, rng, s):
    torch = pytest.importorskip("torch")
    x, w, b, dy = _arrays(rng, s)
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    tb = torch.tensor(b, requires_grad=True) if b is not None else None
    ty = torch.nn.functional.conv2d(tx, tw, tb, **s.kwargs())
    ty.backward(torch.tensor(dy))
    tol = _tolerances(s)
    assert_close(
        fastconv.conv2d(x, w, b, **s.kwargs()), ty.detach().numpy(), *tol["y"], "y vs torch"
    )
    dx, dw, db = fastconv.conv2d_backward(dy, x, w, **s.kwargs())
    assert_close(dx, tx.grad.numpy(), *tol["dx"], "dx vs torch")
    assert_close(dw, tw.grad.numpy(), *tol["dw"], "dw vs torch")
    if tb is not None:
        assert_close(db, tb.grad.numpy(), *tol["db"], "db vs torch")


def test_debug_poison_is_on_during_kernel_tests():
    """The autouse fixture must really turn poisoning on, or unwritten outputs could pass unseen."""
    get = getattr(fastconv._C, "get_debug_poison", None)
    if get is None:
        pytest.skip("fastconv._C has no get_debug_poison to check")
    assert get() is True


# ----------------------------------------------------------------------------------------------
# CUDA (CuPy arrays in, CuPy arrays out); skipped with the reason where there is no GPU

GPU_CASES = [
    pytest.param(shapes.conv(n), id=n)
    for n in (
        "tails.c19k23",
        "edges.nobias",
        "kernels.11x11",
        "strides.s4",
        "padding.same_even4x2",
        "dilation.d2.s2",
        "groups.depthwise17",
        "groups.g3.tails",
        "cnn1.conv2@n2",
        "keras.conv2@n2",
        "alexnet.conv2@n1",
    )
]


@pytest.mark.gpu
@pytest.mark.parametrize("s", GPU_CASES)
def test_conv2d_cuda(rng, s):
    import cupy

    x, w, b, dy = _arrays(rng, s)
    dev = [None if a is None else cupy.asarray(a) for a in (x, w, b, dy)]
    tol = _tolerances(s)
    y = fastconv.conv2d(*dev[:3], **s.kwargs())
    assert isinstance(y, cupy.ndarray)
    assert y.dtype == np.float32
    assert_close(cupy.asnumpy(y), ref.conv2d_fwd(x, w, b, **s.kwargs()), *tol["y"], "cuda y")
    dx, dw, db = fastconv.conv2d_backward(dev[3], dev[0], dev[1], **s.kwargs())
    rdx, rdw, rdb = ref.conv2d_backward(dy, x, w, **s.kwargs())
    assert_close(cupy.asnumpy(dx), rdx, *tol["dx"], "cuda dx")
    assert_close(cupy.asnumpy(dw), rdw, *tol["dw"], "cuda dw")
    assert_close(cupy.asnumpy(db), rdb, *tol["db"], "cuda db")


RELU_CASES = [
    pytest.param(s, id=s.name)
    for s in (
        shapes.ConvShape("relu.direct_c1", 2, 1, 12, 11, 7, kernel=5, padding=2),
        shapes.ConvShape("relu.direct", 2, 6, 10, 10, 20, kernel=3, padding=1),
        shapes.ConvShape("relu.cl", 2, 16, 8, 8, 32, kernel=3, padding="valid"),
        shapes.ConvShape("relu.gemm_stride2", 2, 3, 11, 11, 5, kernel=3, stride=2, padding=1),
        shapes.ConvShape("relu.gemm_groups", 2, 4, 9, 9, 6, kernel=3, groups=2),
    )
]


@pytest.mark.parametrize("s", RELU_CASES)
def test_fused_relu_keeps_nan_on_every_path(isa, rng, s):
    """activation="relu" is max(y, 0) with NaN kept (PyTorch's and the reference's ReLU) on every
    forward algorithm that can run s: the direct, channels-in-lanes and GEMM epilogues once
    disagreed (NaN -> 0 on some)."""
    x, w, b, _ = _arrays(rng, s)
    x.reshape(-1)[:: max(1, x.size // 5)] = np.nan  # a few NaN pixels: NaN outputs around them
    for algo in fastconv.conv2d_algos("fwd", s.x_shape, s.w_shape, **s.kwargs()):
        with conv_algo("fwd", algo):
            y = fastconv.conv2d(x, w, b, activation="relu", **s.kwargs())
            plain = fastconv.conv2d(x, w, b, **s.kwargs())
        assert np.isnan(plain).any()
        assert not np.isnan(plain).all()
        assert_identical(y, np.maximum(plain, np.float32(0)), f"{s.name}: {algo} relu epilogue")
