"""fastconv's kernels as PyTorch operators in the ``fastconv::`` namespace.

Each op has a CPU kernel here (CUDA kernels: _cuda_kernels.py), a fake kernel (shape only, so
torch.compile / FakeTensor / meta tracing work with symbolic sizes) and, for the three forward
ops, an autograd kernel whose backward calls the backward ops and computes only the gradients
``ctx.needs_input_grad`` asks for.

The CPU kernels hand fastconv zero-copy NumPy views of the (contiguous) tensors and let it write
into tensors torch allocated (``out=``): no copy on the way in or out. The ops take float32 only
(TypeError otherwise); the functional layer (functional.py) decides what to send here and falls
back to PyTorch's own ops for the rest. Geometry is validated by fastconv's native code
(cpp/params.cpp), so a bad argument is a ValueError naming it, as from fastconv's NumPy API.
Padding is (padding_mode, padding): mode "explicit" with an (h, w) pair, or "same" / "valid".

Registration is the lower-level way (torch.library.Library: define + impl per dispatch key, plus
register_fake) rather than torch.library.custom_op. Through the dispatcher both cost about the
same per call on a tiny layer (docs/TORCH.md, "Per-call overhead"); what pays is that plain eager
CPU calls skip the dispatcher (conv2d_eager & co. below), and the lower-level form lets one
autograd.Function per op serve both paths, with the kernels to call passed in.
"""

from __future__ import annotations

from typing import List, Sequence

import torch
from torch import Tensor

from fastconv import _C
from fastconv.torch._shapes import (
    conv2d_out_shape,
    fused_out_shape,
    nonnegative,
    pool2d_out_shape,
)

_LIB = torch.library.Library("fastconv", "DEF")  # noqa: TOR901 - the op library itself

_GEOMETRY = "int[] stride, str padding_mode, int[] padding, int[] dilation, int groups"
_POOL_GEOMETRY = "int[] kernel_size, int[] stride, str padding_mode, int[] padding, int[] dilation, bool ceil_mode"
SCHEMAS = {
    "conv2d": f"conv2d(Tensor input, Tensor weight, Tensor? bias, {_GEOMETRY}, bool relu) -> Tensor",
    "conv2d_bwd_data": (
        f"conv2d_bwd_data(Tensor grad_output, Tensor weight, SymInt[] input_size, {_GEOMETRY})"
        " -> Tensor"
    ),
    "conv2d_bwd_weights": (
        f"conv2d_bwd_weights(Tensor grad_output, Tensor input, SymInt[] weight_size, {_GEOMETRY}, "
        "bool with_bias) -> (Tensor, Tensor)"
    ),
    "max_pool2d": f"max_pool2d(Tensor input, {_POOL_GEOMETRY}) -> (Tensor, Tensor)",
    "max_pool2d_backward": (
        "max_pool2d_backward(Tensor grad_output, Tensor indices, SymInt[] input_size, "
        f"{_POOL_GEOMETRY}) -> Tensor"
    ),
    "conv2d_relu_maxpool2d": (
        f"conv2d_relu_maxpool2d(Tensor input, Tensor weight, Tensor? bias, {_GEOMETRY})"
        " -> (Tensor, Tensor)"
    ),
    "conv2d_relu_maxpool2d_bwd_data": (
        "conv2d_relu_maxpool2d_bwd_data(Tensor grad_output, Tensor codes, Tensor weight, "
        f"SymInt[] input_size, {_GEOMETRY}) -> Tensor"
    ),
    "conv2d_relu_maxpool2d_bwd_weights": (
        "conv2d_relu_maxpool2d_bwd_weights(Tensor grad_output, Tensor codes, Tensor input, "
        f"SymInt[] weight_size, {_GEOMETRY}, bool with_bias) -> (Tensor, Tensor)"
    ),
}
for _schema in SCHEMAS.values():
    _LIB.define(_schema)

_ops = torch.ops.fastconv
conv2d = _ops.conv2d.default
conv2d_bwd_data = _ops.conv2d_bwd_data.default
conv2d_bwd_weights = _ops.conv2d_bwd_weights.default
max_pool2d = _ops.max_pool2d.default
max_pool2d_backward = _ops.max_pool2d_backward.default
conv2d_relu_maxpool2d = _ops.conv2d_relu_maxpool2d.default
conv2d_relu_maxpool2d_bwd_data = _ops.conv2d_relu_maxpool2d_bwd_data.default
conv2d_relu_maxpool2d_bwd_weights = _ops.conv2d_relu_maxpool2d_bwd_weights.default


def _impl(name: str, key: str):
    """Decorator: register the function as op `name`'s kernel for dispatch key `key`."""

    def register(fn):
        _LIB.impl(name, fn, key)
        return fn

    return register


def _fake(name: str):
    def register(fn):
        torch.library.register_fake(f"fastconv::{name}", fn, lib=_LIB)
        return fn

    return register


# --- CPU kernels ------------------------------------------------------------------------------


def _np(t: Tensor, name: str, op: str):
    """A zero-copy NumPy view of a float32 CPU tensor (numpy(force=True) detaches without a copy;
    a strided tensor's view is made contiguous by fastconv's binding, the only copy there is)."""
    if t.dtype != torch.float32:
        raise TypeError(f"fastconv::{op}: {name} must be float32, got {t.dtype}")
    return t.numpy(force=True)


def _np_exact(t: Tensor, dtype: torch.dtype, name: str, op: str):
    """A zero-copy NumPy view of an index/code tensor, which must already have `dtype`."""
    if t.dtype != dtype:
        raise TypeError(
            f"fastconv::{op}: {name} must be {dtype} (as the forward op returned it), got {t.dtype}"
        )
    return t.numpy(force=True)


def _empty(shape: Sequence[int], dtype: torch.dtype = torch.float32) -> Tensor:
    return torch.empty(nonnegative(shape), dtype=dtype)


@_impl("conv2d", "CPU")
def _conv2d_cpu(input, weight, bias, stride, padding_mode, padding, dilation, groups, relu):
    x, w = _np(input, "input", "conv2d"), _np(weight, "weight", "conv2d")
    b = None if bias is None else _np(bias, "bias", "conv2d")
    y = _empty(conv2d_out_shape(x.shape, w.shape, stride, padding_mode, padding, dilation))
    _C.conv2d_fwd(x, w, b, stride, padding_mode, padding, dilation, groups, relu, y.numpy())
    return y


@_impl("conv2d_bwd_data", "CPU")
def _conv2d_bwd_data_cpu(grad_output, weight, input_size, *geometry):
    dy = _np(grad_output, "grad_output", "conv2d_bwd_data")
    w = _np(weight, "weight", "conv2d_bwd_data")
    dx = _empty(input_size)
    _C.conv2d_bwd_data(dy, w, input_size, *geometry, dx.numpy())
    return dx


@_impl("conv2d_bwd_weights", "CPU")
def _conv2d_bwd_weights_cpu(grad_output, input, weight_size, *geometry_and_with_bias):
    with_bias = geometry_and_with_bias[-1]
    dy = _np(grad_output, "grad_output", "conv2d_bwd_weights")
    x = _np(input, "input", "conv2d_bwd_weights")
    dw, db = _empty(weight_size), _empty([weight_size[0] if with_bias else 0])
    _C.conv2d_bwd_weights(
        dy, x, weight_size, *geometry_and_with_bias, dw.numpy(), db.numpy() if with_bias else None
    )
    return dw, db


@_impl("max_pool2d", "CPU")
def _max_pool2d_cpu(input, kernel_size, stride, padding_mode, padding, dilation, ceil_mode):
    x = _np(input, "input", "max_pool2d")
    geometry = (kernel_size, stride, padding_mode, padding)
    shape = pool2d_out_shape(x.shape, *geometry, dilation, ceil_mode)
    y, idx = _empty(shape), _empty(shape, torch.int64)
    _C.maxpool2d_fwd(x, *geometry, y.numpy(), idx.numpy(), dilation, ceil_mode)
    return y, idx


@_impl("max_pool2d_backward", "CPU")
def _max_pool2d_backward_cpu(grad_output, indices, input_size, *pool_geometry):
    # The CPU scatter needs no geometry: it runs plane by plane in a fixed order (deterministic).
    dy = _np(grad_output, "grad_output", "max_pool2d_backward")
    idx = _np_exact(indices, torch.int64, "indices", "max_pool2d_backward")
    dx = _empty(input_size)
    _C.maxpool2d_bwd(dy, idx, input_size, dx.numpy())
    return dx


@_impl("conv2d_relu_maxpool2d", "CPU")
def _fused_cpu(input, weight, bias, stride, padding_mode, padding, dilation, groups):
    op = "conv2d_relu_maxpool2d"
    x, w = _np(input, "input", op), _np(weight, "weight", op)
    b = None if bias is None else _np(bias, "bias", op)
    shape = fused_out_shape(x.shape, w.shape, stride, padding_mode, padding, dilation)
    y, codes = _empty(shape), _empty(shape, torch.uint8)
    _C.conv2d_relu_maxpool2d(
        x, w, b, stride, padding_mode, padding, dilation, groups, y.numpy(), codes.numpy()
    )
    return y, codes


@_impl("conv2d_relu_maxpool2d_bwd_data", "CPU")
def _fused_bwd_data_cpu(grad_output, codes, weight, input_size, *geometry):
    op = "conv2d_relu_maxpool2d_bwd_data"
    dy, w = _np(grad_output, "grad_output", op), _np(weight, "weight", op)
    c = _np_exact(codes, torch.uint8, "codes", op)
    dx = _empty(input_size)
    _C.conv2d_relu_maxpool2d_bwd_data(dy, c, w, input_size, *geometry, dx.numpy())
    return dx


@_impl("conv2d_relu_maxpool2d_bwd_weights", "CPU")
def _fused_bwd_weights_cpu(grad_output, codes, input, weight_size, *geometry_and_with_bias):
    op = "conv2d_relu_maxpool2d_bwd_weights"
    with_bias = geometry_and_with_bias[-1]
    dy, x = _np(grad_output, "grad_output", op), _np(input, "input", op)
    c = _np_exact(codes, torch.uint8, "codes", op)
    dw, db = _empty(weight_size), _empty([weight_size[0] if with_bias else 0])
    _C.conv2d_relu_maxpool2d_bwd_weights(
        dy,
        c,
        x,
        weight_size,
        *geometry_and_with_bias,
        dw.numpy(),
        db.numpy() if with_bias else None,
    )
    return dw, db


# --- fake (shape-only) kernels: plain arithmetic on the sizes, so SymInts pass through ----------


@_fake("conv2d")
def _conv2d_fake(input, weight, bias, stride, padding_mode, padding, dilation, groups, relu):
    shape = conv2d_out_shape(input.shape, weight.shape, stride, padding_mode, padding, dilation)
    return input.new_empty(shape)


@_fake("conv2d_bwd_data")
def _conv2d_bwd_data_fake(grad_output, weight, input_size, *geometry):
    return grad_output.new_empty(input_size)


def _weight_grads_fake(grad_output, weight_size, with_bias):
    db = grad_output.new_empty([weight_size[0] if with_bias else 0])
    return grad_output.new_empty(weight_size), db


@_fake("conv2d_bwd_weights")
def _conv2d_bwd_weights_fake(grad_output, input, weight_size, *geometry_and_with_bias):
    return _weight_grads_fake(grad_output, weight_size, geometry_and_with_bias[-1])


@_fake("max_pool2d")
def _max_pool2d_fake(input, *pool_geometry):
    shape = pool2d_out_shape(input.shape, *pool_geometry)
    return input.new_empty(shape), input.new_empty(shape, dtype=torch.int64)


@_fake("max_pool2d_backward")
def _max_pool2d_backward_fake(grad_output, indices, input_size, *pool_geometry):
    return grad_output.new_empty(input_size)


@_fake("conv2d_relu_maxpool2d")
def _fused_fake(input, weight, bias, stride, padding_mode, padding, dilation, groups):
    shape = fused_out_shape(input.shape, weight.shape, stride, padding_mode, padding, dilation)
    return input.new_empty(shape), input.new_empty(shape, dtype=torch.uint8)


@_fake("conv2d_relu_maxpool2d_bwd_data")
def _fused_bwd_data_fake(grad_output, codes, weight, input_size, *geometry):
    return grad_output.new_empty(input_size)


@_fake("conv2d_relu_maxpool2d_bwd_weights")
def _fused_bwd_weights_fake(grad_output, codes, input, weight_size, *geometry_and_with_bias):
    return _weight_grads_fake(grad_output, weight_size, geometry_and_with_bias[-1])


# --- autograd kernels -------------------------------------------------------------------------
#
# One autograd.Function per forward op. Its first argument is the table of kernels to run: the
# fastconv:: ops (the Autograd kernel registered below, the path torch.compile, FakeTensor and
# any dispatch mode see) or the CPU kernels themselves (*_eager below: plain eager CPU tensors,
# where the dispatcher's two Python round trips cost more than the kernel of a small layer).


def _below_autograd():
    """Run the op's device kernel from inside its own autograd kernel (what custom_op does)."""
    return torch._C._AutoDispatchBelowAutograd()


class _Conv2d(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx, kernels, input, weight, bias, stride, padding_mode, padding, dilation, groups, relu
    ):
        fwd, ctx.bwd_data, ctx.bwd_weights = kernels
        with _below_autograd():
            y = fwd(input, weight, bias, stride, padding_mode, padding, dilation, groups, relu)
        ctx.geometry = (stride, padding_mode, padding, dilation, groups)
        ctx.relu = relu
        ctx.save_for_backward(input, weight, y if relu else None)
        return y

    @staticmethod
    def backward(ctx, grad):
        input, weight, output = ctx.saved_tensors
        if ctx.relu:  # PyTorch's relu gradient: passed where the result is > 0 (never at NaN)
            grad = torch.where(output > 0, grad, 0.0)
        need_x, need_w, need_b = ctx.needs_input_grad[1:4]
        dx = dw = db = None
        if need_x:
            dx = ctx.bwd_data(grad, weight, input.shape, *ctx.geometry)
        if need_w:
            dw, db = ctx.bwd_weights(grad, input, weight.shape, *ctx.geometry, need_b)
            db = db if need_b else None
        elif need_b:
            db = grad.sum((0, 2, 3))
        return None, dx, dw, db, None, None, None, None, None, None


class _MaxPool2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, kernels, input, *pool_geometry):
        fwd, ctx.bwd = kernels
        with _below_autograd():
            y, indices = fwd(input, *pool_geometry)
        ctx.geometry = pool_geometry
        ctx.input_size = input.shape
        ctx.mark_non_differentiable(indices)
        ctx.save_for_backward(indices)
        return y, indices

    @staticmethod
    def backward(ctx, grad, _grad_indices):
        (indices,) = ctx.saved_tensors
        dx = None
        if ctx.needs_input_grad[1]:
            dx = ctx.bwd(grad, indices, ctx.input_size, *ctx.geometry)
        return None, dx, None, None, None, None, None, None


class _Conv2dReluMaxPool2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, kernels, input, weight, bias, stride, padding_mode, padding, dilation, groups):
        fwd, ctx.bwd_data, ctx.bwd_weights = kernels
        geometry = (stride, padding_mode, padding, dilation, groups)
        with _below_autograd():
            y, codes = fwd(input, weight, bias, *geometry)
        ctx.geometry = geometry
        ctx.mark_non_differentiable(codes)
        ctx.save_for_backward(input, weight, codes)
        return y, codes

    @staticmethod
    def backward(ctx, grad, _grad_codes):
        input, weight, codes = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad[1:4]
        dx = dw = db = None
        if need_x:
            dx = ctx.bwd_data(grad, codes, weight, input.shape, *ctx.geometry)
        if need_w or need_b:  # the bias gradient is summed in the weight pass (same rebuilt dy)
            dw, db = ctx.bwd_weights(grad, codes, input, weight.shape, *ctx.geometry, need_b)
            dw, db = (dw if need_w else None), (db if need_b else None)
        return None, dx, dw, db, None, None, None, None, None


_CONV_OPS = (conv2d, conv2d_bwd_data, conv2d_bwd_weights)
_POOL_OPS = (max_pool2d, max_pool2d_backward)
_FUSED_OPS = (
    conv2d_relu_maxpool2d,
    conv2d_relu_maxpool2d_bwd_data,
    conv2d_relu_maxpool2d_bwd_weights,
)
_LIB.impl("conv2d", lambda *args: _Conv2d.apply(_CONV_OPS, *args), "Autograd")
_LIB.impl("max_pool2d", lambda *args: _MaxPool2d.apply(_POOL_OPS, *args), "Autograd")
_LIB.impl(
    "conv2d_relu_maxpool2d", lambda *args: _Conv2dReluMaxPool2d.apply(_FUSED_OPS, *args), "Autograd"
)

# --- the eager CPU path (fastconv.torch.functional takes it for plain CPU tensors) --------------

_CONV_CPU = (_conv2d_cpu, _conv2d_bwd_data_cpu, _conv2d_bwd_weights_cpu)
_POOL_CPU = (_max_pool2d_cpu, _max_pool2d_backward_cpu)
_FUSED_CPU = (_fused_cpu, _fused_bwd_data_cpu, _fused_bwd_weights_cpu)


def _records_grad(*tensors) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def conv2d_eager(input, weight, bias, *geometry_and_relu):
    """conv2d on plain eager CPU tensors, without the dispatcher (same kernels, same autograd)."""
    if _records_grad(input, weight, bias):
        return _Conv2d.apply(_CONV_CPU, input, weight, bias, *geometry_and_relu)
    return _conv2d_cpu(input, weight, bias, *geometry_and_relu)


def max_pool2d_eager(input, *pool_geometry):
    if _records_grad(input):
        return _MaxPool2d.apply(_POOL_CPU, input, *pool_geometry)
    return _max_pool2d_cpu(input, *pool_geometry)


def conv2d_relu_maxpool2d_eager(input, weight, bias, *geometry):
    if _records_grad(input, weight, bias):
        return _Conv2dReluMaxPool2d.apply(_FUSED_CPU, input, weight, bias, *geometry)
    return _fused_cpu(input, weight, bias, *geometry)


def op_names() -> List[str]:
    """The fastconv:: op names (tests run opcheck over them)."""
    return list(SCHEMAS)
