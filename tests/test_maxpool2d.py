"""Native max_pool2d / max_pool2d_backward against the reference, exactly, on every CPU path.

Max-pool does no arithmetic, so values and argmax indices must match the reference bit for bit
(STYLE.md item 6), including the tie rule (first maximum in row-major window order), NaN (the first
NaN in the window wins) and padding (a padded cell never wins). The inputs come in three kinds:
"normal" (continuous), "ties" (small integers, so most windows hold several equal maxima) and
"nan" (normal with ~15% NaN). Backward scatters through the indices; overlapping windows add up.
"""

from __future__ import annotations

import dataclasses

import fastconv
import numpy as np
import pytest
import shapes
from conftest import assert_close, assert_identical
from fastconv import reference as ref

CASES = [pytest.param(s, id=s.name) for s in shapes.POOL_TEST]
BIG_CASES = [
    pytest.param(s.with_batch(1), id=f"{s.name}@n1") for s in shapes.POOL_LAYERS if s.bench_only
] + [
    pytest.param(s, id=f"{s.name}@n{s.n}", marks=pytest.mark.slow)
    for s in shapes.POOL_LAYERS
    if not s.bench_only
]


def _input(rng, shape, kind):
    if kind == "normal":
        return rng.standard_normal(shape).astype(np.float32)
    if kind == "ties":
        return rng.integers(-2, 3, shape).astype(np.float32)
    if kind == "nan":
        x = rng.standard_normal(shape).astype(np.float32)
        x[rng.random(shape) < 0.15] = np.nan
        return x
    if kind == "negative":
        return -1 - rng.random(shape).astype(np.float32)
    raise AssertionError(kind)


def check_pool(s, x):
    y, idx = fastconv.max_pool2d(x, **s.kwargs(), return_indices=True)
    assert y.dtype == np.float32
    assert idx.dtype == np.int64
    assert y.shape == idx.shape == s.y_shape
    ry, ridx = ref.maxpool2d_fwd(x, **s.kwargs())
    assert_identical(idx, ridx, f"{s.name}: maxpool2d_fwd indices")
    assert_identical(y, ry.astype(np.float32), f"{s.name}: maxpool2d_fwd values")
    return y, idx


@pytest.mark.parametrize("kind", ["normal", "ties", "nan"])
@pytest.mark.parametrize("s", CASES + BIG_CASES)
def test_maxpool2d_fwd_exact(isa, rng, s, kind):
    check_pool(s, _input(rng, s.x_shape, kind))


@pytest.mark.parametrize("s", CASES)
def test_maxpool2d_without_indices(isa, rng, s):
    x = _input(rng, s.x_shape, "ties")
    y = fastconv.max_pool2d(x, **s.kwargs())
    assert isinstance(y, np.ndarray)
    assert_identical(
        y, ref.maxpool2d_fwd(x, **s.kwargs())[0].astype(np.float32), f"{s.name}: values"
    )


@pytest.mark.parametrize("kind", ["normal", "ties"])
@pytest.mark.parametrize("s", CASES)
def test_maxpool2d_bwd(isa, rng, s, kind):
    x = _input(rng, s.x_shape, kind)
    _, idx = check_pool(s, x)
    dy = rng.uniform(-1, 1, s.y_shape).astype(np.float32)
    dx = fastconv.max_pool2d_backward(dy, idx, x.shape)
    assert dx.dtype == np.float32
    assert dx.shape == s.x_shape
    # overlapping windows add several float32 gradients into one cell, in some order: allow rounding
    (kh, kw), (sh, sw) = s.kernel, s.stride or s.kernel
    overlap = -(-kh // sh) * -(-kw // sw)
    assert_close(
        dx,
        ref.maxpool2d_bwd(dy, idx, x.shape),
        1e-7 * overlap,
        1e-6 * overlap,
        f"{s.name}: maxpool2d_bwd",
    )


@pytest.mark.parametrize(
    "s",
    [
        pytest.param(shapes.pool(n), id=n)
        for n in ("pool.3x3s2.p1", "pool.k5.p2", "pool.nonsq", "pool.3x3s1.same")
    ],
)
def test_padded_cells_never_win(isa, rng, s):
    """All-negative input: a zero from the padding would be the max if padding could win."""
    y, idx = check_pool(s, _input(rng, s.x_shape, "negative"))
    assert (y < 0).all()
    x = np.full(s.x_shape, -np.inf, np.float32)  # even against -inf the winner is a real cell
    y, idx = check_pool(s, x)
    assert (y == -np.inf).all()


def test_ties_and_nan_known_answers(isa):
    x = np.zeros((1, 1, 2, 4), np.float32)
    x[0, 0, 1, 0] = x[0, 0, 0, 1] = 3.0  # window 0: (0, 1) comes before (1, 0)
    x[0, 0, 1, 2] = x[0, 0, 0, 3] = np.nan  # window 1: the first NaN, (0, 3), wins
    x[0, 0, 0, 2] = 9.0
    y, idx = fastconv.max_pool2d(x, 2, return_indices=True)
    assert idx[0, 0].tolist() == [[1, 3]]
    assert y[0, 0, 0, 0] == 3.0
    assert np.isnan(y[0, 0, 0, 1])
    _, idx = fastconv.max_pool2d(np.full((1, 1, 5, 5), 7.0, np.float32), 3, 2, return_indices=True)
    assert idx[0, 0].tolist() == [[0, 2], [10, 12]]


def test_overlapping_windows_accumulate(isa):
    x = np.zeros((1, 2, 5, 5), np.float32)
    x[:, :, 2, 2] = 1.0  # the max of all four overlapping 3x3/s2 windows
    y, idx = fastconv.max_pool2d(x, 3, 2, return_indices=True)
    assert (idx == 12).all()
    dx = fastconv.max_pool2d_backward(
        np.array([[[[1, 2], [3, 4]], [[5, 6], [7, 8]]]], np.float32), idx, x.shape
    )
    expected = np.zeros_like(x)
    expected[0, 0, 2, 2], expected[0, 1, 2, 2] = 10.0, 26.0
    assert_identical(dx, expected, "accumulated gradient")


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("ow", [1, 2, 3, 4, 5, 7, 8, 9, 12, 16, 17])
def test_2x2_backward_every_row_width(isa, rng, restore_threads, ow, threads):
    """The 2x2/2 backward on every output-row width (the tile writer takes rows of 8+ windows,
    zero-fill + scatter the narrower), against the reference: many planes, one plane, and
    floor-mode remainders. A plane with an index outside its own tile, in the middle of the
    batch, takes the validating scatter while its neighbours keep the tile writer."""
    fastconv.set_num_threads(threads)
    oh = 3 + ow % 4
    even, odd = (2 * oh, 2 * ow), (2 * oh + 1, 2 * ow + 1)
    for shape in [(3, 41, *even), (1, 1, *even), (2, 3, *odd)]:
        x = _input(rng, shape, "ties")
        _, idx = fastconv.max_pool2d(x, 2, return_indices=True)
        dy = rng.uniform(-1, 1, idx.shape).astype(np.float32)
        assert_identical(
            fastconv.max_pool2d_backward(dy, idx, shape),
            ref.maxpool2d_bwd(dy, idx, shape).astype(np.float32),
            f"dx {shape}",
        )
        foreign = idx.copy()
        p = shape[1] // 2
        foreign[0, p, -1, -1] = foreign[0, p, 0, 0]  # two windows into one cell: they add up
        assert_identical(
            fastconv.max_pool2d_backward(dy, foreign, shape),
            ref.maxpool2d_bwd(dy, foreign, shape).astype(np.float32),
            f"dx {shape}, a foreign index in plane {p}",
        )
        for far in (2**32, -(2**32)):  # the right low 32 bits, out of range as a whole
            wrapped = idx.copy()
            wrapped[0, p, 0, 0] += far
            with pytest.raises(ValueError, match="indices"):
                fastconv.max_pool2d_backward(dy, wrapped, shape)


def test_inputs_not_modified_and_noncontiguous(isa, rng):
    s = shapes.pool("pool.3x3s2.p1")
    x = _input(rng, s.x_shape, "ties")
    x_copy = x.copy()
    big = np.empty((s.n, s.h, s.w, s.c), np.float32).transpose(
        0, 3, 1, 2
    )  # NHWC buffer seen as NCHW
    big[...] = x
    xr = np.empty(s.x_shape, np.float32)[..., ::-1]
    xr[...] = x
    y, idx = check_pool(s, x)
    for view in (big, xr, np.asfortranarray(x)):
        y2, idx2 = fastconv.max_pool2d(view, **s.kwargs(), return_indices=True)
        assert_identical(y2, y, "values from a non-contiguous input")
        assert_identical(idx2, idx, "indices from a non-contiguous input")
    dy = rng.uniform(-1, 1, s.y_shape).astype(np.float32)
    idx_copy, dy_copy = idx.copy(), dy.copy()
    dx = fastconv.max_pool2d_backward(dy, idx, x.shape)
    dy_view = np.empty(s.y_shape[::-1], np.float32).T
    dy_view[...] = dy
    idx_view = np.empty(s.y_shape[::-1], np.int64).T
    idx_view[...] = idx
    assert_identical(
        fastconv.max_pool2d_backward(dy_view, idx_view, x.shape),
        dx,
        "dx from non-contiguous dy/indices",
    )
    assert_identical(x, x_copy, "x after max_pool2d")
    assert_identical(idx, idx_copy, "indices after max_pool2d_backward")
    assert_identical(dy, dy_copy, "dy after max_pool2d_backward")
    assert not np.shares_memory(dx, dy)


@pytest.mark.parametrize("dtype", [np.float64, np.int32, np.uint8])
def test_dtype_conversion(isa, rng, dtype):
    x = rng.integers(0, 50, (2, 3, 7, 6)).astype(dtype)
    y, idx = fastconv.max_pool2d(x, 2, return_indices=True)
    assert y.dtype == np.float32
    ry, ridx = ref.maxpool2d_fwd(x, 2)
    assert_identical(y, ry.astype(np.float32), "values")
    assert_identical(idx, ridx, "indices")
    dx = fastconv.max_pool2d_backward(np.ones(y.shape, dtype), idx, x.shape)
    assert dx.dtype == np.float32
    assert_identical(dx, ref.maxpool2d_bwd(np.ones(y.shape), idx, x.shape).astype(np.float32), "dx")


def test_int32_indices_accepted_or_rejected_cleanly(isa, rng):
    x = rng.standard_normal((1, 2, 4, 4)).astype(np.float32)
    _, idx = fastconv.max_pool2d(x, 2, return_indices=True)
    dy = np.ones((1, 2, 2, 2), np.float32)
    try:
        dx = fastconv.max_pool2d_backward(dy, idx.astype(np.int32), x.shape)
        error = None
    except (TypeError, ValueError) as e:
        error = e
    if error is not None:
        assert "indices" in str(error)
    else:
        want = fastconv.max_pool2d_backward(dy, idx, x.shape)
        assert_identical(dx, want, "dx from int32 indices")


def test_zero_batch(isa):
    s = dataclasses.replace(shapes.pool("pool.3x3s2.p1"), n=0)
    x = np.zeros(s.x_shape, np.float32)
    y, idx = fastconv.max_pool2d(x, **s.kwargs(), return_indices=True)
    assert y.shape == idx.shape == s.y_shape
    assert y.dtype == np.float32
    assert idx.dtype == np.int64
    dx = fastconv.max_pool2d_backward(np.zeros(s.y_shape, np.float32), idx, s.x_shape)
    assert dx.shape == s.x_shape


@pytest.mark.parametrize(
    ("kernel", "stride", "padding"), [(2, None, 0), (3, 2, 1), ((3, 2), (2, 1), (1, 1))]
)
def test_maxpool2d_matches_torch(isa, rng, kernel, stride, padding):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((2, 5, 11, 10)).astype(np.float32)
    tx = torch.tensor(x, requires_grad=True)
    ty, tidx = torch.nn.functional.max_pool2d(tx, kernel, stride, padding, return_indices=True)
    dy = rng.standard_normal(tuple(ty.shape)).astype(np.float32)
    ty.backward(torch.tensor(dy))
    y, idx = fastconv.max_pool2d(x, kernel, stride, padding, return_indices=True)
    assert_identical(y, ty.detach().numpy(), "values vs torch")
    assert_identical(idx, tidx.numpy(), "indices vs torch")
    assert_close(
        fastconv.max_pool2d_backward(dy, idx, x.shape), tx.grad.numpy(), 1e-6, 1e-6, "dx vs torch"
    )


@pytest.mark.gpu
@pytest.mark.parametrize("kind", ["normal", "ties", "nan"])
@pytest.mark.parametrize(
    "s",
    [
        pytest.param(shapes.pool(n), id=n)
        for n in ("pool.2x2.odd", "pool.3x3s2.p1", "pool.tails.c17.w9", "pool.nonsq", "pool.k5.p2")
    ],
)
def test_maxpool2d_cuda(rng, s, kind):
    import cupy

    x = _input(rng, s.x_shape, kind)
    y, idx = fastconv.max_pool2d(cupy.asarray(x), **s.kwargs(), return_indices=True)
    assert isinstance(y, cupy.ndarray)
    ry, ridx = ref.maxpool2d_fwd(x, **s.kwargs())
    assert_identical(cupy.asnumpy(idx), ridx, f"{s.name}: cuda indices")
    assert_identical(cupy.asnumpy(y), ry.astype(np.float32), f"{s.name}: cuda values")
    dy = rng.uniform(-1, 1, s.y_shape).astype(np.float32)
    dx = fastconv.max_pool2d_backward(cupy.asarray(dy), idx, x.shape)
    (kh, kw), (sh, sw) = s.kernel, s.stride or s.kernel
    overlap = -(-kh // sh) * -(-kw // sw)
    want = ref.maxpool2d_bwd(dy, ridx, x.shape)
    assert_close(cupy.asnumpy(dx), want, 1e-7 * overlap, 1e-6 * overlap, f"{s.name}: cuda dx")
