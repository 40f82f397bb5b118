"""Fused conv2d + ReLU + 2x2 max-pool (conv2d_relu_maxpool2d, relu_maxpool2d_backward): input
handling (dtypes, views, N = 0, inputs never modified), out= buffers, and argument errors
(exceptions naming the argument, never crashes), on every CPU path. The results themselves:
test_conv_relu_pool.py."""

from __future__ import annotations

import dataclasses

import fastconv
import numpy as np
import pytest
from conftest import (
    assert_identical,
)
from fastconv import reference as ref
from fused_cases import (
    _arrays,
    _by_name,
    _poisoned,
    check_fused,
    pooled_shape,
)

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
