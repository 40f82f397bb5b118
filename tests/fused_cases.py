"""The fused conv2d + ReLU + 2x2 max-pool tests' problems, inputs and checkers, shared by
test_conv_relu_pool.py (results, backward, threads, gradients) and test_conv_relu_pool_args.py
(input handling, out= buffers, errors)."""

from __future__ import annotations

import fastconv
import numpy as np
import pytest
import shapes
from conftest import (
    assert_close,
    assert_identical,
    conv_tolerance,
    winograd_allowed,
)
from fastconv import reference as ref

DEAD = 4  # the code bit set where pooled is not > 0

C = shapes.ConvShape

# Problems for the fused op. The conv output (OH, OW) is in each comment; odd sizes drop the last
# row/column in the pool. C_in 1/3/20/75, C_out 1/6/20/32/100, 3x3 and 5x5 with padding 0/1/2/same.
FUSED_SHAPES = [
    C("fused.c1k1.batch1", 1, 1, 8, 8, 1),  # 6x6
    C("fused.c1k6.5x5.p2.odd", 2, 1, 13, 11, 6, kernel=5, padding=2),  # 13x11
    C("fused.c3k20.odd", 2, 3, 11, 10, 20),  # 9x8
    C("fused.c3k32.p1.batch1", 1, 3, 9, 9, 32, padding=1),  # 9x9
    C("fused.c3k100.p2", 1, 3, 6, 7, 100, padding=2),  # 8x9
    C("fused.c20k20.5x5.p2", 2, 20, 10, 10, 20, kernel=5, padding=2),  # 10x10
    C("fused.c20k32.same.odd", 2, 20, 7, 9, 32, padding="same"),  # 7x9
    C("fused.c20k1.5x5.p1", 2, 20, 9, 8, 1, kernel=5, padding=1),  # 7x6
    C("fused.c75k100.5x5.batch1", 1, 75, 12, 12, 100, kernel=5),  # 8x8
    C("fused.c75k6.5x5.p1.odd", 1, 75, 10, 9, 6, kernel=5, padding=1),  # 8x7
    C("fused.c6k16.5x5.same", 2, 6, 9, 8, 16, kernel=5, padding="same"),  # 9x8
    C("fused.out2x2", 2, 3, 4, 4, 5),  # 2x2: one pooled element per plane
    C("fused.out3x2", 2, 3, 5, 4, 5),  # 3x2: the last row dropped
    C("fused.out2x3.5x5", 1, 4, 6, 7, 3, kernel=5),  # 2x3: the last column dropped
    C("fused.nobias.p1", 2, 4, 9, 9, 6, padding=1, bias=False),  # 9x9
    C("fused.tails.w37", 1, 5, 5, 37, 9),  # 3x35
    C("fused.tails.c17k15.p1", 2, 17, 9, 15, 15, padding=1),  # 9x15
    C("fused.wide.p1", 1, 3, 4, 70, 16, padding=1),  # 4x70
    C("fused.k1", 2, 5, 7, 7, 6, kernel=1),  # 7x7
    C("fused.pair.p1x2", 2, 4, 7, 9, 5, padding=(1, 2)),  # 7x11
    C("fused.batch5", 5, 3, 10, 11, 8, padding=1),  # 10x11: 5 images over the threads
    # stride / dilation / groups: the generic fallback
    C("fused.s2", 2, 4, 11, 11, 6, stride=2),  # 5x5
    C("fused.s2.5x5.p2", 2, 3, 14, 13, 20, kernel=5, stride=2, padding=2),  # 7x7
    C("fused.s2x1.p1x0", 2, 4, 10, 9, 7, stride=(2, 1), padding=(1, 0)),  # 5x7
    C("fused.d2", 2, 4, 12, 11, 6, dilation=2),  # 8x7
    C("fused.d2.same", 2, 3, 9, 9, 5, dilation=2, padding="same"),  # 9x9
    C("fused.g2", 2, 8, 9, 9, 6, groups=2),  # 7x7
    C("fused.g2.c20k32.p1", 2, 20, 8, 8, 32, groups=2, padding=1),  # 8x8
    C("fused.depthwise.p1", 2, 6, 9, 9, 6, groups=6, padding=1),  # 9x9
]
LAYERS = [shapes.conv(f"{n}@n2") for n in shapes.NETWORK_CONV]
ALL = FUSED_SHAPES + LAYERS
CASES = [pytest.param(s, id=s.name) for s in ALL]
# direct-kernel candidates (stride 1, dilation 1, groups 1): where forcing an algorithm can matter
STRIDE1 = [
    pytest.param(s, id=s.name)
    for s in ALL
    if s.stride == (1, 1) and s.dilation == (1, 1) and s.groups == 1
]
# native vs the float64 reference: a cross-section (the reference is slow on the big layers)
REF_NAMES = (
    "fused.c1k6.5x5.p2.odd",
    "fused.c3k20.odd",
    "fused.c20k32.same.odd",
    "fused.c75k6.5x5.p1.odd",
    "fused.c75k100.5x5.batch1",
    "fused.out3x2",
    "fused.nobias.p1",
    "fused.tails.w37",
    "fused.s2.5x5.p2",
    "fused.d2",
    "fused.g2.c20k32.p1",
    "cnn1.conv2@n2",
    "keras.conv2@n2",
    "fashion.conv1@n2",
    "lenet.conv2@n2",
)


def _by_name(name):
    for s in ALL:
        if s.name == name:
            return s
    raise KeyError(name)


REF_CASES = [pytest.param(_by_name(n), id=n) for n in REF_NAMES]


@pytest.fixture(autouse=True)
def _exact_sums_for_ties(request):
    """Integer ("ties") inputs are compared with the reference exactly, which holds for direct
    sums; Winograd F(2x2, 5x5)'s 1/6 factors round (its accuracy is tested in test_conv2d.py), so
    it is switched off for those tests."""
    params = getattr(request.node, "callspec", None)
    if params is None or params.params.get("kind") != "ties":
        yield
        return
    with winograd_allowed(False):
        yield


# ----------------------------------------------------------------------------------------------
# inputs and checkers


def _arrays(rng, s, kind):
    """x, w, b (None without bias) as float32 for problem s.

    normal: uniform [-1, 1). ties: small integers (exact float32 sums, many equal maxima and zeros).
    nan / inf: normal with two non-finite pixels per sample (and, for nan, a NaN bias for output
    channel 0). negative: x >= 0, w < 0, b < 0, so every conv output is < 0 (every code dead).
    """
    if kind == "ties":
        x = rng.integers(-2, 3, s.x_shape).astype(np.float32)
        w = rng.integers(-1, 2, s.w_shape).astype(np.float32)
        b = rng.integers(-1, 2, s.k).astype(np.float32) if s.bias else None
        return x, w, b
    if kind == "negative":
        x = rng.uniform(0, 1, s.x_shape).astype(np.float32)
        w = -rng.uniform(0.01, 1, s.w_shape).astype(np.float32)
        b = -rng.uniform(0.5, 1, s.k).astype(np.float32) if s.bias else None
        return x, w, b
    x = rng.uniform(-1, 1, s.x_shape).astype(np.float32)
    w = rng.uniform(-1, 1, s.w_shape).astype(np.float32)
    b = rng.uniform(-1, 1, s.k).astype(np.float32) if s.bias else None
    if kind in ("nan", "inf"):
        for n in range(s.n):
            for _ in range(2):
                c, i, j = (int(rng.integers(0, d)) for d in (s.c, s.h, s.w))
                x[n, c, i, j] = np.nan if kind == "nan" else float(rng.choice([-np.inf, np.inf]))
        if kind == "nan" and b is not None:
            b[0] = np.nan
    elif kind != "normal":
        raise AssertionError(kind)
    return x, w, b


def codes_from_indices(pooled, indices, width):
    """Window codes from max_pool2d(y, 2, 2)'s flat indices (h*W + w) and its values."""
    ph, pw = pooled.shape[2:]
    a = indices // width - 2 * np.arange(ph)[:, None]
    b = indices % width - 2 * np.arange(pw)[None, :]
    assert ((a >= 0) & (a < 2) & (b >= 0) & (b < 2)).all(), "index outside its 2x2 window"
    return (2 * a + b + DEAD * ~(pooled > 0)).astype(np.uint8)


def unfused(x, w, b, s):
    """(pooled, codes, y, indices) from the native conv2d(activation="relu") -> max_pool2d."""
    y = fastconv.conv2d(x, w, b, activation="relu", **s.kwargs())
    p, idx = fastconv.max_pool2d(y, 2, 2, return_indices=True)
    return p, codes_from_indices(p, idx, y.shape[3]), y, idx


def pooled_shape(s):
    oh, ow = s.out_hw
    return (s.n, s.k, oh // 2, ow // 2)


def check_fused(s, x, w, b):
    """The fused op against the unfused native ops, exactly; returns (pooled, codes, y, idx)."""
    pooled, codes = fastconv.conv2d_relu_maxpool2d(x, w, b, **s.kwargs())
    assert isinstance(pooled, np.ndarray)
    assert isinstance(codes, np.ndarray)
    assert pooled.dtype == np.float32, pooled.dtype
    assert codes.dtype == np.uint8, codes.dtype
    assert pooled.shape == codes.shape == pooled_shape(s), (pooled.shape, codes.shape)
    p, c, y, idx = unfused(x, w, b, s)
    assert_identical(pooled, p, f"{s.name}: pooled vs conv2d(relu) -> max_pool2d")
    assert_identical(pooled.view(np.uint32), p.view(np.uint32), f"{s.name}: pooled bits")
    assert_identical(codes, c, f"{s.name}: codes vs max_pool2d indices")
    assert (codes < 8).all()
    return pooled, codes, y, idx


def _windows(a, ph, pw):
    """(N, C, PH, PW, 4) view of the 2x2 windows of a (N, C, H, W), in row-major window order."""
    n, c = a.shape[:2]
    a = a[:, :, : 2 * ph, : 2 * pw].reshape(n, c, ph, 2, pw, 2)
    return a.transpose(0, 1, 2, 4, 3, 5).reshape(n, c, ph, pw, 4)


def check_vs_reference(s, pooled, codes, x, w, b, exact):
    rp, rc = ref.conv2d_relu_maxpool2d(x, w, b, **s.kwargs())
    assert rp.dtype == np.float64
    assert rc.dtype == np.uint8
    if exact:
        assert_identical(pooled, rp.astype(np.float32), f"{s.name}: pooled vs reference")
        assert_identical(codes, rc, f"{s.name}: codes vs reference")
        return
    atol, rtol = conv_tolerance((s.c // s.groups) * s.kernel[0] * s.kernel[1])
    assert_close(pooled, rp, atol, rtol, f"{s.name}: pooled vs reference")
    # codes where float32 rounding cannot change the answer: a winner clearly above the rest and
    # clearly positive, or a window whose four pre-activation values are all clearly negative
    win = _windows(ref.conv2d_fwd(x, w, b, **s.kwargs()), *pooled.shape[2:])
    tol = atol + rtol * np.abs(win)
    top = np.sort(win, axis=-1)
    margin = 2 * (atol + rtol * np.abs(top[..., -1]))
    clear_live = (top[..., -1] - top[..., -2] > margin) & (top[..., -1] > margin)
    clear_dead = (win < -tol).all(axis=-1)
    assert (clear_live | clear_dead).mean() > 0.5, "too few clear windows to compare codes"
    assert_identical(codes[clear_live], rc[clear_live], f"{s.name}: codes (clear winners)")
    assert (rc[clear_dead] == DEAD).all()
    assert_identical(codes[clear_dead], rc[clear_dead], f"{s.name}: codes (dead windows)")


def _poisoned(shape, dtype=np.float32):
    return np.full(shape, np.nan if dtype == np.float32 else 0xFF, dtype)
