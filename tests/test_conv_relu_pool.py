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
from conftest import (
    assert_close,
    assert_identical,
    conv_algo,
    conv_tolerance,
    cpu_isa,
)
from fastconv import reference as ref
from fused_cases import (
    CASES,
    DEAD,
    REF_CASES,
    REF_NAMES,
    STRIDE1,
    _arrays,
    _by_name,
    _exact_sums_for_ties,  # noqa: F401  (autouse fixture: Winograd off for the "ties" inputs)
    _poisoned,
    check_fused,
    check_vs_reference,
    codes_from_indices,
)

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


def test_fused_data_gradient_image_lanes(rng):
    """The AVX2 images-in-lanes bwd_data (its groups unpool each image's gradient on their own):
    lenet.conv2 on 9 images (a whole group and a one-image group), fused == two-step exactly."""
    if "avx2" not in fastconv.cpu_isas():
        pytest.skip("this CPU has no AVX2")
    s = dataclasses.replace(_by_name("lenet.conv2@n2"), n=9)
    with cpu_isa("avx2"), conv_algo("bwd_data", "winograd_images"):
        test_fused_data_gradient_equals_two_step("avx2", rng, s, "normal")


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
