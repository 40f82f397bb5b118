"""Hostile arguments: huge, negative, non-integral and wrongly typed values at every entry point.

Regression tests for issue 17's native and argument side. Every case must raise ValueError or
TypeError naming the argument (and, for out-of-range integers, the accepted range): never crash
the interpreter (the geometry once overflowed int64 and wrote past buffers), never return a wrong
result (a wrapped-around padding once returned zeros, a wrapped dilation an output larger than the
input), never dump pybind11's signature list. The limits are params.h's kMaxDim / kMaxNumel,
exported as fastconv._C.MAX_DIM / MAX_NUMEL.
"""

from __future__ import annotations

import math
import os

import fastconv
import numpy as np
import pytest
from fastconv import _C

MAX_DIM = _C.MAX_DIM
RANGE = str(MAX_DIM)  # every range message names the upper limit


def test_limits_are_exported():
    assert MAX_DIM == 2**31 - 1
    assert _C.MAX_NUMEL == 2**48


def f32(*shape):
    return np.ones(shape, np.float32)


X = f32(1, 2, 8, 8)
W = f32(3, 2, 3, 3)
DY = f32(1, 3, 6, 6)  # conv2d(X, W)'s shape
PDY = f32(1, 3, 3, 3)  # conv2d_relu_maxpool2d(X, W)'s shape
CODES = np.zeros((1, 3, 3, 3), np.uint8)


def _conv_calls(**geometry):
    """Every conv entry point with the given geometry keywords (name -> call)."""
    return {
        "conv2d": lambda: fastconv.conv2d(X, W, **geometry),
        "conv2d_bwd_data": lambda: fastconv.conv2d_bwd_data(DY, W, X.shape, **geometry),
        "conv2d_bwd_weights": lambda: fastconv.conv2d_bwd_weights(DY, X, W.shape, **geometry),
        "conv2d_backward": lambda: fastconv.conv2d_backward(DY, X, W, **geometry),
        "conv2d_relu_maxpool2d": lambda: fastconv.conv2d_relu_maxpool2d(X, W, **geometry),
        "fused_bwd_data": lambda: fastconv.conv2d_relu_maxpool2d_bwd_data(
            PDY, CODES, W, X.shape, **geometry
        ),
        "fused_bwd_weights": lambda: fastconv.conv2d_relu_maxpool2d_bwd_weights(
            PDY, CODES, X, W.shape, **geometry
        ),
    }


def _all_conv_cases(cases):
    return [
        pytest.param(call, match, id=f"{entry}-{label}")
        for label, (geometry, match) in cases.items()
        for entry, call in _conv_calls(**geometry).items()
    ]


# Integers past the geometry's limits, each with the argument its error must name. The first
# three are the issue's: an interpreter abort after the call, silent zeros, a wrapped dilation.
CONV_OUT_OF_RANGE = {
    "padding (2**63-1, 0)": ({"padding": (2**63 - 1, 0)}, "padding"),
    "padding 2**63-1": ({"padding": 2**63 - 1}, "padding"),
    "dilation 2**62": ({"dilation": 2**62}, "dilation"),
    "dilation 2**30 (span past the limit)": ({"dilation": 2**30}, "dilation"),
    "dilation (1, 2**31)": ({"dilation": (1, 2**31)}, "dilation"),
    "padding 2**31": ({"padding": 2**31}, "padding"),
    "padding 2**30 (padded past the limit)": ({"padding": (2**30, 0)}, "padding"),
    "padding (0, 2**40)": ({"padding": (0, 2**40)}, "padding"),
    "padding 2**64": ({"padding": 2**64}, "padding"),
    "padding -2**63-1": ({"padding": -(2**63) - 1}, "padding"),
    "stride 2**63": ({"stride": 2**63}, "stride"),
    "stride 2**31": ({"stride": 2**31}, "stride"),
    "stride (1, 2**100)": ({"stride": (1, 2**100)}, "stride"),
    "stride -2**63": ({"stride": -(2**63)}, "stride"),
    "groups 2**63": ({"groups": 2**63}, "groups"),
    "groups 2**31": ({"groups": 2**31}, "groups"),
    "groups -2**70": ({"groups": -(2**70)}, "groups"),
}


@pytest.mark.parametrize(("call", "match"), _all_conv_cases(CONV_OUT_OF_RANGE))
def test_conv_geometry_out_of_range_is_a_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


CONV_WRONG_TYPE = {
    "stride 1.5": ({"stride": 1.5}, "stride"),
    "stride nan": ({"stride": math.nan}, "stride"),
    "stride inf": ({"stride": (1, math.inf)}, "stride"),
    "padding 1.0": ({"padding": 1.0}, "padding"),
    "padding None": ({"padding": None}, "padding"),
    "dilation True": ({"dilation": True}, "dilation"),
    "dilation np.float64": ({"dilation": np.float64(1)}, "dilation"),
    "groups 1.0": ({"groups": 1.0}, "groups"),
    "groups nan": ({"groups": math.nan}, "groups"),
    "groups '1'": ({"groups": "1"}, "groups"),
    "stride (1, 1, 1)": ({"stride": (1, 1, 1)}, "stride"),
}


@pytest.mark.parametrize(("call", "match"), _all_conv_cases(CONV_WRONG_TYPE))
def test_conv_geometry_wrong_type_is_a_type_error(call, match):
    with pytest.raises(TypeError, match=match):
        call()


def test_range_messages_name_the_value_and_the_range():
    with pytest.raises(
        ValueError, match=rf"padding must be in \[0, {RANGE}\].*9223372036854775807"
    ):
        fastconv.conv2d(X, W, padding=(2**63 - 1, 0))
    with pytest.raises(ValueError, match=rf"stride.*18446744073709551616.*{RANGE}"):
        fastconv.conv2d(X, W, stride=2**64)
    with pytest.raises(ValueError, match=rf"dilation.*{RANGE}"):
        fastconv.conv2d(X, W, dilation=2**30)


POOL_OUT_OF_RANGE = {
    "kernel_size 2**63": ((2**63,), {}, "kernel_size|stride"),
    "kernel_size 2**40": ((2**40,), {}, "kernel_size"),
    "kernel_size (2, 2**31)": (((2, 2**31),), {}, "kernel_size"),
    "stride 2**63": ((2,), {"stride": 2**63}, "stride"),
    "stride 2**62": ((2,), {"stride": 2**62}, "stride"),
    "stride -2**64": ((2,), {"stride": -(2**64)}, "stride"),
    "padding 2**63-1": ((2,), {"padding": 2**63 - 1}, "padding"),
    "padding 2**31 with kernel 2**32": ((2**32,), {"padding": 2**31}, "kernel_size|padding"),
}


@pytest.mark.parametrize(
    ("args", "kwargs", "match"), POOL_OUT_OF_RANGE.values(), ids=list(POOL_OUT_OF_RANGE)
)
def test_max_pool_geometry_out_of_range(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        fastconv.max_pool2d(X, *args, **kwargs)
    y, idx = fastconv.max_pool2d(X, 2, return_indices=True)
    with pytest.raises(ValueError, match=match):
        fastconv.max_pool2d_backward(y, idx, X.shape, kernel_size=args[0], **kwargs)


@pytest.mark.parametrize("kernel_size", [1.5, math.nan, None, "2", (2, 2.0), True])
def test_max_pool_kernel_size_wrong_type(kernel_size):
    with pytest.raises(TypeError, match="kernel_size"):
        fastconv.max_pool2d(X, kernel_size)


# --- shapes passed as tuples (backward entries) --------------------------------------------------

SHAPE_ENTRIES = {
    "conv2d_bwd_data": lambda s: fastconv.conv2d_bwd_data(DY, W, s),
    "conv2d_bwd_weights": lambda s: fastconv.conv2d_bwd_weights(DY, X, s),
    "fused_bwd_data": lambda s: fastconv.conv2d_relu_maxpool2d_bwd_data(PDY, CODES, W, s),
    "fused_bwd_weights": lambda s: fastconv.conv2d_relu_maxpool2d_bwd_weights(PDY, CODES, X, s),
    "max_pool2d_backward": lambda s: fastconv.max_pool2d_backward(
        f32(1, 2, 4, 4), np.zeros((1, 2, 4, 4), np.int64), s
    ),
    "relu_maxpool2d_backward": lambda s: fastconv.relu_maxpool2d_backward(PDY, CODES, s),
}


def _shape_cases(shapes):
    return [
        pytest.param(call, shape, id=f"{entry}-{label}")
        for label, shape in shapes.items()
        for entry, call in SHAPE_ENTRIES.items()
    ]


@pytest.mark.parametrize(
    ("call", "shape"),
    _shape_cases(
        {
            "float 8.5": (1, 2, 8.5, 8),  # once silently truncated to 8
            "float 8.0": (1, 2, 8.0, 8),
            "bool": (True, 2, 8, 8),
            "None": (1, 2, None, 8),
            "nan": (1, 2, math.nan, 8),
            "str entry": (1, 2, "8", 8),
            "str": "1288",
            "int": 4,
            "None shape": None,
            "np.float32": (1, 2, np.float32(8), 8),
        }
    ),
)
def test_shape_with_non_integers_is_a_type_error(call, shape):
    with pytest.raises(TypeError, match="shape"):
        call(shape)


@pytest.mark.parametrize(
    ("call", "shape"),
    _shape_cases(
        {
            "2**63": (1, 2, 2**63, 8),
            "2**40": (1, 2, 2**40, 2**40),
            "2**31": (1, 2, 8, 2**31),
            "negative": (1, 2, -8, 8),
            "-2**63": (1, 2, 8, -(2**63)),
            "3 entries": (1, 2, 8),
            "5 entries": (1, 2, 8, 8, 1),
        }
    ),
)
def test_shape_out_of_range_is_a_value_error(call, shape):
    with pytest.raises(ValueError, match="shape|input|weight"):
        call(shape)


def test_numpy_integer_shapes_and_arguments_are_accepted():
    shape = tuple(np.int64(v) for v in X.shape)
    want = fastconv.conv2d_bwd_data(DY, W, X.shape, stride=1, padding=1 - 1)
    got = fastconv.conv2d_bwd_data(DY, W, shape, stride=np.int32(1), padding=np.uint8(0))
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(
        fastconv.conv2d(X, W, groups=np.int64(1), dilation=(np.int16(1), 1)), fastconv.conv2d(X, W)
    )


# --- the settings functions -----------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, -1, 4097, 2**40, 2**63, 2**64, -(2**63) - 1])
def test_set_num_threads_out_of_range(n):
    before = fastconv.get_num_threads()
    with pytest.raises(ValueError, match="n|threads"):
        fastconv.set_num_threads(n)
    assert fastconv.get_num_threads() == before


@pytest.mark.parametrize("n", [2.0, math.nan, math.inf, True, None, "2", np.float64(2)])
def test_set_num_threads_wrong_type(n):
    with pytest.raises(TypeError, match="n must be an int"):
        fastconv.set_num_threads(n)


def test_set_num_threads_accepts_numpy_integers():
    before = fastconv.get_num_threads()
    try:
        fastconv.set_num_threads(np.int64(1))
        assert fastconv.get_num_threads() == 1
    finally:
        fastconv.set_num_threads(before)


@pytest.mark.parametrize("mb", [math.nan, math.inf, -math.inf, -1, 2**20 + 1, 2**64, 1e300])
def test_set_output_cache_mb_out_of_range(mb):
    before = fastconv.get_output_cache_mb()
    with pytest.raises(ValueError, match="mb"):
        fastconv.set_output_cache_mb(mb)
    assert fastconv.get_output_cache_mb() == before


@pytest.mark.parametrize("mb", [True, None, "1", 1j])
def test_set_output_cache_mb_wrong_type(mb):
    with pytest.raises(TypeError, match="mb"):
        fastconv.set_output_cache_mb(mb)


def test_set_output_cache_mb_accepts_numpy_numbers():
    before = fastconv.get_output_cache_mb()
    try:
        fastconv.set_output_cache_mb(np.float32(1.5))
        assert fastconv.get_output_cache_mb() == 1.5
        fastconv.set_output_cache_mb(np.int64(2))
        assert fastconv.get_output_cache_mb() == 2
    finally:
        fastconv.set_output_cache_mb(before)


@pytest.mark.parametrize("enabled", [1, 0, None, "yes", np.float64(1)])
def test_set_winograd_wrong_type(enabled):
    before = fastconv.get_winograd()
    with pytest.raises(TypeError, match="enabled"):
        fastconv.set_winograd(enabled)
    assert fastconv.get_winograd() == before


@pytest.mark.parametrize("isa", [None, 1, b"avx2"])
def test_set_cpu_isa_wrong_type(isa):
    with pytest.raises(TypeError, match="isa"):
        fastconv.set_cpu_isa(isa)


# --- the native module called directly: ValueError / TypeError naming the argument, no dump -------

GEOM = ((1, 1), "explicit", (0, 0), (1, 1), 1)  # stride, padding mode, padding, dilation, groups

NATIVE_BAD = {
    "stride 2**63": (
        lambda: _C.conv2d_fwd(X, W, None, (2**63, 1), *GEOM[1:]),
        ValueError,
        "stride",
    ),
    "stride float": (lambda: _C.conv2d_fwd(X, W, None, (1.5, 1), *GEOM[1:]), TypeError, "stride"),
    "stride 3 entries": (
        lambda: _C.conv2d_fwd(X, W, None, (1, 1, 1), *GEOM[1:]),
        TypeError,
        "stride",
    ),
    "stride str": (lambda: _C.conv2d_fwd(X, W, None, "11", *GEOM[1:]), TypeError, "stride"),
    "padding 2**63-1": (
        lambda: _C.conv2d_fwd(X, W, None, (1, 1), "explicit", (2**63 - 1, 0), (1, 1), 1),
        ValueError,
        "padding",
    ),
    "padding mode": (
        lambda: _C.conv2d_fwd(X, W, None, (1, 1), "full", (0, 0), (1, 1), 1),
        ValueError,
        "padding",
    ),
    "groups nan": (lambda: _C.conv2d_fwd(X, W, None, *GEOM[:4], math.nan), TypeError, "groups"),
    "groups 2**64": (lambda: _C.conv2d_fwd(X, W, None, *GEOM[:4], 2**64), ValueError, "groups"),
    "x_shape float": (
        lambda: _C.conv2d_bwd_data(DY, W, (1, 2, 8.5, 8), *GEOM),
        TypeError,
        "x_shape",
    ),
    "x_shape 2**40": (
        lambda: _C.conv2d_bwd_data(DY, W, (1, 2, 2**40, 8), *GEOM),
        ValueError,
        "input",
    ),
    "w_shape huge": (
        lambda: _C.conv2d_bwd_weights(DY, X, (3, 2, 2**62, 3), *GEOM),
        ValueError,
        "weight",
    ),
    "maxpool kernel 2**63": (
        lambda: _C.maxpool2d_fwd(X, (2**63, 2), (2, 2), "explicit", (0, 0)),
        ValueError,
        "kernel_size",
    ),
    "maxpool_bwd x_shape 2**40": (
        lambda: _C.maxpool2d_bwd(
            f32(1, 1, 1, 1), np.zeros((1, 1, 1, 1), np.int64), (1, 1, 2**40, 2**40)
        ),
        ValueError,
        "input_shape",
    ),
    "relu_maxpool2d_bwd x_shape 2**63": (
        lambda: _C.relu_maxpool2d_bwd(PDY, CODES, (1, 3, 2**63, 6)),
        ValueError,
        "x_shape|input_shape",
    ),
    "set_num_threads 2**63": (lambda: _C.set_num_threads(2**63), ValueError, "n"),
    "set_num_threads 2**40": (lambda: _C.set_num_threads(2**40), ValueError, "threads"),
    "set_num_threads float": (lambda: _C.set_num_threads(2.0), TypeError, "n"),
    "set_output_cache_limit 2**64": (
        lambda: _C.set_output_cache_limit(2**64),
        ValueError,
        "bytes",
    ),
    "set_output_cache_limit -1": (lambda: _C.set_output_cache_limit(-1), ValueError, "bytes"),
    "set_conv_algo long name": (
        lambda: _C.set_conv_algo("fwd", "winograd" * 1000),
        ValueError,
        "algorithm",
    ),
    "conv2d_algo stride 2**63": (
        lambda: _C.conv2d_algo(
            "fwd", (1, 1, 8, 8), (2, 1, 3, 3), (2**63, 1), "explicit", (0, 0), (1, 1), 1
        ),
        ValueError,
        "stride",
    ),
    "conv2d_algo x_shape float": (
        lambda: _C.conv2d_algo(
            "fwd", (1, 1, 8.5, 8), (2, 1, 3, 3), (1, 1), "explicit", (0, 0), (1, 1), 1
        ),
        TypeError,
        "x_shape",
    ),
    "dropout_keep 2**62 x 2**62": (
        lambda: _C.dropout_keep((2**62, 2**62), 0.5, 1),
        ValueError,
        "shape",
    ),
    "dropout_keep 2**63": (lambda: _C.dropout_keep((2**63,), 0.5, 1), ValueError, "shape"),
    "dropout_keep float size": (lambda: _C.dropout_keep((2.5,), 0.5, 1), TypeError, "shape"),
    "dropout_keep negative": (lambda: _C.dropout_keep((2, -1), 0.5, 1), ValueError, "shape"),
}


@pytest.mark.parametrize(("call", "exc", "match"), NATIVE_BAD.values(), ids=list(NATIVE_BAD))
def test_native_entry_points_name_the_argument(call, exc, match):
    with pytest.raises(exc, match=match) as info:
        call()
    assert "incompatible function arguments" not in str(info.value)


def test_native_cuda_geometry_helpers_validate_like_the_cpu():
    if not _C.cuda_built:
        pytest.skip("fastconv was built without CUDA")
    c = _C.cuda
    with pytest.raises(ValueError, match="padding"):
        c.conv2d_out_shape(X.shape, W.shape, (1, 1), "explicit", (2**63 - 1, 0), (1, 1), 1)
    with pytest.raises(ValueError, match="dilation"):
        c.conv2d_out_shape(X.shape, W.shape, (1, 1), "explicit", (0, 0), (2**62, 1), 1)
    with pytest.raises(TypeError, match="x_shape"):
        c.conv2d_out_shape((1, 2, 8.5, 8), W.shape, (1, 1), "explicit", (0, 0), (1, 1), 1)
    with pytest.raises(ValueError, match="stride"):
        c.maxpool2d_out_shape(X.shape, (2, 2), (2**63, 2), "explicit", (0, 0))


# --- found by the hostile pass and the fuzz harness (tests/test_fuzz_entry_points.py) -------------


def test_zero_d_bias_is_refused_not_broadcast():
    # np.ascontiguousarray made a 0-D bias 1-D, so it was taken as (C_out,) = (1,)
    x, w = f32(1, 1, 3, 3), f32(1, 1, 1, 1)
    for call in (fastconv.conv2d, fastconv.conv2d_relu_maxpool2d):
        with pytest.raises(ValueError, match="bias must be 1-D"):
            call(x, w, np.array(0.5, np.float32))


def test_padding_strings_match_the_reference_case_insensitively():
    rng = np.random.default_rng(3)
    x = rng.uniform(-1, 1, (1, 2, 5, 5)).astype(np.float32)
    w = rng.uniform(-1, 1, (2, 2, 3, 2)).astype(np.float32)
    want = fastconv.reference.conv2d_fwd(x, w, padding="same")
    for mode in ("same", "SAME", "Same"):
        np.testing.assert_allclose(fastconv.conv2d(x, w, padding=mode), want, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(
            fastconv.reference.conv2d_fwd(x, w, padding=mode), want, rtol=0, atol=0
        )


def test_masked_arrays_are_refused():
    # np.asarray drops the mask: the masked cells would silently take part in the sum
    x = np.ma.masked_array(f32(1, 1, 4, 4), mask=np.eye(4, dtype=bool)[None, None])
    with pytest.raises(TypeError, match="input is a masked array"):
        fastconv.conv2d(x, f32(1, 1, 3, 3))
    with pytest.raises(TypeError, match="input is a masked array"):
        fastconv.max_pool2d(x, 2)


@pytest.mark.parametrize("value", ["no", "", 1, 0, None, 1.0])
def test_flags_must_be_bools(value):
    y = f32(1, 3, 6, 6)
    with pytest.raises(TypeError, match="return_indices"):
        fastconv.max_pool2d(X, 2, return_indices=value)
    with pytest.raises(TypeError, match="with_bias"):
        fastconv.conv2d_bwd_weights(y, X, W.shape, with_bias=value)
    with pytest.raises(TypeError, match="with_bias"):
        fastconv.conv2d_relu_maxpool2d_bwd_weights(PDY, CODES, X, W.shape, with_bias=value)
    with pytest.raises(TypeError, match="relu"):
        _C.conv2d_fwd(X, W, None, *GEOM, relu=value)
    with pytest.raises(TypeError, match="with_bias"):
        _C.conv2d_bwd_weights(y, X, W.shape, *GEOM, with_bias=value)


def test_numpy_bools_are_flags():
    y = f32(1, 3, 6, 6)
    assert fastconv.conv2d_bwd_weights(y, X, W.shape, with_bias=np.bool_(False))[1] is None
    assert len(fastconv.max_pool2d(X, 2, return_indices=np.bool_(True))) == 2


def test_optimizer_hyper_parameters_must_be_finite():
    from fastconv.nn import optimizers

    for make in (optimizers.SGD, optimizers.Adam):
        for lr in (math.inf, -math.inf, math.nan, 0.0, -1.0):
            with pytest.raises(ValueError, match="learning_rate"):
                make(learning_rate=lr)
        assert make(learning_rate=np.float32(0.5)).learning_rate == 0.5
        with pytest.raises(TypeError, match="learning_rate"):
            make(learning_rate=np.bool_(True))
    with pytest.raises(ValueError, match="weight_decay"):
        optimizers.SGD(weight_decay=math.inf)


@pytest.mark.parametrize(
    ("make", "name"),
    [
        (lambda v: fastconv.nn.Conv2D(v, 3), "filters"),
        (lambda v: fastconv.nn.Conv2D(4, v), "kernel_size"),
        (lambda v: fastconv.nn.Conv2D(4, 3, strides=v), "strides"),
        (lambda v: fastconv.nn.MaxPooling2D(v), "pool_size"),
        (lambda v: fastconv.nn.Dense(v), "units"),
    ],
)
@pytest.mark.parametrize("value", [2**31, 2**63, 2**100])
def test_layer_sizes_past_the_limit(make, name, value):
    # once NumPy's "Maximum allowed dimension exceeded" at build time, naming nothing
    with pytest.raises(ValueError, match=rf"{name} must be at most {RANGE}"):
        make(value)


# --- determinism under concurrency, and sizes past 2^31 (docs/GUARANTEES.md) ---------------------


def test_concurrent_calls_are_bitwise_equal_to_serial_ones(rng):
    """Every op called from 4 Python threads at once (the kernels run without the GIL, sharing the
    thread pool and the output cache) gives the serial call's bits, and leaves its inputs as they
    were."""
    x = rng.uniform(-1, 1, (3, 8, 13, 11)).astype(np.float32)
    w = rng.uniform(-1, 1, (12, 8, 3, 3)).astype(np.float32)
    b = rng.uniform(-1, 1, 12).astype(np.float32)
    y = fastconv.conv2d(x, w, b, padding=1)
    dy = rng.uniform(-1, 1, y.shape).astype(np.float32)
    pooled, codes = fastconv.conv2d_relu_maxpool2d(x, w, b, padding=1)
    pdy = rng.uniform(-1, 1, pooled.shape).astype(np.float32)
    _, idx = fastconv.max_pool2d(x, 3, 2, return_indices=True)
    calls = {
        "fwd": lambda: fastconv.conv2d(x, w, b, padding=1, activation="relu"),
        "fwd_s2": lambda: fastconv.conv2d(x, w, stride=2),
        "bwd_data": lambda: fastconv.conv2d_bwd_data(dy, w, x.shape, padding=1),
        "bwd_weights": lambda: fastconv.conv2d_bwd_weights(dy, x, w.shape, padding=1),
        "pool": lambda: fastconv.max_pool2d(x, 3, 2, return_indices=True),
        "pool_bwd": lambda: fastconv.max_pool2d_backward(idx.astype(np.float32), idx, x.shape),
        "fused": lambda: fastconv.conv2d_relu_maxpool2d(x, w, b, padding=1),
        "fused_bwd_data": lambda: fastconv.conv2d_relu_maxpool2d_bwd_data(
            pdy, codes, w, x.shape, padding=1
        ),
        "fused_bwd_weights": lambda: fastconv.conv2d_relu_maxpool2d_bwd_weights(
            pdy, codes, x, w.shape, padding=1
        ),
    }
    inputs = (x, w, b, dy, pdy, codes, idx)
    before = [a.copy() for a in inputs]
    serial = {name: call() for name, call in calls.items()}
    from concurrent.futures import ThreadPoolExecutor

    names = list(calls) * 6
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda name: (name, calls[name]()), names))
    for name, got in results:
        want = serial[name]
        for g, s in zip(
            got if isinstance(got, tuple) else (got,), want if isinstance(want, tuple) else (want,)
        ):
            if s is None:
                assert g is None
            else:
                assert (g.dtype, g.shape) == (s.dtype, s.shape), name
                assert g.tobytes() == s.tobytes(), f"{name}: a concurrent call gave other bits"
    for old, new in zip(before, inputs):
        assert old.tobytes() == new.tobytes(), "an input was modified"


@pytest.mark.skipif(
    os.environ.get("FASTCONV_BIG_TESTS") != "1",
    reason="needs ~20 GB of memory: set FASTCONV_BIG_TESTS=1 to run",
)
def test_max_pool_and_conv_past_2_31_elements():
    """One plane of 2^31 + 2^16 elements: flat indices past int32 come back right, and a 1x1 conv
    over it (a copy scaled by 2) writes its last elements."""
    h, w = 2**16 + 1, 2**15
    x = np.zeros((1, 1, h, w), np.float32)
    x[0, 0, -1, -1] = 7.0
    x[0, 0, 5, 3] = 3.0
    y, idx = fastconv.max_pool2d(x, (h, 2), return_indices=True)
    assert y.shape == (1, 1, 1, 2**14)
    assert idx[0, 0, 0, -1] == (h - 1) * w + (w - 1)
    assert y[0, 0, 0, -1] == 7.0
    assert idx[0, 0, 0, 1] == 5 * w + 3
    assert y[0, 0, 0, 1] == 3.0
    del y, idx
    out = fastconv.conv2d(x, np.full((1, 1, 1, 1), 2.0, np.float32))
    assert out[0, 0, -1, -1] == 14.0
    assert out[0, 0, 5, 3] == 6.0
    assert float(out.sum(dtype=np.float64)) == 20.0


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"padding": 2**63 - 1}, ValueError, "padding"),
        ({"dilation": 2**62}, ValueError, "dilation"),
        ({"stride": 2**64}, ValueError, "stride"),
        ({"groups": math.nan}, TypeError, "groups"),
        ({"x_shape": (1, 2, 8.5, 8)}, TypeError, "x_shape"),
        ({"x_shape": (1, 2, 2**63, 8)}, ValueError, "x_shape"),
        ({"w_shape": (3, 2, 3, True)}, TypeError, "w_shape"),
    ],
)
def test_conv2d_algo_validates_like_the_ops(kwargs, exc, match):
    x_shape, w_shape = kwargs.pop("x_shape", X.shape), kwargs.pop("w_shape", W.shape)
    with pytest.raises(exc, match=match):
        fastconv.conv2d_algo("fwd", x_shape, w_shape, **kwargs)
