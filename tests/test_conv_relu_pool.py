"""Fused conv2d + ReLU + 2x2/stride-2 max-pool (conv2d_relu_maxpool2d) and its backward.

The fused forward returns (pooled, codes): pooled is max_pool2d(conv2d(..., activation="relu"), 2)
and codes (uint8, pooled's shape) name each window's winner, pos = row*2 + col inside the 2x2
window, plus 4 when the pooled value is not > 0 (0 or NaN: the ReLU passes no gradient back).
relu_maxpool2d_backward(dy, codes, conv_output_shape) routes dy to the live winners; it equals
max_pool2d_backward(dy * (pooled > 0), indices, shape).

Checked here:
- the reference (fastconv.reference) on its own: codes agree with maxpool2d_fwd's indices, the
  backward with maxpool2d_bwd of the masked gradient, finite differences, PyTorch when installed;
- native fused vs native unfused (conv2d(activation="relu") -> max_pool2d(2, 2)), EXACTLY, values
  (bit for bit) and codes, on every CPU path (`isa`), over many shapes (odd conv outputs whose last
  row/column the pool drops, stride / dilation / groups through the generic path, the NETWORKS.md
  layers at batch 2) and inputs with ties, NaN/inf and all-negative outputs, and with the AVX-512
  channels-in-lanes forward kernel forced off and on;
- native vs reference: exact for integer inputs (float32 sums of small integers are exact), within
  conv_tolerance (codes where the winner is clear) for continuous ones;
- the backward exactly against max_pool2d_backward and the reference, every element written
  (debug poison is on), odd H/W rows/columns zero;
- out= buffers, inputs never modified, argument errors (exceptions, never crashes), threads.

Every ReLU keeps NaN (native and reference alike, as PyTorch's relu); the NaN and inf inputs are
compared native vs native, the native-vs-reference tests use finite inputs.
"""

from __future__ import annotations

import dataclasses

import fastconv
import numpy as np
import pytest
import shapes
from conftest import (
    assert_close,
    assert_identical,
    conv_algo,
    conv_tolerance,
    cpu_isa,
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


# ----------------------------------------------------------------------------------------------
# the reference on its own (no native code)


@pytest.mark.parametrize("kind", ["normal", "ties", "nan", "negative"])
@pytest.mark.parametrize(
    "s", [pytest.param(_by_name(n), id=n) for n in ("fused.c3k20.odd", "fused.s2", "fused.g2")]
)
def test_reference_codes_agree_with_maxpool_indices(rng, s, kind):
    x, w, b = _arrays(rng, s, kind)
    pooled, codes = ref.conv2d_relu_maxpool2d(x, w, b, **s.kwargs())
    y = np.maximum(ref.conv2d_fwd(x, w, b, **s.kwargs()), 0)
    p, idx = ref.maxpool2d_fwd(y, 2, 2)
    assert codes.dtype == np.uint8
    assert pooled.dtype == np.float64
    assert_identical(pooled, p, "reference pooled")
    assert_identical(codes, codes_from_indices(p, idx, y.shape[3]), "reference codes")
    assert (codes < 8).all()
    if kind == "negative":
        assert (codes == DEAD).all()  # all zeros after the ReLU: the first one wins, dead
    if kind == "nan":
        assert np.isnan(pooled).any()
        assert (codes[np.isnan(pooled)] & DEAD).all()


@pytest.mark.parametrize("kind", ["normal", "ties", "negative"])
@pytest.mark.parametrize(
    "s", [pytest.param(_by_name(n), id=n) for n in ("fused.c3k20.odd", "fused.s2", "fused.out3x2")]
)
def test_reference_backward_is_masked_maxpool_backward(rng, s, kind):
    x, w, b = _arrays(rng, s, kind)
    pooled, codes = ref.conv2d_relu_maxpool2d(x, w, b, **s.kwargs())
    y = np.maximum(ref.conv2d_fwd(x, w, b, **s.kwargs()), 0)
    _, idx = ref.maxpool2d_fwd(y, 2, 2)
    dy = rng.uniform(-1, 1, pooled.shape)
    dx = ref.relu_maxpool2d_backward(dy, codes, y.shape)
    assert dx.dtype == np.float64
    assert dx.shape == y.shape
    assert_identical(dx, ref.maxpool2d_bwd(dy * (pooled > 0), idx, y.shape), "reference dx")
    oh, ow = y.shape[2:]
    assert not dx[:, :, 2 * (oh // 2) :].any()
    assert not dx[:, :, :, 2 * (ow // 2) :].any()


def test_reference_known_answer():
    """1x1 identity conv, so y = x: ties, negatives, NaN (kept by the reference's ReLU), drops."""
    x = np.array(
        [
            [0, 3, -1, -2, np.nan, 5, 1, np.nan, -1, 0.5, 99],
            [3, 1, -3, -4, np.nan, 1, 2, np.nan, 0.5, 2, 99],
            [99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99],  # dropped (odd H)
        ]
    ).reshape(1, 1, 3, 11)
    pooled, codes = ref.conv2d_relu_maxpool2d(x, np.ones((1, 1, 1, 1)))
    assert codes.tolist() == [[[[1, DEAD + 0, DEAD + 0, DEAD + 1, 3]]]]
    assert_identical(pooled, np.array([3, 0, np.nan, np.nan, 2.0]).reshape(1, 1, 1, 5), "pooled")
    dx = ref.relu_maxpool2d_backward(np.arange(1.0, 6.0).reshape(1, 1, 1, 5), codes, x.shape)
    want = np.zeros(x.shape)
    want[0, 0, 0, 1] = 1.0  # window 0: (0, 1) before (1, 0)
    want[0, 0, 1, 9] = 5.0  # window 4: 2 at (1, 1)
    assert_identical(dx, want, "reference dx")


@pytest.mark.parametrize("shape", [(2, 3, 5, 7), (1, 1, 2, 2), (2, 4, 8, 9)])
def test_reference_backward_every_code(rng, shape):
    n, c, h, w = shape
    dy = rng.uniform(-1, 1, (n, c, h // 2, w // 2))
    codes = rng.integers(0, 8, dy.shape).astype(np.uint8)
    dx = ref.relu_maxpool2d_backward(dy, codes, shape)
    want = np.zeros(shape)
    for n_, c_, i, j in np.ndindex(*dy.shape):
        code = int(codes[n_, c_, i, j])
        if code < DEAD:
            want[n_, c_, 2 * i + code // 2, 2 * j + code % 2] = dy[n_, c_, i, j]
    assert_identical(dx, want, "dx, loop over the codes")


def _ref_bwd(codes, input_shape=(1, 1, 4, 4)):
    return lambda: ref.relu_maxpool2d_backward(np.ones((1, 1, 2, 2)), codes, input_shape)


@pytest.mark.parametrize(
    ("call", "exc", "match"),
    [
        (_ref_bwd(np.full((1, 1, 2, 2), 8, np.uint8)), ValueError, "codes"),
        (_ref_bwd(np.full((1, 1, 2, 2), -1)), ValueError, "codes"),
        (_ref_bwd(np.zeros((1, 1, 2, 2))), TypeError, "codes"),
        (_ref_bwd(np.zeros((1, 1, 2, 1), np.uint8)), ValueError, "codes"),
        (_ref_bwd(np.zeros((1, 1, 2, 2), np.uint8), (1, 1, 6, 4)), ValueError, "input_shape"),
        (
            lambda: ref.conv2d_relu_maxpool2d(np.ones((1, 1, 3, 8)), np.ones((1, 1, 3, 3))),
            ValueError,
            "2x2",
        ),
    ],
)
def test_reference_rejects_bad_arguments(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


@pytest.mark.parametrize(
    "s", [pytest.param(_by_name(n), id=n) for n in ("fused.out3x2", "fused.s2", "fused.g2")]
)
def test_reference_backward_matches_finite_differences(rng, s):
    """d sum(dy * pooled) / dx and / db through the conv, against central differences."""
    s = dataclasses.replace(s, n=1)
    x = rng.uniform(-1, 1, s.x_shape)
    w = rng.uniform(-1, 1, s.w_shape)
    b = rng.uniform(-0.3, 0.3, s.k)  # about half the windows live
    pooled, codes = ref.conv2d_relu_maxpool2d(x, w, b, **s.kwargs())
    dy = rng.uniform(-1, 1, pooled.shape)
    g = ref.relu_maxpool2d_backward(dy, codes, s.y_shape)
    dx = ref.conv2d_bwd_data(g, w, s.x_shape, **s.kwargs())
    db = g.sum(axis=(0, 2, 3))

    def loss(x_, b_):
        return float((dy * ref.conv2d_relu_maxpool2d(x_, w, b_, **s.kwargs())[0]).sum())

    eps = 1e-6
    fdx = np.zeros_like(x)
    for i in np.ndindex(*x.shape):
        xp, xm = x.copy(), x.copy()
        xp[i] += eps
        xm[i] -= eps
        fdx[i] = (loss(xp, b) - loss(xm, b)) / (2 * eps)
    fdb = np.array([(loss(x, b + eps * e) - loss(x, b - eps * e)) / (2 * eps) for e in np.eye(s.k)])
    assert_close(dx, fdx, 1e-6, 1e-5, "dx vs finite differences")
    assert_close(db, fdb, 1e-6, 1e-5, "db vs finite differences")


def test_reference_matches_torch(rng):
    torch = pytest.importorskip("torch")
    s = _by_name("fused.c3k20.odd")
    x, w, b = (rng.uniform(-1, 1, sh) for sh in (s.x_shape, s.w_shape, s.k))
    ty = torch.nn.functional.conv2d(torch.tensor(x), torch.tensor(w), torch.tensor(b))
    ty.requires_grad_(True)
    tp = torch.nn.functional.max_pool2d(torch.relu(ty), 2, 2)
    pooled, codes = ref.conv2d_relu_maxpool2d(x, w, b)
    assert_close(pooled, tp.detach().numpy(), 1e-12, 1e-12, "pooled vs torch")
    dy = rng.uniform(-1, 1, pooled.shape)
    tp.backward(torch.tensor(dy))
    dx = ref.relu_maxpool2d_backward(dy, codes, ty.shape)
    assert_identical(dx, ty.grad.numpy(), "dx vs torch")


# ----------------------------------------------------------------------------------------------
# native fused vs native unfused, exactly


@pytest.mark.parametrize("kind", ["normal", "ties", "nan", "inf", "negative"])
@pytest.mark.parametrize("s", CASES)
def test_fused_equals_unfused(isa, rng, s, kind):
    x, w, b = _arrays(rng, s, kind)
    pooled, codes, _, _ = check_fused(s, x, w, b)
    if kind == "negative":
        assert (pooled == 0).all()
        assert (codes == DEAD).all(), "all outputs negative: every code must be 4 (dead, first)"


@pytest.fixture(params=[None, "direct", "channel_lanes"], ids=["auto", "direct", "channel_lanes"])
def fwd_algo(request):
    """On AVX-512: the forward algorithm left to the registry, or the pixels-in-lanes direct or
    channels-in-lanes kernel forced."""
    if "avx512" not in fastconv.cpu_isas():
        pytest.skip("the channel-lane forward is AVX-512 only; this CPU has no AVX-512")
    with cpu_isa("avx512"), conv_algo("fwd", request.param):
        yield request.param


@pytest.mark.parametrize("kind", ["normal", "ties"])
@pytest.mark.parametrize("s", STRIDE1)
def test_fused_equals_unfused_forced_variants(fwd_algo, rng, s, kind):
    x, w, b = _arrays(rng, s, kind)
    pooled, codes, _, _ = check_fused(s, x, w, b)
    if kind == "ties":
        check_vs_reference(s, pooled, codes, x, w, b, exact=True)


def test_known_answer(isa):
    """1x1 identity conv (y = x): ties, negatives, the dropped last row/column."""
    x = np.array(
        [
            [0, 3, -1, -2, -1, 0.5, 7, 7, 99],
            [3, 1, -3, -4, 0.5, 2, 7, 7, 99],
            [99, 99, 99, 99, 99, 99, 99, 99, 99],
        ],
        np.float32,
    ).reshape(1, 1, 3, 9)
    pooled, codes = fastconv.conv2d_relu_maxpool2d(x, np.ones((1, 1, 1, 1), np.float32))
    assert codes.tolist() == [[[[1, DEAD + 0, 3, 0]]]]
    assert pooled.tolist() == [[[[3, 0, 2, 7]]]]


# ----------------------------------------------------------------------------------------------
# native vs the reference


@pytest.mark.parametrize("kind", ["normal", "ties", "negative"])
@pytest.mark.parametrize("s", REF_CASES)
def test_fused_vs_reference(isa, rng, s, kind):
    x, w, b = _arrays(rng, s, kind)
    pooled, codes = fastconv.conv2d_relu_maxpool2d(x, w, b, **s.kwargs())
    check_vs_reference(s, pooled, codes, x, w, b, exact=kind != "normal")


# ----------------------------------------------------------------------------------------------
# backward


def check_backward(s, pooled, codes, idx, dy):
    y_shape = s.y_shape
    dx = fastconv.relu_maxpool2d_backward(dy, codes, y_shape)
    assert isinstance(dx, np.ndarray)
    assert dx.dtype == np.float32, dx.dtype
    assert dx.shape == y_shape, dx.shape
    want = fastconv.max_pool2d_backward(dy * (pooled > 0), idx, y_shape)
    assert_identical(dx, want, f"{s.name}: dx vs max_pool2d_backward(dy * (pooled > 0))")
    rdx = ref.relu_maxpool2d_backward(dy, codes, y_shape).astype(np.float32)
    assert_identical(dx, rdx, f"{s.name}: dx vs reference")
    oh, ow = y_shape[2:]
    assert not dx[:, :, 2 * (oh // 2) :].any(), "rows past 2*PH must be 0"
    assert not dx[:, :, :, 2 * (ow // 2) :].any(), "columns past 2*PW must be 0"
    return dx


@pytest.mark.parametrize("kind", ["normal", "ties", "negative"])
@pytest.mark.parametrize("s", CASES)
def test_backward(isa, rng, s, kind):
    x, w, b = _arrays(rng, s, kind)
    pooled, codes, _, idx = check_fused(s, x, w, b)
    dy = rng.uniform(-1, 1, pooled.shape).astype(np.float32)
    dx = check_backward(s, pooled, codes, idx, dy)
    if kind == "negative":
        assert not dx.any()
    else:
        assert np.count_nonzero(dx) == np.count_nonzero(dy * (pooled > 0))


@pytest.mark.parametrize(
    "shape",
    [
        (1, 1, 2, 2),
        (2, 3, 5, 7),
        (1, 5, 3, 33),
        (2, 16, 28, 28),
        (2, 20, 14, 15),
        (3, 4, 9, 8),
        (1, 100, 8, 8),
        (2, 7, 17, 35),
    ],
)
def test_backward_every_code(isa, rng, shape):
    """Random codes in [0, 8), not from a forward: every position, live and dead."""
    n, c, h, w = shape
    dy = rng.uniform(-1, 1, (n, c, h // 2, w // 2)).astype(np.float32)
    codes = rng.integers(0, 8, dy.shape).astype(np.uint8)
    dx = fastconv.relu_maxpool2d_backward(dy, codes, shape)
    assert dx.dtype == np.float32
    assert dx.shape == shape
    assert_identical(dx, ref.relu_maxpool2d_backward(dy, codes, shape).astype(np.float32), "dx")
    assert not fastconv.relu_maxpool2d_backward(dy, codes | DEAD, shape).any(), "all dead"


def test_backward_zero_and_negative_zero_dy(isa):
    dy = np.array([0.0, -0.0, 1.5, -2.0], np.float32).reshape(1, 1, 2, 2)
    codes = np.array([0, 3, 2, 1], np.uint8).reshape(1, 1, 2, 2)
    dx = fastconv.relu_maxpool2d_backward(dy, codes, (1, 1, 5, 4))
    want = np.zeros((1, 1, 5, 4), np.float32)
    want[0, 0, 3, 0], want[0, 0, 2, 3] = 1.5, -2.0
    assert_identical(dx, want, "dx")


# ----------------------------------------------------------------------------------------------
# input handling: dtypes, views, N = 0, inputs never modified


def test_inputs_not_modified_and_outputs_new(isa, rng):
    s = _by_name("fused.c3k20.odd")
    x, w, b = _arrays(rng, s, "ties")
    copies = [a.copy() for a in (x, w, b)]
    pooled, codes = fastconv.conv2d_relu_maxpool2d(x, w, b, **s.kwargs())
    dy = rng.uniform(-1, 1, pooled.shape).astype(np.float32)
    dy_copy, codes_copy = dy.copy(), codes.copy()
    dx = fastconv.relu_maxpool2d_backward(dy, codes, s.y_shape)
    for name, a, c in zip(
        ("x", "w", "b", "dy", "codes"), (x, w, b, dy, codes), (*copies, dy_copy, codes_copy)
    ):
        assert_identical(a, c, f"{name} after the calls")
    for out in (pooled, codes, dx):
        assert out.flags.writeable
        assert out.flags.c_contiguous
        for a in (x, w, b, dy):
            assert not np.shares_memory(out, a)
    assert not np.shares_memory(pooled, codes)


def test_noncontiguous_and_converted_inputs(isa, rng):
    s = _by_name("fused.c20k32.same.odd")
    x, w, b = _arrays(rng, s, "ties")
    pooled, codes = fastconv.conv2d_relu_maxpool2d(x, w, b, **s.kwargs())
    nhwc = np.empty((s.n, s.h, s.w, s.c), np.float32).transpose(0, 3, 1, 2)
    nhwc[...] = x
    for name, args in (
        ("nhwc x", (nhwc, w, b)),
        ("reversed x", (np.ascontiguousarray(x[..., ::-1])[..., ::-1], w, b)),
        ("fortran w", (x, np.asfortranarray(w), b)),
        ("float64", (x.astype(np.float64), w.astype(np.float64), b.astype(np.float64))),
        ("int", (x.astype(np.int32), w.astype(np.int64), b.astype(np.int16))),
    ):
        p2, c2 = fastconv.conv2d_relu_maxpool2d(*args, **s.kwargs())
        assert p2.dtype == np.float32
        assert c2.dtype == np.uint8
        assert_identical(p2, pooled, f"pooled from {name} inputs")
        assert_identical(c2, codes, f"codes from {name} inputs")
    dy = rng.uniform(-1, 1, pooled.shape).astype(np.float32)
    dx = fastconv.relu_maxpool2d_backward(dy, codes, s.y_shape)
    dy_view = np.empty(pooled.shape[::-1], np.float32).T
    dy_view[...] = dy
    codes_view = np.empty(pooled.shape[::-1], np.uint8).T
    codes_view[...] = codes
    assert_identical(
        fastconv.relu_maxpool2d_backward(dy_view, codes_view, s.y_shape),
        dx,
        "dx from non-contiguous dy/codes",
    )
    try:  # float64 grad_output: converted as max_pool2d_backward does, or refused by name
        dx64 = fastconv.relu_maxpool2d_backward(dy.astype(np.float64), codes, s.y_shape)
        error = None
    except (TypeError, ValueError) as e:
        error = e
    if error is not None:
        assert "grad_output" in str(error)
    else:
        assert_identical(dx64, dx, "dx from float64 dy")
    assert_identical(
        fastconv.relu_maxpool2d_backward(dy, codes, list(s.y_shape)), dx, "input_shape as a list"
    )


def test_zero_batch(isa):
    s = dataclasses.replace(_by_name("fused.c3k20.odd"), n=0)
    x = np.zeros(s.x_shape, np.float32)
    w = np.ones(s.w_shape, np.float32)
    pooled, codes = fastconv.conv2d_relu_maxpool2d(x, w, np.ones(s.k, np.float32))
    assert pooled.shape == codes.shape == pooled_shape(s)
    assert pooled.dtype == np.float32
    assert codes.dtype == np.uint8
    dx = fastconv.relu_maxpool2d_backward(pooled, codes, s.y_shape)
    assert dx.shape == s.y_shape
    assert dx.dtype == np.float32


# ----------------------------------------------------------------------------------------------
# out= buffers


@pytest.mark.parametrize(
    "s",
    [pytest.param(_by_name(n), id=n) for n in ("fused.c3k20.odd", "fused.s2", "fused.tails.w37")],
)
def test_out_buffers(isa, rng, s):
    x, w, b = _arrays(rng, s, "ties")
    pooled, codes = fastconv.conv2d_relu_maxpool2d(x, w, b, **s.kwargs())
    op, oc = _poisoned(pooled.shape), _poisoned(pooled.shape, np.uint8)
    rp, rc = fastconv.conv2d_relu_maxpool2d(x, w, b, **s.kwargs(), out=(op, oc))
    assert rp is op
    assert rc is oc
    assert_identical(op, pooled, "pooled out=")
    assert_identical(oc, codes, "codes out=")
    # either buffer may be left to the function
    op = _poisoned(pooled.shape)
    rp, rc = fastconv.conv2d_relu_maxpool2d(x, w, b, **s.kwargs(), out=(op, None))
    assert rp is op
    assert rc is not None
    assert_identical(rp, pooled, "pooled out= alone")
    assert_identical(rc, codes, "codes fresh")
    oc = _poisoned(pooled.shape, np.uint8)
    rp, rc = fastconv.conv2d_relu_maxpool2d(x, w, b, **s.kwargs(), out=(None, oc))
    assert rc is oc
    assert_identical(rp, pooled, "pooled fresh")
    assert_identical(rc, codes, "codes out= alone")
    rp, rc = fastconv.conv2d_relu_maxpool2d(x, w, b, **s.kwargs(), out=(None, None))
    assert_identical(rp, pooled, "pooled, out=(None, None)")

    dy = rng.uniform(-1, 1, pooled.shape).astype(np.float32)
    dx = fastconv.relu_maxpool2d_backward(dy, codes, s.y_shape)
    od = _poisoned(s.y_shape)
    assert fastconv.relu_maxpool2d_backward(dy, codes, s.y_shape, out=od) is od
    assert_identical(od, dx, "relu_maxpool2d_backward out=")
    od = np.ones(s.y_shape, np.float32)  # a stale gradient: the zeros must be written too
    fastconv.relu_maxpool2d_backward(dy, codes, s.y_shape, out=od)
    assert_identical(od, dx, "out= over stale values")


X_OUT = np.ones((2, 3, 9, 8), np.float32)  # conv output 7x6 -> pooled (2, 4, 3, 3)
W_OUT = np.ones((4, 3, 3, 3), np.float32)
P_SHAPE = (2, 4, 3, 3)
Y_SHAPE = (2, 4, 7, 6)


def _read_only(shape, dtype):
    a = np.zeros(shape, dtype)
    a.flags.writeable = False
    return a


BAD_FWD_OUTS = {
    "pooled wrong shape": lambda: (np.empty((2, 4, 3, 4), np.float32), None),
    "pooled float64": lambda: (np.empty(P_SHAPE, np.float64), None),
    "pooled non-contiguous": lambda: (np.empty((2, 4, 3, 6), np.float32)[..., ::2], None),
    "pooled fortran": lambda: (np.empty(P_SHAPE, np.float32, order="F"), None),
    "pooled read-only": lambda: (_read_only(P_SHAPE, np.float32), None),
    "pooled a list": lambda: (np.empty(P_SHAPE, np.float32).tolist(), None),
    "codes wrong shape": lambda: (None, np.empty((2, 4, 4, 3), np.uint8)),
    "codes int64": lambda: (None, np.empty(P_SHAPE, np.int64)),
    "codes int8": lambda: (None, np.empty(P_SHAPE, np.int8)),
    "codes float32": lambda: (None, np.empty(P_SHAPE, np.float32)),
    "codes non-contiguous": lambda: (None, np.empty((2, 4, 3, 6), np.uint8)[..., ::2]),
    "codes read-only": lambda: (None, _read_only(P_SHAPE, np.uint8)),
    "not a tuple": lambda: np.empty(P_SHAPE, np.float32),
    "tuple of 1": lambda: (np.empty(P_SHAPE, np.float32),),
    "tuple of 3": lambda: (None, None, None),
}


@pytest.mark.parametrize("case", list(BAD_FWD_OUTS))
def test_bad_forward_out_refused(isa, case):
    out = BAD_FWD_OUTS[case]()
    with pytest.raises((TypeError, ValueError), match="out"):
        fastconv.conv2d_relu_maxpool2d(X_OUT, W_OUT, out=out)


def test_refused_out_pair_leaves_the_good_buffer_alone(isa):
    good = np.full(P_SHAPE, 0xFF, np.uint8)
    with pytest.raises((TypeError, ValueError), match="out"):
        fastconv.conv2d_relu_maxpool2d(X_OUT, W_OUT, out=(np.empty((2, 4, 3, 4), np.float32), good))
    assert (good == 0xFF).all(), "codes buffer written although the call was refused"
    good = np.full(P_SHAPE, 7.0, np.float32)
    with pytest.raises((TypeError, ValueError), match="out"):
        fastconv.conv2d_relu_maxpool2d(X_OUT, W_OUT, out=(good, np.empty(P_SHAPE, np.int64)))
    assert (good == 7.0).all(), "pooled buffer written although the call was refused"


BAD_BWD_OUTS = {
    "wrong shape": lambda: np.empty((2, 4, 6, 6), np.float32),
    "pooled shape": lambda: np.empty(P_SHAPE, np.float32),
    "float64": lambda: np.empty(Y_SHAPE, np.float64),
    "non-contiguous": lambda: np.empty((2, 4, 7, 12), np.float32)[..., ::2],
    "fortran": lambda: np.empty(Y_SHAPE, np.float32, order="F"),
    "read-only": lambda: _read_only(Y_SHAPE, np.float32),
    "a list": lambda: np.empty(Y_SHAPE, np.float32).tolist(),
    "a tuple": lambda: (np.empty(Y_SHAPE, np.float32),),
}


@pytest.mark.parametrize("case", list(BAD_BWD_OUTS))
def test_bad_backward_out_refused(isa, case):
    dy = np.ones(P_SHAPE, np.float32)
    codes = np.zeros(P_SHAPE, np.uint8)
    with pytest.raises((TypeError, ValueError), match="out"):
        fastconv.relu_maxpool2d_backward(dy, codes, Y_SHAPE, out=BAD_BWD_OUTS[case]())


def test_out_overlapping_an_input_refused_or_correct(isa, rng):
    """An out that shares memory with an input: refused (ValueError naming out), or else correct."""
    dy = rng.uniform(-1, 1, (1, 2, 4, 4)).astype(np.float32)
    codes = rng.integers(0, 8, dy.shape).astype(np.uint8)
    want = ref.relu_maxpool2d_backward(dy, codes, (1, 2, 8, 8)).astype(np.float32)
    buf = np.zeros(1 * 2 * 8 * 8, np.float32)
    buf[: dy.size] = dy.reshape(-1)
    dy_alias = buf[: dy.size].reshape(dy.shape)
    try:
        got = fastconv.relu_maxpool2d_backward(
            dy_alias, codes, (1, 2, 8, 8), out=buf.reshape(1, 2, 8, 8)
        )
        error = None
    except ValueError as e:
        error = e
    if error is not None:
        assert "out" in str(error)
    else:
        assert_identical(got, want, "dx written over its own dy")


# ----------------------------------------------------------------------------------------------
# errors: exceptions naming the argument, never crashes


def f32(*shape):
    return np.ones(shape, np.float32)


def fused(*args, **kwargs):
    return fastconv.conv2d_relu_maxpool2d(*args, **kwargs)


def bwd(*args, **kwargs):
    return fastconv.relu_maxpool2d_backward(*args, **kwargs)


DY = f32(2, 4, 3, 3)
CODES = np.zeros((2, 4, 3, 3), np.uint8)

FWD_ERRORS = {
    "conv output 1x1": (lambda: fused(f32(1, 1, 3, 3), f32(1, 1, 3, 3)), ValueError, None),
    "conv output 2x1": (lambda: fused(f32(1, 1, 4, 3), f32(1, 1, 3, 3)), ValueError, None),
    "conv output 1x6": (lambda: fused(f32(2, 3, 3, 8), f32(4, 3, 3, 3)), ValueError, None),
    "conv output 1 row (stride)": (
        lambda: fused(f32(1, 2, 4, 9), f32(2, 2, 3, 3), stride=2),
        ValueError,
        None,
    ),
    "input 3-D": (lambda: fused(f32(3, 9, 8), W_OUT), ValueError, "input"),
    "input 5-D": (lambda: fused(f32(1, 2, 3, 9, 8), W_OUT), ValueError, "input"),
    "weight 3-D": (lambda: fused(X_OUT, f32(4, 3, 3)), ValueError, "weight"),
    "channel mismatch": (lambda: fused(X_OUT, f32(4, 2, 3, 3)), ValueError, "weight|channel"),
    "groups does not divide": (
        lambda: fused(X_OUT, f32(4, 1, 3, 3), groups=2),
        ValueError,
        "groups",
    ),
    "bias wrong length": (lambda: fused(X_OUT, W_OUT, f32(5)), ValueError, "bias"),
    "stride 0": (lambda: fused(X_OUT, W_OUT, stride=0), ValueError, "stride"),
    "dilation 0": (lambda: fused(X_OUT, W_OUT, dilation=0), ValueError, "dilation"),
    "padding negative": (lambda: fused(X_OUT, W_OUT, padding=-1), ValueError, "padding"),
    "padding unknown": (lambda: fused(X_OUT, W_OUT, padding="full"), ValueError, "padding"),
    "same with stride 2": (
        lambda: fused(X_OUT, W_OUT, padding="same", stride=2),
        ValueError,
        "same|stride",
    ),
    "kernel larger than input": (
        lambda: fused(f32(1, 1, 4, 4), f32(1, 1, 5, 5)),
        ValueError,
        "kernel|weight",
    ),
    "input of strings": (
        lambda: fused(np.full((1, 1, 4, 4), "a"), W_OUT[:, :1]),
        TypeError,
        "input",
    ),
    "stride a float": (lambda: fused(X_OUT, W_OUT, stride=1.5), TypeError, "stride"),
}

BWD_ERRORS = {
    "code 8": (lambda: bwd(DY, np.full(CODES.shape, 8, np.uint8), Y_SHAPE), ValueError, "codes"),
    "code 255": (
        lambda: bwd(
            DY,
            np.where(np.arange(CODES.size).reshape(CODES.shape) == 17, 255, CODES).astype(np.uint8),
            Y_SHAPE,
        ),
        ValueError,
        "codes",
    ),
    "code 9 in the last element": (
        lambda: bwd(
            DY,
            np.where(np.arange(CODES.size).reshape(CODES.shape) == CODES.size - 1, 9, CODES).astype(
                np.uint8
            ),
            Y_SHAPE,
        ),
        ValueError,
        "codes",
    ),
    "codes int64": (
        lambda: bwd(DY, CODES.astype(np.int64), Y_SHAPE),
        (TypeError, ValueError),
        "codes",
    ),
    "codes int8": (
        lambda: bwd(DY, CODES.astype(np.int8), Y_SHAPE),
        (TypeError, ValueError),
        "codes",
    ),
    "codes float32": (
        lambda: bwd(DY, CODES.astype(np.float32), Y_SHAPE),
        (TypeError, ValueError),
        "codes",
    ),
    "codes shape": (
        lambda: bwd(DY, np.zeros((2, 4, 3, 2), np.uint8), Y_SHAPE),
        ValueError,
        "codes|grad_output",
    ),
    "codes 3-D": (lambda: bwd(DY, CODES[0], Y_SHAPE), ValueError, "codes|grad_output"),
    "grad_output 3-D": (lambda: bwd(DY[0], CODES, Y_SHAPE), ValueError, "grad_output"),
    "grad_output 5-D": (
        lambda: bwd(DY[None], CODES[None], Y_SHAPE),
        ValueError,
        "grad_output|codes",
    ),
    "H // 2 != PH": (lambda: bwd(DY, CODES, (2, 4, 8, 6)), ValueError, "input_shape"),
    "H // 2 != PH (smaller)": (lambda: bwd(DY, CODES, (2, 4, 5, 6)), ValueError, "input_shape"),
    "W // 2 != PW": (lambda: bwd(DY, CODES, (2, 4, 7, 9)), ValueError, "input_shape"),
    "N differs": (lambda: bwd(DY, CODES, (3, 4, 7, 6)), ValueError, "input_shape|grad_output"),
    "C differs": (lambda: bwd(DY, CODES, (2, 5, 7, 6)), ValueError, "input_shape|grad_output"),
    "input_shape 3 entries": (lambda: bwd(DY, CODES, (4, 7, 6)), ValueError, "input_shape"),
    "input_shape 5 entries": (lambda: bwd(DY, CODES, (1, 2, 4, 7, 6)), ValueError, "input_shape"),
    "input_shape negative": (lambda: bwd(DY, CODES, (2, 4, -7, 6)), ValueError, "input_shape"),
    "input_shape not a sequence": (
        lambda: bwd(DY, CODES, 7),
        (TypeError, ValueError),
        "input_shape",
    ),
}


@pytest.mark.parametrize("case", list(FWD_ERRORS))
def test_forward_errors(isa, case):
    call, exc, match = FWD_ERRORS[case]
    with pytest.raises(exc, match=match):
        call()


@pytest.mark.parametrize("case", list(BWD_ERRORS))
def test_backward_errors(isa, case):
    call, exc, match = BWD_ERRORS[case]
    with pytest.raises(exc, match=match):
        call()


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(groups=2),
        dict(padding="same", stride=2),
        dict(stride=0),
        dict(padding=(1, -1)),
        dict(dilation=(1, 0)),
        dict(padding="full"),
        dict(stride=1.5),
        dict(groups=True),
    ],
)
def test_conv_argument_errors_same_as_conv2d(kwargs):
    with pytest.raises((TypeError, ValueError)) as conv_error:
        fastconv.conv2d(X_OUT, W_OUT, **kwargs)
    with pytest.raises(conv_error.type):
        fastconv.conv2d_relu_maxpool2d(X_OUT, W_OUT, **kwargs)


def test_errors_leave_the_library_usable(isa, rng):
    for call, exc, _ in list(FWD_ERRORS.values()) + list(BWD_ERRORS.values()):
        with pytest.raises(exc):
            call()
    s = _by_name("fused.c3k20.odd")
    x, w, b = _arrays(rng, s, "normal")
    check_fused(s, x, w, b)


# ----------------------------------------------------------------------------------------------
# threads


@pytest.mark.usefixtures("restore_threads")
@pytest.mark.parametrize(
    "s",
    [
        pytest.param(_by_name(n), id=n)
        for n in ("fashion.conv2@n2", "keras.conv2@n2", "cnn1.conv1@n2", "fused.batch5", "fused.s2")
    ],
)
def test_one_and_two_threads(isa, rng, s):
    ties = _arrays(rng, s, "ties")
    normal = _arrays(rng, s, "normal")
    results = {}
    for threads in (1, 2):
        fastconv.set_num_threads(threads)
        assert fastconv.get_num_threads() == threads
        r = {}
        for kind, (x, w, b) in (("ties", ties), ("normal", normal)):
            pooled, codes, _, idx = check_fused(s, x, w, b)  # fused == unfused at each count
            again = fastconv.conv2d_relu_maxpool2d(x, w, b, **s.kwargs())
            assert_identical(again[0].view(np.uint32), pooled.view(np.uint32), "repeated run")
            assert_identical(again[1], codes, "repeated run codes")
            dy = np.linspace(-1, 1, pooled.size, dtype=np.float32).reshape(pooled.shape)
            dx = check_backward(s, pooled, codes, idx, dy)
            r[kind] = pooled, codes, dx
        results[threads] = r
    # integer inputs: exact sums, so exactly the same at any thread count
    for got, want, name in zip(results[2]["ties"], results[1]["ties"], ("pooled", "codes", "dx")):
        assert_identical(got, want, f"{name} (ties): 2 threads vs 1")
    # continuous inputs: the split may change the summation order (within rounding)
    atol, rtol = conv_tolerance((s.c // s.groups) * s.kernel[0] * s.kernel[1])
    assert_close(
        results[2]["normal"][0],
        results[1]["normal"][0],
        atol,
        rtol,
        "pooled (normal): 2 threads vs 1",
    )


# ----------------------------------------------------------------------------------------------
# conv2d_relu_maxpool2d_bwd_weights: each image's gradient unpooled in the thread's scratch


@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("kind", ["normal", "ties"])
@pytest.mark.parametrize("s", CASES)
def test_fused_weight_gradient_equals_two_step(isa, rng, s, kind, with_bias):
    """Exactly conv2d_bwd_weights of relu_maxpool2d_backward's full-size gradient (same kernel,
    same summation order; only where the image's gradient lives differs)."""
    x, w, b = _arrays(rng, s, kind)
    pooled, codes = fastconv.conv2d_relu_maxpool2d(x, w, b, **s.kwargs())
    dy = rng.uniform(-1, 1, pooled.shape).astype(np.float32)
    y_shape = (s.n, s.k, *s.out_hw)
    dz = fastconv.relu_maxpool2d_backward(dy, codes, y_shape)
    want_w, want_b = fastconv.conv2d_bwd_weights(dz, x, w.shape, with_bias=with_bias, **s.kwargs())
    got_w, got_b = fastconv.conv2d_relu_maxpool2d_bwd_weights(
        dy, codes, x, w.shape, with_bias=with_bias, **s.kwargs()
    )
    assert_identical(got_w, want_w, f"{s.name}: grad_weight")
    if with_bias:
        assert_identical(got_b, want_b, f"{s.name}: grad_bias")
    else:
        assert got_b is None


@pytest.mark.parametrize("kind", ["normal", "ties"])
@pytest.mark.parametrize("s", CASES)
def test_fused_data_gradient_equals_two_step(isa, rng, s, kind):
    """conv2d_relu_maxpool2d_bwd_data == conv2d_bwd_data of the full-size gradient, exactly."""
    x, w, b = _arrays(rng, s, kind)
    pooled, codes = fastconv.conv2d_relu_maxpool2d(x, w, b, **s.kwargs())
    dy = rng.uniform(-1, 1, pooled.shape).astype(np.float32)
    dz = fastconv.relu_maxpool2d_backward(dy, codes, (s.n, s.k, *s.out_hw))
    want = fastconv.conv2d_bwd_data(dz, w, s.x_shape, **s.kwargs())
    got = fastconv.conv2d_relu_maxpool2d_bwd_data(dy, codes, w, s.x_shape, **s.kwargs())
    assert_identical(got, want, f"{s.name}: grad_input")


@pytest.mark.parametrize("s", STRIDE1[:12])
def test_fused_data_gradient_forced_variants(rng, s):
    """Every bwd_data algorithm that can run s on the best CPU path, forced: the fused gradient
    equals the two-step one exactly."""
    best = "avx512" if "avx512" in fastconv.cpu_isas() else fastconv.get_cpu_isa()
    with cpu_isa(best):
        for algo in fastconv.conv2d_algos("bwd_data", s.x_shape, s.w_shape, **s.kwargs()):
            with conv_algo("bwd_data", algo):
                test_fused_data_gradient_equals_two_step(best, rng, s, "ties")


def test_fused_data_gradient_errors(rng):
    x_shape, w = (2, 3, 9, 8), np.ones((4, 3, 3, 3), np.float32)
    dy = rng.uniform(-1, 1, (2, 4, 3, 3)).astype(np.float32)
    codes = rng.integers(0, 8, (2, 4, 3, 3)).astype(np.uint8)
    out = _poisoned(x_shape)
    assert fastconv.conv2d_relu_maxpool2d_bwd_data(dy, codes, w, x_shape, out=out) is out
    with pytest.raises(ValueError, match="grad_output"):
        fastconv.conv2d_relu_maxpool2d_bwd_data(dy[:, :3], codes, w, x_shape)
    with pytest.raises(ValueError, match="codes"):
        fastconv.conv2d_relu_maxpool2d_bwd_data(dy, codes[..., :2], w, x_shape)
    bad = codes.copy()
    bad[0, 0, 0, 0] = 200
    with pytest.raises(ValueError, match="codes"):
        fastconv.conv2d_relu_maxpool2d_bwd_data(dy, bad, w, x_shape)
    with pytest.raises(ValueError, match="out"):
        fastconv.conv2d_relu_maxpool2d_bwd_data(dy, codes, w, x_shape, out=out[:1])


def test_fused_weight_gradient_vs_reference(rng):
    s = _by_name(REF_NAMES[0])
    x, w, b = _arrays(rng, s, "normal")
    pooled, codes = fastconv.conv2d_relu_maxpool2d(x, w, b, **s.kwargs())
    dy = rng.uniform(-1, 1, pooled.shape).astype(np.float32)
    got_w, got_b = fastconv.conv2d_relu_maxpool2d_bwd_weights(dy, codes, x, w.shape, **s.kwargs())
    dz = ref.relu_maxpool2d_backward(dy, codes, (s.n, s.k, *s.out_hw))
    want_w, want_b = ref.conv2d_bwd_weights(dz, x, w.shape, **s.kwargs())
    atol, rtol = conv_tolerance(s.n * s.out_hw[0] * s.out_hw[1])
    assert_close(got_w, want_w, atol, rtol, "grad_weight vs reference")
    assert_close(got_b, want_b, atol, rtol, "grad_bias vs reference")


def test_fused_weight_gradient_out_and_errors(rng):
    x = rng.uniform(-1, 1, (2, 3, 9, 8)).astype(np.float32)  # 3x3 valid: conv 7x6 -> pooled 3x3
    w_shape = (4, 3, 3, 3)
    dy = rng.uniform(-1, 1, (2, 4, 3, 3)).astype(np.float32)
    codes = rng.integers(0, 8, (2, 4, 3, 3)).astype(np.uint8)
    ow, ob = _poisoned(w_shape), _poisoned((4,))
    rw, rb = fastconv.conv2d_relu_maxpool2d_bwd_weights(dy, codes, x, w_shape, out=(ow, ob))
    assert rw is ow
    assert rb is ob
    want = fastconv.conv2d_relu_maxpool2d_bwd_weights(dy, codes, x, w_shape)
    assert_identical(ow, want[0], "out grad_weight")
    assert_identical(ob, want[1], "out grad_bias")
    with pytest.raises(ValueError, match="grad_output"):
        fastconv.conv2d_relu_maxpool2d_bwd_weights(dy[:, :, :2], codes, x, w_shape)
    with pytest.raises(ValueError, match="codes"):
        fastconv.conv2d_relu_maxpool2d_bwd_weights(dy, codes[:1], x, w_shape)
    with pytest.raises(TypeError, match="codes"):
        fastconv.conv2d_relu_maxpool2d_bwd_weights(dy, codes.astype(np.int64), x, w_shape)
    bad = codes.copy()
    bad[1, 2, 0, 1] = 9
    with pytest.raises(ValueError, match="codes"):
        fastconv.conv2d_relu_maxpool2d_bwd_weights(dy, bad, x, w_shape)
    with pytest.raises(ValueError, match="out"):
        fastconv.conv2d_relu_maxpool2d_bwd_weights(dy, codes, x, w_shape, out=(ow[:2], None))
    with pytest.raises(ValueError, match="2x2"):
        fastconv.conv2d_relu_maxpool2d_bwd_weights(
            dy[:, :, :0, :0], codes[:, :, :0, :0], x[:, :, :3, :3], w_shape, padding=0
        )
