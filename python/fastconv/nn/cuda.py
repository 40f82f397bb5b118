"""The "cuda" backend of fastconv.nn: CuPy arrays, float32, fastconv's CUDA kernels.

    model = fastconv.models.build("cnn1", seed=0).to("cuda")   # or Sequential(..., device="cuda")
    model.fit(x, y, batch_size=100)                            # x, y stay NumPy arrays on the host

Importing this module (``get_backend("cuda")`` does it) registers the backend; it needs nothing
itself. Building the backend (the first ``get_backend("cuda")``, ``Sequential(device="cuda")`` or
``model.to("cuda")``) checks, in this order, and raises before anything moves:
    CuPy importable                  else ImportError: pip install "fastconv[cuda]"
    fastconv built with CUDA         else RuntimeError: reinstall with FASTCONV_CUDA=ON
    a CUDA device visible            else RuntimeError: no CUDA device is visible
The backend works on CuPy's current device (``cupy.cuda.Device(i).use()`` picks another).

What runs where:
    conv2d, its two backward passes, max_pool2d and its backward: fastconv's CUDA kernels, reached
    through the same functional ops as on the CPU (fastconv.conv2d & co. route CuPy arrays to
    fastconv._cuda_ops); max-pool backward gets the forward geometry, so it is the deterministic
    gather, bit-identical to the CPU. MaxPooling2D's indices come straight from its own forward
    and are never exposed, so its backward skips the public op's index range check (two
    reductions that wait for the GPU on every call): see _layer_max_pool2d_backward.
    Dense (matmul, cuBLAS through CuPy), activations, losses, AveragePooling2D and the optimizers:
    CuPy elementwise/reduction kernels on the same arrays (CuPy's default: no TF32 for matmul).
Host <-> device traffic:
    Sequential.fit/evaluate/predict take host (NumPy) arrays and move each batch once (x converted
    to float32 on the host first, so the values are exactly the CPU's); each step returns the loss
    and the count of correct predictions as Python numbers (one small sync per step).
    predict() and get_weights() return NumPy arrays on every backend; save_weights/load_weights
    read and write host .npz files.
Randomness: the initial weights and the dropout masks are drawn on the host from NumPy Generators,
as on the CPU, so a seed gives the same run on either device (up to float32 summation order).
Dropout draws its keep/drop decisions on the host (fastconv's threaded (seed, index) generator,
the CPU backend's) and moves them as one byte per element, then scales them on the GPU: slower
than a cupy.random mask (a transfer of 2.6 MB per step for keras_cnn's activations) but
reproducible across devices. fit(cuda_graph=True) makes the same masks on the GPU instead, with
the same generator (nn/cuda_graph.py).
"""

from __future__ import annotations

import types

import numpy as np

from .. import _cuda_ops, ops, train_ops
from .backend_type import Backend, register_backend

__all__ = ["INSTALL_HINT", "LAYER_OPS", "CudaBackend", "require_cupy"]

INSTALL_HINT = 'pip install "fastconv[cuda]"'


def require_cupy():
    """The cupy module once CuPy, a CUDA build of fastconv and a visible GPU are all present;
    ImportError / RuntimeError saying which one is missing otherwise."""
    try:
        import cupy
    except ImportError as exc:
        raise ImportError(
            f"device 'cuda' needs CuPy: {INSTALL_HINT} (or a cupy-cudaXXx wheel matching your "
            f"CUDA driver); importing cupy failed: {exc}"
        ) from exc
    if not _cuda_ops.built():
        raise RuntimeError(f"device 'cuda': {_cuda_ops._NOT_BUILT}")
    try:
        count = int(cupy.cuda.runtime.getDeviceCount())
    except Exception as exc:  # noqa: BLE001 - any CUDA runtime error means no usable device
        raise RuntimeError(
            f"device 'cuda': no CUDA device is visible ({type(exc).__name__}: {exc})"
        ) from exc
    if count == 0:
        raise RuntimeError("device 'cuda': no CUDA device is visible (no NVIDIA GPU or driver)")
    return cupy


class CudaBackend(Backend):
    """Backend over CuPy; see the module docstring."""

    def __init__(self, cupy, ops):
        super().__init__("cuda", cupy, np.float32, ops)

    def asarray(self, a, dtype=None):
        """a as a C-contiguous CuPy array; host arrays are converted on the host, then copied once."""
        dtype = self.dtype if dtype is None else np.dtype(dtype)
        cp = self.xp
        if isinstance(a, cp.ndarray):
            return cp.ascontiguousarray(a.astype(dtype, copy=False))
        if hasattr(a, "__cuda_array_interface__"):  # another GPU library's array
            return cp.ascontiguousarray(cp.asarray(a, dtype=dtype))
        return cp.asarray(np.ascontiguousarray(np.asarray(a, dtype=dtype)))

    def to_numpy(self, a):
        if isinstance(a, self.xp.ndarray):
            return self.xp.asnumpy(a)
        return super().to_numpy(a)

    def keep_mask(self, seed, shape, keep):
        """The CPU's mask, bit for bit: keep/drop drawn on the host (the CPU's (seed, index)
        draws, train_ops.dropout_keep), moved as one byte per element, then (keep as float32) / keep on
        the GPU."""
        keep_bits = train_ops.dropout_keep(shape, keep, seed)
        return self.xp.asarray(keep_bits).astype(self.dtype) / self.dtype.type(keep)

    def synchronize(self):
        """Wait for the work queued on the current stream (timings)."""
        self.xp.cuda.get_current_stream().synchronize()

    def device_name(self):
        return _cuda_ops.device_name(int(self.xp.cuda.Device().id))


def _layer_max_pool2d_backward(
    grad_output, indices, input_shape, *, kernel_size=None, stride=None, padding=0
):
    """fastconv.max_pool2d_backward for a MaxPooling2D layer's own indices (made by its forward
    with this geometry, never handed out): the same gather kernel, without the range check."""
    geometry = ops._pool_geometry(kernel_size, stride, padding)
    if geometry is None or not ops._is_cuda(grad_output):
        return ops.max_pool2d_backward(
            grad_output, indices, input_shape, kernel_size=kernel_size, stride=stride,
            padding=padding,
        )  # fmt: skip
    kernel, strides, mode, pad = geometry
    return _cuda_ops.maxpool2d_bwd(
        grad_output, indices, ops._shape4(input_shape, "input_shape"), kernel=kernel,
        stride=strides, pad_mode=mode, pad=pad, check_indices=False,
    )  # fmt: skip


# The functional ops the layers call on this backend: fastconv's, but for the layer max-pool's.
LAYER_OPS = types.SimpleNamespace(
    conv2d=ops.conv2d,
    conv2d_bwd_data=ops.conv2d_bwd_data,
    conv2d_bwd_weights=ops.conv2d_bwd_weights,
    max_pool2d=ops.max_pool2d,
    max_pool2d_backward=_layer_max_pool2d_backward,
)


def _cuda():
    return CudaBackend(require_cupy(), LAYER_OPS)


register_backend("cuda", _cuda)
