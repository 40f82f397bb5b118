"""Where the layers get their arrays and kernels from: one object per device.

Every layer holds a `Backend` (``layer.backend``) and reaches arrays and kernels only through it:
``backend.xp`` is the array module (NumPy on the CPU; CuPy on a GPU backend), ``backend.dtype``
the float type of parameters and activations, and ``backend.conv2d`` & co. the functional ops
with fastconv's public signatures. Swapping the backend (``Sequential.to(name)``) is therefore the
only thing a new device needs.

Backends shipped here:
    "cpu"        fastconv's native kernels (fastconv.conv2d, ...), float32. The default.
    "reference"  fastconv.reference (pure NumPy, float64): slow, exact; the tests' gradient checks.
    "cuda"       CuPy arrays on the current GPU, float32, fastconv's CUDA kernels (fastconv.nn.cuda,
                 imported by the first get_backend("cuda")). Without CuPy, a CUDA build or a
                 visible GPU, get_backend("cuda") raises ImportError / RuntimeError saying which.
Other GPU backends register themselves with `register_backend(name, factory)`.
"""

from __future__ import annotations

import numpy as np

from .. import ops, reference, train_ops
from .backend_type import _CACHE, _FACTORIES, Backend, available_backends, register_backend

__all__ = ["Backend", "available_backends", "get_array_module", "get_backend", "register_backend"]


class _ReferenceOps:
    """fastconv.reference behind the public signatures; adds max_pool2d's "valid"/"same" padding."""

    def __init__(self):
        self.ref = reference
        self.conv2d = reference.conv2d
        self.conv2d_bwd_data = reference.conv2d_bwd_data
        self.conv2d_bwd_weights = reference.conv2d_bwd_weights

    def max_pool2d(self, input, kernel_size, stride=None, padding=0, return_indices=False):  # noqa: A002
        x = np.asarray(input)
        if isinstance(padding, str) and padding == "same":
            # TF-style: out = ceil(H / s); the extra padding row/column goes to the bottom/right.
            kh, kw = self.ref.pair(kernel_size, "kernel_size")
            sh, sw = self.ref.pair(kernel_size if stride is None else stride, "stride")
            h, w = x.shape[2:]
            th = max((-(-h // sh) - 1) * sh + kh - h, 0)
            tw = max((-(-w // sw) - 1) * sw + kw - w, 0)
            pt, pl = th // 2, tw // 2
            xp_ = np.pad(
                x.astype(np.float64),
                ((0, 0), (0, 0), (pt, th - pt), (pl, tw - pl)),
                constant_values=-np.inf,
            )
            y, idx = self.ref.max_pool2d(xp_, (kh, kw), (sh, sw), 0, return_indices=True)
            wp = w + tw
            idx = (idx // wp - pt) * w + (idx % wp - pl)
        else:
            if isinstance(padding, str):
                if padding != "valid":
                    raise ValueError(
                        f"padding must be an int, a pair, 'valid' or 'same', got {padding!r}"
                    )
                padding = 0
            y, idx = self.ref.max_pool2d(x, kernel_size, stride, padding, return_indices=True)
        return (y, idx) if return_indices else y

    def max_pool2d_backward(
        self, grad_output, indices, input_shape, *, kernel_size=None, stride=None, padding=0
    ):
        # the geometry only matters to the GPU's gather; the reference scatter needs none
        return self.ref.max_pool2d_backward(grad_output, indices, input_shape)


def _cpu():
    return Backend(
        "cpu",
        np,
        np.float32,
        ops,
        matmul=train_ops.matmul,
        dropout=train_ops.dropout,
        conv_relu_pool=ops,
    )


def _reference():
    return Backend("reference", np, np.float64, _ReferenceOps(), fused_relu=False)


_FACTORIES.update({"cpu": _cpu, "reference": _reference})


def get_backend(name="cpu"):
    """The Backend called name ("cpu", "reference", or one registered), or a Backend passed through."""
    if isinstance(name, Backend):
        return name
    if not isinstance(name, str):
        raise TypeError(f"device must be a str or a Backend, got {name!r}")
    if name not in _FACTORIES and name == "cuda":
        try:  # the GPU side may ship a module that registers "cuda"
            from . import cuda  # noqa: F401
        except ImportError as e:
            raise ValueError(f"device 'cuda' is not available: {e}") from None
    if name not in _FACTORIES:
        raise ValueError(f"device must be one of {available_backends()}, got {name!r}")
    if name not in _CACHE:
        _CACHE[name] = _FACTORIES[name]()
    return _CACHE[name]


def get_array_module(a):
    """NumPy for NumPy arrays, else the module the array comes from (CuPy for CuPy arrays)."""
    mod = type(a).__module__.split(".")[0]
    if mod == "cupy":
        import cupy

        return cupy
    return np
