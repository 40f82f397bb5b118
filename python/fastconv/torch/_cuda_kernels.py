"""CUDA kernels of the fastconv:: ops, on fastconv's CUDA build.

The tensors stay torch's: outputs and workspaces come from torch's caching allocator, and
fastconv's native CUDA entries (fastconv.ops.cuda_pointer_entries(), the ones fastconv's CuPy path
calls) get their device pointers and torch's current stream (``torch.cuda.current_stream().cuda_stream``). So the
kernels are queued behind whatever torch queued on that stream, nothing waits for the GPU (no host
sync), and no array crosses to CuPy and back: the zero-copy exchange a DLPack hop would give, with
no CuPy import on the hot path and no CuPy needed at all. A workspace freed when a kernel returns
is safe for the same reason CuPy's is: torch's allocator is stream-ordered for the current stream.

The fused conv + ReLU + max-pool has no native CUDA kernel: on the GPU it runs as conv2d (ReLU
fused) + max_pool2d, and its codes are derived from the pool's indices with elementwise torch ops
(same values as the CPU's codes), so the backward ops see the same contract on both devices.
"""

from __future__ import annotations

import torch

from fastconv import ops as _fastconv_ops
from fastconv.torch import _ops
from fastconv.torch._shapes import conv2d_out_shape, nonnegative, pool2d_out_shape


def _native():
    return _fastconv_ops.cuda_pointer_entries()


def _f32(t: torch.Tensor, name: str, op: str) -> torch.Tensor:
    if t.dtype != torch.float32:
        raise TypeError(f"fastconv::{op}: {name} must be float32, got {t.dtype}")
    return t.contiguous()


def _stream(device: torch.device) -> int:
    return torch.cuda.current_stream(device).cuda_stream


def _ptr(t) -> int:
    return 0 if t is None or t.numel() == 0 else t.data_ptr()


def _shape(t: torch.Tensor):
    return tuple(int(s) for s in t.shape)


def _conv2d_cuda(input, weight, bias, stride, padding_mode, padding, dilation, groups, relu):
    native = _native()
    x, w = _f32(input, "input", "conv2d"), _f32(weight, "weight", "conv2d")
    b = None if bias is None else _f32(bias, "bias", "conv2d")
    shape = conv2d_out_shape(x.shape, w.shape, stride, padding_mode, padding, dilation)
    y = x.new_empty(nonnegative(shape))
    if y.numel():
        native.conv2d_fwd(
            x.device.index, _stream(x.device), _ptr(y), _ptr(x), _ptr(w), _ptr(b), _shape(x),
            _shape(w), stride, padding_mode, padding, dilation, groups, bool(relu),
        )  # fmt: skip
    return y


def _conv2d_bwd_data_cuda(grad_output, weight, input_size, *geometry):
    native = _native()
    dy = _f32(grad_output, "grad_output", "conv2d_bwd_data")
    w = _f32(weight, "weight", "conv2d_bwd_data")
    xs = tuple(int(s) for s in input_size)
    dx = dy.new_empty(xs)
    if dx.numel():
        native.conv2d_bwd_data(
            dy.device.index, _stream(dy.device), _ptr(dx), _ptr(dy), _ptr(w), xs, _shape(w),
            *geometry,
        )  # fmt: skip
    return dx


def _conv2d_bwd_weights_cuda(grad_output, input, weight_size, *geometry_and_with_bias):
    native = _native()
    geometry, with_bias = geometry_and_with_bias[:-1], geometry_and_with_bias[-1]
    dy = _f32(grad_output, "grad_output", "conv2d_bwd_weights")
    x = _f32(input, "input", "conv2d_bwd_weights")
    ws = tuple(int(s) for s in weight_size)
    dw = dy.new_empty(ws)
    db = dy.new_empty((ws[0] if with_bias else 0,))
    dev = dy.device.index
    nbytes = native.conv2d_bwd_weights_workspace_bytes(dev, _shape(x), ws, *geometry)
    workspace = torch.empty(nbytes, dtype=torch.uint8, device=dy.device) if nbytes else None
    native.conv2d_bwd_weights(
        dev, _stream(dy.device), _ptr(dw), _ptr(db), _ptr(dy), _ptr(x), _ptr(workspace),
        int(nbytes), _shape(x), ws, *geometry,
    )  # fmt: skip
    return dw, db


def _max_pool2d_cuda(
    input, kernel_size, stride, padding_mode, padding, dilation=(1, 1), ceil_mode=False
):
    native = _native()
    x = _f32(input, "input", "max_pool2d")
    geometry = (kernel_size, stride, padding_mode, padding, dilation, ceil_mode)
    shape = nonnegative(pool2d_out_shape(x.shape, *geometry))
    y, idx = x.new_empty(shape), x.new_empty(shape, dtype=torch.int64)
    if y.numel():
        native.maxpool2d_fwd(
            x.device.index, _stream(x.device), _ptr(y), _ptr(idx), _ptr(x), _shape(x), *geometry
        )
    return y, idx


def _max_pool2d_backward_cuda(grad_output, indices, input_size, *pool_geometry):
    # The forward's geometry picks the deterministic gather kernel (bit-identical to the CPU).
    # Indices come from fastconv::max_pool2d, so the NumPy API's range check (a host sync) is
    # not repeated here.
    native = _native()
    dy = _f32(grad_output, "grad_output", "max_pool2d_backward")
    if indices.dtype != torch.int64:
        raise TypeError(
            f"fastconv::max_pool2d_backward: indices must be int64, got {indices.dtype}"
        )
    idx = indices.contiguous()
    xs = tuple(int(s) for s in input_size)
    dx = dy.new_empty(xs)
    if dx.numel():
        kernel, stride, mode, pad, dilation, ceil_mode = pool_geometry
        geometry = (tuple(kernel), tuple(stride), mode, tuple(pad), tuple(dilation), ceil_mode)
        native.maxpool2d_bwd(
            dy.device.index, _stream(dy.device), _ptr(dx), _ptr(dy), _ptr(idx), xs, _shape(dy),
            geometry,
        )  # fmt: skip
    return dx


# --- the fused pair, composed on the GPU -----------------------------------------------------


def _codes_from_indices(pooled, indices, conv_w: int):
    """The CPU fused kernel's codes: winner's cell in its 2x2 window (row * 2 + column), plus 4
    where the pooled value is not > 0 (the ReLU passed no gradient)."""
    ph = torch.arange(pooled.shape[2], device=pooled.device).view(-1, 1)
    pw = torch.arange(pooled.shape[3], device=pooled.device).view(1, -1)
    row = torch.div(indices, conv_w, rounding_mode="floor") - 2 * ph
    col = torch.remainder(indices, conv_w) - 2 * pw
    cell = row * 2 + col + torch.where(pooled > 0, 0, 4)
    return cell.to(torch.uint8)


def _relu_maxpool2d_backward(grad_pooled, codes, conv_size):
    """The gradient at the convolution's output: grad_pooled at each window's winner whose code
    is < 4, zero elsewhere (the windows do not overlap, so a scatter has no collisions)."""
    n, c, oh, ow = (int(s) for s in conv_size)
    ph = torch.arange(codes.shape[2], device=codes.device).view(-1, 1)
    pw = torch.arange(codes.shape[3], device=codes.device).view(1, -1)
    cell = codes.to(torch.int64) & 3
    flat = (2 * ph + cell // 2) * ow + (2 * pw + cell % 2)
    src = torch.where(codes < 4, grad_pooled, 0.0)
    dconv = grad_pooled.new_zeros((n, c, oh * ow))
    dconv.scatter_(2, flat.reshape(n, c, -1), src.reshape(n, c, -1))
    return dconv.view(n, c, oh, ow)


def _fused_cuda(input, weight, bias, stride, padding_mode, padding, dilation, groups):
    y = _conv2d_cuda(input, weight, bias, stride, padding_mode, padding, dilation, groups, True)
    if y.shape[2] < 2 or y.shape[3] < 2:
        raise ValueError(
            "the convolution's output must be at least 2x2 to be pooled, "
            f"got {y.shape[2]}x{y.shape[3]}"
        )
    pooled, idx = _max_pool2d_cuda(y, [2, 2], [2, 2], "explicit", [0, 0], [1, 1], False)
    return pooled, _codes_from_indices(pooled, idx, y.shape[3])


def _conv_size(input_size, weight_size, geometry):
    stride, mode, padding, dilation, _groups = geometry
    return conv2d_out_shape(input_size, weight_size, stride, mode, padding, dilation)


def _fused_bwd_data_cuda(grad_output, codes, weight, input_size, *geometry):
    conv_size = _conv_size(input_size, weight.shape, geometry)
    dconv = _relu_maxpool2d_backward(grad_output, codes, conv_size)
    return _conv2d_bwd_data_cuda(dconv, weight, input_size, *geometry)


def _fused_bwd_weights_cuda(grad_output, codes, input, weight_size, *geometry_and_with_bias):
    conv_size = _conv_size(input.shape, weight_size, geometry_and_with_bias[:-1])
    dconv = _relu_maxpool2d_backward(grad_output, codes, conv_size)
    return _conv2d_bwd_weights_cuda(dconv, input, weight_size, *geometry_and_with_bias)


for _name, _kernel in {
    "conv2d": _conv2d_cuda,
    "conv2d_bwd_data": _conv2d_bwd_data_cuda,
    "conv2d_bwd_weights": _conv2d_bwd_weights_cuda,
    "max_pool2d": _max_pool2d_cuda,
    "max_pool2d_backward": _max_pool2d_backward_cuda,
    "conv2d_relu_maxpool2d": _fused_cuda,
    "conv2d_relu_maxpool2d_bwd_data": _fused_bwd_data_cuda,
    "conv2d_relu_maxpool2d_bwd_weights": _fused_bwd_weights_cuda,
}.items():
    _ops._LIB.impl(_name, _kernel, "CUDA")
