"""The CUDA *build* plumbing, checked on every machine (no GPU needed; these always run).

What a CPU-only or GPU-less machine can still prove: fastconv.info() reports the build honestly,
the CUDA entry points exist exactly when the build says so, the CUDA backend module imports
without CuPy and fails with errors that say what to install, and a GPU-looking argument is routed
to that backend rather than silently copied to the CPU. The kernels themselves are tested in
test_cuda.py (marked gpu, skipped with the reason here).
"""

from __future__ import annotations

import sys

import fastconv
import numpy as np
import pytest
from fastconv import _C, _cuda_ops


def test_info_reports_the_cuda_build():
    info = fastconv.info()
    assert isinstance(info["cuda_built"], bool)
    assert info["cuda_built"] is bool(_C.cuda_built)
    if not info["cuda_built"]:
        assert info["cuda_device"] is None
    else:
        assert isinstance(info["cuda_device"], str)
        assert info["cuda_device"]


def test_native_cuda_entries_exist_iff_built():
    entries = (
        "conv2d_fwd",
        "conv2d_bwd_data",
        "conv2d_bwd_weights",
        "maxpool2d_fwd",
        "maxpool2d_bwd",
        "device_count",
        "device_name",
    )
    if _C.cuda_built:
        for name in entries:
            assert callable(getattr(_C.cuda, name)), name
        planned = ("conv2d_fwd", "conv2d_bwd_data", "conv2d_bwd_weights", "maxpool2d_fwd")
        for name in planned + ("maxpool2d_bwd",):  # _cuda_ops' fast path
            assert callable(getattr(_C.cuda, name + "_planned")), name + "_planned"
        assert isinstance(_C.cuda.device_count(), int)
        assert _C.cuda.device_count() >= 0
        assert _C.cuda.runtime_version() >= 12000
    else:
        assert not hasattr(_C, "cuda")
        assert _cuda_ops.device_count() == 0


@pytest.mark.skipif(not _C.cuda_built, reason="fastconv was built without CUDA")
def test_cuda_geometry_is_validated_like_the_cpu():
    """The CUDA entries share params.cpp with the CPU: same ValueError, no device needed."""
    with pytest.raises(ValueError, match="groups=3 must divide the input channels"):
        _C.cuda.conv2d_out_shape((1, 4, 8, 8), (6, 2, 3, 3), (1, 1), "explicit", (0, 0), (1, 1), 3)
    with pytest.raises(ValueError, match="padding='same' requires stride 1"):
        _C.cuda.conv2d_out_shape((1, 4, 8, 8), (6, 4, 3, 3), (2, 2), "same", (0, 0), (1, 1), 1)
    assert _C.cuda.conv2d_out_shape(
        (2, 3, 11, 13), (5, 3, 3, 3), (2, 1), "explicit", (1, 0), (1, 1), 1
    ) == (2, 5, 6, 11)
    assert _C.cuda.maxpool2d_out_shape((2, 4, 13, 13), (3, 3), (2, 2), "explicit", (0, 0)) == (
        2,
        4,
        6,
        6,
    )
    with pytest.raises(ValueError, match="conv algorithm"):
        _C.cuda.set_conv_algo("fwd", "fast")
    with pytest.raises(ValueError, match="pass"):
        _C.cuda.set_conv_algo("forward", "tiled")
    assert _C.cuda.get_conv_algo("fwd") is None
    args = ((2, 1), "explicit", (1, 0), (1, 1), 1)
    assert _C.cuda.conv2d_algo("fwd", (2, 3, 11, 13), (5, 3, 3, 3), *args) in ("direct", "tiled")
    for name in ("tiled128", "tf32"):  # the forced-only families: named back, never chosen
        _C.cuda.set_conv_algo("bwd_data", name)
        try:
            assert _C.cuda.get_conv_algo("bwd_data") == name
            assert _C.cuda.conv2d_algo("bwd_data", (2, 3, 11, 13), (5, 3, 3, 3), *args) == name
        finally:
            _C.cuda.set_conv_algo("bwd_data", None)


def test_cuda_ops_without_cupy_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # `import cupy` now raises ImportError
    if _C.cuda_built:
        with pytest.raises(ImportError, match=r"fastconv\[cuda\]"):
            _cuda_ops.conv2d_fwd(None, None, None, (1, 1), "explicit", (0, 0), (1, 1), 1, False)
        ok, why = _cuda_ops.available()
        assert not ok
        assert "fastconv[cuda]" in why
    else:
        with pytest.raises(RuntimeError, match="FASTCONV_CUDA=ON"):
            _cuda_ops.conv2d_fwd(None, None, None, (1, 1), "explicit", (0, 0), (1, 1), 1, False)


def test_device_name_without_a_gpu_is_a_clear_error():
    if not _C.cuda_built:
        with pytest.raises(RuntimeError, match="built without CUDA"):
            _cuda_ops.device_name()
    elif _C.cuda.device_count() == 0:
        with pytest.raises(RuntimeError, match="no CUDA device"):
            _cuda_ops.device_name()
        assert fastconv.info()["cuda_device"].startswith("unavailable")
    else:
        assert _cuda_ops.device_name()


class _FakeGpuArray:
    """Looks like a GPU array to fastconv.ops (it only checks for the attribute)."""

    __cuda_array_interface__ = {
        "shape": (1, 1, 4, 4),
        "typestr": "<f4",
        "data": (0, False),
        "version": 3,
    }
    shape = (1, 1, 4, 4)


def test_gpu_arrays_are_routed_to_the_cuda_backend(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)
    w = np.ones((1, 1, 3, 3), np.float32)
    expected = ImportError if _C.cuda_built else RuntimeError
    with pytest.raises(expected):
        fastconv.conv2d(_FakeGpuArray(), w)
    with pytest.raises(expected):
        fastconv.max_pool2d(_FakeGpuArray(), 2)


def test_mixing_cpu_input_with_gpu_weight_is_a_type_error():
    with pytest.raises(TypeError, match="same device"):
        fastconv.conv2d(np.ones((1, 1, 4, 4), np.float32), _FakeGpuArray())


@pytest.mark.skipif(not _C.cuda_built, reason="fastconv was built without CUDA")
def test_planned_cuda_entries_take_the_plan_types():
    """_cuda_ops' fast path hands _C.plan's ConvPlan / PoolPlan to _C.cuda's *_planned entries
    (one C++ type across the two submodules); an empty batch returns before any device work."""
    conv = _C.plan.ConvPlan((0, 2, 5, 5), (3, 2, 3, 3), None, (1, 1), "explicit", (0, 0), (1, 1), 1)
    pool = _C.plan.PoolPlan((0, 2, 4, 4), (2, 2), (2, 2), "explicit", (0, 0), (1, 1), False)
    _C.cuda.conv2d_fwd_planned(conv, 0, 0, 0, 0, 0, 0, False)
    _C.cuda.conv2d_bwd_data_planned(conv, 0, 0, 0, 0, 0)
    _C.cuda.maxpool2d_fwd_planned(pool, 0, 0, 0, 0, 0)
    _C.cuda.maxpool2d_bwd_planned(pool, 0, 0, 0, 0, 0)
    with pytest.raises(TypeError):
        _C.cuda.conv2d_fwd_planned(pool, 0, 0, 0, 0, 0, 0, False)


@pytest.mark.skipif(not _C.cuda_built, reason="fastconv was built without CUDA")
def test_cuda_errors_become_runtime_errors():
    """Any CUDA runtime failure surfaces as RuntimeError naming the CUDA error (here: no driver/GPU)."""
    if _C.cuda.device_count() > 0:
        _C.cuda.set_conv_algo("fwd", None)
        with pytest.raises(RuntimeError, match="CUDA error"):
            _C.cuda.synchronize(_C.cuda.device_count(), 0)  # a device index that does not exist
    else:
        with pytest.raises(RuntimeError, match="CUDA error"):
            _C.cuda.synchronize(0, 0)
