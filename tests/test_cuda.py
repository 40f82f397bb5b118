"""CUDA kernels against the float64 NumPy reference, the CPU kernels and (if installed) cuDNN.

Every test here is marked `gpu`: conftest skips it, with the reason, when fastconv was built
without CUDA, CuPy is missing or no device is visible — it never passes vacuously. On a GPU machine:

    FASTCONV_CUDA=ON pip install -e '.[test,cuda]' && python -m pytest -q tests/test_cuda.py
    compute-sanitizer --tool memcheck python -m pytest -q -x tests/test_cuda.py -k "not slow"

Coverage: every problem of the CPU catalog (tests/shapes.py: tails, edges, kernels 1x1..11x11,
strides 1-4, explicit/same/valid/asymmetric padding, dilation, groups incl. depthwise, the
NETWORKS.md layers) for each conv pass and each kernel family ('direct', 'tiled', and 'auto' which
picks by shape), the forced-only families ('tiled128') on a catalog subset; max-pool values and
indices exactly (ties and NaN included); determinism; the
array contract (CuPy outputs on the input's device, CuPy's current stream, dtype conversion,
non-contiguous inputs, errors). Debug poison (conftest, autouse) makes the CUDA entries fill their
outputs with NaN first, so an element a kernel never writes fails the comparison.
"""

from __future__ import annotations

import fastconv
import numpy as np
import pytest
import shapes
from conftest import assert_close, assert_identical, conv_tolerance
from fastconv import _cuda_ops
from fastconv import reference as ref

pytestmark = pytest.mark.gpu

ALGOS = (None, "direct", "tiled")
PASSES = ("fwd", "bwd_data", "bwd_weights")
CONV_CASES = [pytest.param(s, id=s.name) for s in shapes.CONV_TEST] + [
    pytest.param(s, id=s.name, marks=pytest.mark.slow) for s in shapes.CONV_BIG_TEST
]
POOL_CASES = [pytest.param(s, id=s.name) for s in shapes.POOL_TEST]


@pytest.fixture
def cp():
    import cupy

    return cupy


@pytest.fixture(params=ALGOS, ids=["auto", "direct", "tiled"])
def algo(request):
    """Every conv pass on the CUDA kernel family chosen by shape, or forced to one."""
    previous = {p: _cuda_ops.get_conv_algo(p) for p in PASSES}
    for p in PASSES:
        _cuda_ops.set_conv_algo(p, request.param)
    try:
        yield request.param
    finally:
        for p, name in previous.items():
            _cuda_ops.set_conv_algo(p, name)


def _tolerances(s):
    oh, ow = s.out_hw
    kh, kw = s.kernel
    return {
        "y": conv_tolerance((s.c // s.groups) * kh * kw),
        "dx": conv_tolerance((s.k // s.groups) * kh * kw),
        "dw": conv_tolerance(s.n * oh * ow),
        "db": conv_tolerance(s.n * oh * ow),
    }


def _host(cp, a, dev=0):
    assert isinstance(a, cp.ndarray), type(a)
    assert a.device.id == dev
    return cp.asnumpy(a)


# ----------------------------------------------------------------------------------------------
# conv2d vs the reference, every catalog problem x kernel family


@pytest.mark.parametrize("s", CONV_CASES)
def test_conv2d_fwd_cuda(cp, algo, rng, s):
    x, w, b, _ = s.random_arrays(rng)
    y = fastconv.conv2d(
        cp.asarray(x), cp.asarray(w), None if b is None else cp.asarray(b), **s.kwargs()
    )
    assert y.dtype == cp.float32
    assert y.shape == s.y_shape
    expected = ref.conv2d_fwd(x, w, b, **s.kwargs())
    assert_close(_host(cp, y), expected, *_tolerances(s)["y"], f"{s.name} [{algo}]: conv2d_fwd y")
    y = fastconv.conv2d(
        cp.asarray(x),
        cp.asarray(w),
        None if b is None else cp.asarray(b),
        **s.kwargs(),
        activation="relu",
    )
    assert_close(
        _host(cp, y), np.maximum(expected, 0), *_tolerances(s)["y"], f"{s.name} [{algo}]: relu"
    )


@pytest.mark.parametrize("s", CONV_CASES)
def test_conv2d_backward_cuda(cp, algo, rng, s):
    x, w, _, dy = s.random_arrays(rng)
    dx, dw, db = fastconv.conv2d_backward(
        cp.asarray(dy), cp.asarray(x), cp.asarray(w), **s.kwargs()
    )
    tol = _tolerances(s)
    rdx = ref.conv2d_bwd_data(dy, w, x.shape, **s.kwargs())
    rdw, rdb = ref.conv2d_bwd_weights(dy, x, w.shape, **s.kwargs())
    assert_close(_host(cp, dx), rdx, *tol["dx"], f"{s.name} [{algo}]: conv2d_bwd_data dx")
    assert_close(_host(cp, dw), rdw, *tol["dw"], f"{s.name} [{algo}]: conv2d_bwd_weights dw")
    assert_close(_host(cp, db), rdb, *tol["db"], f"{s.name} [{algo}]: conv2d_bwd_weights db")


@pytest.mark.parametrize(
    "name", ["cnn1.conv2@n2", "keras.conv2@n2", "groups.g3.tails", "strides.s4"]
)
def test_conv2d_cuda_is_deterministic(cp, algo, rng, name):
    s = shapes.conv(name)
    x, w, b, dy = (cp.asarray(a) if a is not None else None for a in s.random_arrays(rng))
    first = (
        fastconv.conv2d(x, w, b, **s.kwargs()),
        *fastconv.conv2d_backward(dy, x, w, **s.kwargs()),
    )
    for _ in range(3):
        again = (
            fastconv.conv2d(x, w, b, **s.kwargs()),
            *fastconv.conv2d_backward(dy, x, w, **s.kwargs()),
        )
        for key, a, b2 in zip(("y", "dx", "dw", "db"), first, again):
            assert_identical(cp.asnumpy(b2), cp.asnumpy(a), f"{name} [{algo}] rerun: {key}")


def test_conv2d_bwd_weights_split_reduction_on_a_long_reduction(cp, rng):
    """A batch big enough that the tiled bwd_weights splits N*OH*OW and sums the partials."""
    s = shapes.conv("fashion.conv2").with_batch(16)
    x, w, _, dy = s.random_arrays(rng)
    previous = _cuda_ops.get_conv_algo("bwd_weights")
    _cuda_ops.set_conv_algo("bwd_weights", "tiled")
    try:
        assert (
            fastconv.conv2d_algo("bwd_weights", s.x_shape, s.w_shape, **s.kwargs(), device="cuda")
            == "tiled"
        )
        dw, db = fastconv.conv2d_bwd_weights(cp.asarray(dy), cp.asarray(x), w.shape, **s.kwargs())
    finally:
        _cuda_ops.set_conv_algo("bwd_weights", previous)
    rdw, rdb = ref.conv2d_bwd_weights(dy, x, w.shape, **s.kwargs())
    tol = _tolerances(s)
    assert_close(cp.asnumpy(dw), rdw, *tol["dw"], "split bwd_weights dw")
    assert_close(cp.asnumpy(db), rdb, *tol["db"], "split bwd_weights db")


# ----------------------------------------------------------------------------------------------
# The families only ever forced (never chosen by shape until GPU timings say where): 'tiled128'
# (128x128 tiles, cp.async pipeline) and 'tf32' (the same on TF32 tensor cores, an explicit opt-in
# of lower precision). A catalog subset with tails in every GEMM dimension,
# strides with empty phases, dilation, groups, depthwise, padding; the big layers marked slow.
# tiled128 sums each output in the order the 64x64 'tiled' kernel does: fwd and bwd_data equal it
# bit for bit (bwd_weights may split its reduction differently).
FAMILY_SHAPES = (
    "tails.c19k23",
    "tails.c33k31.w31",
    "edges.bigbatch",
    "edges.many_k",
    "edges.dil10",
    "kernels.11x11",
    "strides.s3",
    "strides.s3.k2",
    "padding.same_even4x2",
    "padding.pair0x3",
    "dilation.d2.s2",
    "groups.g3.tails",
    "groups.depthwise_5x5_s2",
    "groups.g2.dil2.s2",
    "cnn1.conv2@n2",
    "keras.conv2@n2",
)
FAMILY_CASES = [pytest.param(shapes.conv(n), id=n) for n in FAMILY_SHAPES] + [
    pytest.param(s, id=s.name, marks=pytest.mark.slow) for s in shapes.CONV_BIG_TEST
]


def _forced(family, fn):
    """fn() with every conv pass forced to `family`, the previous choice restored after."""
    previous = {p: _cuda_ops.get_conv_algo(p) for p in PASSES}
    for p in PASSES:
        _cuda_ops.set_conv_algo(p, family)
    try:
        return fn()
    finally:
        for p, name in previous.items():
            _cuda_ops.set_conv_algo(p, name)


def _reduction_lengths(s):
    oh, ow = s.out_hw
    kh, kw = s.kernel
    return {
        "y": (s.c // s.groups) * kh * kw,
        "dx": (s.k // s.groups) * kh * kw,
        "dw": s.n * oh * ow,
    }


def _tf32_tolerances(s):
    """TF32 rounds each operand (values in [-1, 1]) to 10 mantissa bits, off by at most 2^-11
    relative: a K-term sum is off by at most K * 2^-10 beyond FP32's own error. db stays FP32."""
    tol = _tolerances(s)
    for key, k in _reduction_lengths(s).items():
        tol[key] = (tol[key][0] + k * 2.0**-10, tol[key][1])
    return tol


def _run_all_passes(cp, s, x, w, b, dy):
    """y, dx, dw, db (host arrays) of one problem through the public API on the GPU."""
    gx, gw = cp.asarray(x), cp.asarray(w)
    y = fastconv.conv2d(gx, gw, None if b is None else cp.asarray(b), **s.kwargs())
    grads = fastconv.conv2d_backward(cp.asarray(dy), gx, gw, **s.kwargs())
    return tuple(cp.asnumpy(a) for a in (y, *grads))


@pytest.mark.parametrize("family", ["tiled128", "tf32"])
@pytest.mark.parametrize("s", FAMILY_CASES)
def test_conv2d_forced_family_backward_cuda(cp, rng, family, s):
    x, w, b, dy = s.random_arrays(rng)

    def run():
        for p in PASSES:
            chosen = fastconv.conv2d_algo(p, s.x_shape, s.w_shape, **s.kwargs(), device="cuda")
            assert chosen == family, (p, chosen)
        return _run_all_passes(cp, s, x, w, b, dy)

    y, dx, dw, db = _forced(family, run)
    tol = _tf32_tolerances(s) if family == "tf32" else _tolerances(s)
    rdw, rdb = ref.conv2d_bwd_weights(dy, x, w.shape, **s.kwargs())
    exact = {
        "y": ref.conv2d_fwd(x, w, b, **s.kwargs()),
        "dx": ref.conv2d_bwd_data(dy, w, x.shape, **s.kwargs()),
        "dw": rdw,
    }
    for key, got in (("y", y), ("dx", dx), ("dw", dw)):
        assert_close(got, exact[key], *tol[key], f"{s.name} [{family}]: {key}")
    assert_close(db, rdb, *tol["db"], f"{s.name} [{family}]: db")
    if family == "tf32":  # typical error: rounding errors of random sign, far below the bound
        for key, got in (("y", y), ("dx", dx), ("dw", dw)):
            k = _reduction_lengths(s)[key]
            rms = float(np.sqrt(np.mean((got.astype(np.float64) - exact[key]) ** 2)))
            assert rms <= np.sqrt(k) * 2.0**-11, (s.name, key, rms, k)
    if family == "tiled128":
        ty, tdx, _, _ = _forced("tiled", lambda: _run_all_passes(cp, s, x, w, b, dy))
        assert_identical(y, ty, f"{s.name}: y, tiled128 vs tiled")
        assert_identical(dx, tdx, f"{s.name}: dx, tiled128 vs tiled")
    again = _forced(family, run)  # deterministic: the same bits again
    for key, a, a2 in zip(("y", "dx", "dw", "db"), (y, dx, dw, db), again):
        assert_identical(a2, a, f"{s.name} [{family}] rerun: {key}")


def test_conv2d_cuda_matches_cpu_kernels(cp, rng):
    s = shapes.conv("cnn1.conv2@n2")
    x, w, b, dy = s.random_arrays(rng)
    cpu = (
        fastconv.conv2d(x, w, b, **s.kwargs()),
        *fastconv.conv2d_backward(dy, x, w, **s.kwargs()),
    )
    gx, gw, gb, gdy = cp.asarray(x), cp.asarray(w), cp.asarray(b), cp.asarray(dy)
    gpu = (
        fastconv.conv2d(gx, gw, gb, **s.kwargs()),
        *fastconv.conv2d_backward(gdy, gx, gw, **s.kwargs()),
    )
    tol = _tolerances(s)
    for key, c, g in zip(("y", "dx", "dw", "db"), cpu, gpu):
        assert_close(cp.asnumpy(g), c, 2 * tol[key][0], 2 * tol[key][1], f"cuda vs cpu: {key}")


def test_conv2d_cuda_known_filters_exact(cp):
    x = cp.full((3, 1, 9, 17), 0.296875, dtype=cp.float32)
    edge = cp.asarray(
        np.array([[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]], np.float32).reshape(1, 1, 3, 3)
    )
    y = fastconv.conv2d(x, edge, padding="valid")
    assert_identical(
        cp.asnumpy(y), np.zeros((3, 1, 7, 15), np.float32), "edge filter on a uniform image"
    )


# ----------------------------------------------------------------------------------------------
# max-pool: exact values and indices


@pytest.mark.parametrize("s", POOL_CASES)
def test_maxpool2d_cuda(cp, rng, s):
    # Values on a coarse grid, so ties are common and the first-maximum rule is exercised.
    x = (rng.integers(-4, 5, s.x_shape) / 4).astype(np.float32)
    y, idx = fastconv.max_pool2d(cp.asarray(x), **s.kwargs(), return_indices=True)
    ry, ridx = ref.maxpool2d_fwd(x, **s.kwargs())
    assert idx.dtype == cp.int64
    assert_identical(_host(cp, y), ry.astype(np.float32), f"{s.name}: y")
    assert_identical(_host(cp, idx), ridx, f"{s.name}: indices")

    dy = rng.uniform(-1, 1, s.y_shape).astype(np.float32)
    cpu_dx = fastconv.max_pool2d_backward(dy, ridx, x.shape)
    dx = fastconv.max_pool2d_backward(cp.asarray(dy), idx, x.shape)  # atomic scatter
    assert_close(
        _host(cp, dx), ref.maxpool2d_bwd(dy, ridx, x.shape), 1e-6, 1e-6, f"{s.name}: dx (scatter)"
    )
    stride = s.stride or s.kernel
    if stride[0] >= s.kernel[0] and stride[1] >= s.kernel[1]:
        assert_identical(cp.asnumpy(dx), cpu_dx, f"{s.name}: dx (scatter, non-overlapping: exact)")
    gather = _cuda_ops.maxpool2d_bwd(
        cp.asarray(dy),
        idx,
        x.shape,
        kernel=s.kernel,
        stride=stride,
        pad_mode="explicit",
        pad=s.padding,
    )
    assert_identical(_host(cp, gather), cpu_dx, f"{s.name}: dx (gather: bit-identical to the CPU)")


def test_maxpool2d_cuda_ties_and_nan(cp):
    x = np.zeros((1, 2, 4, 4), np.float32)
    x[0, 0] = [[1, 3, 3, 0], [3, 2, 0, 0], [5, 5, 1, 1], [5, 4, 1, 1]]
    x[0, 1] = [
        [np.nan, 1, 2, np.nan],
        [9, np.nan, 3, 4],
        [1, 1, -np.inf, -np.inf],
        [1, 1, -np.inf, -np.inf],
    ]
    y, idx = fastconv.max_pool2d(cp.asarray(x), 2, return_indices=True)
    cy, cidx = fastconv.max_pool2d(x, 2, return_indices=True)
    assert_identical(cp.asnumpy(y), cy, "ties/NaN: y vs CPU")
    assert_identical(cp.asnumpy(idx), cidx, "ties/NaN: indices vs CPU")
    assert cp.asnumpy(idx)[0, 0].tolist() == [[1, 2], [8, 10]]  # first maximum in row-major order
    assert cp.asnumpy(idx)[0, 1].tolist() == [
        [0, 3],
        [8, 10],
    ]  # first NaN wins; -inf window picks its first
    # overlapping windows (3x3 / stride 1) and padding
    y, idx = fastconv.max_pool2d(cp.asarray(x), 3, stride=1, padding=1, return_indices=True)
    cy, cidx = fastconv.max_pool2d(x, 3, stride=1, padding=1, return_indices=True)
    assert_identical(cp.asnumpy(y), cy, "3x3/s1/p1: y vs CPU")
    assert_identical(cp.asnumpy(idx), cidx, "3x3/s1/p1: indices vs CPU")


def test_maxpool2d_bwd_cuda_rejects_bad_indices(cp):
    dy = cp.ones((1, 1, 2, 2), cp.float32)
    idx = cp.asarray(np.array([0, 1, 2, 16]).reshape(1, 1, 2, 2))
    with pytest.raises(ValueError, match=r"indices must lie in \[0, H\*W\)"):
        fastconv.max_pool2d_backward(dy, idx, (1, 1, 4, 4))
    with pytest.raises(TypeError, match="int64"):
        fastconv.max_pool2d_backward(dy, idx.astype(cp.int32), (1, 1, 4, 4))


# ----------------------------------------------------------------------------------------------
# the array contract


def test_outputs_are_cupy_on_the_current_stream(cp, rng):
    s = shapes.conv("kernels.3x3")
    x, w, b, _ = s.random_arrays(rng)
    gx, gw, gb = cp.asarray(x), cp.asarray(w), cp.asarray(b)
    cp.cuda.Device().synchronize()
    stream = cp.cuda.Stream(non_blocking=True)
    with stream:
        y = fastconv.conv2d(gx, gw, gb, **s.kwargs())
        stream.synchronize()
    assert_close(
        cp.asnumpy(y),
        ref.conv2d_fwd(x, w, b, **s.kwargs()),
        *_tolerances(s)["y"],
        "on a side stream",
    )


def test_dtype_and_contiguity_conversions(cp, rng):
    x = rng.uniform(-1, 1, (2, 3, 9, 10))
    w = rng.uniform(-1, 1, (4, 3, 3, 3))
    expected = ref.conv2d_fwd(x.astype(np.float32), w.astype(np.float32))
    y = fastconv.conv2d(cp.asarray(x), cp.asarray(w))  # float64 in: converted
    assert y.dtype == cp.float32
    assert_close(cp.asnumpy(y), expected, *conv_tolerance(27), "float64 input")
    gx = cp.asarray(np.ascontiguousarray(x.astype(np.float32).transpose(0, 1, 3, 2))).transpose(
        0, 1, 3, 2
    )
    assert not gx.flags.c_contiguous
    before = gx.copy()
    y = fastconv.conv2d(gx, cp.asarray(w, dtype=cp.float32))
    assert_close(cp.asnumpy(y), expected, *conv_tolerance(27), "non-contiguous input")
    assert_identical(cp.asnumpy(gx), cp.asnumpy(before), "input not modified")
    with pytest.raises(TypeError, match="real float or integer"):
        fastconv.conv2d(cp.asarray(x).astype(cp.complex64), cp.asarray(w))


def test_errors_match_the_cpu(cp):
    x = cp.ones((1, 4, 8, 8), cp.float32)
    with pytest.raises(ValueError, match="groups=3 must divide"):
        fastconv.conv2d(x, cp.ones((6, 2, 3, 3), cp.float32), groups=3)
    with pytest.raises(ValueError, match="must be 4-D"):
        fastconv.conv2d(cp.ones((4, 8, 8), cp.float32), cp.ones((6, 4, 3, 3), cp.float32))
    with pytest.raises(TypeError, match="same device"):
        fastconv.conv2d(x, np.ones((6, 4, 3, 3), np.float32))
    with pytest.raises(ValueError, match="bias must have shape"):
        fastconv.conv2d(x, cp.ones((6, 4, 3, 3), cp.float32), cp.ones(5, cp.float32))


def test_arrays_on_two_devices_are_rejected(cp):
    if cp.cuda.runtime.getDeviceCount() < 2:
        pytest.skip("needs two GPUs")
    x = cp.ones((1, 4, 8, 8), cp.float32)
    with cp.cuda.Device(1):
        w = cp.ones((6, 4, 3, 3), cp.float32)
    with pytest.raises(ValueError, match="GPU 1 but the input is on GPU 0"):
        fastconv.conv2d(x, w)


def test_empty_batch(cp):
    x = cp.ones((0, 3, 8, 8), cp.float32)
    w = cp.ones((4, 3, 3, 3), cp.float32)
    assert fastconv.conv2d(x, w).shape == (0, 4, 6, 6)
    dw, db = fastconv.conv2d_bwd_weights(cp.ones((0, 4, 6, 6), cp.float32), x, w.shape)
    assert not cp.asnumpy(dw).any()
    assert not cp.asnumpy(db).any()


def test_info_names_the_gpu():
    info = fastconv.info()
    assert info["cuda_built"] is True
    assert not info["cuda_device"].startswith("unavailable"), info["cuda_device"]


# ----------------------------------------------------------------------------------------------
# cuDNN (PyTorch) as a second opinion


@pytest.mark.parametrize(
    "s",
    [
        pytest.param(s, id=s.name)
        for s in shapes.CONV_TEST
        if s.padding != "same" or all(k % 2 for k in s.kernel)
    ],
)
def test_conv2d_cuda_vs_cudnn(cp, rng, s):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("PyTorch has no CUDA device")
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    x, w, b, dy = s.random_arrays(rng)
    tx = torch.tensor(x, device="cuda", requires_grad=True)
    tw = torch.tensor(w, device="cuda", requires_grad=True)
    tb = torch.tensor(b, device="cuda", requires_grad=True) if b is not None else None
    ty = torch.nn.functional.conv2d(
        tx, tw, tb, stride=s.stride, padding=s.padding, dilation=s.dilation, groups=s.groups
    )
    ty.backward(torch.tensor(dy, device="cuda"))
    torch.cuda.synchronize()
    gx, gw, gdy = cp.asarray(x), cp.asarray(w), cp.asarray(dy)
    y = fastconv.conv2d(gx, gw, None if b is None else cp.asarray(b), **s.kwargs())
    dx, dw, db = fastconv.conv2d_backward(gdy, gx, gw, **s.kwargs())
    tol = _tolerances(s)
    assert_close(cp.asnumpy(y), ty.detach().cpu().numpy(), *tol["y"], f"{s.name}: y vs cuDNN")
    assert_close(cp.asnumpy(dx), tx.grad.cpu().numpy(), *tol["dx"], f"{s.name}: dx vs cuDNN")
    assert_close(cp.asnumpy(dw), tw.grad.cpu().numpy(), *tol["dw"], f"{s.name}: dw vs cuDNN")
