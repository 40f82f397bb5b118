"""Output shapes of the fastconv:: ops, written with plain integer arithmetic so that the same
functions serve the CPU/CUDA kernels (ints) and the fake kernels (torch.SymInt under
torch.compile / dynamic shapes). cpp/params.cpp stays the one place that validates a geometry; these
only predict the shape it will accept, to allocate the output with torch before the native call.
"""

from __future__ import annotations

from typing import List, Sequence


def conv2d_out_hw(size, kernel: int, stride: int, mode: str, pad: int, dilation: int):
    """One spatial size of conv2d's output ('same' keeps the size; it is stride 1 only)."""
    if mode == "same":
        return size
    if mode == "valid":
        pad = 0
    return (size + 2 * pad - dilation * (kernel - 1) - 1) // stride + 1


def conv2d_out_shape(
    x_shape: Sequence,
    w_shape: Sequence,
    stride: Sequence[int],
    mode: str,
    padding: Sequence[int],
    dilation: Sequence[int],
) -> List:
    """(N, C_out, OH, OW) of conv2d on an (N, C, H, W) input and a (C_out, C/g, KH, KW) weight."""
    return [
        x_shape[0],
        w_shape[0],
        conv2d_out_hw(x_shape[2], w_shape[2], stride[0], mode, padding[0], dilation[0]),
        conv2d_out_hw(x_shape[3], w_shape[3], stride[1], mode, padding[1], dilation[1]),
    ]


def pool2d_out_hw(
    size, kernel: int, stride: int, mode: str, pad: int, dilation: int = 1, ceil_mode: bool = False
):
    """One spatial size of max_pool2d's output ('same' is TensorFlow's ceil(size / stride));
    dilation and ceil_mode as PyTorch's pooling_output_shape."""
    if mode == "same":
        return (size + stride - 1) // stride
    if mode == "valid":
        pad = 0
    out = (
        size + 2 * pad - dilation * (kernel - 1) - 1 + (stride - 1 if ceil_mode else 0)
    ) // stride + 1
    if ceil_mode and (out - 1) * stride >= size + pad:
        out = out - 1
    return out


def pool2d_out_shape(
    x_shape: Sequence,
    kernel: Sequence[int],
    stride: Sequence[int],
    mode: str,
    padding: Sequence[int],
    dilation: Sequence[int] = (1, 1),
    ceil_mode: bool = False,
) -> List:
    """(N, C, OH, OW) of max_pool2d on an (N, C, H, W) input."""
    return [
        x_shape[0],
        x_shape[1],
        pool2d_out_hw(x_shape[2], kernel[0], stride[0], mode, padding[0], dilation[0], ceil_mode),
        pool2d_out_hw(x_shape[3], kernel[1], stride[1], mode, padding[1], dilation[1], ceil_mode),
    ]


def pool_windows_hit_input(size: int, kernel: int, stride: int, pad: int, dilation: int, out: int):
    """False when a dilated window that starts in the padding steps over every input cell (the
    native code refuses that geometry; PyTorch returns -inf there)."""
    o = 0
    while o < out and o * stride - pad < 0:
        start = o * stride - pad
        first = (-start + dilation - 1) // dilation
        if first >= kernel or start + first * dilation >= size:
            return False
        o += 1
    return True


def fused_out_shape(x_shape, w_shape, stride, mode, padding, dilation) -> List:
    """conv2d_relu_maxpool2d's pooled shape: the convolution's output halved (floored)."""
    n, c, h, w = conv2d_out_shape(x_shape, w_shape, stride, mode, padding, dilation)
    return [n, c, h // 2, w // 2]


def nonnegative(shape: Sequence[int]) -> List[int]:
    """A geometry the native code will refuse can predict negative sizes; allocate 0 instead and
    let the native call raise its ValueError naming the argument."""
    return shape if min(shape) >= 0 else [max(int(s), 0) for s in shape]
