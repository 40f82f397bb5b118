"""fastconv._cuda_ops (the CUDA glue: checks, conversions, devices, allocation, launch arguments)
on a CPU: fake_cupy stands in for CuPy and fake_cuda_native for the native CUDA entries, which
run fastconv's CPU kernels on the pointers they get. Always runs; the kernels themselves are
tested on a GPU in test_cuda.py.

Every op is checked on both of _cuda_ops' paths: the fast path (float32, C-contiguous, current
device: one planned native call) and the checked path (everything else, and every call with
_cuda_ops._FAST off). Results must equal the CPU path's bit for bit (the same kernels run), errors
must carry the CPU path's message, and inputs must come back unmodified.
"""

from __future__ import annotations

import fake_cupy as fcp
import fastconv
import numpy as np
import pytest
from conftest import assert_identical
from fake_cuda_native import host_view, install
from fastconv import _cuda_ops
from fastconv.nn import cuda as nn_cuda


@pytest.fixture
def native(monkeypatch):
    return install(monkeypatch)


@pytest.fixture(params=[True, False], ids=["fast", "checked"])
def path(request, monkeypatch):
    """Both of _cuda_ops' paths; 'checked' turns the fast path off."""
    monkeypatch.setattr(_cuda_ops, "_FAST", request.param)
    return "fast" if request.param else "checked"


def _entry(native, op):
    """The native entry the last call went to, without the '_planned' suffix, and its args."""
    name, args = native.calls[-1]
    assert name.removesuffix("_planned") == op, name
    return name, args


def _gpu(*arrays):
    return [None if a is None else fcp.asarray(a) for a in arrays]


def _conv_problem(rng, bias=True):
    x = rng.uniform(-1, 1, (2, 4, 9, 8)).astype(np.float32)
    w = rng.uniform(-1, 1, (6, 2, 3, 3)).astype(np.float32)
    b = rng.uniform(-1, 1, 6).astype(np.float32) if bias else None
    kw = dict(stride=(2, 1), padding=1, dilation=1, groups=2)
    return x, w, b, kw


# ---- results: the CPU path's, from either path ---------------------------------------------------


@pytest.mark.parametrize("bias", [True, False])
def test_conv2d_passes_equal_the_cpu(native, path, rng, bias):
    x, w, b, kw = _conv_problem(rng, bias)
    gx, gw, gb = _gpu(x, w, b)
    y = fastconv.conv2d(gx, gw, gb, **kw, activation="relu")
    assert isinstance(y, fcp.ndarray)
    assert y.dtype == np.float32
    assert_identical(fcp.asnumpy(y), fastconv.conv2d(x, w, b, **kw, activation="relu"), "y")
    name, args = _entry(native, "conv2d_fwd")
    assert name.endswith("_planned") == (path == "fast")
    assert args["relu"] is True
    assert (args["b"] == 0) == (b is None)

    dy = rng.uniform(-1, 1, y.shape).astype(np.float32)
    dx = fastconv.conv2d_bwd_data(fcp.asarray(dy), gw, x.shape, **kw)
    assert_identical(fcp.asnumpy(dx), fastconv.conv2d_bwd_data(dy, w, x.shape, **kw), "dx")
    _entry(native, "conv2d_bwd_data")
    dw, db = fastconv.conv2d_bwd_weights(fcp.asarray(dy), gx, w.shape, **kw, with_bias=bias)
    cw, cb = fastconv.conv2d_bwd_weights(dy, x, w.shape, **kw, with_bias=bias)
    assert_identical(fcp.asnumpy(dw), cw, "dw")
    if bias:
        assert_identical(fcp.asnumpy(db), cb, "db")
    else:
        assert db is None
    _, args = _entry(native, "conv2d_bwd_weights")
    assert args["workspace_bytes"] == native.workspace_bytes
    assert args["workspace"] != 0
    assert (args["db"] == 0) == (not bias)


@pytest.mark.parametrize(
    "kw",
    [
        dict(kernel_size=2),
        dict(kernel_size=3, stride=2, padding=1),
        dict(kernel_size=3, stride=1, padding="same"),
        dict(kernel_size=2, stride=1, dilation=2, ceil_mode=True),
    ],
    ids=["2x2", "3x3s2p1", "same", "dilated_ceil"],
)
def test_max_pool2d_passes_equal_the_cpu(native, path, rng, kw):
    x = (rng.integers(-4, 5, (2, 3, 9, 10)) / 4).astype(np.float32)  # ties are common
    y, idx = fastconv.max_pool2d(fcp.asarray(x), **kw, return_indices=True)
    cy, cidx = fastconv.max_pool2d(x, **kw, return_indices=True)
    assert idx.dtype == np.int64
    assert_identical(fcp.asnumpy(y), cy, "y")
    assert_identical(fcp.asnumpy(idx), cidx, "indices")
    _entry(native, "maxpool2d_fwd")
    dy = rng.uniform(-1, 1, cy.shape).astype(np.float32)
    expected = fastconv.max_pool2d_backward(dy, cidx, x.shape)
    dx = fastconv.max_pool2d_backward(fcp.asarray(dy), idx, x.shape)  # no geometry: scatter
    assert_identical(fcp.asnumpy(dx), expected, "dx (scatter)")
    assert native.calls[-1][1]["geometry"] is None
    if "dilation" not in kw:  # the public keywords are kernel_size, stride, padding
        geo = {k: v for k, v in kw.items() if k in ("kernel_size", "stride", "padding")}
        dx = fastconv.max_pool2d_backward(fcp.asarray(dy), idx, x.shape, **geo)
        assert_identical(fcp.asnumpy(dx), expected, "dx (gather)")
        name, args = _entry(native, "maxpool2d_bwd")
        assert name.endswith("_planned") or args["geometry"] is not None


def test_conv2d_algo_on_cuda_asks_the_cuda_entries(native):
    """fastconv.conv2d_algo(..., device="cuda") normalises the geometry as conv2d does and names
    the family the CUDA entries would run: the forced one (set_conv_algo(..., device="cuda"))."""
    kw = dict(stride=2, padding=1, dilation=(1, 2), groups=1)
    try:
        fastconv.set_conv_algo("bwd_data", "tiled128", device="cuda")
        assert fastconv.conv2d_algo(
            "bwd_data", (2, 3, 9, 9), (4, 3, 3, 3), **kw, device="cuda"
        ) == ("tiled128")
    finally:
        fastconv.set_conv_algo("bwd_data", None, device="cuda")
    assert native.launches("conv2d_algo") == [
        dict(
            pass_name="bwd_data",
            x=(2, 3, 9, 9),
            w=(4, 3, 3, 3),
            geometry=((2, 2), "explicit", (1, 1), (1, 2), 1),
        )
    ]
    with pytest.raises(ValueError, match="device"):
        fastconv.conv2d_algo("fwd", (2, 3, 9, 9), (4, 3, 3, 3), device="gpu")


def test_empty_batch(native, path):
    x = fcp.asarray(np.ones((0, 3, 8, 8), np.float32))
    w = fcp.asarray(np.ones((4, 3, 3, 3), np.float32))
    assert fastconv.conv2d(x, w).shape == (0, 4, 6, 6)
    assert fastconv.conv2d_bwd_data(fcp.empty((0, 4, 6, 6), np.float32), w, x.shape).shape == (
        0,
        3,
        8,
        8,
    )
    dw, db = fastconv.conv2d_bwd_weights(fcp.empty((0, 4, 6, 6), np.float32), x, w.shape)
    assert not fcp.asnumpy(dw).any()
    assert not fcp.asnumpy(db).any()
    assert fastconv.max_pool2d(x, 2).shape == (0, 3, 4, 4)


# ---- the fast path: what it does per call ---------------------------------------------------------


def test_fast_path_is_one_planned_call_and_no_conversions(native, rng):
    x, w, b, kw = _conv_problem(rng)
    gx, gw, gb = _gpu(x, w, b)
    fastconv.conv2d(gx, gw, gb, **kw)  # the first call validates and caches the plan
    fcp.CALLS.clear()
    native.calls.clear()
    y = fastconv.conv2d(gx, gw, gb, **kw)
    # one output allocation, one device query, one stream query; no copy, no interface dict
    assert dict(fcp.CALLS) == {"runtime.getDevice": 1, "ndarray": 1, "get_current_stream": 1}
    ((name, args),) = native.calls
    assert name == "conv2d_fwd_planned"
    assert args["plan"].y_shape == y.shape
    assert (args["x"], args["w"], args["b"], args["y"]) == (
        gx.data.ptr,
        gw.data.ptr,
        gb.data.ptr,
        y.data.ptr,
    )
    assert args["device"] == 0
    assert args["stream"] == 0  # the null stream is current


def test_fast_path_reuses_one_plan_per_geometry(native, monkeypatch, rng):
    monkeypatch.setattr(_cuda_ops, "_CONV_PLANS", {})
    monkeypatch.setattr(_cuda_ops, "_MAX_PLANS", 2)
    x, w, b, kw = _conv_problem(rng)
    gx, gw, gb = _gpu(x, w, b)
    fastconv.conv2d(gx, gw, gb, **kw)
    fastconv.conv2d(gx, gw, gb, **kw)
    first, second = native.launches("conv2d_fwd_planned")
    assert first["plan"] is second["plan"]
    for pad in (0, 2):  # two more geometries: the bounded cache is cleared, never grows past 2
        fastconv.conv2d(gx, gw, gb, **{**kw, "padding": pad})
        assert len(_cuda_ops._CONV_PLANS) <= 2


def test_bwd_weights_workspace(monkeypatch, rng):
    for nbytes in (0, 4096):
        native = install(monkeypatch, workspace_bytes=nbytes)
        x, w, _, kw = _conv_problem(rng)
        dy = np.ones(fastconv.ops.conv2d_output_shape(x.shape, w.shape, **kw), np.float32)
        fastconv.conv2d_bwd_weights(fcp.asarray(dy), fcp.asarray(x), w.shape, **kw)
        (args,) = native.launches("conv2d_bwd_weights_planned")
        assert args["workspace_bytes"] == nbytes
        assert (args["workspace"] != 0) == (nbytes > 0)
        assert fcp.CALLS["alloc"] == (1 if nbytes else 0)


def test_launches_go_to_the_current_stream(native, path, rng):
    x, w, b, kw = _conv_problem(rng)
    gx, gw, gb = _gpu(x, w, b)
    with fcp.cuda.Stream(non_blocking=True) as stream:
        fastconv.conv2d(gx, gw, gb, **kw)
        fastconv.max_pool2d(gx, 2)
    assert stream.ptr != 0
    assert [a["stream"] for _, a in native.calls] == [stream.ptr, stream.ptr]


# ---- conversions: dtype, contiguity, foreign arrays ---------------------------------------------


@pytest.mark.parametrize("dtype", [np.float64, np.float16, np.int32, np.uint8])
def test_other_dtypes_are_converted_like_the_cpu(native, path, rng, dtype):
    x = (rng.uniform(-3, 3, (2, 3, 7, 6)) * 10).astype(dtype)
    w = (rng.uniform(-1, 1, (4, 3, 3, 3)) * 4).astype(dtype)
    gx, gw = _gpu(x, w)
    before = fcp.asnumpy(gx), fcp.asnumpy(gw)
    y = fastconv.conv2d(gx, gw)
    assert y.dtype == np.float32
    assert_identical(fcp.asnumpy(y), fastconv.conv2d(x, w), f"{np.dtype(dtype).name} input")
    name, args = native.calls[-1]
    assert name == "conv2d_fwd"  # conversions take the checked path
    assert args["x"] != gx.data.ptr  # a float32 copy, not the caller's array
    assert_identical(host_view(args["x"], x.shape, np.float32), x.astype(np.float32), "copy")
    assert_identical(fcp.asnumpy(gx), before[0], "input not modified")
    assert_identical(fcp.asnumpy(gw), before[1], "weight not modified")


def test_non_contiguous_inputs_are_copied(native, path, rng):
    x = rng.uniform(-1, 1, (2, 3, 10, 9)).astype(np.float32)
    w = rng.uniform(-1, 1, (4, 3, 3, 3)).astype(np.float32)
    gx = fcp.asarray(np.ascontiguousarray(x.transpose(0, 1, 3, 2))).transpose(0, 1, 3, 2)
    assert not gx.flags.c_contiguous
    before = fcp.asnumpy(gx)
    y = fastconv.conv2d(gx, fcp.asarray(w))
    assert_identical(fcp.asnumpy(y), fastconv.conv2d(x, w), "non-contiguous input")
    name, args = native.calls[-1]
    assert name == "conv2d_fwd"
    assert args["x"] != gx.data.ptr
    assert_identical(fcp.asnumpy(gx), before, "input not modified")
    y, idx = fastconv.max_pool2d(gx[:, :, ::2], 2, return_indices=True)  # a strided view
    assert_identical(fcp.asnumpy(y), fastconv.max_pool2d(x[:, :, ::2], 2), "strided pool input")


def test_foreign_gpu_arrays_are_wrapped(native, path, rng):
    """Another library's array (only __cuda_array_interface__) goes through cupy.asarray."""
    x = rng.uniform(-1, 1, (1, 2, 6, 6)).astype(np.float32)
    w = rng.uniform(-1, 1, (3, 2, 3, 3)).astype(np.float32)
    y = fastconv.conv2d(fcp.ForeignArray(x), fcp.ForeignArray(w))
    assert_identical(fcp.asnumpy(y), fastconv.conv2d(x, w), "foreign arrays")
    assert native.calls[-1][0] == "conv2d_fwd"  # not a cupy.ndarray: the checked path


def test_routing_asks_each_object_of_other_classes():
    """A class may have the interface property but an object may not (a CPU torch tensor's
    raises): such objects stay on the CPU path."""

    class HostOnly(np.ndarray):
        @property
        def __cuda_array_interface__(self):
            raise AttributeError("not on a GPU")

    x = np.ones((1, 2, 5, 5), np.float32)
    w = np.ones((3, 2, 3, 3), np.float32)
    assert_identical(fastconv.conv2d(x.view(HostOnly), w), fastconv.conv2d(x, w), "host subclass")


def test_cupy_arrays_are_routed_without_reading_the_interface(native):
    x = fcp.asarray(np.ones((1, 2, 5, 5), np.float32))
    w = fcp.asarray(np.ones((3, 2, 3, 3), np.float32))
    fastconv.conv2d(x, w)  # the first call loads the backend, which registers cupy.ndarray
    reads = []
    original = fcp.ndarray.__cuda_array_interface__
    try:
        fcp.ndarray.__cuda_array_interface__ = property(
            lambda a: reads.append(a) or original.fget(a)
        )
        fastconv.conv2d(x, w)
    finally:
        fcp.ndarray.__cuda_array_interface__ = original
    assert reads == []


# ---- devices ------------------------------------------------------------------------------------


def test_an_input_on_another_device_runs_there(native, path, rng):
    x, w, b, kw = _conv_problem(rng)
    with fcp.cuda.Device(1):
        gx, gw, gb = _gpu(x, w, b)
    y = fastconv.conv2d(gx, gw, gb, **kw)  # device 0 is current
    assert y.device.id == 1
    assert native.calls[-1][1]["device"] == 1
    assert native.calls[-1][0] == "conv2d_fwd"  # not the current device: the checked path
    with fcp.cuda.Device(1):
        y = fastconv.conv2d(gx, gw, gb, **kw)
    assert y.device.id == 1
    assert native.calls[-1][1]["device"] == 1
    assert native.calls[-1][0] == ("conv2d_fwd_planned" if path == "fast" else "conv2d_fwd")


def test_arrays_on_two_devices_are_rejected(native, path):
    x = fcp.asarray(np.ones((1, 4, 8, 8), np.float32))
    with fcp.cuda.Device(1):
        w = fcp.asarray(np.ones((6, 4, 3, 3), np.float32))
        dy = fcp.asarray(np.ones((1, 6, 6, 6), np.float32))
    with pytest.raises(ValueError, match="weight is on GPU 1 but the input is on GPU 0"):
        fastconv.conv2d(x, w)
    with pytest.raises(ValueError, match="input is on GPU 0 but the input is on GPU 1"):
        fastconv.conv2d_bwd_weights(dy, x, (6, 4, 3, 3))
    y, idx = fastconv.max_pool2d(x, 2, return_indices=True)
    with fcp.cuda.Device(1):
        g = fcp.asarray(np.ones(y.shape, np.float32))
    with pytest.raises(ValueError, match="indices is on GPU 0 but grad_output is on GPU 1"):
        fastconv.max_pool2d_backward(g, idx, x.shape, kernel_size=2)
    assert [n for n, _ in native.calls] == [
        "maxpool2d_fwd_planned" if path == "fast" else "maxpool2d_fwd"
    ]


def test_a_host_array_beside_a_gpu_input_is_a_type_error(native, path):
    x = fcp.asarray(np.ones((1, 4, 8, 8), np.float32))
    with pytest.raises(TypeError, match="weight is a CPU array .* pass all arrays on the same"):
        fastconv.conv2d(x, np.ones((6, 4, 3, 3), np.float32))
    with pytest.raises(TypeError, match="indices is a CPU array"):
        fastconv.max_pool2d_backward(x, np.zeros((1, 4, 8, 8), np.int64), (1, 4, 16, 16))


# ---- errors: the CPU path's messages --------------------------------------------------------------

# (function, args built from an array constructor, kwargs): each must fail on the GPU exactly as
# on the CPU (same exception type, same message).
ERROR_CASES = {
    "groups": (
        fastconv.conv2d,
        lambda a: (a((1, 4, 8, 8)), a((6, 2, 3, 3))),
        dict(groups=3),
    ),
    "weight_channels": (fastconv.conv2d, lambda a: (a((1, 4, 8, 8)), a((6, 3, 3, 3))), {}),
    "input_3d": (fastconv.conv2d, lambda a: (a((4, 8, 8)), a((6, 4, 3, 3))), {}),
    "weight_3d": (fastconv.conv2d, lambda a: (a((1, 4, 8, 8)), a((4, 3, 3))), {}),
    "same_stride2": (
        fastconv.conv2d,
        lambda a: (a((1, 4, 8, 8)), a((6, 4, 3, 3))),
        dict(stride=2, padding="same"),
    ),
    "kernel_too_big": (fastconv.conv2d, lambda a: (a((1, 4, 4, 4)), a((6, 4, 5, 5))), {}),
    "bias_shape": (
        fastconv.conv2d,
        lambda a: (a((1, 4, 8, 8)), a((6, 4, 3, 3)), a((5,))),
        {},
    ),
    "bias_2d": (
        fastconv.conv2d,
        lambda a: (a((1, 4, 8, 8)), a((6, 4, 3, 3)), a((6, 1))),
        {},
    ),
    "complex": (
        fastconv.conv2d,
        lambda a: (a((1, 4, 8, 8), np.complex64), a((6, 4, 3, 3))),
        {},
    ),
    "bwd_data_grad_shape": (
        fastconv.conv2d_bwd_data,
        lambda a: (a((1, 6, 5, 5)), a((6, 4, 3, 3)), (1, 4, 8, 8)),
        {},
    ),
    "bwd_weights_grad_shape": (
        fastconv.conv2d_bwd_weights,
        lambda a: (a((1, 6, 5, 5)), a((1, 4, 8, 8)), (6, 4, 3, 3)),
        {},
    ),
    "bwd_weights_groups": (
        fastconv.conv2d_bwd_weights,
        lambda a: (a((1, 6, 6, 6)), a((1, 4, 8, 8)), (6, 3, 3, 3)),
        {},
    ),
    "pool_kernel_too_big": (fastconv.max_pool2d, lambda a: (a((1, 2, 3, 3)),), dict(kernel_size=4)),
    "pool_padding": (
        fastconv.max_pool2d,
        lambda a: (a((1, 2, 8, 8)),),
        dict(kernel_size=2, padding=2),
    ),
    "pool_3d": (fastconv.max_pool2d, lambda a: (a((2, 8, 8)),), dict(kernel_size=2)),
    "pool_same_dilated": (
        fastconv.max_pool2d,
        lambda a: (a((1, 2, 8, 8)),),
        dict(kernel_size=2, padding="same", dilation=2),
    ),
}


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_errors_carry_the_cpu_message(native, path, case):
    fn, make_args, kwargs = ERROR_CASES[case]

    def host(shape, dtype=np.float32):
        return np.ones(shape, dtype)

    def gpu(shape, dtype=np.float32):
        return fcp.asarray(np.ones(shape, dtype))

    with pytest.raises((TypeError, ValueError)) as cpu_error:
        fn(*make_args(host), **kwargs)
    with pytest.raises(cpu_error.type) as gpu_error:
        fn(*make_args(gpu), **kwargs)
    assert str(gpu_error.value) == str(cpu_error.value)
    assert not native.calls  # nothing was launched


def test_max_pool2d_backward_errors(native, path):
    x = fcp.asarray(np.ones((1, 1, 4, 4), np.float32))
    y, idx = fastconv.max_pool2d(x, 2, return_indices=True)
    bad = fcp.asarray(np.array([0, 1, 2, 16]).reshape(1, 1, 2, 2))
    for geo in ({}, {"kernel_size": 2}):
        with pytest.raises(
            ValueError, match=r"indices must lie in \[0, H\*W\) = \[0, 16\), got 16"
        ):
            fastconv.max_pool2d_backward(y, bad, (1, 1, 4, 4), **geo)
        with pytest.raises(TypeError, match="indices must be an int64 array"):
            fastconv.max_pool2d_backward(y, idx.astype(np.int32), (1, 1, 4, 4), **geo)
        with pytest.raises(ValueError, match="indices must have grad_output's shape"):
            fastconv.max_pool2d_backward(y, idx[:, :, :1], (1, 1, 4, 4), **geo)
    with pytest.raises(ValueError, match="input_shape must be"):
        fastconv.max_pool2d_backward(y, idx, (1, 2, 4, 4))
    with pytest.raises(ValueError, match="does not match the pooling geometry"):
        fastconv.max_pool2d_backward(y, idx, (1, 1, 4, 4), kernel_size=2, stride=1)
    assert [n for n, _ in native.calls] == [
        "maxpool2d_fwd_planned" if path == "fast" else "maxpool2d_fwd"
    ]


# ---- the layer API's max-pool backward --------------------------------------------------------------


def test_layer_max_pool_backward_skips_the_index_check(native, rng):
    """MaxPooling2D's own indices need no range check (two GPU syncs per step): same result."""
    x = rng.uniform(-1, 1, (2, 3, 8, 8)).astype(np.float32)
    y, idx = fastconv.max_pool2d(fcp.asarray(x), 2, return_indices=True)
    dy = fcp.asarray(rng.uniform(-1, 1, y.shape).astype(np.float32))
    checked = fastconv.max_pool2d_backward(dy, idx, x.shape, kernel_size=2)
    assert fcp.CALLS["reduction"] == 2
    fcp.CALLS.clear()
    dx = nn_cuda.LAYER_OPS.max_pool2d_backward(dy, idx, x.shape, kernel_size=2, stride=2)
    assert fcp.CALLS["reduction"] == 0
    assert_identical(fcp.asnumpy(dx), fcp.asnumpy(checked), "layer backward")
    assert native.calls[-1][0] == "maxpool2d_bwd_planned"
    # without geometry (or on the CPU) it is the public op
    assert_identical(
        nn_cuda.LAYER_OPS.max_pool2d_backward(fcp.asnumpy(dy), fcp.asnumpy(idx), x.shape),
        fastconv.max_pool2d_backward(fcp.asnumpy(dy), fcp.asnumpy(idx), x.shape),
        "host arrays",
    )


@pytest.mark.parametrize("geometry", [True, False], ids=["gather", "scatter"])
def test_public_max_pool_backward_waits_for_nothing_while_capturing(native, path, rng, geometry):
    """fit(cuda_graph=True) captures the step: the public op's index check (two reductions read
    back, which a capture cannot do) is skipped on a capturing stream, on both paths."""
    x = rng.uniform(-1, 1, (2, 3, 8, 8)).astype(np.float32)
    y, idx = fastconv.max_pool2d(fcp.asarray(x), 2, return_indices=True)
    dy = fcp.asarray(rng.uniform(-1, 1, y.shape).astype(np.float32))
    geo = dict(kernel_size=2) if geometry else {}
    expected = fcp.asnumpy(fastconv.max_pool2d_backward(dy, idx, x.shape, **geo))
    with fcp.cuda.Stream(non_blocking=True) as stream:
        stream.begin_capture()
        fcp.CALLS.clear()
        dx = fastconv.max_pool2d_backward(dy, idx, x.shape, **geo)
        assert fcp.CALLS["reduction"] == 0
        stream.end_capture()
    assert native.calls[-1][1]["stream"] == stream.ptr
    assert_identical(fcp.asnumpy(dx), expected, "backward while capturing")
