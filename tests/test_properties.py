"""Property-based checks (Hypothesis): conv2d and max_pool2d on geometries drawn at random.

The other suites run named problems and a fixed list of seeded random ones. Here Hypothesis draws
the geometry itself (batch, channels, groups and depthwise, kernel, stride, padding as an int, a
pair, "same" or "valid", dilation, odd sizes down to one output) and shrinks a failure to the
smallest problem that still fails. Each example runs on every CPU path this machine has, with
debug poison on, against the float64 reference: conv2d forward and backward within the float32
tolerance of test_conv2d, max-pool values and indices exactly, its backward within rounding, and
conv + ReLU + 2x2 pool equal to the unfused native ops and, on integer inputs (exact float32
sums), to the reference (within the Winograd F(2x2, 5x5) tolerance where AVX-512 takes it), with
its three gradients equal to the two-step ones (test_conv_relu_pool's contract). Last, conv2d's
arguments fuzzed, valid and not: fastconv must refuse (ValueError/TypeError) exactly what the
reference refuses and match it on the rest.

Runs are reproducible: the default profile derandomizes (the same examples every run, as CI
needs) and keeps no example database. HYPOTHESIS_PROFILE=explore draws new, and more, examples.
"""

from __future__ import annotations

import dataclasses
import os

import fastconv
import numpy as np
import shapes
from conftest import (
    assert_close,
    assert_identical,
    conv_algo,
    conv_tolerance,
    cpu_isa,
    winograd_5x5,
)
from fastconv import reference as ref
from hypothesis import assume, event, given, settings
from hypothesis import strategies as st
from test_conv2d import _arrays, check_backward, check_fwd
from test_conv_relu_pool import check_fused

settings.register_profile(
    "default", max_examples=200, deadline=None, derandomize=True, database=None
)
settings.register_profile("explore", max_examples=2000, deadline=None, database=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@st.composite
def conv_problems(draw):
    """A shapes.ConvShape with at least one output pixel."""
    groups = draw(st.sampled_from(["one", "one", "few", "depthwise"]))
    if groups == "depthwise":
        g, cg, kg = draw(st.integers(2, 9)), 1, draw(st.integers(1, 2))
    else:
        g = 1 if groups == "one" else draw(st.integers(2, 4))
        cg, kg = draw(st.integers(1, 10)), draw(st.integers(1, 10))
    kernel = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = draw(st.sampled_from([(1, 1), (1, 1), (1, 1), (2, 1), (1, 2), (2, 2)]))
    small = st.integers(0, 2)
    paddings = [small, st.tuples(small, small), st.just("valid")]
    if stride == (1, 1):
        paddings.append(st.just("same"))
    s = shapes.ConvShape(
        "hypothesis",
        draw(st.integers(1, 3)),
        cg * g,
        1,
        1,
        kg * g,
        kernel,
        stride,
        draw(st.one_of(*paddings)),
        dilation,
        g,
        bias=draw(st.booleans()),
    )
    top, bottom, left, right = s.pads()
    reach_h = dilation[0] * (kernel[0] - 1) + 1
    reach_w = dilation[1] * (kernel[1] - 1) + 1
    h = max(1, reach_h - top - bottom) + draw(st.integers(0, 14))
    w = max(1, reach_w - left - right) + draw(st.integers(0, 20))
    return dataclasses.replace(s, h=h, w=w)


@st.composite
def pool_problems(draw):
    """A shapes.PoolShape with at least one output pixel (padding at most half the kernel)."""
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    stride = draw(st.one_of(st.none(), st.tuples(st.integers(1, 3), st.integers(1, 3))))
    padding = (draw(st.integers(0, kernel[0] // 2)), draw(st.integers(0, kernel[1] // 2)))
    h = max(1, kernel[0] - 2 * padding[0]) + draw(st.integers(0, 20))
    w = max(1, kernel[1] - 2 * padding[1]) + draw(st.integers(0, 40))
    n, c = draw(st.integers(1, 3)), draw(st.integers(1, 5))
    return shapes.PoolShape("hypothesis", n, c, h, w, kernel, stride, padding)


@given(s=conv_problems(), seed=st.integers(0, 2**32 - 1))
def test_conv2d_random_geometry(s, seed):
    x, w, b, dy = _arrays(np.random.default_rng(seed), s)
    for isa in fastconv.cpu_isas():
        with cpu_isa(isa):
            check_fwd(s, x, w, b)
            check_backward(s, x, w, dy)


@st.composite
def image_lanes_problems(draw):
    """A stride-1 problem with a 5-wide kernel (the AVX2 images-in-lanes bwd_data's geometry):
    batches 1-20 around its 8-image groups, kernels 1-5 high, pads up to the kernel."""
    kh = draw(st.integers(1, 5))
    s = shapes.ConvShape(
        "hypothesis.image_lanes",
        draw(st.integers(1, 20)),
        draw(st.integers(1, 14)),
        1,
        1,
        draw(st.integers(1, 18)),
        (kh, 5),
        padding=(draw(st.integers(0, kh - 1)), draw(st.integers(0, 4))),
    )
    top, bottom, left, right = s.pads()
    h = max(1, kh - top - bottom) + draw(st.integers(0, 12))
    w = max(1, 5 - left - right) + draw(st.integers(0, 20))
    return dataclasses.replace(s, h=h, w=w)


@given(s=image_lanes_problems(), seed=st.integers(0, 2**32 - 1))
def test_image_lanes_bwd_data_random_geometry(s, seed):
    """winograd_images forced, on the paths that have it, against the reference."""
    x, w, _, dy = _arrays(np.random.default_rng(seed), s)
    atol, rtol = conv_tolerance(s.k * s.kernel[0] * s.kernel[1])
    for isa in fastconv.cpu_isas():
        with cpu_isa(isa):
            if "winograd_images" not in fastconv.conv2d_algos(
                "bwd_data", s.x_shape, s.w_shape, **s.kwargs()
            ):
                continue
            with conv_algo("bwd_data", "winograd_images"):
                dx = fastconv.conv2d_bwd_data(dy, w, s.x_shape, **s.kwargs())
            want = ref.conv2d_bwd_data(dy, w, s.x_shape, **s.kwargs())
            assert_close(dx, want, atol, rtol, f"{s}: dx by winograd_images on {isa}")


@given(s=pool_problems(), seed=st.integers(0, 2**32 - 1), ties=st.booleans())
def test_max_pool2d_random_geometry(s, seed, ties):
    rng = np.random.default_rng(seed)
    if ties:  # small integers: most windows hold several equal maxima
        x = rng.integers(-2, 3, s.x_shape).astype(np.float32)
    else:
        x = rng.standard_normal(s.x_shape).astype(np.float32)
    dy = rng.uniform(-1, 1, s.y_shape).astype(np.float32)
    ry, ridx = ref.maxpool2d_fwd(x, **s.kwargs())
    rdx = ref.maxpool2d_bwd(dy, ridx, s.x_shape)
    (kh, kw), (sh, sw) = s.kernel, s.stride or s.kernel
    overlap = -(-kh // sh) * -(-kw // sw)  # how many windows may add into one cell
    for isa in fastconv.cpu_isas():
        with cpu_isa(isa):
            y, idx = fastconv.max_pool2d(x, **s.kwargs(), return_indices=True)
            assert_identical(idx, ridx, f"{s}: indices ({isa})")
            assert_identical(y, ry.astype(np.float32), f"{s}: values ({isa})")
            dx = fastconv.max_pool2d_backward(dy, idx, s.x_shape)
            assert_close(dx, rdx, 1e-7 * overlap, 1e-6 * overlap, f"{s}: dx ({isa})")


@given(s=conv_problems(), seed=st.integers(0, 2**32 - 1))
def test_conv_relu_pool_random_geometry(s, seed):
    assume(min(s.out_hw) >= 2)  # at least one 2x2 window
    rng = np.random.default_rng(seed)
    x = rng.integers(-2, 3, s.x_shape).astype(np.float32)  # small integers: exact sums, ties
    w = rng.integers(-1, 2, s.w_shape).astype(np.float32)
    b = rng.integers(-1, 2, s.k).astype(np.float32) if s.bias else None
    rp, rc = ref.conv2d_relu_maxpool2d(x, w, b, **s.kwargs())
    dy = rng.uniform(-1, 1, rp.shape).astype(np.float32)
    y_shape = (s.n, s.k, *s.out_hw)
    for isa in fastconv.cpu_isas():
        with cpu_isa(isa):
            pooled, codes, _, _ = check_fused(s, x, w, b)  # == the unfused native ops, exactly
            if winograd_5x5(s) and isa == "avx512":  # its transforms round even integer sums
                atol, rtol = conv_tolerance((s.c // s.groups) * 25)
                assert_close(pooled, rp, 4 * atol, rtol, f"pooled ({isa})")
            else:
                assert_identical(pooled, rp.astype(np.float32), f"pooled ({isa})")
                assert_identical(codes, rc, f"codes ({isa})")
            dz = fastconv.relu_maxpool2d_backward(dy, codes, y_shape)
            assert_identical(
                dz,
                ref.relu_maxpool2d_backward(dy, codes, y_shape).astype(np.float32),
                f"unpooled gradient ({isa})",
            )
            want_w, want_b = fastconv.conv2d_bwd_weights(dz, x, w.shape, **s.kwargs())
            got_w, got_b = fastconv.conv2d_relu_maxpool2d_bwd_weights(
                dy, codes, x, w.shape, **s.kwargs()
            )
            assert_identical(got_w, want_w, f"grad_weight ({isa})")
            assert_identical(got_b, want_b, f"grad_bias ({isa})")
            got_x = fastconv.conv2d_relu_maxpool2d_bwd_data(dy, codes, w, x.shape, **s.kwargs())
            assert_identical(
                got_x, fastconv.conv2d_bwd_data(dz, w, x.shape, **s.kwargs()), f"grad_input ({isa})"
            )


@st.composite
def conv_arguments(draw):
    """conv2d's arguments, mostly valid, now and then not: zero or negative sizes, channels that
    do not match the weight, groups that do not divide, a kernel larger than the padded input,
    "same" with a stride, an unknown padding string, a bias of the wrong length."""

    def one(good, bad):
        return st.sampled_from(good * 8 + bad)

    def pair_of(good, bad):
        return st.one_of(one(good, bad), st.tuples(one(good, bad), one(good, bad)))

    g = draw(one([1, 1, 2, 3], [0, -1]))
    cg, kg = draw(st.integers(1, 4)), draw(st.integers(1, 3))
    c = cg * max(g, 1) + draw(one([0], [1]))  # + 1: groups no longer divide C_in
    k = kg * max(g, 1) + draw(one([0], [1]))
    x_shape = (draw(st.integers(0, 2)), c, draw(st.integers(1, 9)), draw(st.integers(1, 9)))
    w_shape = (k, cg + draw(one([0], [1])), draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    kwargs = dict(
        stride=draw(pair_of([1, 1, 2, 3], [0, -1])),
        padding=draw(st.one_of(pair_of([0, 1, 2], [-1]), one(["same", "valid"], ["full"]))),
        dilation=draw(pair_of([1, 1, 2], [0, -1])),
        groups=g,
    )
    b_len = draw(one([None, k], [k + 1]))
    return x_shape, w_shape, b_len, kwargs


@given(args=conv_arguments(), seed=st.integers(0, 2**32 - 1))
def test_conv2d_fuzzed_arguments_raise_or_match(args, seed):
    """Every argument combination either raises ValueError/TypeError in both fastconv and the
    reference, or gives the reference's answer: no crash, no silent wrong result."""
    x_shape, w_shape, b_len, kwargs = args
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, x_shape).astype(np.float32)
    w = rng.uniform(-1, 1, w_shape).astype(np.float32)
    b = None if b_len is None else rng.uniform(-1, 1, b_len).astype(np.float32)
    try:
        want = ref.conv2d_fwd(x, w, b, **kwargs)
    except (ValueError, TypeError):
        want = None
    event("refused" if want is None else "computed")
    try:
        got = fastconv.conv2d(x, w, b, **kwargs)
    except (ValueError, TypeError) as e:
        refused = e
    else:
        refused = None
    if want is None:
        assert refused is not None, f"fastconv computed what the reference refuses: {kwargs}"
        return
    assert refused is None, f"fastconv raised {refused!r}; the reference computes {kwargs}"
    atol, rtol = conv_tolerance(w_shape[1] * w_shape[2] * w_shape[3])
    assert_close(got, want, atol, rtol, f"conv2d {x_shape} {w_shape} {kwargs}")
