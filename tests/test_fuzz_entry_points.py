"""Fuzzing the functional entry points (Hypothesis) with hostile arguments.

Hypothesis draws every argument of fastconv's functional API from a hostile mix: small ints, the
values around the geometry limits (2**31 - 1, 2**31, 2**63, -2**63 - 1, 2**100), negative values,
floats (1.5, 2.0, NaN, inf), bools, None, strings, NumPy scalars, tuples of the wrong length, and
arrays of odd shapes (0-sized dimensions, the wrong number of dimensions) and dtypes. The only
outcomes allowed:
  - ValueError or TypeError with a message, or
  - a result equal to fastconv.reference's (which must then accept the same arguments);
and in every case the input arrays are unchanged afterwards. A crash, a hang, any other exception
(OverflowError, MemoryError, pybind11's signature dump ...), or a modified input fails.

The integers are either small or past the limits: a valid geometry built from mid-size values
(padding 2**29 on an 8x8 image) is a legitimate request for gigabytes, not a hostile one.

CI runs a bounded, derandomized pass (the same examples every run, a few seconds). A longer run
with fresh examples: HYPOTHESIS_PROFILE=explore FASTCONV_FUZZ_EXAMPLES=20000 pytest
tests/test_fuzz_entry_points.py (explore alone: 2000 examples per entry point).
"""

from __future__ import annotations

import math
import os

import fastconv
import numpy as np
import pytest
from conftest import assert_close, conv_tolerance
from fastconv import reference as ref
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

_EXPLORE = os.environ.get("HYPOTHESIS_PROFILE") == "explore"
_EXAMPLES = int(os.environ.get("FASTCONV_FUZZ_EXAMPLES", 2000 if _EXPLORE else 100))
fuzz = settings(
    max_examples=_EXAMPLES,
    deadline=None,
    derandomize=not _EXPLORE,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

EDGES = [
    2**31 - 1,
    2**31,
    2**32,
    2**62,
    2**63 - 1,
    2**63,
    2**64,
    2**100,
    -1,
    -(2**31),
    -(2**63),
    -(2**63) - 1,
]
small_ints = st.integers(1, 3)
edge_ints = st.sampled_from(EDGES)
junk = st.one_of(
    st.sampled_from([1.5, 2.0, math.nan, math.inf, -math.inf, True, False, None, "2", b"2", 1j]),
    st.sampled_from([np.float32(2), np.float64(1.5), np.bool_(True), np.array([2])]),
)
np_ints = st.builds(
    lambda v, t: t(v), st.integers(1, 3), st.sampled_from([np.int8, np.int64, np.uint16])
)


def mostly(valid, hostile, weight=6):
    """valid about `weight` times in `weight` + 1 draws, else hostile (so that several arguments
    drawn together are still often all valid, and the computing paths get exercised too)."""
    return st.sampled_from([False] * weight + [True]).flatmap(lambda h: hostile if h else valid)


hostile_scalar = st.one_of(edge_ints, junk, st.integers(-3, 0))
scalar = mostly(st.one_of(small_ints, np_ints), hostile_scalar)
pair = mostly(
    st.one_of(scalar, st.tuples(scalar, scalar)),
    st.one_of(
        st.lists(scalar, min_size=2, max_size=2),
        st.tuples(scalar),
        st.tuples(scalar, scalar, scalar),
        junk,
    ),
)
padding = mostly(pair, st.sampled_from(["same", "valid", "SAME", "full", ""]), weight=3)
shape_entry = mostly(st.integers(0, 9), st.one_of(edge_ints, junk, np_ints), weight=8)
shape4 = mostly(
    st.tuples(shape_entry, shape_entry, shape_entry, shape_entry),
    st.one_of(st.lists(shape_entry, min_size=3, max_size=5).map(tuple), junk),
)
dtypes = st.sampled_from(
    [np.float32] * 6 + [np.float64, np.int8, np.uint8, np.float16, bool, complex]
)


@st.composite
def arrays(draw, ndim=4, max_side=6):
    """A small array: usually `ndim`-D, sometimes not; sides 0..max_side; odd dtypes."""
    nd = draw(st.sampled_from([ndim] * 8 + [ndim - 1, ndim + 1]))
    sides = mostly(st.integers(1, max_side), st.just(0), weight=12)
    shape = tuple(draw(sides) for _ in range(max(nd, 0)))
    dtype = draw(dtypes)
    seed = draw(st.integers(0, 2**16))
    a = np.random.default_rng(seed).uniform(-3, 3, shape).astype(dtype)
    if draw(st.booleans()) and a.ndim >= 1 and a.shape[-1] > 1:
        a = a[..., ::-1]  # a negative-stride view
    if draw(st.integers(0, 9)) == 0:
        a.flags.writeable = False
    return a


@st.composite
def conv_arrays(draw):
    """(x, w, b, groups): mostly consistent shapes with a few output pixels, sometimes any arrays;
    groups mostly the one the shapes were made for."""
    if draw(st.integers(0, 3)) == 0:
        b = draw(st.one_of(st.none(), arrays(ndim=1)))
        return draw(arrays()), draw(arrays()), b, draw(scalar)
    g = draw(st.integers(1, 2))
    cin, cout = g * draw(st.integers(1, 2)), g * draw(st.integers(1, 2))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    n, h, w = draw(st.integers(0, 2)), draw(st.integers(1, 7)), draw(st.integers(1, 7))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    x = rng.uniform(-1, 1, (n, cin, h, w)).astype(np.float32)
    wt = rng.uniform(-1, 1, (cout, cin // g, kh, kw)).astype(np.float32)
    b = rng.uniform(-1, 1, cout).astype(np.float32) if draw(st.booleans()) else None
    return x, wt, b, draw(mostly(st.just(g), scalar))


def snapshot(*arrays_):
    return [None if a is None else np.array(a, copy=True) for a in arrays_]


def assert_unchanged(before, *arrays_):
    for old, new in zip(before, arrays_):
        if old is not None:
            np.testing.assert_array_equal(np.asarray(new), old, err_msg="an input was modified")


def call_hostile(fn, *args, **kwargs):
    """fn's result, or None when it raised ValueError / TypeError (with a message)."""
    try:
        result = fn(*args, **kwargs)
    except (ValueError, TypeError) as e:
        refused = e
    else:
        event(f"{fn.__name__}: computed")
        return result
    message = str(refused)
    assert message, f"{type(refused).__name__} without a message"
    assert "incompatible function arguments" not in message, message
    event(f"{fn.__name__}: {type(refused).__name__}")
    return None


@fuzz
@given(conv_arrays(), pair, padding, pair)
def test_conv2d_hostile_arguments(arrays_, stride, pad, dilation):
    x, w, b, groups = arrays_
    before = snapshot(x, w, b)
    kwargs = dict(stride=stride, padding=pad, dilation=dilation, groups=groups)
    got = call_hostile(fastconv.conv2d, x, w, b, **kwargs)
    assert_unchanged(before, x, w, b)
    if got is None:
        return
    want = ref.conv2d_fwd(x, w, b, **kwargs)  # fastconv accepted: the reference must too
    atol, rtol = conv_tolerance(int(np.prod(w.shape[1:])))
    assert_close(got, want, atol, rtol, f"conv2d {x.shape} {w.shape} {kwargs}")


@fuzz
@given(conv_arrays(), shape4, pair, padding, pair, st.integers(0, 2**16))
def test_conv2d_backward_hostile_arguments(arrays_, shape, stride, pad, dilation, seed):
    """conv2d_bwd_data / conv2d_bwd_weights with a hostile input_shape / weight_shape and geometry."""
    x, w, _, groups = arrays_
    kwargs = dict(stride=stride, padding=pad, dilation=dilation, groups=groups)
    y = call_hostile(fastconv.conv2d, x, w, **kwargs)
    rng = np.random.default_rng(seed)
    dy = (
        rng.uniform(-1, 1, y.shape).astype(np.float32)
        if y is not None
        else rng.uniform(-1, 1, (1, 2, 3, 3)).astype(np.float32)
    )
    before = snapshot(dy, w, x)
    for fn, arg, real in (
        (fastconv.conv2d_bwd_data, w, np.shape(x)),
        (fastconv.conv2d_bwd_weights, x, np.shape(w)),
    ):
        for s in (shape, real):
            got = call_hostile(fn, dy, arg, s, **kwargs)
            assert_unchanged(before, dy, w, x)
            if (
                got is None
                or s is shape
                and tuple(np.shape(got if fn is not fastconv.conv2d_bwd_weights else got[0]))
                != tuple(real)
            ):
                continue
            if fn is fastconv.conv2d_bwd_data:
                want = ref.conv2d_bwd_data(dy, w, real, **kwargs)
                assert_close(got, want, *conv_tolerance(w.shape[0] * 9), "bwd_data")
            else:
                want_w, want_b = ref.conv2d_bwd_weights(dy, x, real, **kwargs)
                assert_close(got[0], want_w, *conv_tolerance(dy.size), "bwd_weights")
                assert_close(got[1], want_b, *conv_tolerance(dy.size), "bwd_bias")


@fuzz
@given(arrays(max_side=7), pair, mostly(st.none(), pair, weight=1), padding)
def test_max_pool2d_hostile_arguments(x, kernel_size, stride, pad):
    before = snapshot(x)
    got = call_hostile(fastconv.max_pool2d, x, kernel_size, stride, pad, return_indices=True)
    assert_unchanged(before, x)
    if got is None:
        return
    if isinstance(pad, str):  # the reference pools with explicit padding only
        if pad.lower() != "valid":
            n, c, h, w = x.shape
            sh, sw = ref.pair(kernel_size if stride is None else stride, "stride")
            assert got[0].shape == (n, c, -(-h // sh), -(-w // sw))  # "same": ceil(in / stride)
            return
        pad = 0
    want_y, want_i = ref.maxpool2d_fwd(x, kernel_size, stride, pad)
    np.testing.assert_array_equal(got[0], want_y.astype(np.float32))
    np.testing.assert_array_equal(got[1], want_i)


@st.composite
def forged_indices(draw, shape):
    """int64 indices of `shape`: in range, out of range, negative, or the extremes."""
    values = st.one_of(st.integers(0, 40), st.integers(0, 40), st.sampled_from(EDGES[:7] + [-1]))
    flat = draw(st.lists(values.filter(lambda v: -(2**63) <= v < 2**63), min_size=1, max_size=1))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    idx = rng.integers(0, 41, shape).astype(np.int64)
    if idx.size:
        idx.flat[rng.integers(0, idx.size)] = flat[0]
    return idx


@fuzz
@given(st.data(), shape4, st.one_of(st.none(), pair), st.one_of(st.none(), pair), padding)
def test_max_pool2d_backward_forged_indices(data, input_shape, kernel_size, stride, pad):
    y_shape = data.draw(st.tuples(*[st.integers(0, 3)] * 4))
    dy = np.random.default_rng(0).uniform(-1, 1, y_shape).astype(np.float32)
    idx = data.draw(forged_indices(y_shape))
    kwargs = {}
    if kernel_size is not None:
        kwargs = dict(kernel_size=kernel_size, stride=stride, padding=pad)
    before = snapshot(dy, idx)
    got = call_hostile(fastconv.max_pool2d_backward, dy, idx, input_shape, **kwargs)
    assert_unchanged(before, dy, idx)
    if got is None:
        return
    want = ref.maxpool2d_bwd(dy, idx, tuple(int(v) for v in input_shape))
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


@fuzz
@given(conv_arrays(), pair, padding, st.integers(0, 2**16), st.sampled_from([0, 3, 4, 7, 8, 255]))
def test_fused_conv_pool_hostile_arguments(arrays_, stride, pad, seed, forged_code):
    """conv2d_relu_maxpool2d and its backward ops, codes forged (a code >= 8 is a ValueError)."""
    x, w, b, _ = arrays_
    before = snapshot(x, w, b)
    got = call_hostile(fastconv.conv2d_relu_maxpool2d, x, w, b, stride=stride, padding=pad)
    assert_unchanged(before, x, w, b)
    if got is None:
        return
    pooled, codes = got
    want = ref.conv2d_relu_maxpool2d(x, w, b, stride=stride, padding=pad)
    atol, rtol = conv_tolerance(int(np.prod(w.shape[1:])))
    assert_close(pooled, want[0] if isinstance(want, tuple) else want, atol, rtol, "fused")
    conv_shape = fastconv.conv2d(x, w, stride=stride, padding=pad).shape
    dy = np.random.default_rng(seed).uniform(-1, 1, pooled.shape).astype(np.float32)
    forged = codes.copy()
    if forged.size:
        forged.flat[seed % forged.size] = forged_code
    before = snapshot(dy, forged, x, w)
    dconv = call_hostile(fastconv.relu_maxpool2d_backward, dy, forged, conv_shape)
    dx = call_hostile(
        fastconv.conv2d_relu_maxpool2d_bwd_data, dy, forged, w, x.shape, stride=stride, padding=pad
    )
    dw = call_hostile(
        fastconv.conv2d_relu_maxpool2d_bwd_weights, dy, forged, x, w.shape, stride, pad
    )
    assert_unchanged(before, dy, forged, x, w)
    refused = forged_code >= 8 and forged.size > 0
    for result in (dconv, dx, dw):
        assert (result is None) == refused, f"code {forged_code}: {result is None=}"
    if not refused:
        want_dconv = ref.relu_maxpool2d_backward(dy, forged, conv_shape)
        np.testing.assert_array_equal(dconv, want_dconv.astype(np.float32))


@fuzz
@given(st.one_of(scalar, st.floats(allow_nan=True, allow_infinity=True)))
def test_settings_hostile_values(value):
    threads, cache_mb = fastconv.get_num_threads(), fastconv.get_output_cache_mb()
    try:
        call_hostile(fastconv.set_num_threads, value)
        call_hostile(fastconv.set_output_cache_mb, value)
        call_hostile(fastconv.set_winograd, value)
        call_hostile(fastconv.set_cpu_isa, value)
    finally:
        fastconv.set_num_threads(threads)
        fastconv.set_output_cache_mb(cache_mb)
        fastconv.set_winograd(True)


@pytest.mark.parametrize("value", EDGES)
def test_edges_pass_through_reference_geometry_helpers(value):
    """fastconv.reference's size helpers answer or refuse: no OverflowError (pure Python ints)."""
    for fn, args in (
        (ref.conv2d_out_size, (8, 3, value)),
        (ref.conv2d_out_size, (8, 3, 1, value)),
        (ref.maxpool2d_out_size, (8, 2, value)),
    ):
        try:
            fn(*args)
        except (ValueError, TypeError):
            pass
