"""Bad input raises ValueError / TypeError with a message that names the offending argument.

Each case is one call and the argument name its message must mention (matched as a regex, so the
wording stays free). Value problems (shapes, sizes, out-of-range numbers) raise ValueError; the
wrong kind of object (dtype, a float where an int belongs) raises TypeError. Nothing here may crash
the process, hang, or return garbage.
"""

from __future__ import annotations

import fastconv
import numpy as np
import pytest


def f32(*shape):
    return np.ones(shape, np.float32)


X = f32(2, 4, 8, 8)
W = f32(6, 4, 3, 3)
DY = f32(2, 6, 6, 6)  # conv2d(X, W) output

conv = fastconv.conv2d

CONV_VALUE_ERRORS = {
    # shapes
    "input 3-D": (lambda: conv(f32(4, 8, 8), W), "input"),
    "input 5-D": (lambda: conv(f32(1, 2, 4, 8, 8), W), "input"),
    "weight 3-D": (lambda: conv(X, f32(6, 4, 3)), "weight"),
    "channel mismatch": (lambda: conv(X, f32(6, 3, 3, 3)), "weight|channel"),
    "channel mismatch, groups": (lambda: conv(X, f32(6, 4, 3, 3), groups=2), "weight|channel"),
    "groups does not divide C_in": (lambda: conv(X, f32(6, 1, 3, 3), groups=3), "groups"),
    "groups does not divide C_out": (lambda: conv(X, f32(5, 2, 3, 3), groups=2), "groups"),
    "groups 0": (lambda: conv(X, W, groups=0), "groups"),
    "groups negative": (lambda: conv(X, W, groups=-2), "groups"),
    "bias 2-D": (lambda: conv(X, W, f32(6, 1)), "bias"),
    "bias wrong length": (lambda: conv(X, W, f32(5)), "bias"),
    # stride / dilation / kernel sizes
    "stride 0": (lambda: conv(X, W, stride=0), "stride"),
    "stride (1, 0)": (lambda: conv(X, W, stride=(1, 0)), "stride"),
    "stride negative": (lambda: conv(X, W, stride=-1), "stride"),
    "dilation 0": (lambda: conv(X, W, dilation=0), "dilation"),
    "dilation (0, 1)": (lambda: conv(X, W, dilation=(0, 1)), "dilation"),
    "dilation negative": (lambda: conv(X, W, dilation=-1), "dilation"),
    "kernel larger than input": (lambda: conv(f32(1, 1, 4, 4), f32(1, 1, 5, 5)), "kernel|weight"),
    "kernel larger than padded input (width)": (
        lambda: conv(f32(1, 1, 9, 4), f32(1, 1, 3, 7), padding=(0, 1)),
        "kernel|weight",
    ),
    "dilated kernel larger than input": (
        lambda: conv(f32(1, 1, 6, 6), f32(1, 1, 3, 3), dilation=3),
        "kernel|weight|dilation",
    ),
    "weight with a zero dimension": (lambda: conv(X, f32(6, 4, 0, 3)), "weight|kernel"),
    # padding
    "padding negative": (lambda: conv(X, W, padding=-1), "padding"),
    "padding (0, -1)": (lambda: conv(X, W, padding=(0, -1)), "padding"),
    "padding unknown string": (lambda: conv(X, W, padding="full"), "padding"),
    "padding same with stride 2": (lambda: conv(X, W, padding="same", stride=2), "same|stride"),
    "padding same with stride (1, 2)": (
        lambda: conv(X, W, padding="same", stride=(1, 2)),
        "same|stride",
    ),
}

CONV_TYPE_ERRORS = {
    "input complex": (lambda: conv(X.astype(np.complex64), W), "input"),
    "input bool": (lambda: conv(X.astype(bool), W), "input"),
    "input object": (lambda: conv(X.astype(object), W), "input"),
    "input str": (lambda: conv(np.full((1, 1, 3, 3), "a"), f32(1, 1, 1, 1)), "input"),
    "weight complex": (lambda: conv(X, W.astype(np.complex128)), "weight"),
    "weight bool": (lambda: conv(X, W.astype(bool)), "weight"),
    "bias complex": (lambda: conv(X, W, np.ones(6, np.complex64)), "bias"),
    "bias object": (lambda: conv(X, W, np.ones(6, object)), "bias"),
    "stride float": (lambda: conv(X, W, stride=1.5), "stride"),
    "stride triple": (lambda: conv(X, W, stride=(1, 1, 1)), "stride"),
    "dilation str": (lambda: conv(X, W, dilation="2"), "dilation"),
    "padding float": (lambda: conv(X, W, padding=1.0), "padding"),
    "padding triple": (lambda: conv(X, W, padding=(1, 1, 1)), "padding"),
    "groups float": (lambda: conv(X, W, groups=1.0), "groups"),
}

BWD_ERRORS = {
    "backward: grad_output wrong spatial size": (
        lambda: fastconv.conv2d_backward(f32(2, 6, 5, 6), X, W),
        "grad_output",
    ),
    "backward: grad_output wrong channels": (
        lambda: fastconv.conv2d_backward(f32(2, 5, 6, 6), X, W),
        "grad_output",
    ),
    "backward: grad_output wrong batch": (
        lambda: fastconv.conv2d_backward(f32(3, 6, 6, 6), X, W),
        "grad_output",
    ),
    "backward: grad_output 3-D": (
        lambda: fastconv.conv2d_backward(f32(6, 6, 6), X, W),
        "grad_output",
    ),
    "backward: stride 0": (lambda: fastconv.conv2d_backward(DY, X, W, stride=0), "stride"),
    "backward: channel mismatch": (
        lambda: fastconv.conv2d_backward(DY, X, f32(6, 3, 3, 3)),
        "weight|channel",
    ),
    "bwd_data: grad_output wrong shape": (
        lambda: fastconv.conv2d_bwd_data(f32(2, 6, 6, 5), W, X.shape),
        "grad_output",
    ),
    "bwd_data: input_shape 3 entries": (
        lambda: fastconv.conv2d_bwd_data(DY, W, (2, 4, 8)),
        "input_shape",
    ),
    "bwd_data: input_shape channels": (
        lambda: fastconv.conv2d_bwd_data(DY, W, (2, 3, 8, 8)),
        "weight|channel|input",
    ),
    "bwd_data: padding same stride 2": (
        lambda: fastconv.conv2d_bwd_data(DY, W, X.shape, stride=2, padding="same"),
        "same|stride",
    ),
    "bwd_weights: grad_output wrong shape": (
        lambda: fastconv.conv2d_bwd_weights(f32(2, 6, 7, 7), X, W.shape),
        "grad_output",
    ),
    "bwd_weights: weight_shape 3 entries": (
        lambda: fastconv.conv2d_bwd_weights(DY, X, (6, 4, 3)),
        "weight_shape",
    ),
    "bwd_weights: groups": (
        lambda: fastconv.conv2d_bwd_weights(DY, X, W.shape, groups=3),
        "groups",
    ),
}

P = f32(2, 3, 8, 8)
pool = fastconv.max_pool2d

POOL_VALUE_ERRORS = {
    "pool: input 3-D": (lambda: pool(f32(3, 8, 8), 2), "input"),
    "pool: kernel_size 0": (lambda: pool(P, 0), "kernel_size"),
    "pool: kernel_size (2, 0)": (lambda: pool(P, (2, 0)), "kernel_size"),
    "pool: stride 0": (lambda: pool(P, 2, 0), "stride"),
    "pool: stride negative": (lambda: pool(P, 2, -1), "stride"),
    "pool: padding over half the kernel": (lambda: pool(P, 2, 2, 2), "padding"),
    "pool: padding over half the kernel (w)": (lambda: pool(P, 3, 2, (1, 2)), "padding"),
    "pool: padding 1 with kernel 1": (lambda: pool(P, 1, 1, 1), "padding"),
    "pool: padding negative": (lambda: pool(P, 3, 2, -1), "padding"),
    "pool: padding unknown string": (lambda: pool(P, 2, padding="full"), "padding"),
    "pool: kernel larger than input": (lambda: pool(f32(1, 1, 3, 3), 4), "kernel"),
}

POOL_TYPE_ERRORS = {
    "pool: input complex": (lambda: pool(P.astype(np.complex64), 2), "input"),
    "pool: input bool": (lambda: pool(P.astype(bool), 2), "input"),
    "pool: input object": (lambda: pool(P.astype(object), 2), "input"),
    "pool: kernel_size float": (lambda: pool(P, 2.0), "kernel_size"),
    "pool: stride float": (lambda: pool(P, 2, 1.5), "stride"),
}


def _pool_bwd_args():
    y, idx = fastconv.max_pool2d(P, 2, return_indices=True)
    return np.ones_like(y), idx


def _bwd_with(idx_change=None, dy=None, shape=P.shape):
    dy0, idx = _pool_bwd_args()
    if idx_change is not None:
        idx = idx_change(idx.copy())
    return lambda: fastconv.max_pool2d_backward(dy0 if dy is None else dy, idx, shape)


def _set(i, v):
    def change(idx):
        idx.flat[i] = v
        return idx

    return change


POOL_BWD_VALUE_ERRORS = {
    "pool bwd: index == H*W": (_bwd_with(_set(5, 64)), "indices"),
    "pool bwd: index far out of range": (_bwd_with(_set(-1, 10**12)), "indices"),
    "pool bwd: index negative": (_bwd_with(_set(0, -1)), "indices"),
    "pool bwd: indices wrong shape": (_bwd_with(lambda i: i[:, :, :3]), "indices"),
    "pool bwd: indices 3-D": (_bwd_with(lambda i: i[0]), "indices"),
    "pool bwd: grad_output 3-D": (_bwd_with(dy=f32(3, 4, 4)), "grad_output"),
    "pool bwd: grad_output wrong shape": (_bwd_with(dy=f32(2, 3, 4, 3)), "grad_output|indices"),
    "pool bwd: input_shape channels": (_bwd_with(shape=(2, 4, 8, 8)), "input_shape"),
    "pool bwd: input_shape 3 entries": (_bwd_with(shape=(2, 3, 8)), "input_shape"),
}

POOL_BWD_TYPE_ERRORS = {
    "pool bwd: indices float64": (_bwd_with(lambda i: i.astype(np.float64)), "indices"),
    "pool bwd: indices float32": (_bwd_with(lambda i: i.astype(np.float32)), "indices"),
    "pool bwd: indices bool": (_bwd_with(lambda i: i > 0), "indices"),
    "pool bwd: grad_output complex": (
        _bwd_with(dy=np.ones((2, 3, 4, 4), np.complex64)),
        "grad_output",
    ),
}

VALUE_ERRORS = {**CONV_VALUE_ERRORS, **BWD_ERRORS, **POOL_VALUE_ERRORS, **POOL_BWD_VALUE_ERRORS}
TYPE_ERRORS = {**CONV_TYPE_ERRORS, **POOL_TYPE_ERRORS, **POOL_BWD_TYPE_ERRORS}


@pytest.mark.parametrize(("call", "match"), VALUE_ERRORS.values(), ids=VALUE_ERRORS.keys())
def test_value_error_names_the_argument(isa, call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize(("call", "match"), TYPE_ERRORS.values(), ids=TYPE_ERRORS.keys())
def test_type_error_names_the_argument(call, match):
    with pytest.raises(TypeError, match=match):
        call()


@pytest.mark.parametrize("name", ["sse9", "", "AVX2 "])
def test_unknown_cpu_isa_rejected(name):
    before = fastconv.get_cpu_isa()
    with pytest.raises(ValueError, match="isa|ISA"):
        fastconv.set_cpu_isa(name)
    assert fastconv.get_cpu_isa() == before


@pytest.mark.parametrize(
    ("n", "error"), [(0, ValueError), (-1, ValueError), (1.5, TypeError), ("2", TypeError)]
)
def test_bad_num_threads_rejected(n, error):
    before = fastconv.get_num_threads()
    with pytest.raises(error):
        fastconv.set_num_threads(n)
    assert fastconv.get_num_threads() == before


def test_errors_leave_the_library_usable(isa):
    """After a run of failures (including ones raised inside a kernel), a good call still works."""
    for call, match in list(VALUE_ERRORS.values())[:10] + list(POOL_BWD_VALUE_ERRORS.values())[:3]:
        with pytest.raises(ValueError, match=match):
            call()
    y = fastconv.conv2d(X, W)
    assert (y == 36).all()
