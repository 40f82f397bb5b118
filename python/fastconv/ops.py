"""The functional API: Conv2D and MaxPool2D, forward and backward, on NumPy (and CuPy) arrays.

Layout is NCHW, float32; semantics and output shapes are PyTorch's. This module normalises the
arguments (int or (h, w) pairs, "valid"/"same" padding), checks dtypes and dimensions, and hands
C-contiguous float32 buffers to the native kernels, which validate the geometry in one place
(cpp/params.cpp) shared by the CPU and CUDA backends.

Dtypes: float32 arrays are used as they are; other real floating and integer arrays (float64,
float16, int8, ...) are converted to float32 (a copy — the caller's array is never modified);
complex, bool, object and string arrays raise TypeError. Results are new float32 arrays, unless
an ``out=`` buffer is given (NumPy only): the result is then written into it and it is returned. An
``out`` array must already have the result's exact shape and dtype, be C-contiguous and writeable,
and share no memory with an input (ValueError / TypeError otherwise); training loops use it to keep
reusing the same buffers instead of paying fresh pages every step.
N = 0 is allowed: outputs are empty arrays of the right shape, and weight/bias gradients are zero.
"""

from __future__ import annotations

import numbers
from typing import Any, Optional, Tuple, Union

import numpy as np

from . import _C, _cuda_ops

IntPair = Union[int, Tuple[int, int]]
PaddingArg = Union[int, Tuple[int, int], str]

__all__ = [
    "conv2d",
    "conv2d_algo",
    "conv2d_algos",
    "conv2d_backward",
    "conv2d_bwd_data",
    "conv2d_bwd_weights",
    "conv2d_output_shape",
    "conv2d_relu_maxpool2d",
    "conv2d_relu_maxpool2d_bwd_data",
    "conv2d_relu_maxpool2d_bwd_weights",
    "max_pool2d",
    "max_pool2d_backward",
    "max_pool2d_output_shape",
    "relu_maxpool2d_backward",
    "get_conv_algo",
    "set_conv_algo",
]


# The geometry limit (params.h's kMaxDim, 2**31 - 1) on every size, stride, padding and dilation.
MAX_DIM: int = _C.MAX_DIM

# --- argument normalisation -------------------------------------------------------------------


def _pair(value: Any, name: str) -> Tuple[int, int]:
    """int or (h, w) pair of ints -> (h, w); TypeError for anything else."""
    # Plain ints first: the numbers.Integral checks below cost ~0.5 us each, a few percent of a
    # small layer's call (bool is a subclass of int, not the type int itself).
    if type(value) is int:
        return value, value
    if type(value) is tuple and len(value) == 2 and type(value[0]) is int and type(value[1]) is int:
        return value
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an int or an (h, w) pair of ints, got {value!r}")
    if isinstance(value, numbers.Integral):
        return int(value), int(value)
    if (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and all(
            isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_)) for v in value
        )
    ):
        return int(value[0]), int(value[1])
    raise TypeError(f"{name} must be an int or an (h, w) pair of ints, got {value!r}")


def _padding(value: Any) -> Tuple[str, Tuple[int, int]]:
    """padding -> (mode, (h, w)) with mode 'explicit', 'valid' or 'same'."""
    if isinstance(value, str):
        mode = value.lower()
        if mode not in ("valid", "same"):
            raise ValueError(
                f"padding must be an int, an (h, w) pair, 'valid' or 'same', got {value!r}"
            )
        return mode, (0, 0)
    return "explicit", _pair(value, "padding")


def _shape4(value: Any, name: str) -> Tuple[int, int, int, int]:
    """A 4-int shape: Python or NumPy integers only (a float such as 8.5 is a TypeError, never
    truncated); sizes outside [0, MAX_DIM] are a ValueError."""
    if type(value) is tuple and len(value) == 4 and all(type(v) is int for v in value):
        shape = value  # an array's .shape: no conversion needed
    else:
        if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
            raise TypeError(f"{name} must be a sequence of 4 ints (N, C, H, W), got {value!r}")
        items = tuple(value)
        if not all(_is_int(v) for v in items):
            raise TypeError(f"{name} must be a sequence of 4 ints (N, C, H, W), got {value!r}")
        if len(items) != 4:
            raise ValueError(f"{name} must have 4 entries (N, C, H, W), got {value!r}")
        shape = tuple(int(v) for v in items)
    if not all(0 <= v <= _C.MAX_DIM for v in shape):
        raise ValueError(f"{name} sizes must be in [0, {_C.MAX_DIM}], got {value!r}")
    return shape  # type: ignore[return-value]


def _is_int(v: Any) -> bool:
    """A Python or NumPy integer, not a bool."""
    return isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_))


def _is_cuda(a: Any) -> bool:
    # A class registered by _cuda_ops (cupy.ndarray, once it has loaded CuPy) is known without
    # reading __cuda_array_interface__, which CuPy builds anew (a dict and a stream lookup) on every
    # access. Other classes are asked per object: a CPU torch tensor's class has the property, but
    # reading it raises.
    cls = type(a)
    if cls is np.ndarray:
        return False
    return cls in _cuda_ops.GPU_ARRAY_TYPES or hasattr(a, "__cuda_array_interface__")


def _as_f32(a: Any, name: str, ndim: Optional[int] = 4) -> np.ndarray:
    """A C-contiguous float32 view or copy of `a`; TypeError for non-numeric dtypes."""
    if _is_cuda(a):
        raise TypeError(
            f"{name} is a GPU array but the other arguments are on the CPU; "
            "pass all arrays on the same device"
        )
    if isinstance(a, np.ma.MaskedArray):  # np.asarray would drop the mask without a word
        raise TypeError(f"{name} is a masked array; pass np.ma.filled({name}, value) instead")
    arr = np.asarray(a)
    kind = arr.dtype.kind
    if kind not in "fiu":
        raise TypeError(
            f"{name} must be a real float or integer array (float32 preferred), got dtype {arr.dtype}"
        )
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {arr.shape}")
    return np.ascontiguousarray(arr, dtype=np.float32)


def _as_index(a: Any, name: str, dtype=np.int64, source: str = "max_pool2d") -> np.ndarray:
    """A 4-D C-contiguous array of exactly `dtype` (indices or codes an op returned); never cast."""
    arr = np.asarray(a)
    if arr.dtype != dtype:
        raise TypeError(
            f"{name} must be an array of dtype {np.dtype(dtype).name} (as returned by {source}), "
            f"got {arr.dtype}"
        )
    if arr.ndim != 4:
        raise ValueError(f"{name} must be 4-D, got shape {arr.shape}")
    return np.ascontiguousarray(arr)


def _out(out: Any, name: str = "out", dtype=np.float32) -> Optional[np.ndarray]:
    """An out= argument: None or a NumPy array of `dtype` (shape, order, writeability and overlap
    with the inputs are checked by the native entry, which never converts it)."""
    if out is None:
        return None
    if _is_cuda(out):
        raise TypeError(f"{name} must be a NumPy array: out= is not supported for GPU arrays")
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name} must be a NumPy array or None, got {type(out).__name__}")
    if out.dtype != dtype:
        raise TypeError(f"{name} must be a {np.dtype(dtype).name} array, got dtype {out.dtype}")
    return out


def _out_pair(
    out: Any, names: Tuple[str, str]
) -> Tuple[Optional[np.ndarray], Optional[np.ndarray]]:
    """out=(a, b) for the two-result functions; either entry may be None."""
    if out is None:
        return None, None
    if not isinstance(out, tuple) or len(out) != 2:
        raise TypeError(
            f"out must be a ({names[0]}, {names[1]}) tuple or None, got {type(out).__name__}"
        )
    dtype1 = {"indices": np.int64, "codes": np.uint8}.get(names[1], np.float32)
    return _out(out[0], f"out[0] ({names[0]})"), _out(out[1], f"out[1] ({names[1]})", dtype1)


def _no_gpu_out(out: Any) -> None:
    if out is not None:
        raise TypeError("out= is not supported for GPU arrays (results are new CuPy arrays)")


def _cuda():
    """The CUDA backend module (it imports CuPy on first use and needs a CUDA build)."""
    return _cuda_ops


# --- Conv2D -----------------------------------------------------------------------------------


def conv2d(
    input,
    weight,
    bias=None,
    stride: IntPair = 1,
    padding: PaddingArg = 0,
    dilation: IntPair = 1,
    groups: int = 1,
    *,
    activation: Optional[str] = None,
    out=None,
):
    """2-D convolution (cross-correlation, as in PyTorch) of an NCHW batch.

    input (N, C_in, H, W); weight (C_out, C_in/groups, KH, KW); bias (C_out,) or None.
    stride, dilation: int or (h, w). padding: int, (h, w), "valid" or "same" (stride 1 only; an odd
    total puts the extra row/column at the bottom/right). activation: None or "relu" (fused:
    max(y, 0), NaN kept, as PyTorch's relu).
    Returns a new float32 array (N, C_out, OH, OW), or `out` filled with it.
    """
    args = _conv_args(stride, padding, dilation, groups)
    relu = _activation(activation)
    if _is_cuda(input):
        _no_gpu_out(out)
        return _cuda().conv2d_fwd(input, weight, bias, *args, relu)
    x = _as_f32(input, "input")
    w = _as_f32(weight, "weight")
    b = None if bias is None else _as_f32(bias, "bias", ndim=1)
    return _C.conv2d_fwd(x, w, b, *args, relu, _out(out))


def conv2d_bwd_data(
    grad_output, weight, input_shape, stride=1, padding=0, dilation=1, groups=1, *, out=None
):
    """Gradient of conv2d with respect to its input, shape `input_shape` (N, C_in, H, W)."""
    args = _conv_args(stride, padding, dilation, groups)
    shape = _shape4(input_shape, "input_shape")
    if _is_cuda(grad_output):
        _no_gpu_out(out)
        return _cuda().conv2d_bwd_data(grad_output, weight, shape, *args)
    dy = _as_f32(grad_output, "grad_output")
    w = _as_f32(weight, "weight")
    return _C.conv2d_bwd_data(dy, w, shape, *args, _out(out))


def conv2d_bwd_weights(
    grad_output,
    input,
    weight_shape,
    stride=1,
    padding=0,
    dilation=1,
    groups=1,
    *,
    with_bias=True,
    out=None,
):
    """Gradients of conv2d with respect to weight (shape `weight_shape`) and bias.

    Returns (grad_weight, grad_bias); grad_bias is the sum of grad_output over N, OH, OW, or None
    when with_bias is False. out: None or a (grad_weight, grad_bias) tuple of buffers (either may
    be None; grad_bias must be None when with_bias is False).
    """
    args = _conv_args(stride, padding, dilation, groups)
    shape = _shape4(weight_shape, "weight_shape")
    with_bias = _flag(with_bias, "with_bias")
    if _is_cuda(grad_output):
        _no_gpu_out(out)
        return _cuda().conv2d_bwd_weights(grad_output, input, shape, *args, with_bias)
    out_w, out_b = _out_pair(out, ("grad_weight", "grad_bias"))
    dy = _as_f32(grad_output, "grad_output")
    x = _as_f32(input, "input")
    return tuple(_C.conv2d_bwd_weights(dy, x, shape, *args, with_bias, out_w, out_b))


def conv2d_backward(grad_output, input, weight, stride=1, padding=0, dilation=1, groups=1):
    """All three gradients of conv2d: (grad_input, grad_weight, grad_bias)."""
    shape = tuple(int(s) for s in np.shape(weight)) if not _is_cuda(weight) else tuple(weight.shape)
    if len(shape) != 4:
        raise ValueError(f"weight must be 4-D, got shape {shape}")
    dx = conv2d_bwd_data(
        grad_output, weight, _input_shape(input), stride, padding, dilation, groups
    )
    dw, db = conv2d_bwd_weights(grad_output, input, shape, stride, padding, dilation, groups)
    return dx, dw, db


def _input_shape(x) -> Tuple[int, ...]:
    shape = tuple(int(s) for s in (x.shape if hasattr(x, "shape") else np.shape(x)))
    if len(shape) != 4:
        raise ValueError(f"input must be 4-D, got shape {shape}")
    return shape


def _groups(groups: Any) -> int:
    if type(groups) is int:
        return groups
    if isinstance(groups, (bool, np.bool_)) or not isinstance(groups, numbers.Integral):
        raise TypeError(f"groups must be an int, got {groups!r}")
    return int(groups)


def _conv_args(stride, padding, dilation, groups) -> tuple:
    """conv2d's geometry arguments as the native entries take them:
    ((sh, sw), pad_mode, (ph, pw), (dh, dw), groups), each normalised and named in errors."""
    return (
        _pair(stride, "stride"),
        *_padding(padding),
        _pair(dilation, "dilation"),
        _groups(groups),
    )


def _flag(value: Any, name: str) -> bool:
    """A bool argument: True/False (or NumPy's); a truthy string such as "no" is a TypeError."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise TypeError(f"{name} must be True or False, got {value!r}")


def _activation(activation: Optional[str]) -> bool:
    if activation is None:
        return False
    if activation == "relu":
        return True
    raise ValueError(f"activation must be None or 'relu', got {activation!r}")


# --- MaxPool2D --------------------------------------------------------------------------------


def max_pool2d(
    input,
    kernel_size: IntPair,
    stride: Optional[IntPair] = None,
    padding: PaddingArg = 0,
    return_indices: bool = False,
    *,
    dilation: IntPair = 1,
    ceil_mode: bool = False,
    out=None,
):
    """2-D max pooling of an NCHW batch.

    kernel_size, stride: int or (h, w); stride defaults to kernel_size. padding: int or (h, w), at
    most half the kernel (padded cells never win), or "valid" / "same" (TensorFlow's rule:
    out = ceil(in / stride), extra padding at the bottom/right).
    dilation (int or (h, w)) and ceil_mode (bool): PyTorch's meaning (taps dilation apart; output
    sizes rounded up); CPU and GPU, not with padding="same". max_pool2d_backward needs no
    geometry for them (call it without kernel_size).
    indices (int64) hold the flat offset h*W + w of each window's winner inside its own (n, c)
    plane; ties go to the first element in row-major window order and NaN wins (propagates).
    Returns output, or (output, indices) when return_indices is True. out: None or an
    (output, indices) tuple of buffers (float32 and int64; either may be None).
    """
    kernel = _pair(kernel_size, "kernel_size")
    strides = kernel if stride is None else _pair(stride, "stride")
    mode, pad = _padding(padding)
    return_indices = _flag(return_indices, "return_indices")
    dil = _pair(dilation, "dilation")
    ceil_mode = _flag(ceil_mode, "ceil_mode")
    if _is_cuda(input):
        _no_gpu_out(out)
        y, idx = _cuda().maxpool2d_fwd(input, kernel, strides, mode, pad, dil, ceil_mode)
    else:
        out_y, out_i = _out_pair(out, ("output", "indices"))
        x = _as_f32(input, "input")
        y, idx = _C.maxpool2d_fwd(x, kernel, strides, mode, pad, out_y, out_i, dil, ceil_mode)
    return (y, idx) if return_indices else y


def max_pool2d_backward(
    grad_output,
    indices,
    input_shape,
    *,
    kernel_size: Optional[IntPair] = None,
    stride: Optional[IntPair] = None,
    padding: PaddingArg = 0,
    out=None,
):
    """Gradient of max_pool2d: each grad_output element is added into its window's winner.

    grad_output and indices are max_pool2d's output shape, indices as max_pool2d returned them
    (int64, flat h*W + w inside each (n, c) plane); the result is a new float32 array of
    input_shape (N, C, H, W).

    kernel_size, stride, padding (keyword-only, optional): the forward call's pooling geometry,
    with max_pool2d's meaning and defaults (stride defaults to kernel_size). When kernel_size is
    given they are validated (TypeError / ValueError naming the argument, and ValueError when the
    geometry's output shape is not grad_output's) and:
      - on the GPU, each input cell gathers the gradients of the windows that chose it in a fixed
        order: deterministic and bit-identical to the CPU. Without them the GPU scatters with
        atomics, which for overlapping windows (stride < kernel_size) may differ in the last bits
        from run to run.
      - on the CPU they are not needed: the scatter runs plane by plane in a fixed order and is
        deterministic either way, so the result is the same with or without them.
    stride or padding without kernel_size is a TypeError. out: an array to write the result into.
    """
    shape = _shape4(input_shape, "input_shape")
    geometry = _pool_geometry(kernel_size, stride, padding)
    if _is_cuda(grad_output):
        _no_gpu_out(out)
        if geometry is None:
            return _cuda().maxpool2d_bwd(grad_output, indices, shape)
        kernel, strides, mode, pad = geometry
        return _cuda().maxpool2d_bwd(
            grad_output, indices, shape, kernel=kernel, stride=strides, pad_mode=mode, pad=pad
        )
    dy = _as_f32(grad_output, "grad_output")
    if geometry is not None:
        want = _pool_out_shape(shape, *geometry)
        if tuple(dy.shape) != want:
            raise ValueError(
                f"grad_output has shape {tuple(dy.shape)} but kernel_size={kernel_size!r}, "
                f"stride={stride!r}, padding={padding!r} on input_shape {shape} give {want}"
            )
    return _C.maxpool2d_bwd(dy, _as_index(indices, "indices"), shape, _out(out))


def max_pool2d_algo(pass_name: str, x_shape, /, kernel_size, stride=None, padding=0) -> str:
    """Name of the CPU kernel max_pool2d's pass `pass_name` runs for an input of shape x_shape on
    the current CPU path (get_cpu_isa): "fwd" gives "simd_2x2s2" (the ISA's 2x2/2 vector kernel)
    or "generic"; "bwd" gives "tiles" (the single-pass tile writer, tried on each plane before
    the scatter; a plane with an index outside its own 2x2 tile still takes the scatter) or
    "scatter" (zero-fill + scatter-add). The arguments after the shape are max_pool2d's."""
    if not isinstance(pass_name, str):
        raise TypeError(f"pass must be a str, 'fwd' or 'bwd', got {pass_name!r}")
    kernel = _pair(kernel_size, "kernel_size")
    strides = kernel if stride is None else _pair(stride, "stride")
    return _C.maxpool2d_algo(
        pass_name, _shape4(x_shape, "x_shape"), kernel, strides, *_padding(padding)
    )


def _pool_geometry(kernel_size, stride, padding):
    """(kernel, stride, pad_mode, pad) from max_pool2d_backward's optional keywords, or None."""
    if kernel_size is None:
        if stride is None and type(padding) is int and padding == 0:
            return None  # the common call, without the numbers.Integral check
        if stride is not None or not (
            isinstance(padding, numbers.Integral)
            and not isinstance(padding, (bool, np.bool_))
            and padding == 0
        ):
            raise TypeError(
                "max_pool2d_backward: stride and padding describe the forward geometry and need "
                f"kernel_size as well (got kernel_size=None, stride={stride!r}, padding={padding!r})"
            )
        return None
    kernel = _pair(kernel_size, "kernel_size")
    strides = kernel if stride is None else _pair(stride, "stride")
    mode, pad = _padding(padding)
    for name, value, given in (("kernel_size", kernel, kernel_size), ("stride", strides, stride)):
        if min(value) < 1:
            raise ValueError(f"{name} must be >= 1, got {given!r}")
        if max(value) > _C.MAX_DIM:
            raise ValueError(f"{name} must be in [1, {_C.MAX_DIM}], got {given!r}")
    if mode == "explicit":
        if min(pad) < 0:
            raise ValueError(f"padding must be >= 0, got {padding!r}")
        if pad[0] > kernel[0] // 2 or pad[1] > kernel[1] // 2:
            raise ValueError(
                f"padding must be at most half the kernel_size {kernel}, got {padding!r}"
            )
    return kernel, strides, mode, pad


def _pool_out_shape(x_shape, kernel, strides, mode, pad):
    """max_pool2d's output shape, computed (and validated) once, by cpp/params.cpp."""
    return tuple(_C.maxpool2d_out_shape(x_shape, kernel, strides, mode, pad))


# --- output shapes (the geometry rule of cpp/params.cpp, which every backend runs) -------------


def conv2d_output_shape(
    x_shape,
    w_shape,
    stride: IntPair = 1,
    padding: PaddingArg = 0,
    dilation: IntPair = 1,
    groups: int = 1,
) -> Tuple[int, int, int, int]:
    """(N, C_out, OH, OW) of conv2d on an input of shape x_shape with weights of shape w_shape
    and these arguments (conv2d's); ValueError, naming the value, where conv2d would refuse them."""
    args = _conv_args(stride, padding, dilation, groups)
    return tuple(
        _C.conv2d_out_shape(_shape4(x_shape, "x_shape"), _shape4(w_shape, "w_shape"), *args)
    )


def max_pool2d_output_shape(
    x_shape, kernel_size: IntPair, stride: Optional[IntPair] = None, padding: PaddingArg = 0
) -> Tuple[int, int, int, int]:
    """(N, C, OH, OW) of max_pool2d on an input of shape x_shape with these arguments
    (max_pool2d's); ValueError, naming the value, where max_pool2d would refuse them."""
    kernel = _pair(kernel_size, "kernel_size")
    strides = kernel if stride is None else _pair(stride, "stride")
    return _pool_out_shape(_shape4(x_shape, "x_shape"), kernel, strides, *_padding(padding))


# --- Conv2D + ReLU + MaxPool 2x2 in one pass (the layer API's fused pair) ------------------------


def conv2d_relu_maxpool2d(
    input,
    weight,
    bias=None,
    stride: IntPair = 1,
    padding: PaddingArg = 0,  # noqa: A002
    dilation: IntPair = 1,
    groups: int = 1,
    *,
    out=None,
):
    """max_pool2d(conv2d(..., activation="relu"), 2, 2) in one pass, with one-byte window codes.

    Arguments as conv2d's; the convolution's output must be at least 2x2 (the pooling floors odd
    sizes). Returns (pooled, codes): pooled float32 (N, C_out, OH // 2, OW // 2), bit-identical to
    the two-step result; codes uint8 of the same shape, the winner's cell in its 2x2 window
    (row * 2 + column; max_pool2d's winner rule) plus 4 where the pooled value is not > 0, i.e.
    where the ReLU passes no gradient. relu_maxpool2d_backward turns them into the gradient.
    Each image is convolved into a per-thread buffer and pooled from cache, so the full-size
    activation is never written. CPU (NumPy) only. out: None or a (pooled, codes) tuple of
    buffers (either may be None).
    """
    if _is_cuda(input):
        raise TypeError(
            "conv2d_relu_maxpool2d runs on the CPU only; on a GPU call conv2d "
            "(activation='relu') and max_pool2d"
        )
    args = _conv_args(stride, padding, dilation, groups)
    x = _as_f32(input, "input")
    w = _as_f32(weight, "weight")
    b = None if bias is None else _as_f32(bias, "bias", ndim=1)
    out_y, out_c = _out_pair(out, ("output", "codes"))
    y, codes = _C.conv2d_relu_maxpool2d(x, w, b, *args, out_y, out_c)
    return y, codes


def _codes(codes) -> np.ndarray:
    return _as_index(codes, "codes", np.uint8, "conv2d_relu_maxpool2d")


def conv2d_relu_maxpool2d_bwd_weights(
    grad_output,
    codes,
    input,
    weight_shape,
    stride=1,
    padding=0,  # noqa: A002
    dilation=1,
    groups=1,
    *,
    with_bias=True,
    out=None,
):
    """conv2d_bwd_weights for conv2d_relu_maxpool2d, from the gradient of the pooled output.

    Equals conv2d_bwd_weights(relu_maxpool2d_backward(grad_output, codes, conv output shape),
    input, weight_shape, ...), but each image's full-size gradient is rebuilt in a per-thread
    buffer and used while it is in cache (the layer API's first conv layer, whose input needs no
    gradient, takes this path). Arguments and out= as conv2d_bwd_weights; grad_output and codes
    have the pooled shape. CPU (NumPy) only.
    """
    if _is_cuda(grad_output) or _is_cuda(input):
        raise TypeError("conv2d_relu_maxpool2d_bwd_weights runs on the CPU only")
    args = _conv_args(stride, padding, dilation, groups)
    shape = _shape4(weight_shape, "weight_shape")
    with_bias = _flag(with_bias, "with_bias")
    out_w, out_b = _out_pair(out, ("grad_weight", "grad_bias"))
    dy = _as_f32(grad_output, "grad_output")
    x = _as_f32(input, "input")
    return tuple(
        _C.conv2d_relu_maxpool2d_bwd_weights(
            dy, _codes(codes), x, shape, *args, with_bias, out_w, out_b
        )
    )


def conv2d_relu_maxpool2d_bwd_data(
    grad_output, codes, weight, input_shape, stride=1, padding=0, dilation=1, groups=1, *, out=None
):
    """conv2d_bwd_data for conv2d_relu_maxpool2d, from the gradient of the pooled output.

    Equals conv2d_bwd_data(relu_maxpool2d_backward(grad_output, codes, conv output shape), weight,
    input_shape, ...), with each image's full-size gradient rebuilt in a per-thread buffer (the
    GEMM geometries, e.g. stride 2, build the whole one first). Arguments and out= as
    conv2d_bwd_data; grad_output and codes have the pooled shape. CPU (NumPy) only.
    """
    if _is_cuda(grad_output) or _is_cuda(weight):
        raise TypeError("conv2d_relu_maxpool2d_bwd_data runs on the CPU only")
    args = _conv_args(stride, padding, dilation, groups)
    shape = _shape4(input_shape, "input_shape")
    dy = _as_f32(grad_output, "grad_output")
    w = _as_f32(weight, "weight")
    return _C.conv2d_relu_maxpool2d_bwd_data(dy, _codes(codes), w, shape, *args, _out(out))


def relu_maxpool2d_backward(grad_output, codes, input_shape, *, out=None):
    """Gradient w.r.t. the convolution's output (before the ReLU) of conv2d_relu_maxpool2d.

    grad_output (N, C, PH, PW) is the gradient of the pooled output, codes the uint8 array
    conv2d_relu_maxpool2d returned, input_shape the convolution's output shape (N, C, H, W) with
    H // 2 == PH and W // 2 == PW. The result (float32, input_shape) holds grad_output at each
    window's winner whose code is < 4 and 0 everywhere else (also the odd remainder row/column):
    max_pool2d_backward and the ReLU's mask in one pass. A code >= 8 is a ValueError.
    out: an array to write the result into.
    """
    shape = _shape4(input_shape, "input_shape")
    if _is_cuda(grad_output) or _is_cuda(codes):
        raise TypeError("relu_maxpool2d_backward runs on the CPU only")
    dy = _as_f32(grad_output, "grad_output")
    return _C.relu_maxpool2d_bwd(dy, _codes(codes), shape, _out(out))


# --- which algorithm runs ----------------------------------------------------------------------

CONV_PASSES = ("fwd", "bwd_data", "bwd_weights")


def _conv_pass(pass_name: Any) -> str:
    if not isinstance(pass_name, str):
        raise TypeError(f"pass must be a str, one of {CONV_PASSES}, got {pass_name!r}")
    return pass_name  # the native side names the accepted passes on a bad one


def _algo_args(pass_name, x_shape, w_shape, stride, padding, dilation, groups) -> tuple:
    return (
        _conv_pass(pass_name),
        _shape4(x_shape, "x_shape"),
        _shape4(w_shape, "w_shape"),
        *_conv_args(stride, padding, dilation, groups),
    )


def _device(device: Any) -> bool:
    """True for "cuda", False for "cpu"."""
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
    return device == "cuda"


def conv2d_algo(
    pass_name: str,
    x_shape,
    w_shape,
    /,
    stride=1,
    padding=0,
    dilation=1,
    groups=1,
    *,
    device: str = "cpu",
) -> str:
    """Name of the CPU algorithm that conv2d's pass `pass_name` ("fwd", "bwd_data" or
    "bwd_weights") runs for an input of shape x_shape and weights of shape w_shape on the current
    CPU path (get_cpu_isa), e.g. "winograd_channels" or "gemm"; the fused conv2d_relu_maxpool2d
    ops make the same choice. The arguments after the shapes are conv2d's. The algorithm forced
    with set_conv_algo, if any (ValueError if it cannot run this problem). device="cuda": the
    CUDA kernel family a GPU call runs ("direct" or "tiled" by shape, or the forced one)."""
    args = _algo_args(pass_name, x_shape, w_shape, stride, padding, dilation, groups)
    if _device(device):
        return _cuda().conv2d_algo(*args)
    return _C.conv2d_algo(*args)


def conv2d_algos(
    pass_name: str, x_shape, w_shape, /, stride=1, padding=0, dilation=1, groups=1
) -> list:
    """Every CPU algorithm that can run this problem on the current CPU path, in the order the
    automatic choice tries them (any of them may be forced with set_conv_algo)."""
    return list(
        _C.conv2d_algos(*_algo_args(pass_name, x_shape, w_shape, stride, padding, dilation, groups))
    )


def set_conv_algo(pass_name: str, name: Optional[str], *, device: str = "cpu") -> None:
    """Force the algorithm `name` for every later call of conv2d's pass `pass_name` (and the
    fused ops), or None for the automatic choice again; device="cuda": the CUDA kernel family
    ("direct", "tiled" or "tiled128"). ValueError at once for an unknown pass or name; a call the
    forced algorithm cannot run (see conv2d_algos) raises ValueError. For tests, benchmarks and bug
    reports: the automatic choice is the measured fastest."""
    if name is not None and not isinstance(name, str):
        raise TypeError(f"name must be a str or None, got {name!r}")
    if _device(device):
        _cuda().set_conv_algo(_conv_pass(pass_name), name)
    else:
        _C.set_conv_algo(_conv_pass(pass_name), name)


def get_conv_algo(pass_name: str, *, device: str = "cpu") -> Optional[str]:
    """The algorithm forced for the pass with set_conv_algo, or None (automatic)."""
    if _device(device):
        return _cuda().get_conv_algo(_conv_pass(pass_name))
    return _C.get_conv_algo(_conv_pass(pass_name))


# --- Pre-validated entries: fastconv.torch's hot path -------------------------------------------
#
# A plan validates one call's geometry once (the same native checks as every entry above:
# ValueError / TypeError naming the argument) and runs the CPU kernels on raw host pointers
# (Python ints, e.g. torch's Tensor.data_ptr()) with no further check per call:
#     plan = ConvPlan(x_shape, w_shape, b_shape_or_None, stride, padding_mode, padding, dilation,
#                     groups)                       # .x_shape .w_shape .y_shape .pooled_shape
#     plan.conv2d_fwd(y, x, w, b, relu)             # b = 0: no bias
#     plan.conv2d_bwd_data(dx, dy, w); plan.conv2d_bwd_weights(dw, db, dy, x)   # db = 0: none
#     plan.conv2d_relu_maxpool2d(y, codes, x, w, b) and its _bwd_data / _bwd_weights
#     plan = PoolPlan(x_shape, kernel, stride, padding_mode, padding, dilation, ceil_mode)
#     plan.maxpool2d_fwd(y, indices, x); plan.maxpool2d_bwd(dx, dy, indices)
# padding_mode is "explicit", "same" or "valid" with an (h, w) padding pair (as _padding returns).
# The caller guarantees what the NumPy entries check: every pointer is to a C-contiguous buffer of
# the plan's shape and dtype (float32; int64 indices; uint8 codes), outputs share no byte with an
# input, and the buffers outlive the call. Aliases, so the front door adds no call of its own.
ConvPlan = _C.plan.ConvPlan
PoolPlan = _C.plan.PoolPlan
CUDA_BUILT: bool = bool(_C.cuda_built)


def cuda_pointer_entries():
    """fastconv._C.cuda, the CUDA kernels on raw device pointers and a stream (RuntimeError
    saying how to get them when fastconv was built without CUDA); fastconv.torch's CUDA path."""
    if not CUDA_BUILT:
        from ._cuda_ops import _NOT_BUILT

        raise RuntimeError(_NOT_BUILT)
    return _C.cuda


# fastconv.torch: run parallel work on PyTorch's OpenMP team (the address of the runtime's
# GOMP_parallel; 0: fastconv's own pool again), and whether it does (cpp/parallel.h).
set_team_parallel = _C.set_team_parallel
team_parallel_set = _C.team_parallel_set
