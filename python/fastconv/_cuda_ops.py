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
"""

from __future__ import annotations

from typing import Any, Optional, Tuple

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
    'tiled' or None (by shape), as fastconv.set_conv_algo does for the CPU (tests, benchmarks)."""
    _native().set_conv_algo(pass_name, name)


def get_conv_algo(pass_name: str) -> Optional[str]:
    """The family forced for the pass, or None (by shape)."""
    return _native().get_conv_algo(pass_name)


def conv2d_algo(pass_name, x_shape, w_shape, stride, pad_mode, pad, dilation, groups) -> str:
    """The kernel family ('direct' or 'tiled') a CUDA call of the pass runs (arguments as
    ops.py normalises them; fastconv.conv2d_algo(..., device="cuda") is the public form)."""
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
):
    """dx (x_shape): each dy element added into the input cell its index names, on the GPU.

    With the forward's geometry (kernel, stride, pad_mode, pad, dilation, ceil_mode) every input
    cell gathers its gradient in a fixed order (deterministic, bit-identical to the CPU); without
    it, an atomic
    scatter (exact for non-overlapping windows; overlapping ones may differ in the last bits
    between runs). Indices outside [0, H*W) raise ValueError, as on the CPU (this check waits for
    the GPU). While the current stream is being captured into a CUDA graph (fit(cuda_graph=True))
    the check is skipped, since a capture cannot wait: both kernels skip such indices instead of
    writing out of bounds.
    """
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
        if idx.size and not cp.cuda.get_current_stream().is_capturing():
            lo, hi = int(idx.min()), int(idx.max())
            hw = xs[2] * xs[3]
            if lo < 0 or hi >= hw:
                bad = lo if lo < 0 else hi
                raise ValueError(f"indices must lie in [0, H*W) = [0, {hw}), got {bad}")
        dx = cp.empty(xs, dtype=cp.float32)
        if dx.size:
            native.maxpool2d_bwd(dev, _stream(cp), _ptr(dx), _ptr(g), _ptr(idx), xs, ys, geometry)
    return dx
