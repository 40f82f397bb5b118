"""Pure-NumPy oracles for every fastconv op and pass (the test suite's ground truth).

Contents: output-size / argument-normalising helpers, then
    conv2d_fwd         y = conv(x, w) + b         x (N, C, H, W), w (K, C/groups, KH, KW)
    conv2d_bwd_data    dx = d(sum(y * dy)) / dx    dy (N, K, OH, OW)
    conv2d_bwd_weights dw, db = d(sum(y * dy)) / dw, / db
    maxpool2d_fwd      y, indices (argmax as h*W + w inside each (n, c) plane)
    maxpool2d_bwd      dx = scatter-add of dy through the argmax indices
    conv2d_relu_maxpool2d    pooled, codes = 2x2/s2 max-pool of relu(conv2d_fwd(...)), codes uint8
    relu_maxpool2d_backward  dx (w.r.t. the conv output, before the ReLU) from dy and the codes
and aliases with the public names (conv2d, conv2d_backward, max_pool2d, max_pool2d_backward).

Role: this file is written straight from the definitions (PyTorch's semantics, NCHW) and shares no
code with the native kernels or with fastconv.ops, so a bug in one cannot hide in the other. It
imports only NumPy. Every function computes in float64 and returns float64 arrays (indices are
int64, codes uint8); speed comes only from vectorising over (N, channels, output pixels) for each
kernel tap, so the loops left are the KH*KW taps, which is where the definition reads most plainly:

    y[n, k, oy, ox] = b[k] + sum_{c, i, j} w[k, c, i, j]
                                * xpad[n, g*Cg + c, oy*sh + i*dh, ox*sw + j*dw]

with g = k // (K / groups) and Cg = C / groups.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "conv2d",
    "conv2d_backward",
    "conv2d_bwd_data",
    "conv2d_bwd_weights",
    "conv2d_fwd",
    "conv2d_out_size",
    "conv2d_padding",
    "conv2d_relu_maxpool2d",
    "max_pool2d",
    "max_pool2d_backward",
    "maxpool2d_bwd",
    "maxpool2d_fwd",
    "maxpool2d_out_size",
    "pair",
    "relu_maxpool2d_backward",
]


# ----------------------------------------------------------------------------------------------
# argument helpers


def pair(value, name):
    """An int or an (h, w) pair of ints as a tuple (h, w)."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value), int(value)
    if (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value)
    ):
        return int(value[0]), int(value[1])
    raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")


def conv2d_padding(padding, kernel_size, stride=1, dilation=1):
    """Normalise conv padding to (top, bottom, left, right).

    padding: int, (ph, pw), "valid" (no padding) or "same" (stride 1 only; the total padding
    dilation*(k-1) is split with the odd row/column going to the bottom/right, as PyTorch does).
    """
    kh, kw = pair(kernel_size, "kernel_size")
    sh, sw = pair(stride, "stride")
    dh, dw = pair(dilation, "dilation")
    if isinstance(padding, str):
        padding = padding.lower()  # as fastconv.conv2d: "SAME" is "same"
        if padding == "valid":
            return 0, 0, 0, 0
        if padding == "same":
            if (sh, sw) != (1, 1):
                raise ValueError(f"padding='same' requires stride 1, got stride={(sh, sw)}")
            th, tw = dh * (kh - 1), dw * (kw - 1)
            return th // 2, th - th // 2, tw // 2, tw - tw // 2
        raise ValueError(f"padding must be an int, a pair, 'valid' or 'same', got {padding!r}")
    ph, pw = pair(padding, "padding")
    if ph < 0 or pw < 0:
        raise ValueError(f"padding must be >= 0, got padding={(ph, pw)}")
    return ph, ph, pw, pw


def conv2d_out_size(in_size, kernel_size, stride=1, padding=0, dilation=1):
    """(OH, OW) of a conv; in_size is (H, W).

    Not invertible: several H give the same OH when stride > 1 (so backward takes the input shape).
    """
    h, w = in_size
    kh, kw = pair(kernel_size, "kernel_size")
    sh, sw = pair(stride, "stride")
    dh, dw = pair(dilation, "dilation")
    for name, (a, b) in (("kernel_size", (kh, kw)), ("stride", (sh, sw)), ("dilation", (dh, dw))):
        if a <= 0 or b <= 0:
            raise ValueError(f"{name} must be > 0, got {name}={(a, b)}")
    pt, pb, pl, pr = conv2d_padding(padding, (kh, kw), (sh, sw), (dh, dw))
    ekh, ekw = dh * (kh - 1) + 1, dw * (kw - 1) + 1  # extent of the dilated kernel
    if h + pt + pb < ekh or w + pl + pr < ekw:
        raise ValueError(
            f"kernel_size {(kh, kw)} (dilated extent {(ekh, ekw)}) is larger than the padded "
            f"input {(h + pt + pb, w + pl + pr)}"
        )
    return (h + pt + pb - ekh) // sh + 1, (w + pl + pr - ekw) // sw + 1


def maxpool2d_out_size(in_size, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """(OH, OW) of a max-pool. stride defaults to kernel_size; padding <= kernel//2. dilation and
    ceil_mode as PyTorch's: the window spans dilation*(kernel-1)+1 cells; ceil_mode rounds the
    size up, unless the last window would start past the input and its top/left padding."""
    h, w = in_size
    kh, kw = pair(kernel_size, "kernel_size")
    sh, sw = pair(kernel_size if stride is None else stride, "stride")
    ph, pw = pair(padding, "padding")
    dh, dw = pair(dilation, "dilation")
    for name, (a, b) in (("kernel_size", (kh, kw)), ("stride", (sh, sw)), ("dilation", (dh, dw))):
        if a <= 0 or b <= 0:
            raise ValueError(f"{name} must be > 0, got {name}={(a, b)}")
    if ph < 0 or pw < 0 or ph > kh // 2 or pw > kw // 2:
        raise ValueError(
            f"padding must be in [0, kernel_size // 2], got padding={(ph, pw)} "
            f"for kernel_size {(kh, kw)}"
        )
    out = []
    for size, p, k, d, s in ((h, ph, kh, dh, sh), (w, pw, kw, dw, sw)):
        extra = size + 2 * p - (d * (k - 1) + 1) + (s - 1 if ceil_mode else 0)
        o = extra // s + 1 if extra >= 0 else 0
        if ceil_mode and o > 0 and (o - 1) * s >= size + p:
            o -= 1
        if o < 1:
            raise ValueError(
                f"kernel_size {(kh, kw)} is larger than the padded input {(h + 2 * ph, w + 2 * pw)}"
            )
        out.append(o)
    return tuple(out)


def _as_f64(a, name, ndim):
    a = np.asarray(a)
    if a.dtype.kind not in "fiu":
        raise TypeError(f"{name} must be a real float or integer array, got dtype {a.dtype}")
    if a.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {a.shape}")
    return a.astype(np.float64)


def _conv_geometry(x_shape, w_shape, stride, padding, dilation, groups):
    """Checks the shapes and returns everything the three conv passes need."""
    n, c, h, w = x_shape
    k, cg, kh, kw = w_shape
    if groups <= 0 or c % groups or k % groups:
        raise ValueError(
            f"groups={groups} must be > 0 and divide in_channels={c} and out_channels={k}"
        )
    if cg != c // groups:
        raise ValueError(
            f"weight has {cg} input channels per group, expected in_channels/groups = {c // groups}"
        )
    oh, ow = conv2d_out_size((h, w), (kh, kw), stride, padding, dilation)
    pads = conv2d_padding(padding, (kh, kw), stride, dilation)
    return (
        (n, c, h, w, k, cg, kh, kw, oh, ow),
        pads,
        pair(stride, "stride"),
        pair(dilation, "dilation"),
    )


def _tap(a, i, j, oh, ow, stride, dilation):
    """What kernel tap (i, j) sees: the view a[..., i*dh + oy*sh, j*dw + ox*sw] for all (oy, ox)."""
    (sh, sw), (dh, dw) = stride, dilation
    return a[
        ..., i * dh : i * dh + (oh - 1) * sh + 1 : sh, j * dw : j * dw + (ow - 1) * sw + 1 : sw
    ]


# ----------------------------------------------------------------------------------------------
# conv2d


def conv2d_fwd(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    """y = conv2d(x, w) + b.

    x (N, C, H, W), w (K, C/groups, KH, KW), b (K,) or None -> y (N, K, OH, OW).
    """
    x = _as_f64(x, "input", 4)
    w = _as_f64(w, "weight", 4)
    (n, c, h, wd, k, cg, kh, kw, oh, ow), (pt, pb, pl, pr), s, d = _conv_geometry(
        x.shape, w.shape, stride, padding, dilation, groups
    )
    g, kg = groups, k // groups
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr))).reshape(
        n, g, cg, h + pt + pb, wd + pl + pr
    )
    wg = w.reshape(g, kg, cg, kh, kw)
    y = np.zeros((n, g, kg, oh, ow))
    for i in range(kh):
        for j in range(kw):
            y += np.einsum("gkc,ngchw->ngkhw", wg[..., i, j], _tap(xp, i, j, oh, ow, s, d))
    y = y.reshape(n, k, oh, ow)
    if b is not None:
        b = _as_f64(b, "bias", 1)
        if b.shape != (k,):
            raise ValueError(f"bias must have shape ({k},), got {b.shape}")
        y += b[None, :, None, None]
    return y


def conv2d_bwd_data(dy, w, x_shape, stride=1, padding=0, dilation=1, groups=1):
    """dx (N, C, H, W) from dy (N, K, OH, OW) and w.

    Each tap scatters w^T dy back onto the input pixels it read.
    """
    w = _as_f64(w, "weight", 4)
    dy = _as_f64(dy, "grad_output", 4)
    (n, c, h, wd, k, cg, kh, kw, oh, ow), (pt, pb, pl, pr), s, d = _conv_geometry(
        tuple(x_shape), w.shape, stride, padding, dilation, groups
    )
    if dy.shape != (n, k, oh, ow):
        raise ValueError(f"grad_output must have shape {(n, k, oh, ow)}, got {dy.shape}")
    g, kg = groups, k // groups
    dxp = np.zeros((n, g, cg, h + pt + pb, wd + pl + pr))
    wg = w.reshape(g, kg, cg, kh, kw)
    dyg = dy.reshape(n, g, kg, oh, ow)
    for i in range(kh):
        for j in range(kw):
            _tap(dxp, i, j, oh, ow, s, d)[...] += np.einsum("gkc,ngkhw->ngchw", wg[..., i, j], dyg)
    return dxp.reshape(n, c, h + pt + pb, wd + pl + pr)[:, :, pt : pt + h, pl : pl + wd].copy()


def conv2d_bwd_weights(dy, x, w_shape, stride=1, padding=0, dilation=1, groups=1):
    """(dw, db) from dy (N, K, OH, OW) and x.

    dw (K, C/groups, KH, KW) sums dy * x over every use of each weight; db (K,) sums dy over
    N, OH, OW.
    """
    x = _as_f64(x, "input", 4)
    dy = _as_f64(dy, "grad_output", 4)
    (n, c, h, wd, k, cg, kh, kw, oh, ow), (pt, pb, pl, pr), s, d = _conv_geometry(
        x.shape, tuple(w_shape), stride, padding, dilation, groups
    )
    if dy.shape != (n, k, oh, ow):
        raise ValueError(f"grad_output must have shape {(n, k, oh, ow)}, got {dy.shape}")
    g, kg = groups, k // groups
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr))).reshape(
        n, g, cg, h + pt + pb, wd + pl + pr
    )
    dyg = dy.reshape(n, g, kg, oh, ow)
    dw = np.zeros((g, kg, cg, kh, kw))
    for i in range(kh):
        for j in range(kw):
            dw[..., i, j] = np.einsum("ngkhw,ngchw->gkc", dyg, _tap(xp, i, j, oh, ow, s, d))
    return dw.reshape(k, cg, kh, kw), dy.sum(axis=(0, 2, 3))


# ----------------------------------------------------------------------------------------------
# maxpool2d


def maxpool2d_fwd(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """(y, indices) of a max-pool (dilation and ceil_mode as PyTorch's; see maxpool2d_out_size).

    x (N, C, H, W) -> y (N, C, OH, OW) float64 and indices int64 (h*W + w within the plane).

    Windows are scanned in row-major order; a later element replaces the current best only when it
    is strictly greater, or when it is NaN and the best is not, so ties go to the first element and
    the first NaN wins. Padded cells are never candidates.
    """
    x = _as_f64(x, "input", 4)
    n, c, h, w = x.shape
    kh, kw = pair(kernel_size, "kernel_size")
    sh, sw = pair(kernel_size if stride is None else stride, "stride")
    ph, pw = pair(padding, "padding")
    dh, dw = pair(dilation, "dilation")
    oh, ow = maxpool2d_out_size((h, w), (kh, kw), (sh, sw), (ph, pw), (dh, dw), ceil_mode)

    best = np.full((n, c, oh, ow), np.nan)
    arg = np.full((n, c, oh, ow), -1, dtype=np.int64)
    oy = np.arange(oh)[:, None]
    ox = np.arange(ow)[None, :]
    for i in range(kh):
        for j in range(kw):
            iy, ix = (
                oy * sh - ph + i * dh,
                ox * sw - pw + j * dw,
            )  # input row/column this tap reads, (OH, 1) and (1, OW)
            valid = (iy >= 0) & (iy < h) & (ix >= 0) & (ix < w)  # (OH, OW)
            v = x[:, :, np.clip(iy, 0, h - 1), np.clip(ix, 0, w - 1)]
            unset = arg < 0
            take = valid & (unset | (v > best) | (np.isnan(v) & ~np.isnan(best)))
            best = np.where(take, v, best)
            arg = np.where(take, iy * w + ix, arg)
    return best, arg


def maxpool2d_bwd(dy, indices, x_shape):
    """dx (N, C, H, W): each dy element is added into the input element its indices entry names."""
    dy = _as_f64(dy, "grad_output", 4)
    indices = np.asarray(indices)
    n, c, h, w = (int(v) for v in x_shape)
    if indices.dtype.kind not in "iu":
        raise TypeError(f"indices must be an integer array, got dtype {indices.dtype}")
    if indices.shape != dy.shape or dy.shape[:2] != (n, c):
        raise ValueError(
            f"indices {indices.shape} and grad_output {dy.shape} must match and start with {(n, c)}"
        )
    if indices.size and (indices.min() < 0 or indices.max() >= h * w):
        raise ValueError(
            f"indices must lie in [0, {h * w}), got range [{indices.min()}, {indices.max()}]"
        )
    dx = np.zeros((n * c, h * w))
    planes = np.repeat(np.arange(n * c), dy.shape[2] * dy.shape[3])
    np.add.at(dx, (planes, indices.reshape(-1)), dy.reshape(-1))
    return dx.reshape(n, c, h, w)


# ----------------------------------------------------------------------------------------------
# conv2d + ReLU + 2x2 / stride 2 max-pool, with one uint8 code per pooled element
#
# code = pos + 4 * dead: pos = a*2 + b is the winner's (row a, column b) inside its 2x2 window
# (the window of pooled (i, j) covers rows 2i, 2i+1 and columns 2j, 2j+1), dead = not (pooled > 0)
# (true for 0 and NaN): the ReLU's derivative at the winner is 0 and no gradient flows back.

_DEAD = 4  # the code bit set where the ReLU blocks the gradient


def conv2d_relu_maxpool2d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    """(pooled, codes): max_pool2d(relu(conv2d(x, w, b)), 2, 2) and each window's code (above).

    pooled (N, K, OH//2, OW//2) float64 and codes (same shape) uint8, where (OH, OW) is the conv's
    output size (both must be >= 2). ReLU is max(y, 0) with NaN kept (PyTorch's relu); the pool's
    winner rule (first maximum in row-major order, the first NaN wins) is maxpool2d_fwd's.
    """
    y = np.maximum(conv2d_fwd(x, w, b, stride, padding, dilation, groups), 0.0)
    oh, ow = y.shape[2:]
    if oh < 2 or ow < 2:
        raise ValueError(f"the conv output {(oh, ow)} is smaller than the 2x2 pooling window")
    pooled, indices = maxpool2d_fwd(y, 2, 2)
    a = indices // ow - 2 * np.arange(pooled.shape[2])[:, None]  # winner's row in its window
    c = indices % ow - 2 * np.arange(pooled.shape[3])[None, :]  # and column
    codes = (2 * a + c + _DEAD * ~(pooled > 0)).astype(np.uint8)
    return pooled, codes


def relu_maxpool2d_backward(dy, codes, input_shape):
    """dx (N, C, H, W), the gradient w.r.t. the conv output before the ReLU.

    dx[n, c, 2i + a, 2j + b] = dy[n, c, i, j] where codes[n, c, i, j] == 2a + b (the dead bit
    clear), else 0; the last row / column of an odd H / W gets nothing. dy (N, C, H//2, W//2) and
    codes (same shape, integers in [0, 8)).
    """
    dy = _as_f64(dy, "grad_output", 4)
    codes = np.asarray(codes)
    n, c, h, w = (int(v) for v in input_shape)
    if codes.dtype.kind not in "iu":
        raise TypeError(f"codes must be an integer array, got dtype {codes.dtype}")
    if dy.shape != (n, c, h // 2, w // 2):
        raise ValueError(
            f"grad_output {dy.shape} must be (N, C, H//2, W//2) = {(n, c, h // 2, w // 2)} for "
            f"input_shape {(n, c, h, w)}"
        )
    if codes.shape != dy.shape:
        raise ValueError(f"codes must have grad_output's shape {dy.shape}, got {codes.shape}")
    if codes.size and (codes.min() < 0 or codes.max() >= 2 * _DEAD):
        raise ValueError(
            f"codes must lie in [0, {2 * _DEAD}), got range [{codes.min()}, {codes.max()}]"
        )
    ph, pw = dy.shape[2:]
    dx = np.zeros((n, c, h, w))
    for a in range(2):
        for b in range(2):
            dx[:, :, a : 2 * ph : 2, b : 2 * pw : 2] = np.where(codes == 2 * a + b, dy, 0.0)
    return dx


# ----------------------------------------------------------------------------------------------
# aliases with the public names and signatures


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):  # noqa: A002
    return conv2d_fwd(input, weight, bias, stride, padding, dilation, groups)


def conv2d_backward(grad_output, input, weight, stride=1, padding=0, dilation=1, groups=1):  # noqa: A002
    """(dx, dw, db) of conv2d."""
    weight = np.asarray(weight)
    dx = conv2d_bwd_data(grad_output, weight, np.shape(input), stride, padding, dilation, groups)
    dw, db = conv2d_bwd_weights(grad_output, input, weight.shape, stride, padding, dilation, groups)
    return dx, dw, db


def max_pool2d(input, kernel_size, stride=None, padding=0, return_indices=False):  # noqa: A002
    y, indices = maxpool2d_fwd(input, kernel_size, stride, padding)
    return (y, indices) if return_indices else y


def max_pool2d_backward(grad_output, indices, input_shape):
    return maxpool2d_bwd(grad_output, indices, input_shape)
