"""A stand-in for fastconv._C.cuda (the native CUDA entries), for machines without a GPU.

Each launch entry records what it was handed (name, device, stream, pointers, shapes and
geometry) in ``calls`` and, unless ``compute`` is off, runs fastconv's CPU kernels on those
pointers: with fake_cupy the "device" memory is host memory, so a test sees real results and
can compare them with the CPU path. Geometry queries (conv2d_out_shape, maxpool2d_out_shape) go
to the real params.cpp checks that every build has, so their messages are the real ones. The
bwd_weights workspace size is a setting (``workspace_bytes``) and the launch checks that it got
at least that much, as the real entry does.

``install(monkeypatch)`` puts fake_cupy in sys.modules["cupy"], marks fastconv as built with
CUDA and makes fastconv._cuda_ops use a new FakeCudaNative, which it returns.
"""

from __future__ import annotations

import ctypes
import sys

import fake_cupy
import numpy as np
from fastconv import _C, _cuda_ops

ConvPlan, PoolPlan = _C.plan.ConvPlan, _C.plan.PoolPlan


def host_view(ptr: int, shape, dtype) -> np.ndarray:
    """The host array at `ptr` (fake_cupy memory), C-contiguous, of `shape` and `dtype`."""
    dtype = np.dtype(dtype)
    n = int(np.prod(shape))
    buf = (ctypes.c_char * (n * dtype.itemsize)).from_address(ptr)
    return np.frombuffer(buf, dtype).reshape(shape)


class FakeCudaNative:
    def __init__(self, compute: bool = True, record: bool = True, workspace_bytes: int = 256):
        self.compute = compute
        self.record = record
        self.workspace_bytes = workspace_bytes
        self.calls: list = []
        self._algo = {}

    def _log(self, name, **args):
        if self.record:
            self.calls.append((name, args))

    def launches(self, name=None) -> list:
        """The recorded calls' argument dicts (of one entry, or all as (name, args))."""
        return [a for n, a in self.calls if n == name] if name else list(self.calls)

    # --- queries --------------------------------------------------------------------------------

    def device_count(self):
        return fake_cupy.DEVICE_COUNT

    def device_name(self, device=0):
        return f"fake GPU {device}"

    def set_conv_algo(self, pass_name, name):
        self._algo[pass_name] = name

    def get_conv_algo(self, pass_name):
        return self._algo.get(pass_name)

    def conv2d_algo(self, pass_name, x_shape, w_shape, stride, mode, pad, dilation, groups):
        """The forced family, else "tiled" (the real choice by shape is the GPU build's)."""
        self._log(
            "conv2d_algo", pass_name=pass_name, x=x_shape, w=w_shape,
            geometry=(stride, mode, pad, dilation, groups),
        )  # fmt: skip
        return self._algo.get(pass_name) or "tiled"

    def conv2d_out_shape(self, x_shape, w_shape, stride, mode, pad, dilation, groups):
        return _C.conv2d_out_shape(x_shape, w_shape, stride, mode, pad, dilation, groups)

    def maxpool2d_out_shape(self, x_shape, kernel, stride, mode, pad, dilation=(1, 1), ceil=False):
        return PoolPlan(x_shape, kernel, stride, mode, pad, dilation, ceil).y_shape

    def conv2d_bwd_weights_workspace_bytes(self, device, *geometry):
        return self.workspace_bytes

    def conv2d_bwd_weights_workspace_planned(self, plan, device):
        return self.workspace_bytes

    # --- the raw entries (the checked path) -----------------------------------------------------

    def conv2d_fwd(self, device, stream, y, x, w, b, xs, ws, *geometry_relu):
        *geometry, relu = geometry_relu
        self._log("conv2d_fwd", device=device, stream=stream, y=y, x=x, w=w, b=b, x_shape=xs,
                  w_shape=ws, geometry=tuple(geometry), relu=relu)  # fmt: skip
        if self.compute:
            ConvPlan(xs, ws, None, *geometry).conv2d_fwd(y, x, w, b, relu)

    def conv2d_bwd_data(self, device, stream, dx, dy, w, xs, ws, *geometry):
        self._log("conv2d_bwd_data", device=device, stream=stream, dx=dx, dy=dy, w=w,
                  x_shape=xs, w_shape=ws, geometry=tuple(geometry))  # fmt: skip
        if self.compute:
            ConvPlan(xs, ws, None, *geometry).conv2d_bwd_data(dx, dy, w)

    def conv2d_bwd_weights(self, device, stream, dw, db, dy, x, ws_ptr, ws_bytes, xs, ws, *geo):
        self._log("conv2d_bwd_weights", device=device, stream=stream, dw=dw, db=db, dy=dy, x=x,
                  workspace=ws_ptr, workspace_bytes=ws_bytes, x_shape=xs, w_shape=ws,
                  geometry=tuple(geo))  # fmt: skip
        self._check_workspace(ws_ptr, ws_bytes)
        if self.compute:
            ConvPlan(xs, ws, None, *geo).conv2d_bwd_weights(dw, db, dy, x)

    def maxpool2d_fwd(self, device, stream, y, idx, x, xs, kernel, stride, mode, pad,
                      dilation=(1, 1), ceil_mode=False):  # fmt: skip
        geometry = (tuple(kernel), tuple(stride), mode, tuple(pad), tuple(dilation), ceil_mode)
        self._log("maxpool2d_fwd", device=device, stream=stream, y=y, indices=idx, x=x,
                  x_shape=xs, geometry=geometry)  # fmt: skip
        if self.compute:
            PoolPlan(xs, *geometry).maxpool2d_fwd(y, idx, x)

    def maxpool2d_bwd(self, device, stream, dx, dy, idx, xs, ys, geometry=None):
        self._log("maxpool2d_bwd", device=device, stream=stream, dx=dx, dy=dy, indices=idx,
                  x_shape=xs, y_shape=ys, geometry=geometry)  # fmt: skip
        if self.compute:  # the CPU scatter: what both GPU kernels give for in-range indices
            out = host_view(dx, xs, np.float32)
            out[...] = _C.maxpool2d_bwd(
                host_view(dy, ys, np.float32), host_view(idx, ys, np.int64), xs
            )

    # --- the planned entries (the fast path) ----------------------------------------------------

    def conv2d_fwd_planned(self, plan, device, stream, y, x, w, b, relu):
        self._log("conv2d_fwd_planned", plan=plan, device=device, stream=stream, y=y, x=x, w=w,
                  b=b, relu=relu)  # fmt: skip
        if self.compute:
            plan.conv2d_fwd(y, x, w, b, relu)

    def conv2d_bwd_data_planned(self, plan, device, stream, dx, dy, w):
        self._log("conv2d_bwd_data_planned", plan=plan, device=device, stream=stream, dx=dx,
                  dy=dy, w=w)  # fmt: skip
        if self.compute:
            plan.conv2d_bwd_data(dx, dy, w)

    def conv2d_bwd_weights_planned(self, plan, device, stream, dw, db, dy, x, ws_ptr, ws_bytes):
        self._log("conv2d_bwd_weights_planned", plan=plan, device=device, stream=stream, dw=dw,
                  db=db, dy=dy, x=x, workspace=ws_ptr, workspace_bytes=ws_bytes)  # fmt: skip
        self._check_workspace(ws_ptr, ws_bytes)
        if self.compute:
            plan.conv2d_bwd_weights(dw, db, dy, x)

    def maxpool2d_fwd_planned(self, plan, device, stream, y, idx, x):
        self._log("maxpool2d_fwd_planned", plan=plan, device=device, stream=stream, y=y,
                  indices=idx, x=x)  # fmt: skip
        if self.compute:
            plan.maxpool2d_fwd(y, idx, x)

    def maxpool2d_bwd_planned(self, plan, device, stream, dx, dy, idx):
        self._log("maxpool2d_bwd_planned", plan=plan, device=device, stream=stream, dx=dx,
                  dy=dy, indices=idx)  # fmt: skip
        if self.compute:
            plan.maxpool2d_bwd(dx, dy, idx)

    def _check_workspace(self, ptr, nbytes):
        if nbytes < self.workspace_bytes or (self.workspace_bytes and not ptr):
            raise ValueError(
                f"workspace of {nbytes} bytes at {ptr:#x}, needs {self.workspace_bytes}"
            )


def install(monkeypatch, **options) -> FakeCudaNative:
    """fake_cupy as cupy, a CUDA build, and a FakeCudaNative(**options) as fastconv._C.cuda."""
    fake_cupy.reset()
    native = FakeCudaNative(**options)
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy)
    monkeypatch.setattr(_C, "cuda_built", True, raising=False)
    monkeypatch.setattr(_cuda_ops, "_native", lambda: native)
    return native
