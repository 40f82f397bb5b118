"""Trust in the oracle itself: known answers, hand-computed cases, and finite differences.

The NumPy reference (fastconv.reference) is what every native kernel is compared against, so it is
checked here on its own, in float64: the hand-made filters from NETWORKS.md section D, small cases
worked out by hand, its backward passes against central finite differences of its forward pass
(link (a) of STYLE.md item 11), the max-pool tie/NaN/padding rules, and PyTorch when installed.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_close, assert_identical
from fastconv import reference as ref

EDGE = np.array([[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]], dtype=np.float64)
SHARPEN = np.array([[0, -1, 0], [-1, 5, -1], [0, -1, 0]], dtype=np.float64)
BLUR = np.ones((3, 3)) / 9


def _filter(k2d):
    return k2d.reshape(1, 1, 3, 3)


# ----------------------------------------------------------------------------------------------
# known answers (NETWORKS.md section D)


@pytest.mark.parametrize("value", [0.0, 0.5, 1.0, 0.296875, 37.0])
def test_edge_filter_gives_exactly_zero_on_uniform_image(value):
    x = np.full((2, 1, 7, 9), value)
    y = ref.conv2d_fwd(x, _filter(EDGE), padding="valid")
    assert y.shape == (2, 1, 5, 7)
    assert (y == 0).all()


@pytest.mark.parametrize("value", [0.0, 0.5, 1.0, 0.296875])
def test_sharpen_filter_leaves_uniform_image_unchanged(value):
    x = np.full((1, 1, 6, 6), value)
    y = ref.conv2d_fwd(x, _filter(SHARPEN), padding="valid")
    assert (y == value).all()


def test_blur_filter_averages_each_3x3_window(rng):
    x = rng.random((1, 1, 8, 10))
    y = ref.conv2d_fwd(x, _filter(BLUR), padding="valid")
    expected = np.array(
        [[x[0, 0, i : i + 3, j : j + 3].mean() for j in range(8)] for i in range(6)]
    )
    assert_close(y[0, 0], expected, 1e-15, 1e-14, "blur")
    uniform = ref.conv2d_fwd(np.full((1, 1, 5, 5), 0.75), _filter(BLUR))
    assert_close(uniform, np.full((1, 1, 3, 3), 0.75), 0, 1e-15, "blur of uniform")


def test_edge_filter_with_same_padding_sees_zero_border():
    # Inside a uniform image the response is 0; on the border the zero padding makes it positive.
    y = ref.conv2d_fwd(np.ones((1, 1, 4, 4)), _filter(EDGE), padding="same")
    expected = np.array([[5, 3, 3, 5], [3, 0, 0, 3], [3, 0, 0, 3], [5, 3, 3, 5]], dtype=np.float64)
    assert_identical(y[0, 0], expected, "edge, same padding")


# ----------------------------------------------------------------------------------------------
# hand-computed cases


def test_hand_computed_2x2_diagonal_difference():
    x = np.arange(1, 17, dtype=np.float64).reshape(1, 1, 4, 4)  # rows 1..4, 5..8, ...
    w = np.array([[1.0, 0.0], [0.0, -1.0]]).reshape(1, 1, 2, 2)  # x[i, j] - x[i+1, j+1]
    y = ref.conv2d_fwd(x, w, np.array([0.5]))
    assert_identical(y, np.full((1, 1, 3, 3), -5 + 0.5), "diagonal difference")


def test_hand_computed_stride_padding():
    # 3x3 input, 2x2 kernel of ones, stride 2, padding 1: each output sums the real pixels
    # its window covers.
    x = np.array([[1.0, 2, 3], [4, 5, 6], [7, 8, 9]]).reshape(1, 1, 3, 3)
    y = ref.conv2d_fwd(x, np.ones((1, 1, 2, 2)), stride=2, padding=1)
    assert_identical(
        y[0, 0], np.array([[1.0, 2 + 3], [4 + 7, 5 + 6 + 8 + 9]]), "stride 2, padding 1"
    )


def test_hand_computed_groups_and_dilation():
    # Two groups of one channel each; the kernel taps two pixels two columns apart (dilation 2).
    x = np.stack([np.arange(5.0), 10 * np.arange(5.0)]).reshape(1, 2, 1, 5)
    w = np.array([[[[1.0, 1.0]]], [[[1.0, -1.0]]]])  # (2, 1, 1, 2)
    y = ref.conv2d_fwd(x, w, dilation=2, groups=2)
    expected = np.array([[[[0 + 2, 1 + 3, 2 + 4]], [[0 - 20, 10 - 30, 20 - 40]]]], dtype=np.float64)
    assert_identical(y, expected, "groups=2, dilation=2")


def test_hand_computed_backward_shared_weight_sums_uses():
    # A 1x1 kernel is used at every pixel, so its gradient is the sum over all uses (NETWORKS.md D).
    x = np.arange(6.0).reshape(1, 1, 2, 3)
    dy = np.ones((1, 1, 2, 3))
    dw, db = ref.conv2d_bwd_weights(dy, x, (1, 1, 1, 1))
    assert dw.shape == (1, 1, 1, 1)
    assert dw[0, 0, 0, 0] == 15.0
    assert db.tolist() == [6.0]
    dx = ref.conv2d_bwd_data(dy, np.full((1, 1, 1, 1), 3.0), (1, 1, 2, 3))
    assert_identical(dx, np.full((1, 1, 2, 3), 3.0), "dx of a 1x1 conv")


def test_float32_input_gives_float64_output():
    y = ref.conv2d_fwd(np.ones((1, 1, 3, 3), np.float32), np.ones((1, 1, 2, 2), np.float32))
    assert y.dtype == np.float64


def test_zero_batch(rng):
    y = ref.conv2d_fwd(np.zeros((0, 3, 5, 5)), rng.random((4, 3, 3, 3)), rng.random(4), padding=1)
    assert y.shape == (0, 4, 5, 5)
    dx, dw, db = ref.conv2d_backward(
        np.zeros((0, 4, 5, 5)), np.zeros((0, 3, 5, 5)), np.ones((4, 3, 3, 3)), padding=1
    )
    assert dx.shape == (0, 3, 5, 5)
    assert (dw == 0).all()
    assert dw.shape == (4, 3, 3, 3)
    assert (db == 0).all()


# ----------------------------------------------------------------------------------------------
# output size and padding helpers


@pytest.mark.parametrize(
    ("padding", "kernel", "dilation", "expected"),
    [
        (0, 3, 1, (0, 0, 0, 0)),
        (2, 3, 1, (2, 2, 2, 2)),
        ((1, 3), 3, 1, (1, 1, 3, 3)),
        ("valid", 5, 1, (0, 0, 0, 0)),
        ("same", 3, 1, (1, 1, 1, 1)),
        ("same", 5, 1, (2, 2, 2, 2)),
        ("same", 2, 1, (0, 1, 0, 1)),  # odd total padding: the extra row/column at bottom/right
        ("same", (4, 2), 1, (1, 2, 0, 1)),
        ("same", 3, 2, (2, 2, 2, 2)),
        ("same", (2, 3), (3, 1), (1, 2, 1, 1)),
    ],
)
def test_conv2d_padding(padding, kernel, dilation, expected):
    assert ref.conv2d_padding(padding, kernel, 1, dilation) == expected


@pytest.mark.parametrize(
    ("hw", "kwargs", "expected"),
    [
        ((28, 28), dict(kernel_size=5, padding=2), (28, 28)),
        ((28, 28), dict(kernel_size=5), (24, 24)),
        ((224, 224), dict(kernel_size=11, stride=4, padding=2), (55, 55)),
        ((7, 8), dict(kernel_size=3, stride=2), (3, 3)),
        ((9, 9), dict(kernel_size=3, dilation=2), (5, 5)),
        ((5, 5), dict(kernel_size=(1, 5), padding="same"), (5, 5)),
    ],
)
def test_conv2d_out_size(hw, kwargs, expected):
    assert ref.conv2d_out_size(hw, **kwargs) == expected


def test_maxpool2d_out_size():
    assert ref.maxpool2d_out_size((28, 28), 2) == (14, 14)
    assert ref.maxpool2d_out_size((55, 55), 3, 2) == (27, 27)
    assert ref.maxpool2d_out_size((9, 7), 2) == (4, 3)
    assert ref.maxpool2d_out_size((12, 11), 3, 2, 1) == (6, 6)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: ref.conv2d_padding("same", 3, stride=2), "stride"),
        (lambda: ref.conv2d_padding("full", 3), "padding"),
        (lambda: ref.conv2d_padding(-1, 3), "padding"),
        (lambda: ref.conv2d_out_size((4, 4), 5), "kernel"),
        (lambda: ref.conv2d_out_size((4, 4), 3, stride=0), "stride"),
        (lambda: ref.conv2d_out_size((9, 9), 3, dilation=(1, 0)), "dilation"),
        (lambda: ref.maxpool2d_out_size((8, 8), 2, padding=2), "padding"),
        (lambda: ref.conv2d_fwd(np.ones((1, 4, 5, 5)), np.ones((2, 3, 3, 3))), "weight"),
        (lambda: ref.conv2d_fwd(np.ones((1, 4, 5, 5)), np.ones((3, 2, 3, 3)), groups=2), "groups"),
        (lambda: ref.conv2d_fwd(np.ones((1, 1, 5, 5)), np.ones((2, 1, 3, 3)), np.ones(3)), "bias"),
    ],
)
def test_reference_rejects_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ----------------------------------------------------------------------------------------------
# backward vs central finite differences, float64, tiny shapes

FD_CASES = [
    # (x shape, k, kernel, kwargs)
    ((2, 3, 5, 6), 4, (3, 3), dict()),
    ((1, 2, 6, 5), 3, (2, 3), dict(stride=2, padding=1)),
    ((2, 2, 7, 7), 2, (3, 2), dict(dilation=2, padding=(2, 1))),
    ((1, 4, 5, 5), 6, (3, 3), dict(groups=2, padding="same")),
    ((1, 3, 6, 6), 3, (3, 3), dict(groups=3, stride=(2, 1))),  # depthwise
    ((1, 2, 5, 6), 2, (2, 2), dict(padding="same")),  # asymmetric "same"
    ((1, 2, 8, 7), 3, (3, 3), dict(stride=3, dilation=(1, 2), padding=2)),
]


def _numeric_grad(f, a, eps=1e-6):
    """Central differences of scalar f() w.r.t. every element of a (changed in place, restored)."""
    g = np.zeros_like(a)
    flat, gflat = a.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        orig = flat[i]
        flat[i] = orig + eps
        fp = f()
        flat[i] = orig - eps
        fm = f()
        flat[i] = orig
        gflat[i] = (fp - fm) / (2 * eps)
    return g


@pytest.mark.parametrize(("x_shape", "k", "kernel", "kwargs"), FD_CASES)
def test_conv2d_backward_matches_finite_differences(rng, x_shape, k, kernel, kwargs):
    groups = kwargs.get("groups", 1)
    x = rng.standard_normal(x_shape)
    w = rng.standard_normal((k, x_shape[1] // groups, *kernel))
    b = rng.standard_normal(k)
    dy = rng.standard_normal(ref.conv2d_fwd(x, w, b, **kwargs).shape)

    def loss():
        return float(np.sum(ref.conv2d_fwd(x, w, b, **kwargs) * dy))

    dx = ref.conv2d_bwd_data(dy, w, x.shape, **kwargs)
    dw, db = ref.conv2d_bwd_weights(dy, x, w.shape, **kwargs)
    # the loss is linear in each argument, so central differences are exact up to rounding
    assert_close(dx, _numeric_grad(loss, x), 1e-7, 1e-7, "dx vs finite differences")
    assert_close(dw, _numeric_grad(loss, w), 1e-7, 1e-7, "dw vs finite differences")
    assert_close(db, _numeric_grad(loss, b), 1e-7, 1e-7, "db vs finite differences")
    # and the alias returns the same three arrays
    for got, want in zip(ref.conv2d_backward(dy, x, w, **kwargs), (dx, dw, db)):
        assert_identical(got, want, "conv2d_backward alias")


@pytest.mark.parametrize(
    ("x_shape", "kwargs"),
    [
        ((2, 2, 6, 6), dict(kernel_size=2)),
        ((1, 2, 7, 7), dict(kernel_size=3, stride=2)),  # overlapping windows
        ((1, 2, 6, 5), dict(kernel_size=3, stride=2, padding=1)),
        ((1, 1, 5, 7), dict(kernel_size=(2, 3), stride=1)),
    ],
)
def test_maxpool2d_backward_matches_finite_differences(rng, x_shape, kwargs):
    x = rng.permutation(np.arange(np.prod(x_shape), dtype=np.float64)).reshape(
        x_shape
    )  # distinct: no ties
    y, idx = ref.maxpool2d_fwd(x, **kwargs)
    dy = rng.standard_normal(y.shape)

    def loss():
        return float(np.sum(ref.maxpool2d_fwd(x, **kwargs)[0] * dy))

    assert_close(
        ref.maxpool2d_bwd(dy, idx, x.shape),
        _numeric_grad(loss, x, eps=1e-3),
        1e-9,
        1e-9,
        "max-pool dx",
    )


# ----------------------------------------------------------------------------------------------
# max-pool rules


def test_maxpool_known_answer():
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    y, idx = ref.maxpool2d_fwd(x, 2)
    assert_identical(y[0, 0], np.array([[5.0, 7.0], [13.0, 15.0]]), "values")
    assert_identical(idx[0, 0], np.array([[5, 7], [13, 15]]), "indices")
    assert idx.dtype == np.int64
    y, idx = ref.max_pool2d(-x, 3, stride=1, return_indices=True)
    assert_identical(
        idx[0, 0], np.array([[0, 1], [4, 5]]), "indices of the top-left of each window"
    )


def test_maxpool_ties_go_to_first_in_row_major_window_order():
    x = np.zeros((1, 1, 4, 4))
    x[0, 0, 1, 0] = x[0, 0, 0, 1] = (
        3.0  # both in the first window; (0, 1) comes first in row-major order
    )
    y, idx = ref.maxpool2d_fwd(x, 2)
    assert idx[0, 0, 0, 0] == 1
    assert idx[0, 0, 1, 1] == 2 * 4 + 2  # all-zero window: its first element
    _, idx = ref.maxpool2d_fwd(np.full((1, 1, 5, 5), 7.0), 3, 2)
    assert_identical(idx[0, 0], np.array([[0, 2], [10, 12]]), "uniform image")


def test_maxpool_nan_wins_first_nan_in_window_order():
    x = np.zeros((1, 1, 2, 4))
    x[0, 0, 1, 1] = np.nan
    x[0, 0, 0, 1] = 5.0
    x[0, 0, 1, 2] = x[0, 0, 0, 3] = np.nan  # second window: (0, 3) precedes (1, 2)
    x[0, 0, 0, 2] = 9.0
    y, idx = ref.maxpool2d_fwd(x, 2)
    assert np.isnan(y).all()
    assert idx[0, 0].tolist() == [[5, 3]]


def test_maxpool_padded_cells_never_win():
    x = -1.0 - np.arange(25.0).reshape(1, 1, 5, 5)  # all negative: a zero pad would win if it could
    y, idx = ref.maxpool2d_fwd(x, 3, 2, 1)
    assert (y < 0).all()
    assert_identical(idx[0, 0], np.array([[0, 1, 3], [5, 6, 8], [15, 16, 18]]), "indices")
    assert_identical(y.reshape(-1), x.reshape(-1)[idx.reshape(-1)], "values at indices")
    # -inf inputs: still a real cell (the first of the window), never a padded one
    _, idx = ref.maxpool2d_fwd(np.full((1, 1, 4, 4), -np.inf), 3, 2, 1)
    assert_identical(idx[0, 0], np.array([[0, 1], [4, 5]]), "indices of -inf image")


def test_maxpool_backward_accumulates_overlapping_windows():
    x = np.zeros((1, 1, 5, 5))
    x[0, 0, 2, 2] = 1.0  # the centre is the max of all four overlapping 3x3/s2 windows
    y, idx = ref.maxpool2d_fwd(x, 3, 2)
    assert (idx == 12).all()
    dx = ref.maxpool2d_bwd(np.array([[[[1.0, 2.0], [3.0, 4.0]]]]), idx, x.shape)
    expected = np.zeros((1, 1, 5, 5))
    expected[0, 0, 2, 2] = 10.0
    assert_identical(dx, expected, "accumulated gradient")
    assert_identical(
        ref.max_pool2d_backward(np.ones((1, 1, 2, 2)), idx, x.shape).sum(), 4.0, "alias"
    )


# ----------------------------------------------------------------------------------------------
# PyTorch cross-check (optional)


@pytest.mark.parametrize(("x_shape", "k", "kernel", "kwargs"), FD_CASES)
def test_conv2d_matches_torch(rng, x_shape, k, kernel, kwargs):
    torch = pytest.importorskip("torch")
    groups = kwargs.get("groups", 1)
    x = rng.standard_normal(x_shape)
    w = rng.standard_normal((k, x_shape[1] // groups, *kernel))
    b = rng.standard_normal(k)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    ty = torch.nn.functional.conv2d(tx, tw, tb, **kwargs)
    dy = rng.standard_normal(tuple(ty.shape))
    ty.backward(torch.tensor(dy))
    assert_close(ref.conv2d_fwd(x, w, b, **kwargs), ty.detach().numpy(), 1e-12, 1e-12, "y vs torch")
    dx, dw, db = ref.conv2d_backward(dy, x, w, **kwargs)
    assert_close(dx, tx.grad.numpy(), 1e-12, 1e-12, "dx vs torch")
    assert_close(dw, tw.grad.numpy(), 1e-12, 1e-12, "dw vs torch")
    assert_close(db, tb.grad.numpy(), 1e-12, 1e-12, "db vs torch")


@pytest.mark.parametrize(
    ("kernel", "stride", "padding"), [(2, None, 0), (3, 2, 1), ((3, 2), (2, 1), (1, 1))]
)
def test_maxpool_matches_torch(rng, kernel, stride, padding):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((2, 3, 9, 8))
    ty, tidx = torch.nn.functional.max_pool2d(
        torch.tensor(x), kernel, stride, padding, return_indices=True
    )
    y, idx = ref.maxpool2d_fwd(x, kernel, stride, padding)
    assert_identical(y, ty.numpy(), "values vs torch")
    assert_identical(idx, tidx.numpy(), "indices vs torch")
