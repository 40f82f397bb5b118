"""The CUDA backend of the functional API: conv2d / max_pool2d passes on GPU arrays.

fastconv.ops calls these when an argument has ``__cuda_array_interface__`` (CuPy, PyTorch, Numba
arrays ...). Inputs are checked the way the CPU path checks them (dtype, ndim, then the geometry in
cpp/params.cpp, with the same messages), plus: every array on the same GPU, and C-contiguity (a
contiguous copy is made otherwise). Non-float32 real dtypes are converted to float32 (a copy).
Outputs are new CuPy arrays on the input's device; the kernels are queued on CuPy's current stream
(``cupy.cuda.get_current_stream()``) and not waited for. A CUDA error raises RuntimeError; set
FASTCONV_CUDA_SYNC=1 to synchronise after every launch so the error names the kernel that failed.

CuPy is the optional extra ``pip install 'fastconv[cuda]'`` and is imported on first use, so this
module imports (and device_count / device_name work) without it.

Host cost per call (docs/CUDA.md, "Host overhead"): each op first tries a fast path that takes the
common case only — CuPy arrays already float32, C-contiguous and on the current device, N >= 1,
hashable geometry arguments. It reads each array's attributes once, looks the geometry up in a
cache of validated plans (fastconv._C.plan.ConvPlan / PoolPlan: cpp/params.cpp's checks, run once
per shapes and arguments), allocates the outputs straight from CuPy's memory pool and makes one
native *_planned call. Anything else (other dtypes, views, other devices, foreign GPU arrays, bad
arguments) takes the checked path below, which converts, copies and raises the documented errors;
so the fast path never changes a result or a message, it only skips work.
"""

from __future__ import annotations

import sys
from typing import Any, Optional, Tuple

import numpy as np

from . import _C

__all__ = [
    "available",
    "device_count",
    "device_name",
    "set_conv_algo",
    "get_conv_algo",
    "conv2d_algo",
    "conv2d_fwd",
    "conv2d_bwd_data",
    "conv2d_bwd_weights",
    "maxpool2d_fwd",
    "maxpool2d_bwd",
]

_NOT_BUILT = (
    "fastconv was built without CUDA support (fastconv.info()['cuda_built'] is False); reinstall "
    "with a CUDA toolkit (nvcc) on PATH and FASTCONV_CUDA=ON, e.g. "
    "FASTCONV_CUDA=ON pip install --force-reinstall 'fastconv[cuda]'"
)


def _native():
    """fastconv._C.cuda, or RuntimeError saying how to get it."""
    if not getattr(_C, "cuda_built", False):
        raise RuntimeError(_NOT_BUILT)
    return _C.cuda


def _cupy():
    """The cupy module, or ImportError naming the extra."""
    _native()
    try:
        import cupy
    except ImportError as exc:
        raise ImportError(
            "fastconv's CUDA backend needs CuPy for GPU arrays: pip install 'fastconv[cuda]' "
            f"(or a cupy-cudaXXx wheel matching your driver); import failed: {exc}"
        ) from exc
    return cupy


class _CupyCalls:
    """The CuPy entry points the fast path calls, looked up once per cupy module."""

    def __init__(self, cp):
        self.module = cp
        self.ndarray = cp.ndarray
        self.get_device = cp.cuda.runtime.getDevice
        self.current_stream = cp.cuda.get_current_stream
        self.alloc = cp.cuda.alloc


_calls: Optional[_CupyCalls] = None

# Classes whose every instance is a GPU array (cupy.ndarray, added when CuPy is first used):
# fastconv.ops routes them here by their class alone.
GPU_ARRAY_TYPES: set = set()


def _backend():
    """(fastconv._C.cuda, _CupyCalls): _native() and _cupy() without the import machinery when
    sys.modules already holds cupy (what `import cupy` would return)."""
    global _calls
    native = _native()
    cp = sys.modules.get("cupy")
    if cp is None:
        cp = _cupy()
    if _calls is None or _calls.module is not cp:
        _calls = _CupyCalls(cp)
        GPU_ARRAY_TYPES.add(cp.ndarray)
    return native, _calls


# Set to False (tests, bench/cuda_host_overhead.py) to send every call down the checked path.
_FAST = True
_F32 = np.dtype(np.float32)
_I64 = np.dtype(np.int64)

# Validated geometries: (x_shape, w_shape, b_shape, stride, pad_mode, pad, dilation, groups) ->
# (ConvPlan, y_shape); (x_shape, kernel, stride, pad_mode, pad, dilation, ceil_mode) ->
# (PoolPlan, y_shape). Bounded: a training run uses a few dozen; cleared when full.
_CONV_PLANS: dict = {}
_POOL_PLANS: dict = {}
_MAX_PLANS = 512


def _planned(cache, make, key):
    """The cached (plan, y_shape) for key, or None where the checked path must run instead: an
    empty batch, an unhashable argument, or a geometry the native checks refuse (the checked
    path then raises its own message)."""
    try:
        return cache[key]
    except KeyError:
        pass
    except TypeError:  # a list among the arguments
        return None
    x_shape = key[0]
    if type(x_shape) is not tuple or len(x_shape) != 4 or x_shape[0] == 0:
        return None
    try:
        plan = make(*key)
    except (TypeError, ValueError):
        return None
    if len(cache) >= _MAX_PLANS:
        cache.clear()
    entry = cache[key] = (plan, plan.y_shape)
    return entry


def _dense(a, cls, dtype, dev) -> bool:
    """a is a `cls` (cupy.ndarray) of `dtype`, C-contiguous, on device `dev`: usable as it is."""
    return type(a) is cls and a.dtype == dtype and a.data.device_id == dev and a.flags.c_contiguous


# --- device queries ---------------------------------------------------------------------------


def device_count() -> int:
    """GPUs the CUDA runtime sees (0 without a driver or device, or in a CPU-only build)."""
    return int(_C.cuda.device_count()) if getattr(_C, "cuda_built", False) else 0


def device_name(device: int = 0) -> str:
    """E.g. 'NVIDIA H100 80GB HBM3 (sm_90, 132 SMs)'; RuntimeError when there is no usable GPU."""
    native = _native()
    n = native.device_count()
    if n == 0:
        raise RuntimeError("no CUDA device visible (no NVIDIA driver, or no GPU)")
    return native.device_name(int(device))


def available() -> Tuple[bool, str]:
    """(True, device name) when GPU arrays can be used, else (False, why not)."""
    try:
        _cupy()
        return True, device_name(0)
    except (ImportError, RuntimeError) as exc:
        return False, str(exc)


def built() -> bool:
    """Whether this fastconv was built with the CUDA kernels (fastconv.info()['cuda_built'])."""
    return bool(getattr(_C, "cuda_built", False))


def set_conv_algo(pass_name: str, name: Optional[str]) -> None:
    """Force the kernel family of one conv pass ("fwd", "bwd_data", "bwd_weights"): 'direct',
    'tiled', 'tiled128' (only ever forced) or None (by shape), as fastconv.set_conv_algo does for
    the CPU (tests, benchmarks)."""
    _native().set_conv_algo(pass_name, name)


def get_conv_algo(pass_name: str) -> Optional[str]:
    """The family forced for the pass, or None (by shape)."""
    return _native().get_conv_algo(pass_name)


def conv2d_algo(pass_name, x_shape, w_shape, stride, pad_mode, pad, dilation, groups) -> str:
    """The kernel family ('direct' or 'tiled', or the forced one) a CUDA call of the pass runs
    (arguments as ops.py normalises them; fastconv.conv2d_algo(..., device="cuda") is the public
    form)."""
    return _native().conv2d_algo(
        pass_name, x_shape, w_shape, stride, pad_mode, pad, dilation, groups
    )


# --- array checks -----------------------------------------------------------------------------


def _device_of(a) -> int:
    return int(a.device.id)


def _as_gpu_f32(cp, a: Any, name: str, device: Optional[int], ndim: Optional[int] = 4):
    """A C-contiguous float32 CuPy array on `device` (None: whichever device `a` is on)."""
    if not hasattr(a, "__cuda_array_interface__"):
        raise TypeError(
            f"{name} is a CPU array ({type(a).__name__}) but the input is on the GPU; "
            "pass all arrays on the same device"
        )
    arr = a if isinstance(a, cp.ndarray) else cp.asarray(a)
    if device is not None and _device_of(arr) != device:
        raise ValueError(
            f"{name} is on GPU {_device_of(arr)} but the input is on GPU {device}; "
            "pass all arrays on the same device"
        )
    kind = arr.dtype.kind
    if kind not in "fiu":
        raise TypeError(
            f"{name} must be a real float or integer array (float32 preferred), got dtype {arr.dtype}"
        )
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {arr.shape}")
    with cp.cuda.Device(_device_of(arr)):
        if arr.dtype != cp.float32:
            arr = arr.astype(cp.float32)  # a copy: the caller's array is never modified
        return cp.ascontiguousarray(arr)


def _as_gpu_index(cp, a: Any, name: str, device: int):
    if not hasattr(a, "__cuda_array_interface__"):
        raise TypeError(
            f"{name} is a CPU array but grad_output is on the GPU; pass both on the GPU"
        )
    arr = a if isinstance(a, cp.ndarray) else cp.asarray(a)
    if _device_of(arr) != device:
        raise ValueError(f"{name} is on GPU {_device_of(arr)} but grad_output is on GPU {device}")
    if arr.dtype != cp.int64:
        raise TypeError(
            f"{name} must be an int64 array (as returned by max_pool2d), got {arr.dtype}"
        )
    if arr.ndim != 4:
        raise ValueError(f"{name} must be 4-D, got shape {arr.shape}")
    with cp.cuda.Device(device):
        return cp.ascontiguousarray(arr)


def _shape4(a) -> Tuple[int, int, int, int]:
    return tuple(int(s) for s in a.shape)  # type: ignore[return-value]


def _stream(cp) -> int:
    return int(cp.cuda.get_current_stream().ptr)


def _ptr(a) -> int:
    return int(a.data.ptr) if a is not None and a.size else 0


# --- conv2d -----------------------------------------------------------------------------------


def conv2d_fwd(input, weight, bias, stride, pad_mode, pad, dilation, groups, relu):
    """y (N, C_out, OH, OW) = conv2d(input, weight) + bias [ReLU] on the GPU; see fastconv.conv2d."""
    native, cu = _backend()
    if _FAST:
        nd, dev = cu.ndarray, cu.get_device()
        if (
            _dense(input, nd, _F32, dev)
            and _dense(weight, nd, _F32, dev)
            and (bias is None or _dense(bias, nd, _F32, dev))
        ):
            b_shape = None if bias is None else bias.shape
            key = (input.shape, weight.shape, b_shape, stride, pad_mode, pad, dilation, groups)
            entry = _planned(_CONV_PLANS, _C.plan.ConvPlan, key)
            if entry is not None:
                plan, y_shape = entry
                y = nd(y_shape, _F32)
                b = 0 if bias is None else bias.data.ptr
                native.conv2d_fwd_planned(
                    plan, dev, cu.current_stream().ptr, y.data.ptr, input.data.ptr,
                    weight.data.ptr, b, bool(relu),
                )  # fmt: skip
                return y
    return _conv2d_fwd_checked(input, weight, bias, stride, pad_mode, pad, dilation, groups, relu)


def _conv2d_fwd_checked(input, weight, bias, stride, pad_mode, pad, dilation, groups, relu):
    cp = _cupy()
    native = _native()
    x = _as_gpu_f32(cp, input, "input", None)
    dev = _device_of(x)
    w = _as_gpu_f32(cp, weight, "weight", dev)
    b = None if bias is None else _as_gpu_f32(cp, bias, "bias", dev, ndim=1)
    y_shape = native.conv2d_out_shape(
        _shape4(x), _shape4(w), stride, pad_mode, pad, dilation, groups
    )
    if b is not None and (b.ndim != 1 or b.shape[0] != y_shape[1]):
        raise ValueError(
            f"bias must have shape (C_out,) = ({y_shape[1]},), got {b.ndim}-D array with {b.size} elements"
        )
    with cp.cuda.Device(dev):
        y = cp.empty(y_shape, dtype=cp.float32)
        if y.size:
            native.conv2d_fwd(
                dev,
                _stream(cp),
                _ptr(y),
                _ptr(x),
                _ptr(w),
                _ptr(b),
                _shape4(x),
                _shape4(w),
                stride,
                pad_mode,
                pad,
                dilation,
                groups,
                bool(relu),
            )
    return y


def conv2d_bwd_data(dy, weight, x_shape, stride, pad_mode, pad, dilation, groups):
    """dx (x_shape) of conv2d on the GPU; see fastconv.conv2d_bwd_data."""
    native, cu = _backend()
    if _FAST:
        nd, dev = cu.ndarray, cu.get_device()
        if _dense(dy, nd, _F32, dev) and _dense(weight, nd, _F32, dev):
            key = (x_shape, weight.shape, None, stride, pad_mode, pad, dilation, groups)
            entry = _planned(_CONV_PLANS, _C.plan.ConvPlan, key)
            if entry is not None and dy.shape == entry[1]:
                dx = nd(x_shape, _F32)
                native.conv2d_bwd_data_planned(
                    entry[0], dev, cu.current_stream().ptr, dx.data.ptr, dy.data.ptr,
                    weight.data.ptr,
                )  # fmt: skip
                return dx
    return _conv2d_bwd_data_checked(dy, weight, x_shape, stride, pad_mode, pad, dilation, groups)


def _conv2d_bwd_data_checked(dy, weight, x_shape, stride, pad_mode, pad, dilation, groups):
    cp = _cupy()
    native = _native()
    g = _as_gpu_f32(cp, dy, "grad_output", None)
    dev = _device_of(g)
    w = _as_gpu_f32(cp, weight, "weight", dev)
    x_shape = tuple(int(s) for s in x_shape)
    y_shape = native.conv2d_out_shape(x_shape, _shape4(w), stride, pad_mode, pad, dilation, groups)
    if _shape4(g) != tuple(y_shape):
        raise ValueError(
            f"grad_output must have the forward output's shape {tuple(y_shape)}, got {_shape4(g)}"
        )
    with cp.cuda.Device(dev):
        dx = cp.empty(x_shape, dtype=cp.float32)
        if dx.size:
            native.conv2d_bwd_data(
                dev,
                _stream(cp),
                _ptr(dx),
                _ptr(g),
                _ptr(w),
                x_shape,
                _shape4(w),
                stride,
                pad_mode,
                pad,
                dilation,
                groups,
            )
    return dx


def conv2d_bwd_weights(dy, input, w_shape, stride, pad_mode, pad, dilation, groups, with_bias):
    """(dw (w_shape), db (C_out,) or None) of conv2d on the GPU; see fastconv.conv2d_bwd_weights."""
    native, cu = _backend()
    if _FAST:
        nd, dev = cu.ndarray, cu.get_device()
        if _dense(dy, nd, _F32, dev) and _dense(input, nd, _F32, dev):
            key = (input.shape, w_shape, None, stride, pad_mode, pad, dilation, groups)
            entry = _planned(_CONV_PLANS, _C.plan.ConvPlan, key)
            if entry is not None and dy.shape == entry[1]:
                plan = entry[0]
                dw = nd(w_shape, _F32)
                db = nd((w_shape[0],), _F32) if with_bias else None
                # the size follows set_conv_algo and the GPU's SM count: asked for on every call
                nbytes = native.conv2d_bwd_weights_workspace_planned(plan, dev)
                ws = cu.alloc(nbytes) if nbytes else None  # back to the (stream-ordered) pool
                native.conv2d_bwd_weights_planned(
                    plan, dev, cu.current_stream().ptr, dw.data.ptr,
                    0 if db is None else db.data.ptr, dy.data.ptr, input.data.ptr,
                    0 if ws is None else ws.ptr, nbytes,
                )  # fmt: skip
                return dw, db
    return _conv2d_bwd_weights_checked(
        dy, input, w_shape, stride, pad_mode, pad, dilation, groups, with_bias
    )


def _conv2d_bwd_weights_checked(
    dy, input, w_shape, stride, pad_mode, pad, dilation, groups, with_bias
):
    cp = _cupy()
    native = _native()
    g = _as_gpu_f32(cp, dy, "grad_output", None)
    dev = _device_of(g)
    x = _as_gpu_f32(cp, input, "input", dev)
    w_shape = tuple(int(s) for s in w_shape)
    y_shape = native.conv2d_out_shape(_shape4(x), w_shape, stride, pad_mode, pad, dilation, groups)
    if _shape4(g) != tuple(y_shape):
        raise ValueError(
            f"grad_output must have the forward output's shape {tuple(y_shape)}, got {_shape4(g)}"
        )
    with cp.cuda.Device(dev):
        dw = cp.empty(w_shape, dtype=cp.float32)
        db = cp.empty((w_shape[0],), dtype=cp.float32) if with_bias else None
        nbytes = native.conv2d_bwd_weights_workspace_bytes(
            dev, _shape4(x), w_shape, stride, pad_mode, pad, dilation, groups
        )
        ws = cp.empty((nbytes // 4,), dtype=cp.float32) if nbytes else None
        native.conv2d_bwd_weights(
            dev,
            _stream(cp),
            _ptr(dw),
            _ptr(db),
            _ptr(g),
            _ptr(x),
            _ptr(ws),
            int(nbytes),
            _shape4(x),
            w_shape,
            stride,
            pad_mode,
            pad,
            dilation,
            groups,
        )
        # ws goes back to CuPy's pool when this function returns; the pool is stream-ordered for
        # the current stream, so later work on this stream cannot overwrite it too early.
    return dw, db


# --- max_pool2d -------------------------------------------------------------------------------


def maxpool2d_fwd(input, kernel, stride, pad_mode, pad, dilation=(1, 1), ceil_mode=False):
    """(y, indices) of 2-D max pooling on the GPU; indices are int64 h*W + w in each (n, c) plane.
    dilation and ceil_mode: PyTorch's meaning, as on the CPU."""
    native, cu = _backend()
    if _FAST:
        nd, dev = cu.ndarray, cu.get_device()
        if _dense(input, nd, _F32, dev):
            key = (input.shape, kernel, stride, pad_mode, pad, dilation, ceil_mode)
            entry = _planned(_POOL_PLANS, _C.plan.PoolPlan, key)
            if entry is not None:
                plan, y_shape = entry
                y, idx = nd(y_shape, _F32), nd(y_shape, _I64)
                native.maxpool2d_fwd_planned(
                    plan, dev, cu.current_stream().ptr, y.data.ptr, idx.data.ptr, input.data.ptr
                )
                return y, idx
    return _maxpool2d_fwd_checked(input, kernel, stride, pad_mode, pad, dilation, ceil_mode)


def _maxpool2d_fwd_checked(input, kernel, stride, pad_mode, pad, dilation, ceil_mode):
    cp = _cupy()
    native = _native()
    x = _as_gpu_f32(cp, input, "input", None)
    dev = _device_of(x)
    y_shape = tuple(
        native.maxpool2d_out_shape(_shape4(x), kernel, stride, pad_mode, pad, dilation, ceil_mode)
    )
    with cp.cuda.Device(dev):
        y = cp.empty(y_shape, dtype=cp.float32)
        idx = cp.empty(y_shape, dtype=cp.int64)
        if y.size:
            native.maxpool2d_fwd(
                dev,
                _stream(cp),
                _ptr(y),
                _ptr(idx),
                _ptr(x),
                _shape4(x),
                kernel,
                stride,
                pad_mode,
                pad,
                dilation,
                ceil_mode,
            )
    return y, idx


def maxpool2d_bwd(
    dy,
    indices,
    x_shape,
    *,
    kernel=None,
    stride=None,
    pad_mode="explicit",
    pad=(0, 0),
    dilation=(1, 1),
    ceil_mode=False,
    check_indices=True,
):
    """dx (x_shape): each dy element added into the input cell its index names, on the GPU.

    With the forward's geometry (kernel, stride, pad_mode, pad, dilation, ceil_mode) every input
    cell gathers its gradient in a fixed order (deterministic, bit-identical to the CPU); without
    it, an atomic scatter (exact for non-overlapping windows; overlapping ones may differ in the
    last bits between runs). Indices outside [0, H*W) raise ValueError, as on the CPU (this check
    waits for the GPU); check_indices=False skips it for indices known to come from
    maxpool2d_fwd with this geometry (the layer API's own: fastconv.nn.cuda). While the current
    stream is being captured into a CUDA graph (fit(cuda_graph=True)) the check is skipped too,
    since a capture cannot wait. Either way both kernels skip an index outside the plane instead
    of writing out of bounds.
    """
    native, cu = _backend()
    if _FAST and kernel is not None:
        nd, dev = cu.ndarray, cu.get_device()
        if _dense(dy, nd, _F32, dev) and _dense(indices, nd, _I64, dev):
            strides = kernel if stride is None else stride
            key = (x_shape, kernel, strides, pad_mode, pad, dilation, ceil_mode)
            entry = _planned(_POOL_PLANS, _C.plan.PoolPlan, key)
            if entry is not None and dy.shape == entry[1] and indices.shape == entry[1]:
                if check_indices:
                    _check_index_range(indices, x_shape[2] * x_shape[3], cu.current_stream())
                dx = nd(x_shape, _F32)
                native.maxpool2d_bwd_planned(
                    entry[0], dev, cu.current_stream().ptr, dx.data.ptr, dy.data.ptr,
                    indices.data.ptr,
                )  # fmt: skip
                return dx
    return _maxpool2d_bwd_checked(
        dy, indices, x_shape, kernel, stride, pad_mode, pad, dilation, ceil_mode, check_indices
    )


def _check_index_range(idx, hw: int, stream) -> None:
    """ValueError unless every index lies in [0, hw) (two reductions: waits for the GPU); nothing
    while `stream` is being captured into a CUDA graph, which cannot wait."""
    if idx.size and not stream.is_capturing():
        lo, hi = int(idx.min()), int(idx.max())
        if lo < 0 or hi >= hw:
            bad = lo if lo < 0 else hi
            raise ValueError(f"indices must lie in [0, H*W) = [0, {hw}), got {bad}")


def _maxpool2d_bwd_checked(
    dy, indices, x_shape, kernel, stride, pad_mode, pad, dilation, ceil_mode, check_indices
):
    cp = _cupy()
    native = _native()
    g = _as_gpu_f32(cp, dy, "grad_output", None)
    dev = _device_of(g)
    idx = _as_gpu_index(cp, indices, "indices", dev)
    xs = tuple(int(s) for s in x_shape)
    ys = _shape4(g)
    if _shape4(idx) != ys:
        raise ValueError(f"indices must have grad_output's shape {ys}, got {_shape4(idx)}")
    if len(xs) != 4 or xs[0] != ys[0] or xs[1] != ys[1] or xs[2] < 1 or xs[3] < 1:
        raise ValueError(
            f"input_shape must be (N, C, H, W) with grad_output's N and C {ys}, got {xs}"
        )
    geometry = None
    if kernel is not None:
        strides = kernel if stride is None else stride
        pool_y = tuple(
            native.maxpool2d_out_shape(xs, kernel, strides, pad_mode, pad, dilation, ceil_mode)
        )
        if pool_y != ys:
            raise ValueError(
                f"grad_output {ys} does not match the pooling geometry's output shape {pool_y}"
            )
        geometry = (tuple(kernel), tuple(strides), pad_mode, tuple(pad), tuple(dilation), ceil_mode)
    with cp.cuda.Device(dev):
        if check_indices:
            _check_index_range(idx, xs[2] * xs[3], cp.cuda.get_current_stream())
        dx = cp.empty(xs, dtype=cp.float32)
        if dx.size:
            native.maxpool2d_bwd(dev, _stream(cp), _ptr(dx), _ptr(g), _ptr(idx), xs, ys, geometry)
    return dx
