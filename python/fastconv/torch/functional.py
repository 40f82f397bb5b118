"""torch.nn.functional-style conv2d / max_pool2d that run fastconv's kernels where they can.

Same signatures, results and gradients as torch.nn.functional's (float32 tolerance). A call goes to
the fastconv:: ops when fastconv supports it: float32 tensors, contiguous NCHW (or unbatched CHW)
input, on the CPU (or on a GPU with fastconv's CUDA build), PyTorch-valid arguments (max_pool2d's
dilation and ceil_mode included, on both devices). Any other call is
handed to PyTorch's own op unchanged (channels_last, float64/float16, invalid arguments — PyTorch
then raises its own error), so these functions are drop-in and never refuse what PyTorch accepts.
"""

from __future__ import annotations

import functools
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fastconv import ops as _fastconv_ops
from fastconv.torch import _ops
from fastconv.torch._shapes import conv2d_out_shape, pool2d_out_shape, pool_windows_hit_input

__all__ = ["conv2d", "dropout", "max_pool2d", "conv2d_relu_max_pool2d", "supported_device"]

_PLAIN = (torch.Tensor, nn.Parameter)


def supported_device(device: torch.device) -> bool:
    """CPU always; CUDA when fastconv was built with CUDA."""
    return device.type == "cpu" or (device.type == "cuda" and _fastconv_ops.CUDA_BUILT)


def _pair(value) -> Optional[Tuple[int, int]]:
    """int or 1-/2-sequence of ints -> (h, w); None for anything else (the caller falls back)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value, value
    if isinstance(value, (tuple, list)) and len(value) in (1, 2):
        if all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return (value[0], value[-1])
    return None


def _unwatched() -> bool:
    """True when nothing watches the dispatcher: no torch.compile / jit tracing, torch function or
    dispatch mode, functorch transform. is_compiling() comes first: under Dynamo it is a constant
    True, so the private checks after it are never traced."""
    return not (
        torch.compiler.is_compiling()
        or torch.jit.is_tracing()
        or torch._C._is_torch_function_mode_enabled()
        or torch._C._len_torch_dispatch_stack()
        or torch._C._are_functorch_transforms_active()
    )


def _plain_cpu_f32(t: Tensor) -> bool:
    """A plain (not a subclass), contiguous float32 CPU tensor."""
    return (
        type(t) in _PLAIN and t.is_cpu and t.dtype is torch.float32 and t.layout is torch.strided
        and t.is_contiguous()
    )  # fmt: skip


# The eager path: a call on plain CPU tensors with nothing watching the dispatcher goes straight
# to the CPU kernels, through a plan (_ops._Planned) cached under the call's own arguments
# (shapes and torch.nn.functional's geometry arguments), or False where the call goes to PyTorch.
# One dict lookup per call, then the kernels: no argument is normalised or validated twice.
_EAGER: dict = {}
_EAGER_MAX = 1024


def _eager_plan(key, make, *args):
    """The cached plan for `key` (False: PyTorch's op takes the call), None when the key is
    unhashable (the caller takes the general path). try/except: free when the key is there."""
    try:
        return _EAGER[key]
    except KeyError:
        pass
    except TypeError:
        return None
    if len(_EAGER) >= _EAGER_MAX:
        _EAGER.clear()
    plan = _EAGER[key] = make(*args)
    return plan


def _make_conv_plan(x_shape, w_shape, b_shape, stride, padding, dilation, groups, fused):
    geometry = _conv_geometry_uncached(stride, padding, dilation, groups)
    if geometry is None or len(w_shape) != 4 or len(x_shape) not in (3, 4):
        return False
    x4 = x_shape if len(x_shape) == 4 else (1, *x_shape)
    try:
        plan = _ops.conv_plan(x4, w_shape, b_shape, *geometry)
    except (ValueError, TypeError):  # PyTorch's op then computes it or raises its own error
        return False
    if fused:
        return plan if plan.pooled_shape is not None else False
    return plan if min(plan.y_shape[2:]) >= 1 else False


def _eager_conv(input, weight, bias, stride, padding, dilation, groups, fused):
    if not (
        _plain_cpu_f32(input) and _plain_cpu_f32(weight)
        and (bias is None or _plain_cpu_f32(bias)) and _unwatched()
    ):  # fmt: skip
        return None
    b_shape = None if bias is None else bias.shape
    key = (fused, input.shape, weight.shape, b_shape, stride, padding, dilation, groups)
    return _eager_plan(
        key, _make_conv_plan, input.shape, weight.shape, b_shape, stride, padding, dilation,
        groups, fused,
    )  # fmt: skip


def _records(*tensors) -> bool:
    """Whether autograd records this call."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _run_eager_conv(plan, input, weight, bias, fused):
    x = input if input.dim() == 4 else input.unsqueeze(0)
    if _records(x, weight, bias):
        if fused:
            y = _ops.fused_bare_apply(plan, x, weight, bias)[0]
        else:
            y = _ops.conv2d_bare_apply(plan, x, weight, bias, False)
    else:
        y = plan.fused_fwd(x, weight, bias)[0] if fused else plan.fwd(x, weight, bias, False)
    return y if input.dim() == 4 else y.squeeze(0)


def _tensor_ok(t: Optional[Tensor], device: torch.device) -> bool:
    return t is None or (
        t.dtype == torch.float32 and t.layout == torch.strided and t.device == device
    )


def _input_ok(input: Tensor) -> bool:
    """float32, strided, contiguous NCHW or CHW (channels_last is not), on a supported device."""
    return (
        input.dtype == torch.float32
        and input.dim() in (3, 4)
        and input.layout == torch.strided
        and input.is_contiguous()
        and (input.is_cpu or supported_device(input.device))
    )


def _conv_geometry_uncached(stride, padding, dilation, groups):
    if not isinstance(groups, int) or isinstance(groups, bool) or groups < 1:
        return None
    s, d = _pair(stride), _pair(dilation)
    if s is None or d is None or min(s) < 1 or min(d) < 1:
        return None
    if isinstance(padding, str):
        mode = padding.lower()
        if mode not in ("same", "valid") or (mode == "same" and s != (1, 1)):
            return None
        return s, mode, (0, 0), d, groups
    p = _pair(padding)
    if p is None or min(p) < 0:
        return None
    return s, "explicit", p, d, groups


_conv_geometry_cached = functools.lru_cache(maxsize=256)(_conv_geometry_uncached)


def _conv_geometry(stride, padding, dilation, groups):
    """The fastconv:: geometry (stride, mode, padding, dilation, groups) of torch.nn.functional's
    arguments, or None to fall back; memoised, as a module passes the same ones every call
    (not under torch.compile, which traces it once and warns about caches)."""
    if torch.compiler.is_compiling():
        return _conv_geometry_uncached(stride, padding, dilation, groups)
    try:
        return _conv_geometry_cached(stride, padding, dilation, groups)
    except TypeError:  # unhashable (lists)
        return _conv_geometry_uncached(stride, padding, dilation, groups)


def _conv_args(input, weight, bias, stride, padding, dilation, groups):
    """The fastconv:: geometry for this call, or None to fall back to PyTorch."""
    geometry = _conv_geometry(stride, padding, dilation, groups)
    if geometry is None or not _input_ok(input):
        return None
    if not (_tensor_ok(weight, input.device) and _tensor_ok(bias, input.device)):
        return None
    if weight.dim() != 4 or input.shape[-3] != weight.shape[1] * groups or weight.shape[0] % groups:
        return None
    if bias is not None and (bias.dim() != 1 or bias.shape[0] != weight.shape[0]):
        return None
    return geometry


def _batched(input: Tensor) -> Tuple[Tensor, bool]:
    return (input.unsqueeze(0), True) if input.dim() == 3 else (input, False)


def _conv_out_ok(x: Tensor, weight: Tensor, geometry, minimum: int) -> bool:
    stride, mode, padding, dilation, _ = geometry
    _, _, oh, ow = conv2d_out_shape(x.shape, weight.shape, stride, mode, padding, dilation)
    return oh >= minimum and ow >= minimum


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """torch.nn.functional.conv2d on fastconv's kernels (see the module docstring)."""
    plan = _eager_conv(input, weight, bias, stride, padding, dilation, groups, False)
    if plan:
        return _run_eager_conv(plan, input, weight, bias, False)
    if plan is False:
        return F.conv2d(input, weight, bias, stride, padding, dilation, groups)
    geometry = _conv_args(input, weight, bias, stride, padding, dilation, groups)
    if geometry is None:
        return F.conv2d(input, weight, bias, stride, padding, dilation, groups)
    x, unbatched = _batched(input)
    if not _conv_out_ok(x, weight, geometry, 1):
        return F.conv2d(input, weight, bias, stride, padding, dilation, groups)
    y = _ops.conv2d(x, weight, bias, *geometry, False)
    return y.squeeze(0) if unbatched else y


def conv2d_relu_max_pool2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """max_pool2d(relu(conv2d(...)), 2, 2) in one fastconv pass; PyTorch's three ops otherwise."""
    plan = _eager_conv(input, weight, bias, stride, padding, dilation, groups, True)
    if plan:
        return _run_eager_conv(plan, input, weight, bias, True)
    geometry = (
        None
        if plan is False
        else _conv_args(input, weight, bias, stride, padding, dilation, groups)
    )
    if geometry is not None:
        x, unbatched = _batched(input)
        if _conv_out_ok(x, weight, geometry, 2):
            y = _ops.conv2d_relu_maxpool2d(x, weight, bias, *geometry)[0]
            return y.squeeze(0) if unbatched else y
    y = F.relu(conv2d(input, weight, bias, stride, padding, dilation, groups))
    return max_pool2d(y, 2, 2)


def _pool_geometry_uncached(kernel_size, stride, padding, dilation, ceil_mode):
    k, p, d = _pair(kernel_size), _pair(padding), _pair(dilation)
    s = k if stride is None or (isinstance(stride, tuple) and not stride) else _pair(stride)
    if k is None or s is None or p is None or d is None or not isinstance(ceil_mode, bool):
        return None
    if min(k) < 1 or min(s) < 1 or min(d) < 1 or min(p) < 0:
        return None
    if p[0] > k[0] // 2 or p[1] > k[1] // 2:
        return None
    return k, s, "explicit", p, d, ceil_mode


_pool_geometry_cached = functools.lru_cache(maxsize=256)(_pool_geometry_uncached)


def _pool_geometry(*args):
    if torch.compiler.is_compiling():
        return _pool_geometry_uncached(*args)
    return _pool_geometry_cached(*args)


def _hashable(v):
    return tuple(v) if isinstance(v, list) else v


def _pool_args(input, kernel_size, stride, padding, dilation, ceil_mode):
    """The fastconv:: pool geometry for this call, or None to fall back to PyTorch."""
    if not _input_ok(input):
        return None
    try:
        args = tuple(_hashable(v) for v in (kernel_size, stride, padding, dilation, ceil_mode))
        geometry = _pool_geometry(*args)
    except TypeError:  # unhashable: not an argument fastconv takes
        return None
    return _pool_geometry_fits(geometry, input.shape[-2], input.shape[-1])


def _pool_geometry_fits(geometry, h: int, w: int):
    """geometry, or None to fall back: for output sizes PyTorch refuses, and for dilated windows
    that miss the input entirely (PyTorch returns -inf there)."""
    if geometry is None:
        return None
    k, s, _, p, d, ceil = geometry
    _, _, oh, ow = pool2d_out_shape((1, 1, h, w), k, s, "explicit", p, d, ceil)
    if oh < 1 or ow < 1:
        return None
    if d != (1, 1) and not (
        pool_windows_hit_input(h, k[0], s[0], p[0], d[0], oh)
        and pool_windows_hit_input(w, k[1], s[1], p[1], d[1], ow)
    ):
        return None
    return geometry


def _make_pool_plan(x_shape, kernel_size, stride, padding, dilation, ceil_mode):
    if len(x_shape) not in (3, 4):
        return False
    geometry = _pool_geometry_fits(
        _pool_geometry_uncached(kernel_size, stride, padding, dilation, ceil_mode),
        x_shape[-2], x_shape[-1],
    )  # fmt: skip
    if geometry is None:
        return False
    try:
        return _ops.pool_plan(x_shape if len(x_shape) == 4 else (1, *x_shape), *geometry)
    except (ValueError, TypeError):
        return False


def _eager_pool(input, kernel_size, stride, padding, dilation, ceil_mode):
    if not (_plain_cpu_f32(input) and _unwatched()):
        return None
    key = (input.shape, kernel_size, stride, padding, dilation, ceil_mode)
    return _eager_plan(
        key, _make_pool_plan, input.shape, kernel_size, stride, padding, dilation, ceil_mode
    )


def max_pool2d(
    input,
    kernel_size,
    stride=None,
    padding=0,
    dilation=1,
    ceil_mode=False,
    return_indices=False,
):
    """torch.nn.functional.max_pool2d on fastconv's kernels (see the module docstring); indices,
    when asked for, are PyTorch's (h * W + w in each plane)."""
    plan = _eager_pool(input, kernel_size, stride, padding, dilation, ceil_mode)
    if plan:
        x = input if input.dim() == 4 else input.unsqueeze(0)
        if _records(x):
            y, indices = _ops.max_pool2d_bare_apply(plan, x)
        else:
            y, indices = plan.pool_fwd(x)
        if input.dim() == 3:
            y, indices = y.squeeze(0), indices.squeeze(0)
        return (y, indices) if return_indices else y
    geometry = (
        None
        if plan is False
        else _pool_args(input, kernel_size, stride, padding, dilation, ceil_mode)
    )
    if geometry is None:
        return F.max_pool2d(
            input, kernel_size, stride, padding, dilation,
            ceil_mode=ceil_mode, return_indices=return_indices,
        )  # fmt: skip
    x, unbatched = _batched(input)
    y, indices = _ops.max_pool2d(x, *geometry)
    if unbatched:
        y, indices = y.squeeze(0), indices.squeeze(0)
    return (y, indices) if return_indices else y


def dropout(input, p=0.5, training=True, inplace=False):
    """torch.nn.functional.dropout on fastconv's dropout kernel: zeroes each element with
    probability p and scales the rest by 1 / (1 - p), as PyTorch's, but with fastconv's random
    stream (a counter-based generator, its seed drawn from PyTorch's default generator, so
    torch.manual_seed still makes a run repeatable): the masks are not PyTorch's. The backward
    regenerates the mask from the seed instead of storing it. PyTorch's op takes the call where
    fastconv's kernel cannot (not training, p not in (0, 1), inplace, and what conv2d hands back)."""
    if not (training and not inplace and 0.0 < p < 1.0 and _plain_cpu_f32(input) and _unwatched()):
        return F.dropout(input, p, training, inplace)
    seed = int(torch.randint(0, 2**62, (), dtype=torch.int64))
    if _records(input):
        return _ops.dropout_bare_apply(input, 1.0 - p, seed)
    return _ops.dropout_cpu(input, 1.0 - p, seed)
