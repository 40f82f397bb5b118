"""Keras-like layers over fastconv's kernels. Layout is NCHW (channels first) throughout.

Each layer keeps its parameters in ``layer.params`` and their gradients in ``layer.grads`` (dicts
with the Keras names "kernel" and "bias"), and implements
    build(input_shape, backend, rng)   create parameters for a per-sample input shape, e.g. (1, 28, 28)
    forward(x, training=False)         x is (N, *input_shape) -> (N, *output_shape); keeps what backward needs
    backward(dy)                       accumulates nothing: overwrites grads, returns dx (None when the
                                       layer's input needs no gradient, i.e. need_input_grad is False)
Arrays and kernels come only from ``layer.backend`` (see backend.py): conv and pool layers call
fastconv.conv2d / conv2d_bwd_data / conv2d_bwd_weights / max_pool2d / max_pool2d_backward; Dense
uses matmul (BLAS). Activations by name: "relu", "softmax", None (or "linear").

Conv2D's kernel is (filters, C_in/groups, KH, KW) as in PyTorch (Keras stores KH, KW, C_in, filters;
the parameter count is the same); Dense's kernel is (in, units) as in Keras.
"""

from __future__ import annotations

import math

import numpy as np

from ..ops import MAX_DIM, conv2d_output_shape, max_pool2d_output_shape
from .backend import get_backend

__all__ = [
    "Activation",
    "AveragePooling2D",
    "Conv2D",
    "Dense",
    "Dropout",
    "Flatten",
    "Layer",
    "MaxPool2D",
    "MaxPooling2D",
    "ReLU",
    "Softmax",
]

_ACTIVATIONS = ("relu", "softmax", None)


def _check_activation(activation):
    if activation == "linear":
        activation = None
    if activation not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of 'relu', 'softmax', None, got {activation!r}")
    return activation


def _pos_int(value, name):
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    if value > MAX_DIM:  # the native geometry limit: no layer can be built past it
        raise ValueError(f"{name} must be at most {MAX_DIM}, got {value!r}")
    return int(value)


def _pair(value, name):
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
        return _pos_int(value[0], name), _pos_int(value[1], name)
    v = _pos_int(value, name)
    return v, v


def _check_groups(channels, groups):
    if channels % groups:
        raise ValueError(f"input channels ({channels}) must be divisible by groups ({groups})")


def _softmax(z, axis, xp):
    e = xp.exp(z - z.max(axis=axis, keepdims=True))
    e /= e.sum(axis=axis, keepdims=True)
    return e


def _glorot(backend, rng, shape, fan_in, fan_out):
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return backend.uniform(rng, shape, -limit, limit)


class Layer:
    """Base class: parameters, gradients, an optional activation and the backend they live on."""

    _count = {}

    def __init__(self, activation=None, name=None):
        self.activation = _check_activation(activation)
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a str or None, got {name!r}")
        self.name = name
        self.params = {}
        self.grads = {}
        self.backend = None
        self.input_shape = None
        self.output_shape = None
        self.need_input_grad = True
        self.relu_grad_in_next = False  # a following max-pool applies this layer's ReLU mask
        # Set by Sequential.build on a Conv2D(relu) whose next layer is a 2x2/2 MaxPooling2D: on a
        # backend with `conv_relu_pool`, the conv then returns the pooled output itself.
        self.pool_partner = None
        self._out = None  # post-activation output, kept for the activation's backward
        # Set by Sequential.train_on_batch while a training step runs: no array a layer produces
        # escapes the step there, so outputs and gradients may live in buffers reused next step.
        self.reuse_buffers = False
        self._buffers = {}

    # ---- construction ---------------------------------------------------------------------------
    def build(self, input_shape, backend=None, rng=None):
        """Create parameters for a per-sample input_shape (no batch axis) and return the output shape."""
        self.backend = get_backend("cpu" if backend is None else backend)
        self.input_shape = tuple(int(d) for d in input_shape)
        if rng is None:
            rng = np.random.default_rng()
        self._build(self.input_shape, rng)
        self.output_shape = tuple(int(d) for d in self.compute_output_shape(self.input_shape))
        self.grads = {k: None for k in self.params}
        return self.output_shape

    @property
    def built(self):
        return self.output_shape is not None

    def _build(self, input_shape, rng):
        pass

    def compute_output_shape(self, input_shape):
        return input_shape

    def count_params(self):
        return int(sum(int(np.prod(p.shape)) for p in self.params.values()))

    @property
    def reusing(self):
        """True inside a training step on a backend whose ops take NumPy `out=` arrays: results
        may then go to buffers kept from the last step, and gradients may be masked in place."""
        return self.reuse_buffers and self.backend.out_buffers

    def buffer(self, key, shape, dtype=np.float32):
        """An `out=` array for result `key`, or None when not `reusing`.

        Reusing the same arrays every step keeps the training loop off the allocator: fresh
        multi-megabyte NumPy arrays are new pages to fault in and zero on every step, which cost
        more than the kernels themselves on the MNIST-size layers (docs/KERNELS.md, workspace).
        """
        if not self.reusing:
            return None
        buf = self._buffers.get(key)
        if buf is None or buf.shape != tuple(shape) or buf.dtype != dtype:
            buf = self._buffers[key] = np.empty(shape, dtype)
        return buf

    def out_kw(self, *results):
        """Keyword arguments giving an op its `out=` buffers: {} when not `reusing` (so backends
        without `out=` never see it), else {"out": buffer} for one result or a tuple for several.
        Each result is (key, shape) or (key, shape, dtype)."""
        if not self.reusing:
            return {}
        bufs = tuple(self.buffer(*r) for r in results)
        return {"out": bufs[0] if len(bufs) == 1 else bufs}

    def _ensure_built(self, x):
        if not self.built:
            self.build(x.shape[1:])

    # ---- passes ---------------------------------------------------------------------------------
    def forward(self, x, training=False, logits=False):
        """Output for a batch x. logits=True leaves out a final softmax (folded into the loss)."""
        self._ensure_built(x)
        z = self.call(x, training)
        act = self.activation
        if act == "softmax" and logits:
            act = None
        self._act = act
        if act == "relu":
            if not getattr(self, "_fused", False):
                z = self.backend.xp.maximum(z, 0, out=z)
        elif act == "softmax":
            z = _softmax(z, -1, self.backend.xp)
        keep = act == "softmax" or (act == "relu" and not self.relu_grad_in_next)
        self._out = z if keep else None
        return z

    def backward(self, dy):
        """dx for an upstream gradient dy; fills self.grads."""
        if not hasattr(self, "_act"):
            raise ValueError(f"{self!r}: backward() needs a forward() first")
        if self._act == "relu" and not self.relu_grad_in_next:
            dy = dy * (self._out > 0)
        elif self._act == "softmax":
            s = self._out
            dy = s * (dy - (dy * s).sum(axis=-1, keepdims=True))
        return self.call_backward(dy)

    def call(self, x, training):
        raise NotImplementedError

    def call_backward(self, dy):
        raise NotImplementedError

    def to(self, backend):
        """Move parameters to another backend (e.g. "reference" for float64, or a GPU one)."""
        backend = get_backend(backend)
        for k, p in self.params.items():
            self.params[k] = backend.asarray(self.backend.to_numpy(p) if self.backend else p)
        self.grads = {k: None for k in self.params}
        self.backend = backend
        self._buffers = {}
        return self

    def __repr__(self):
        return f"{type(self).__name__}(name={self.name!r})"


class Conv2D(Layer):
    """2-D convolution, NCHW: x (N, C, H, W) -> (N, filters, OH, OW).

    padding: "valid" (none), "same" (keeps H x W; stride 1 only), an int or an (h, w) pair.
    The kernel is (filters, C/groups, KH, KW), Glorot-uniform; the bias is zero.
    """

    def __init__(
        self,
        filters,
        kernel_size,
        strides=1,
        padding="valid",
        activation=None,
        use_bias=True,
        dilation_rate=1,
        groups=1,
        name=None,
    ):
        super().__init__(activation, name)
        self.filters = _pos_int(filters, "filters")
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.strides = _pair(strides, "strides")
        self.dilation_rate = _pair(dilation_rate, "dilation_rate")
        self.groups = _pos_int(groups, "groups")
        if isinstance(padding, str):
            if padding not in ("valid", "same"):
                raise ValueError(
                    f"padding must be 'valid', 'same', an int or a pair, got {padding!r}"
                )
            if padding == "same" and self.strides != (1, 1):
                raise ValueError(f"padding='same' needs strides=1, got strides={self.strides}")
        else:
            pads = padding if isinstance(padding, (tuple, list)) else (padding, padding)
            if len(pads) != 2 or not all(
                isinstance(p, (int, np.integer)) and not isinstance(p, bool) and p >= 0
                for p in pads
            ):
                raise ValueError(
                    f"padding must be 'valid', 'same', an int >= 0 or a pair, got {padding!r}"
                )
            padding = tuple(int(p) for p in pads)
        self.padding = padding
        if not isinstance(use_bias, bool):
            raise TypeError(f"use_bias must be a bool, got {use_bias!r}")
        self.use_bias = use_bias
        if self.filters % self.groups:
            raise ValueError(
                f"filters ({self.filters}) must be divisible by groups ({self.groups})"
            )

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(
                f"{self.name or 'Conv2D'} expects (C, H, W) inputs (NCHW), got {input_shape}"
            )
        c, h, w = input_shape
        _check_groups(c, self.groups)
        try:  # the kernels' own geometry rule (cpp/params.cpp)
            _, _, oh, ow = conv2d_output_shape(
                (1, c, h, w), (self.filters, c // self.groups, *self.kernel_size), **self._kw()
            )
        except ValueError as err:
            raise ValueError(
                f"{self.name or 'Conv2D'}: kernel {self.kernel_size} does not fit input "
                f"{input_shape} ({err})"
            ) from None
        return self.filters, oh, ow

    def _build(self, input_shape, rng):
        c = input_shape[0]
        _check_groups(c, self.groups)
        kh, kw = self.kernel_size
        cg = c // self.groups
        shape = (self.filters, cg, kh, kw)
        self.params["kernel"] = _glorot(
            self.backend, rng, shape, cg * kh * kw, self.filters * kh * kw // self.groups
        )
        if self.use_bias:
            self.params["bias"] = self.backend.asarray(np.zeros(self.filters))

    def _kw(self):
        return dict(
            stride=self.strides,
            padding=self.padding,
            dilation=self.dilation_rate,
            groups=self.groups,
        )

    def call(self, x, training):
        b = self.backend
        self._x = x
        self._codes = None
        pool = self.pool_partner
        if pool is not None and b.conv_relu_pool is not None:
            # conv + ReLU + the next layer's 2x2 max-pool in one op: the pooled output and one-byte
            # window codes, never the full-size activation; the pool layer passes it through.
            self._fused = True
            ps = (x.shape[0], *pool.output_shape)
            kw = dict(self._kw(), **self.out_kw(("pooled", ps), ("codes", ps, np.uint8)))
            y, self._codes = b.conv_relu_pool.conv2d_relu_maxpool2d(
                x, self.params["kernel"], self.params.get("bias"), **kw
            )
            pool.fused_input = y
            return y
        self._fused = self.activation == "relu" and b.fused_relu
        kw = dict(self._kw(), **self.out_kw(("y", (x.shape[0], *self.output_shape))))
        if self._fused:
            kw["activation"] = "relu"
        return b.conv2d(x, self.params["kernel"], self.params.get("bias"), **kw)

    def call_backward(self, dy):
        b = self.backend
        w = self.params["kernel"]
        if self._codes is None:
            bwd_weights, bwd_data, grad = b.conv2d_bwd_weights, b.conv2d_bwd_data, (dy,)
        else:  # dy is the gradient of the pooled output (see call); the ops take it with the codes
            ops = b.conv_relu_pool
            bwd_weights = ops.conv2d_relu_maxpool2d_bwd_weights
            bwd_data = ops.conv2d_relu_maxpool2d_bwd_data
            grad = (dy, self._codes)
            self._codes = None
        outs = self.out_kw(("dw", w.shape), ("db", (self.filters,)))
        dw, db = bwd_weights(*grad, self._x, w.shape, **self._kw(), **outs)
        self.grads["kernel"] = dw
        if self.use_bias:
            self.grads["bias"] = db
        dx = None
        if self.need_input_grad:
            outs = self.out_kw(("dx", self._x.shape))
            dx = bwd_data(*grad, w, self._x.shape, **self._kw(), **outs)
        self._x = None
        return dx


class _Pool2D(Layer):
    def __init__(self, pool_size=2, strides=None, padding="valid", name=None):
        super().__init__(None, name)
        self.pool_size = _pair(pool_size, "pool_size")
        self.strides = self.pool_size if strides is None else _pair(strides, "strides")
        if padding not in ("valid", "same"):
            raise ValueError(f"padding must be 'valid' or 'same', got {padding!r}")
        self.padding = padding

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(
                f"{self.name or type(self).__name__} expects (C, H, W) inputs (NCHW), got {input_shape}"
            )
        c, h, w = input_shape
        try:  # the kernels' own geometry rule (cpp/params.cpp)
            _, _, oh, ow = max_pool2d_output_shape(
                (1, c, h, w), self.pool_size, self.strides, self.padding
            )
        except ValueError as err:
            raise ValueError(
                f"{self.name or type(self).__name__}: pool {self.pool_size} larger than input "
                f"{input_shape} ({err})"
            ) from None
        return c, oh, ow


class MaxPooling2D(_Pool2D):
    """Max-pool, NCHW: (N, C, H, W) -> (N, C, OH, OW). strides defaults to pool_size; padding
    "valid" (floor) or "same" (TF-style: OH = ceil(H / stride)). The gradient goes to the
    first maximal input of each window only. The backward pass hands max_pool2d_backward the
    pooling geometry (when the backend takes it), so on the GPU it is the deterministic gather."""

    #: Set by Sequential when the layer before ends in a ReLU: the backward pass then masks the
    #: gradient by (output > 0), which is that ReLU's derivative at each window's winner.
    mask_nonpositive = False
    #: The pooled array the Conv2D before produced itself (its pool_partner path): passed through.
    fused_input = None

    def call(self, x, training):
        self._passthrough = x is self.fused_input and x is not None
        self.fused_input = None
        if self._passthrough:  # the conv layer pooled already and owns the backward
            return x
        shape = (x.shape[0], *self.output_shape)
        kw = self.out_kw(("y", shape), ("indices", shape, np.int64))
        y, self._idx = self.backend.max_pool2d(
            x, self.pool_size, self.strides, self.padding, return_indices=True, **kw
        )
        self._xshape = x.shape
        self._y = y if self.mask_nonpositive else None
        return y

    def call_backward(self, dy):
        if not self.need_input_grad:
            return None
        if self._passthrough:
            return dy
        b = self.backend
        if self.mask_nonpositive:
            if self.reusing:
                # dy came from the next layer's backward inside this step: nobody else holds it
                dy = b.xp.multiply(dy, self._y > 0, out=dy)
            else:
                dy = dy * (self._y > 0)
            self._y = None
        kw = self.out_kw(("dx", self._xshape))
        if b.pool_geometry:
            kw.update(kernel_size=self.pool_size, stride=self.strides, padding=self.padding)
        dx = b.max_pool2d_backward(dy, self._idx, self._xshape, **kw)
        self._idx = None
        return dx


MaxPool2D = MaxPooling2D


class AveragePooling2D(_Pool2D):
    """Average-pool, NCHW, in the array module (no native kernel). With padding="same" the padded
    cells are left out of each window's count, as Keras does."""

    def _geometry(self, h, w):
        (kh, kw), (sh, sw) = self.pool_size, self.strides
        _, oh, ow = self.compute_output_shape((1, h, w))
        th = max((oh - 1) * sh + kh - h, 0)
        tw = max((ow - 1) * sw + kw - w, 0)
        return oh, ow, th // 2, th - th // 2, tw // 2, tw - tw // 2

    def _count(self, h, w, geo, xp, dtype):
        oh, ow, pt, pb, pl, pr = geo
        ones = xp.zeros((h + pt + pb, w + pl + pr), dtype=dtype)
        ones[pt : pt + h, pl : pl + w] = 1
        cnt = xp.zeros((oh, ow), dtype=dtype)
        (kh, kw), (sh, sw) = self.pool_size, self.strides
        for i in range(kh):
            for j in range(kw):
                cnt += ones[i : i + (oh - 1) * sh + 1 : sh, j : j + (ow - 1) * sw + 1 : sw]
        return cnt

    def call(self, x, training):
        xp = self.backend.xp
        n, c, h, w = x.shape
        geo = self._geometry(h, w)
        oh, ow, pt, pb, pl, pr = geo
        (kh, kw), (sh, sw) = self.pool_size, self.strides
        self._xshape = x.shape
        if (pt, pb, pl, pr) == (0, 0, 0, 0) and (kh, kw) == (sh, sw):  # tiling windows: one reshape
            y = x[:, :, : oh * kh, : ow * kw].reshape(n, c, oh, kh, ow, kw).mean(axis=(3, 5))
            self._cnt = None
            return y.astype(x.dtype, copy=False)
        xpad = xp.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr))) if pt + pb + pl + pr else x
        y = xp.zeros((n, c, oh, ow), dtype=x.dtype)
        for i in range(kh):
            for j in range(kw):
                y += xpad[:, :, i : i + (oh - 1) * sh + 1 : sh, j : j + (ow - 1) * sw + 1 : sw]
        self._cnt = self._count(h, w, geo, xp, x.dtype)
        y /= self._cnt
        return y

    def call_backward(self, dy):
        if not self.need_input_grad:
            return None
        xp = self.backend.xp
        n, c, h, w = self._xshape
        oh, ow, pt, pb, pl, pr = self._geometry(h, w)
        (kh, kw), (sh, sw) = self.pool_size, self.strides
        if self._cnt is None:
            g = (dy / (kh * kw)).astype(dy.dtype, copy=False)
            dx = xp.zeros(self._xshape, dtype=dy.dtype)
            dx[:, :, : oh * kh, : ow * kw] = xp.broadcast_to(
                g[:, :, :, None, :, None], (n, c, oh, kh, ow, kw)
            ).reshape(n, c, oh * kh, ow * kw)
            return dx
        g = dy / self._cnt
        dxp = xp.zeros((n, c, h + pt + pb, w + pl + pr), dtype=dy.dtype)
        for i in range(kh):
            for j in range(kw):
                dxp[:, :, i : i + (oh - 1) * sh + 1 : sh, j : j + (ow - 1) * sw + 1 : sw] += g
        return dxp[:, :, pt : pt + h, pl : pl + w]


class Dense(Layer):
    """Fully connected: x (N, in) -> x @ kernel + bias, kernel (in, units) Glorot-uniform, bias zero."""

    def __init__(self, units, activation=None, use_bias=True, name=None):
        super().__init__(activation, name)
        self.units = _pos_int(units, "units")
        if not isinstance(use_bias, bool):
            raise TypeError(f"use_bias must be a bool, got {use_bias!r}")
        self.use_bias = use_bias

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 1:
            raise ValueError(
                f"{self.name or 'Dense'} expects flat (features,) inputs, got {input_shape}: "
                "put a Flatten() before it"
            )
        return (self.units,)

    def _build(self, input_shape, rng):
        fan_in = int(np.prod(input_shape))
        self.params["kernel"] = _glorot(self.backend, rng, (fan_in, self.units), fan_in, self.units)
        if self.use_bias:
            self.params["bias"] = self.backend.asarray(np.zeros(self.units))

    def call(self, x, training):
        self._x = x
        b = self.backend
        y = b.matmul(x, self.params["kernel"], out=self.buffer("y", (x.shape[0], self.units)))
        if self.use_bias:
            y += self.params["bias"]
        return y

    def call_backward(self, dy):
        x, w, b = self._x, self.params["kernel"], self.backend
        self.grads["kernel"] = b.matmul(x, dy, trans_a=True, out=self.buffer("dw", w.shape))
        if self.use_bias:
            self.grads["bias"] = dy.sum(axis=0)
        self._x = None
        if not self.need_input_grad:
            return None
        return b.matmul(dy, w, trans_b=True, out=self.buffer("dx", x.shape))


class Flatten(Layer):
    """(N, C, H, W) -> (N, C*H*W), in NCHW order."""

    def __init__(self, name=None):
        super().__init__(None, name)

    def compute_output_shape(self, input_shape):
        return (int(np.prod(input_shape)),)

    def call(self, x, training):
        self._xshape = x.shape
        return x.reshape(x.shape[0], -1)

    def call_backward(self, dy):
        return dy.reshape(self._xshape) if self.need_input_grad else None


class Dropout(Layer):
    """Zeroes a fraction rate of the inputs in training and scales the rest by 1/(1-rate)
    (inverted dropout); the identity at inference.

    Each training call draws one 64-bit seed from ``self.rng``; the mask is a function of (seed,
    element index) (``Backend.keep_mask``), so the model's seed fixes every mask, on every backend
    and at any thread count. The CPU backend applies it natively and redraws it from the seed in
    backward (no mask array); other backends keep the mask.

    ``mask_source`` (set by fit(cuda_graph=True) for its duration): a function (shape, keep) ->
    mask that makes this step's mask on the GPU from a seed table and a step counter in device
    memory (nn/cuda_graph.py), the seeds drawn ahead by ``next_seed`` in the same order."""

    def __init__(self, rate, name=None):
        super().__init__(None, name)
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= rate < 1.0:
            raise ValueError(f"rate must be a float in [0, 1), got {rate!r}")
        self.rate = float(rate)
        self.rng = None  # a NumPy Generator; Sequential.fit seeds it
        self._seed = None  # this step's seed; None when the last forward dropped nothing
        self.mask_source = None

    def next_seed(self):
        """The next step's 64-bit mask seed from self.rng (one draw per training step)."""
        if self.rng is None:
            self.rng = np.random.default_rng()
        return int(self.rng.integers(0, 2**64, dtype=np.uint64))

    def call(self, x, training):
        self._mask = self._seed = None
        if not training or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        if self.mask_source is not None:  # CUDA graph mode: the seed is on the GPU already
            self._seed = -1  # not None: backward applies the kept mask
            self._mask = self.mask_source(x.shape, keep)
            return x * self._mask
        self._seed = self.next_seed()
        if self.backend.dropout is not None:
            return self.backend.dropout(x, keep, self._seed, **self.out_kw(("y", x.shape)))
        self._mask = self.backend.keep_mask(self._seed, x.shape, keep)
        return x * self._mask

    def call_backward(self, dy):
        if not self.need_input_grad:
            return None
        if self._seed is None:
            return dy
        if self._mask is None:  # native: the seed redraws the forward's mask, bit for bit
            return self.backend.dropout(
                dy, 1.0 - self.rate, self._seed, **self.out_kw(("dx", dy.shape))
            )
        return dy * self._mask


class Activation(Layer):
    """An activation as a layer: "relu", "softmax" (over the last axis) or None/"linear"."""

    def __init__(self, activation, name=None):
        super().__init__(activation, name)

    def call(self, x, training):
        if self.activation == "relu":
            return x.copy()  # forward() applies the ReLU in place: never overwrite the input
        return x

    def call_backward(self, dy):
        return dy if self.need_input_grad else None


class ReLU(Activation):
    """max(x, 0)."""

    def __init__(self, name=None):
        super().__init__("relu", name)


class Softmax(Activation):
    """Softmax over the last axis (the classes, after a Dense layer)."""

    def __init__(self, name=None):
        super().__init__("softmax", name)
