"""fastconv's kernels as PyTorch operators in the ``fastconv::`` namespace.

Each op has a CPU kernel here (CUDA kernels: _cuda_kernels.py), a fake kernel (shape only, so
torch.compile / FakeTensor / meta tracing work with symbolic sizes) and, for the three forward
ops, an autograd kernel whose backward calls the backward ops and computes only the gradients
``ctx.needs_input_grad`` asks for.

The CPU kernels run through fastconv.ops' pre-validated plans (ConvPlan / PoolPlan): the geometry
is validated once per (shapes, geometry) by fastconv's native code (cpp/params.cpp, so a bad
argument is a ValueError naming it, as from fastconv's NumPy API) and cached; each call allocates
its outputs with torch and hands the kernels the tensors' data pointers (no NumPy view, no copy in
or out). The ops take float32 only (TypeError otherwise); the functional layer (functional.py)
decides what to send here and falls back to PyTorch's own ops for the rest.
Padding is (padding_mode, padding): mode "explicit" with an (h, w) pair, or "same" / "valid".

Registration is the lower-level way (torch.library.Library: define + impl per dispatch key, plus
register_fake) rather than torch.library.custom_op. Through the dispatcher both cost about the
same per call on a tiny layer (docs/TORCH.md, "Per-call overhead"); what pays is that plain eager
CPU calls skip the dispatcher (functional.py calls the plans through the same autograd.Function),
and the lower-level form lets one autograd.Function per op serve both paths, with the kernel set
to run passed in.
"""

from __future__ import annotations

from typing import Dict, List, Optional

import torch
from torch import Tensor

from fastconv.ops import ConvPlan, PoolPlan
from fastconv.torch._shapes import conv2d_out_shape, fused_out_shape, pool2d_out_shape
from fastconv.train_ops import dropout as _fastconv_dropout

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
#
# Each pass runs through a plan (fastconv.ops.ConvPlan / PoolPlan, the front door's pre-validated
# entries): the geometry is validated once per (shapes, geometry) by fastconv's native code and
# the plan is cached; a call then allocates its outputs with torch and hands the kernels the
# tensors' data pointers, with no NumPy view and no per-call re-validation. The forward's plan
# serves its backward passes too (the same Conv2dParams).

_PLANS: Dict[tuple, "_Planned"] = {}
_PLANS_MAX = 1024  # distinct (shapes, geometry) kept; the cache starts over past that


def _key(v):
    """A hashable cache-key part (the dispatcher passes int[] arguments as lists)."""
    return tuple(v) if type(v) is list else v


def _cached(key, make):
    plan = _PLANS.get(key)
    if plan is None:
        plan = make()
        if len(_PLANS) >= _PLANS_MAX:
            _PLANS.clear()
        _PLANS[key] = plan
    return plan


def _ptr(t: Optional[Tensor]) -> int:
    return 0 if t is None else t.data_ptr()


class _Planned:
    """One validated geometry and the passes that run on it (tensors in, tensors out). The
    tensors must be CPU float32 (int64 indices, uint8 codes), C-contiguous, of the plan's
    shapes: the ops' CPU kernels below and the eager path (functional.py) make sure of that."""

    __slots__ = ("plan", "x_shape", "w_shape", "y_shape", "pooled_shape")
    # Outputs: torch.empty(*shape) (unpacked: a third faster than a tuple argument on a tiny call)

    def __init__(self, plan, conv: bool):
        self.plan = plan
        self.x_shape, self.y_shape = plan.x_shape, plan.y_shape
        self.w_shape = plan.w_shape if conv else None
        self.pooled_shape = plan.pooled_shape if conv else None

    # conv2d
    def fwd(self, x, w, b, relu):
        y = torch.empty(*self.y_shape)
        self.plan.conv2d_fwd(y.data_ptr(), x.data_ptr(), w.data_ptr(), _ptr(b), relu)
        return y

    def bwd_data(self, dy, w):
        dy, dx = dy.contiguous(), torch.empty(*self.x_shape)
        self.plan.conv2d_bwd_data(dx.data_ptr(), dy.data_ptr(), w.data_ptr())
        return dx

    def bwd_weights(self, dy, x, with_bias):
        dy, dw = dy.contiguous(), torch.empty(*self.w_shape)
        db = torch.empty(self.w_shape[0]) if with_bias else None
        self.plan.conv2d_bwd_weights(dw.data_ptr(), _ptr(db), dy.data_ptr(), x.data_ptr())
        return dw, db

    # conv2d + ReLU + 2x2 max-pool (the plan refuses a conv output under 2x2: ValueError)
    def fused_fwd(self, x, w, b):
        shape = self.pooled_shape or (0, 0, 0, 0)
        y, codes = torch.empty(*shape), torch.empty(*shape, dtype=torch.uint8)
        self.plan.conv2d_relu_maxpool2d(
            y.data_ptr(), codes.data_ptr(), x.data_ptr(), w.data_ptr(), _ptr(b)
        )
        return y, codes

    def fused_bwd_data(self, dy, codes, w):
        dy, dx = dy.contiguous(), torch.empty(*self.x_shape)
        self.plan.conv2d_relu_maxpool2d_bwd_data(
            dx.data_ptr(), dy.data_ptr(), codes.data_ptr(), w.data_ptr()
        )
        return dx

    def fused_bwd_weights(self, dy, codes, x, with_bias):
        dy, dw = dy.contiguous(), torch.empty(*self.w_shape)
        db = torch.empty(self.w_shape[0]) if with_bias else None
        self.plan.conv2d_relu_maxpool2d_bwd_weights(
            dw.data_ptr(), _ptr(db), dy.data_ptr(), codes.data_ptr(), x.data_ptr()
        )
        return dw, db

    # max_pool2d
    def pool_fwd(self, x):
        y, idx = torch.empty(*self.y_shape), torch.empty(*self.y_shape, dtype=torch.int64)
        self.plan.maxpool2d_fwd(y.data_ptr(), idx.data_ptr(), x.data_ptr())
        return y, idx

    def pool_bwd(self, dy, indices):
        dy, dx = dy.contiguous(), torch.empty(*self.x_shape)
        self.plan.maxpool2d_bwd(dx.data_ptr(), dy.data_ptr(), indices.data_ptr())
        return dx


def conv_plan(x_shape, w_shape, b_shape, stride, padding_mode, padding, dilation, groups):
    """The cached plan of a conv2d geometry (ValueError / TypeError naming a bad argument)."""
    args = (x_shape, w_shape, b_shape, stride, padding_mode, padding, dilation, groups)
    key = ("conv", *map(_key, args))
    return _cached(key, lambda: _Planned(ConvPlan(*args), conv=True))


def pool_plan(x_shape, kernel_size, stride, padding_mode, padding, dilation, ceil_mode):
    """The cached plan of a max_pool2d geometry (ValueError / TypeError naming a bad argument)."""
    args = (x_shape, kernel_size, stride, padding_mode, padding, dilation, ceil_mode)
    key = ("pool", *map(_key, args))
    return _cached(key, lambda: _Planned(PoolPlan(*args), conv=False))


def _f32(t: Tensor, name: str, op: str) -> Tensor:
    """t as a C-contiguous float32 tensor (a strided one is copied: the only copy there is)."""
    if t.dtype != torch.float32:
        raise TypeError(f"fastconv::{op}: {name} must be float32, got {t.dtype}")
    return t.contiguous()


def _exact(t: Tensor, dtype: torch.dtype, name: str, op: str) -> Tensor:
    """An index/code tensor, which must already have `dtype` (as the forward op returned it)."""
    if t.dtype != dtype:
        raise TypeError(
            f"fastconv::{op}: {name} must be {dtype} (as the forward op returned it), got {t.dtype}"
        )
    return t.contiguous()


def _check_shape(t: Tensor, shape, name: str, what: str):
    if shape is None or tuple(t.shape) != tuple(shape):
        raise ValueError(f"{name} must have {what} shape {shape}, got {tuple(t.shape)}")


def _conv_b_shape(bias):
    return None if bias is None else bias.shape


@_impl("conv2d", "CPU")
def _conv2d_cpu(input, weight, bias, stride, padding_mode, padding, dilation, groups, relu):
    op = "conv2d"
    x, w = _f32(input, "input", op), _f32(weight, "weight", op)
    b = None if bias is None else _f32(bias, "bias", op)
    k = conv_plan(
        x.shape, w.shape, _conv_b_shape(b), stride, padding_mode, padding, dilation, groups
    )
    return k.fwd(x, w, b, relu)


@_impl("conv2d_bwd_data", "CPU")
def _conv2d_bwd_data_cpu(grad_output, weight, input_size, *geometry):
    op = "conv2d_bwd_data"
    dy, w = _f32(grad_output, "grad_output", op), _f32(weight, "weight", op)
    k = conv_plan(input_size, w.shape, None, *geometry)
    _check_shape(dy, k.y_shape, "grad_output", "the forward output's")
    return k.bwd_data(dy, w)


@_impl("conv2d_bwd_weights", "CPU")
def _conv2d_bwd_weights_cpu(grad_output, input, weight_size, *geometry_and_with_bias):
    *geometry, with_bias = geometry_and_with_bias
    op = "conv2d_bwd_weights"
    dy, x = _f32(grad_output, "grad_output", op), _f32(input, "input", op)
    k = conv_plan(x.shape, weight_size, None, *geometry)
    _check_shape(dy, k.y_shape, "grad_output", "the forward output's")
    dw, db = k.bwd_weights(dy, x, with_bias)
    return dw, (torch.empty(0) if db is None else db)


@_impl("max_pool2d", "CPU")
def _max_pool2d_cpu(input, kernel_size, stride, padding_mode, padding, dilation, ceil_mode):
    x = _f32(input, "input", "max_pool2d")
    k = pool_plan(x.shape, kernel_size, stride, padding_mode, padding, dilation, ceil_mode)
    return k.pool_fwd(x)


@_impl("max_pool2d_backward", "CPU")
def _max_pool2d_backward_cpu(grad_output, indices, input_size, *pool_geometry):
    # The CPU scatter runs plane by plane in a fixed order (deterministic); the geometry only
    # checks the shapes. Indices outside their plane are refused by the kernel (ValueError).
    op = "max_pool2d_backward"
    dy, idx = _f32(grad_output, "grad_output", op), _exact(indices, torch.int64, "indices", op)
    k = pool_plan(input_size, *pool_geometry)
    _check_shape(dy, k.y_shape, "grad_output", "the forward output's")
    _check_shape(idx, k.y_shape, "indices", "the forward output's")
    return k.pool_bwd(dy, idx)


def _fused_plan(x_shape, w_shape, b_shape, geometry):
    k = conv_plan(x_shape, w_shape, b_shape, *geometry)
    if k.pooled_shape is None:
        oh, ow = k.y_shape[2:]
        raise ValueError(
            f"the convolution's output must be at least 2x2 to be pooled, got {oh}x{ow}"
        )
    return k


@_impl("conv2d_relu_maxpool2d", "CPU")
def _fused_cpu(input, weight, bias, *geometry):
    op = "conv2d_relu_maxpool2d"
    x, w = _f32(input, "input", op), _f32(weight, "weight", op)
    b = None if bias is None else _f32(bias, "bias", op)
    return _fused_plan(x.shape, w.shape, _conv_b_shape(b), geometry).fused_fwd(x, w, b)


@_impl("conv2d_relu_maxpool2d_bwd_data", "CPU")
def _fused_bwd_data_cpu(grad_output, codes, weight, input_size, *geometry):
    op = "conv2d_relu_maxpool2d_bwd_data"
    dy, w = _f32(grad_output, "grad_output", op), _f32(weight, "weight", op)
    c = _exact(codes, torch.uint8, "codes", op)
    k = _fused_plan(input_size, w.shape, None, geometry)
    _check_shape(dy, k.pooled_shape, "grad_output", "the pooled output's")
    _check_shape(c, k.pooled_shape, "codes", "the pooled output's")
    return k.fused_bwd_data(dy, c, w)


@_impl("conv2d_relu_maxpool2d_bwd_weights", "CPU")
def _fused_bwd_weights_cpu(grad_output, codes, input, weight_size, *geometry_and_with_bias):
    *geometry, with_bias = geometry_and_with_bias
    op = "conv2d_relu_maxpool2d_bwd_weights"
    dy, x = _f32(grad_output, "grad_output", op), _f32(input, "input", op)
    c = _exact(codes, torch.uint8, "codes", op)
    k = _fused_plan(x.shape, weight_size, None, geometry)
    _check_shape(dy, k.pooled_shape, "grad_output", "the pooled output's")
    _check_shape(c, k.pooled_shape, "codes", "the pooled output's")
    dw, db = k.fused_bwd_weights(dy, c, x, with_bias)
    return dw, (torch.empty(0) if db is None else db)


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
# One autograd.Function per forward op. Its first argument is the kernel set to run: a _Planned
# (the eager path: plain CPU tensors, straight to the kernels, see functional.py) or an _OpKernels
# (the fastconv:: ops through the dispatcher: the Autograd kernel registered below, the path
# torch.compile, FakeTensor and any dispatch mode see). Backward computes only what
# ctx.needs_input_grad asks for: no bwd_data for a first layer, no bias sum without a bias.


def _below_autograd():
    """Run the op's device kernel from inside its own autograd kernel (what custom_op does)."""
    return torch._C._AutoDispatchBelowAutograd()


class _OpKernels:
    """The passes as fastconv:: op calls with one geometry (same methods as _Planned)."""

    __slots__ = ("geometry", "x_shape", "w_shape")

    def __init__(self, geometry, x_shape, w_shape=None):
        self.geometry, self.x_shape, self.w_shape = geometry, x_shape, w_shape

    def fwd(self, x, w, b, relu):
        with _below_autograd():
            return conv2d(x, w, b, *self.geometry, relu)

    def bwd_data(self, dy, w):
        return conv2d_bwd_data(dy, w, self.x_shape, *self.geometry)

    def bwd_weights(self, dy, x, with_bias):
        dw, db = conv2d_bwd_weights(dy, x, self.w_shape, *self.geometry, with_bias)
        return dw, (db if with_bias else None)

    def fused_fwd(self, x, w, b):
        with _below_autograd():
            return conv2d_relu_maxpool2d(x, w, b, *self.geometry)

    def fused_bwd_data(self, dy, codes, w):
        return conv2d_relu_maxpool2d_bwd_data(dy, codes, w, self.x_shape, *self.geometry)

    def fused_bwd_weights(self, dy, codes, x, with_bias):
        dw, db = conv2d_relu_maxpool2d_bwd_weights(
            dy, codes, x, self.w_shape, *self.geometry, with_bias
        )
        return dw, (db if with_bias else None)

    def pool_fwd(self, x):
        with _below_autograd():
            return max_pool2d(x, *self.geometry)

    def pool_bwd(self, dy, indices):
        return max_pool2d_backward(dy, indices, self.x_shape, *self.geometry)


class _Conv2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, kernels, input, weight, bias, relu):
        y = kernels.fwd(input, weight, bias, relu)
        ctx.kernels, ctx.relu = kernels, relu
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
            dx = ctx.kernels.bwd_data(grad, weight)
        if need_w:
            dw, db = ctx.kernels.bwd_weights(grad, input, need_b)
        elif need_b:
            db = grad.sum((0, 2, 3))
        return None, dx, dw, db, None


class _MaxPool2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, kernels, input):
        y, indices = kernels.pool_fwd(input)
        ctx.kernels = kernels
        ctx.mark_non_differentiable(indices)
        ctx.set_materialize_grads(False)  # no zero-filled gradient for the indices each step
        ctx.save_for_backward(indices)
        return y, indices

    @staticmethod
    def backward(ctx, grad, _grad_indices):
        (indices,) = ctx.saved_tensors
        need_x = ctx.needs_input_grad[1] and grad is not None
        dx = ctx.kernels.pool_bwd(grad, indices) if need_x else None
        return None, dx


class _Conv2dReluMaxPool2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, kernels, input, weight, bias):
        y, codes = kernels.fused_fwd(input, weight, bias)
        ctx.kernels = kernels
        ctx.mark_non_differentiable(codes)
        ctx.set_materialize_grads(False)  # no zero-filled gradient for the codes each step
        ctx.save_for_backward(input, weight, codes)
        return y, codes

    @staticmethod
    def backward(ctx, grad, _grad_codes):
        input, weight, codes = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad[1:4]
        dx = dw = db = None
        if grad is None:  # the pooled output did not reach the loss
            return None, dx, dw, db
        if need_x:
            dx = ctx.kernels.fused_bwd_data(grad, codes, weight)
        if need_w or need_b:  # the bias gradient is summed in the weight pass (same rebuilt dy)
            dw, db = ctx.kernels.fused_bwd_weights(grad, codes, input, need_b)
            dw = dw if need_w else None
        return None, dx, dw, db


def dropout_cpu(x: Tensor, keep: float, seed: int) -> Tensor:
    """x * mask / keep with fastconv's counter-based mask of (seed, element index): a plain
    contiguous float32 CPU tensor in, a new one out (NumPy views of both, no copy)."""
    y = torch.empty_like(x)
    _fastconv_dropout(x.detach().numpy(), keep, seed, out=y.numpy())
    return y


class _Dropout(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input, keep, seed):
        ctx.keep, ctx.seed = keep, seed
        return dropout_cpu(input, keep, seed)

    @staticmethod
    def backward(ctx, grad):  # the same seed draws the same mask: nothing was stored
        return dropout_cpu(grad.contiguous(), ctx.keep, ctx.seed), None, None


def _bare_apply(fn):
    """fn.apply without autograd.Function.apply's Python prologue (argument re-binding and the
    functorch unwrapping: about half of a small call's cost). Only where no functorch transform
    is active; Function.apply itself otherwise."""
    bare = torch._C._FunctionBase.__dict__["apply"].__get__(None, fn)

    def apply(*args):
        if torch._C._are_functorch_transforms_active():
            return fn.apply(*args)
        return bare(*args)

    return apply, bare


conv2d_apply, conv2d_bare_apply = _bare_apply(_Conv2d)
max_pool2d_apply, max_pool2d_bare_apply = _bare_apply(_MaxPool2d)
fused_apply, fused_bare_apply = _bare_apply(_Conv2dReluMaxPool2d)
dropout_bare_apply = _bare_apply(_Dropout)[1]


def _conv2d_autograd(input, weight, bias, *geometry_and_relu):
    *geometry, relu = geometry_and_relu
    return conv2d_apply(_OpKernels(geometry, input.shape, weight.shape), input, weight, bias, relu)


def _max_pool2d_autograd(input, *pool_geometry):
    return max_pool2d_apply(_OpKernels(pool_geometry, input.shape), input)


def _fused_autograd(input, weight, bias, *geometry):
    return fused_apply(_OpKernels(geometry, input.shape, weight.shape), input, weight, bias)


_LIB.impl("conv2d", _conv2d_autograd, "Autograd")
_LIB.impl("max_pool2d", _max_pool2d_autograd, "Autograd")
_LIB.impl("conv2d_relu_maxpool2d", _fused_autograd, "Autograd")


def op_names() -> List[str]:
    """The fastconv:: op names (tests run opcheck over them)."""
    return list(SCHEMAS)
