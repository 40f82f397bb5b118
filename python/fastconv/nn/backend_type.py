"""The Backend type of fastconv.nn and the registry of backend factories (name -> factory),
apart from the factories themselves (backend.py: "cpu", "reference"; cuda.py: "cuda") so that
each of those imports this module and none imports another."""

from __future__ import annotations

import inspect

import numpy as np

from ..train_ops import dropout_keep

__all__ = ["Backend", "available_backends", "register_backend"]


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
        fastconv.train_ops.dropout_keep's, a function of (seed, element index) drawn on the host, so a
        seed gives the same mask on every backend."""
        bits = dropout_keep(shape, keep, seed)
        return self.asarray(bits.astype(self.dtype) / self.dtype.type(keep))

    def __repr__(self):
        return f"Backend({self.name!r}, dtype={self.dtype})"


def _accepts(fn, param):
    try:
        return param in inspect.signature(fn).parameters
    except (TypeError, ValueError):  # builtins without a signature
        return False


_FACTORIES = {}  # name -> factory (backend.py adds "cpu" and "reference", cuda.py "cuda")
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
