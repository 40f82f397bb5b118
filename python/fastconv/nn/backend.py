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

import inspect

import numpy as np

__all__ = ["Backend", "available_backends", "get_array_module", "get_backend", "register_backend"]


class Backend:
    """Array module + dtype + the functional conv/pool ops of one device.

    ``fused_relu`` is True when ``conv2d`` accepts ``activation="relu"`` (the core may fuse the
    ReLU into the convolution's epilogue); Conv2D then uses it instead of a separate pass.
    ``pool_geometry`` is True when ``max_pool2d_backward`` accepts the forward's geometry
    (``kernel_size=, stride=, padding=``; the GPU then gathers deterministically); MaxPooling2D
    passes it when it is.
    ``out_buffers`` is True when the ops take NumPy ``out=`` arrays (the CPU backend): layers then
    reuse their output and gradient arrays from one training step to the next (see
    ``Layer.buffer``) instead of asking the allocator for fresh pages every step.
    ``dropout`` is None, or ``dropout(x, keep, seed, out=None) -> x * mask`` drawing the mask of
    ``keep_mask(seed, x.shape, keep)`` itself (the CPU backend's native op): Dropout then keeps
    no mask and redraws it from the seed in backward.
    ``conv_relu_pool`` is None, or a module with fastconv's conv2d_relu_maxpool2d,
    conv2d_relu_maxpool2d_bwd_weights and relu_maxpool2d_backward (the CPU backend): a Conv2D
    with ReLU followed by a 2x2/2 max-pool then runs as one op that never writes the full-size
    activation (see Sequential.build).
    """

    def __init__(
        self,
        name,
        xp,
        dtype,
        ops,
        *,
        fused_relu=None,
        pool_geometry=None,
        out_buffers=None,
        matmul=None,
        dropout=None,
        conv_relu_pool=None,
    ):
        self.name = name
        self.xp = xp
        self.dtype = np.dtype(dtype)
        self.conv2d = ops.conv2d
        self.conv2d_bwd_data = ops.conv2d_bwd_data
        self.conv2d_bwd_weights = ops.conv2d_bwd_weights
        self.max_pool2d = ops.max_pool2d
        self.max_pool2d_backward = ops.max_pool2d_backward
        if fused_relu is None:
            fused_relu = _accepts(ops.conv2d, "activation")
        self.fused_relu = bool(fused_relu)
        if pool_geometry is None:
            pool_geometry = _accepts(ops.max_pool2d_backward, "kernel_size")
        self.pool_geometry = bool(pool_geometry)
        if out_buffers is None:
            out_buffers = xp is np and all(
                _accepts(getattr(ops, f), "out")
                for f in (
                    "conv2d",
                    "conv2d_bwd_data",
                    "conv2d_bwd_weights",
                    "max_pool2d",
                    "max_pool2d_backward",
                )
            )
        self.out_buffers = bool(out_buffers)
        self._matmul = matmul
        self.dropout = dropout
        self.conv_relu_pool = conv_relu_pool

    def matmul(self, a, b, trans_a=False, trans_b=False, out=None):
        """op(a) @ op(b) for Dense layers, op a transpose when asked (out: None or the result's
        buffer). The CPU backend runs fastconv's own threaded GEMM, so Dense layers share the conv
        kernels' thread count instead of starting a BLAS thread pool of their own."""
        if self._matmul is not None:
            return self._matmul(a, b, trans_a, trans_b, out)
        return self.xp.matmul(a.T if trans_a else a, b.T if trans_b else b, out=out)

    def asarray(self, a, dtype=None):
        """a as a C-contiguous array of this backend (dtype defaults to the backend's)."""
        return self.xp.ascontiguousarray(
            self.xp.asarray(a, dtype=self.dtype if dtype is None else dtype)
        )

    def to_numpy(self, a):
        """a as a NumPy array (a device backend copies it to the host)."""
        get = getattr(a, "get", None)
        return np.asarray(get() if callable(get) and not isinstance(a, np.ndarray) else a)

    def uniform(self, rng, shape, low, high):
        """Uniform samples from a NumPy Generator, in this backend's dtype (drawn on the host so a
        seed gives the same weights on every device)."""
        return self.asarray(rng.uniform(low, high, size=shape))

    def keep_mask(self, seed, shape, keep):
        """Dropout mask: 1/keep with probability keep, else 0. The keep decisions are
        fastconv._C.dropout_keep's, a function of (seed, element index) drawn on the host, so a
        seed gives the same mask on every backend."""
        from fastconv import _C

        bits = _C.dropout_keep(tuple(shape), keep, seed)
        return self.asarray(bits.astype(self.dtype) / self.dtype.type(keep))

    def __repr__(self):
        return f"Backend({self.name!r}, dtype={self.dtype})"


def _accepts(fn, param):
    try:
        return param in inspect.signature(fn).parameters
    except (TypeError, ValueError):  # builtins without a signature
        return False


class _ReferenceOps:
    """fastconv.reference behind the public signatures; adds max_pool2d's "valid"/"same" padding."""

    def __init__(self):
        from fastconv import reference

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


def _native_matmul(a, b, trans_a, trans_b, out):
    from fastconv import _C

    a = np.ascontiguousarray(a, dtype=np.float32)
    b = np.ascontiguousarray(b, dtype=np.float32)
    return _C.matmul(a, b, trans_a, trans_b, out)


def _native_dropout(x, keep, seed, out=None):
    from fastconv import _C

    return _C.dropout(np.ascontiguousarray(x, dtype=np.float32), keep, seed, out)


def _cpu():
    import fastconv

    return Backend(
        "cpu",
        np,
        np.float32,
        fastconv,
        matmul=_native_matmul,
        dropout=_native_dropout,
        conv_relu_pool=fastconv,
    )


def _reference():
    return Backend("reference", np, np.float64, _ReferenceOps(), fused_relu=False)


_FACTORIES = {"cpu": _cpu, "reference": _reference}
_CACHE = {}


def register_backend(name, factory):
    """Make ``get_backend(name)`` return ``factory()`` (called once, then cached)."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a non-empty str, got {name!r}")
    if not callable(factory):
        raise TypeError(f"factory must be callable, got {factory!r}")
    _FACTORIES[name] = factory
    _CACHE.pop(name, None)


def available_backends():
    """Names get_backend() knows now."""
    return sorted(_FACTORIES)


def get_backend(name="cpu"):
    """The Backend called name ("cpu", "reference", or one registered), or a Backend passed through."""
    if isinstance(name, Backend):
        return name
    if not isinstance(name, str):
        raise TypeError(f"device must be a str or a Backend, got {name!r}")
    if name not in _FACTORIES and name == "cuda":
        try:  # the GPU side may ship a module that registers "cuda"
            import fastconv.nn.cuda  # noqa: F401
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
