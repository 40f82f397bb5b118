"""The CPU conv algorithm registry as an executable spec: which algorithm each NETWORKS.md layer
runs, per pass, on each CPU path (docs/DESIGN.md, "Which algorithm runs"), and the introspection
API around it (fastconv.conv2d_algo / conv2d_algos / set_conv_algo); likewise the max-pool kernel
each pooling layer takes (fastconv.max_pool2d_algo).

A change to a heuristic that moves a layer to another algorithm fails here: update the table with
the measurement that justifies the move (the registry's comment next to the entry).
"""

from __future__ import annotations

import fastconv
import pytest
import shapes
from conftest import conv_algo, cpu_isa, winograd_allowed

PASSES = ("fwd", "bwd_data", "bwd_weights")

# (fwd, bwd_data, bwd_weights) per layer and CPU path.
EXPECTED = {
    "portable": dict.fromkeys(shapes.NETWORK_CONV, ("gemm", "gemm", "gemm")),
    "avx2": {
        "cnn1.conv1": ("winograd_one_plane", "direct", "direct"),
        "cnn1.conv2": ("winograd_tiles_4x2", "winograd_tiles_4x2", "winograd_rows3"),
        "keras.conv1": ("direct_shifted", "direct", "direct"),
        "keras.conv2": ("winograd_channels", "winograd_transposed", "winograd_rows3"),
        "fashion.conv1": ("direct_shifted", "direct", "direct"),
        "fashion.conv2": ("winograd_channels", "winograd_transposed", "winograd_channels"),
        "lenet.conv1": ("direct_shifted", "direct", "direct"),
        "lenet.conv2": ("winograd_rows", "winograd_images", "channel_lanes"),
    },
    "avx512": {
        "cnn1.conv1": ("direct_shifted", "direct", "direct"),
        "cnn1.conv2": ("winograd_tiles_4x2", "winograd_tiles_4x2", "winograd_rows3"),
        "keras.conv1": ("direct_shifted", "gemm", "direct"),
        "keras.conv2": ("winograd_channels", "winograd_transposed", "winograd_rows3"),
        "fashion.conv1": ("direct_shifted", "direct", "direct"),
        "fashion.conv2": ("winograd_channels", "winograd_transposed", "winograd_channels"),
        "lenet.conv1": ("direct_shifted", "direct", "direct"),
        "lenet.conv2": ("winograd_rows", "winograd_images", "tap_lanes"),
    },
}

# With set_winograd(False), the layers Winograd takes fall back to these.
EXPECTED_NO_WINOGRAD = {
    "avx2": {
        "cnn1.conv1": ("direct_shifted", "direct", "direct"),
        "cnn1.conv2": ("direct", "direct", "tap_lanes_flat"),
        "keras.conv2": ("direct", "scatter", "tap_lanes"),
        "fashion.conv2": ("channel_lanes", "scatter", "tap_lanes"),
        "lenet.conv2": ("channel_lanes", "dy_lanes", "channel_lanes"),
    },
    "avx512": {
        "cnn1.conv2": ("direct", "direct", "tap_lanes_flat"),
        "keras.conv2": ("channel_lanes", "scatter", "tap_lanes"),
        "fashion.conv2": ("channel_lanes", "scatter", "tap_lanes"),
        "lenet.conv2": ("channel_lanes", "dy_lanes", "tap_lanes"),
    },
}
# (fwd, bwd) max-pool kernels per pooling layer and CPU path: the 2x2/2 vector forward; the
# backward's tile writer, except keras.pool1, whose 60 MB call goes to DRAM, where zero-fill +
# scatter measured faster (maxpool2d_cpu.cpp, maxpool2d_bwd_uses_tiles).
_SIMD_POOL = {
    name: ("simd_2x2s2", "scatter" if name == "keras.pool1" else "tiles")
    for name in shapes.NETWORK_POOL
}
EXPECTED_POOL = {
    "portable": dict.fromkeys(shapes.NETWORK_POOL, ("generic", "scatter")),
    "avx2": _SIMD_POOL,
    "avx512": _SIMD_POOL,
}
POOL_CASES = [(isa, layer) for isa in EXPECTED_POOL for layer in shapes.NETWORK_POOL]

NO_WINOGRAD_CASES = [(isa, layer) for isa, t in EXPECTED_NO_WINOGRAD.items() for layer in sorted(t)]

CASES = [(isa, layer) for isa in EXPECTED for layer in shapes.NETWORK_CONV]


def _algos(layer):
    s = shapes.conv(layer)
    return tuple(fastconv.conv2d_algo(p, s.x_shape, s.w_shape, **s.kwargs()) for p in PASSES)


def test_every_network_layer_is_pinned():
    for isa, table in EXPECTED.items():
        assert sorted(table) == sorted(shapes.NETWORK_CONV), isa


@pytest.mark.parametrize(("isa", "layer"), CASES, indirect=["isa"])
def test_network_layer_algorithms(isa, layer):
    assert _algos(layer) == EXPECTED[isa][layer]


@pytest.mark.parametrize(("isa", "layer"), NO_WINOGRAD_CASES)
def test_network_layer_algorithms_without_winograd(isa, layer):
    if isa not in fastconv.cpu_isas():
        pytest.skip(f"this CPU has no {isa}")
    with winograd_allowed(False), cpu_isa(isa):
        assert _algos(layer) == EXPECTED_NO_WINOGRAD[isa][layer]


@pytest.mark.parametrize(("isa", "layer"), POOL_CASES, indirect=["isa"])
def test_network_pool_kernels(isa, layer):
    s = shapes.pool(layer)
    got = tuple(fastconv.max_pool2d_algo(p, s.x_shape, **s.kwargs()) for p in ("fwd", "bwd"))
    assert got == EXPECTED_POOL[isa][layer]


def test_max_pool2d_algo_arguments():
    assert fastconv.max_pool2d_algo("fwd", (1, 1, 8, 8), 3, 1, 1) == "generic"
    with pytest.raises(ValueError, match="pass"):
        fastconv.max_pool2d_algo("bwd_data", (1, 1, 8, 8), 2)
    with pytest.raises(TypeError, match="pass"):
        fastconv.max_pool2d_algo(0, (1, 1, 8, 8), 2)
    with pytest.raises(ValueError, match="x_shape"):
        fastconv.max_pool2d_algo("fwd", (1, 8, 8), 2)
    with pytest.raises(ValueError, match="kernel_size"):
        fastconv.max_pool2d_algo("fwd", (1, 1, 8, 8), 0)


@pytest.mark.parametrize("isa", list(EXPECTED), indirect=True)
def test_usable_lists_follow_registry_order_and_end_with_gemm(isa):
    for layer in shapes.NETWORK_CONV:
        s = shapes.conv(layer)
        for p in PASSES:
            usable = fastconv.conv2d_algos(p, s.x_shape, s.w_shape, **s.kwargs())
            order = fastconv._C.conv_algos(p)
            assert usable == [a for a in order if a in usable]
            assert usable[-1] == "gemm"
            assert fastconv.conv2d_algo(p, s.x_shape, s.w_shape, **s.kwargs()) in usable


def test_registry_names():
    assert fastconv._C.conv_algos("fwd") == [
        "winograd_channels",
        "winograd_tiles_4x2",
        "winograd_tiles",
        "winograd_rows",
        "channel_lanes",
        "winograd_one_plane",
        "direct_shifted",
        "direct",
        "gemm",
    ]
    assert fastconv._C.conv_algos("bwd_data") == [
        "winograd_transposed",
        "winograd_channels",
        "winograd_tiles_4x2",
        "winograd_tiles",
        "scatter",
        "channel_lanes",
        "winograd_images",
        "dy_lanes",
        "direct",
        "gemm",
    ]
    assert fastconv._C.conv_algos("bwd_weights") == [
        "winograd_channels",
        "winograd_rows3",
        "winograd_rows",
        "tap_lanes_flat",
        "tap_lanes",
        "channel_lanes",
        "direct",
        "gemm",
    ]


@pytest.mark.parametrize(
    ("n", "want"),
    [
        (4, "dy_lanes"),
        (7, "dy_lanes"),
        (8, "winograd_images"),
        (9, "dy_lanes"),
        (12, "winograd_images"),
        (20, "winograd_images"),
    ],
)
def test_image_lanes_batch_rule(n, want):
    """lenet.conv2 bwd_data takes the images-in-lanes Winograd from 8 images filling >= 75% of
    their 8-image groups (registry.cpp's measurements, AVX2 and AVX-512), dy_lanes otherwise."""
    s = shapes.conv("lenet.conv2").with_batch(n)
    ran = 0
    for isa in ("avx2", "avx512"):
        if isa in fastconv.cpu_isas():
            with cpu_isa(isa):
                assert fastconv.conv2d_algo("bwd_data", s.x_shape, s.w_shape, **s.kwargs()) == want
            ran += 1
    if ran == 0:
        pytest.skip("this CPU has neither AVX2 nor AVX-512")


@pytest.mark.parametrize("isa", ["avx2", "avx512"], indirect=True)
def test_winograd_tiles_4x2_from_four_output_rows(isa):
    """A 5x5 tiles-in-lanes layer takes the 4x2 tiles from 4 output rows on, and F(2x2, 5x5)'s
    below (2 rows: 48 points against 36), in both passes."""
    for h, want in ((2, "winograd_tiles"), (4, "winograd_tiles_4x2"), (6, "winograd_tiles_4x2")):
        x_shape, w_shape = (2, 8, h, 6), (5, 8, 5, 5)
        assert fastconv.conv2d_algo("fwd", x_shape, w_shape, padding=2) == want
        assert fastconv.conv2d_algo("bwd_data", (2, 5, h, 6), (8, 5, 5, 5), padding=2) == want


def test_forced_algorithm_is_reported_and_cleared():
    s = shapes.conv("lenet.conv2")
    with conv_algo("bwd_weights", "gemm"):
        assert fastconv.get_conv_algo("bwd_weights") == "gemm"
        assert fastconv.conv2d_algo("bwd_weights", s.x_shape, s.w_shape, **s.kwargs()) == "gemm"
        assert fastconv.get_conv_algo("fwd") is None
    assert fastconv.get_conv_algo("bwd_weights") is None


def test_conv_arguments_are_validated_like_conv2d():
    with pytest.raises(ValueError, match="stride"):
        fastconv.conv2d_algo("fwd", (1, 1, 8, 8), (2, 1, 3, 3), stride=0)
    with pytest.raises(ValueError, match="padding"):
        fastconv.conv2d_algo("fwd", (1, 1, 8, 8), (2, 1, 3, 3), padding="full")
    with pytest.raises(ValueError, match="x_shape"):
        fastconv.conv2d_algo("fwd", (1, 8, 8), (2, 1, 3, 3))
    with pytest.raises(TypeError, match="pass"):
        fastconv.conv2d_algo(0, (1, 1, 8, 8), (2, 1, 3, 3))
