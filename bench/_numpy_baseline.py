"""The plain NumPy baselines bench/conv_cpu.py times beside fastconv and PyTorch: what a NumPy user
would write (im2col + one BLAS matmul per conv pass, col2im for bwd-data; reshape + argmax pooling).
NumPy comes in as an argument, so importing this module loads nothing.
"""

from __future__ import annotations


class NumpyConv:
    """im2col + one BLAS matmul per pass, groups=1, dilation 1 (what a NumPy user would write)."""

    def __init__(self, np, s):
        self.np, self.s = np, s
        self.pads = s.pads()
        self.oh, self.ow = s.out_hw

    def _cols(self, x):
        np, s = self.np, self.s
        pt, pb, pl, pr = self.pads
        xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr))) if any(self.pads) else x
        kh, kw = s.kernel
        sh, sw = s.stride
        win = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw]
        # (N, C, OH, OW, KH, KW) -> (N*OH*OW, C*KH*KW)
        return win.transpose(0, 2, 3, 1, 4, 5).reshape(s.n * self.oh * self.ow, s.c * kh * kw)

    def fwd(self, x, w, b):
        s = self.s
        y = self._cols(x) @ w.reshape(s.k, -1).T  # (N*OH*OW, K)
        if b is not None:
            y += b
        return y.reshape(s.n, self.oh, self.ow, s.k).transpose(0, 3, 1, 2)

    def bwd_weight(self, dy, x):
        s = self.s
        dym = dy.transpose(1, 0, 2, 3).reshape(s.k, -1)  # (K, N*OH*OW)
        dw = (dym @ self._cols(x)).reshape(s.w_shape)
        return dw, dym.sum(axis=1)

    def bwd_data(self, dy, w):
        np, s = self.np, self.s
        kh, kw = s.kernel
        sh, sw = s.stride
        pt, pb, pl, pr = self.pads
        dcols = dy.transpose(0, 2, 3, 1).reshape(-1, s.k) @ w.reshape(s.k, -1)  # (N*OH*OW, C*KH*KW)
        dcols = dcols.reshape(s.n, self.oh, self.ow, s.c, kh, kw).transpose(0, 3, 4, 5, 1, 2)
        dxp = np.zeros((s.n, s.c, s.h + pt + pb, s.w + pl + pr), np.float32)
        for i in range(kh):  # col2im: scatter-add each kernel tap's slab
            for j in range(kw):
                dxp[
                    :, :, i : i + sh * (self.oh - 1) + 1 : sh, j : j + sw * (self.ow - 1) + 1 : sw
                ] += dcols[:, :, i, j]
        return dxp[:, :, pt : pt + s.h, pl : pl + s.w]


class NumpyPool:
    """Non-overlapping max-pool (stride == kernel, no padding) by reshape + argmax."""

    def __init__(self, np, s):
        self.np, self.s = np, s
        self.oh, self.ow = s.out_hw

    def fwd(self, x):
        np, s = self.np, self.s
        kh, kw = s.kernel
        oh, ow = self.oh, self.ow
        win = (
            x[:, :, : oh * kh, : ow * kw]
            .reshape(s.n, s.c, oh, kh, ow, kw)
            .transpose(0, 1, 2, 4, 3, 5)
        )
        win = win.reshape(s.n, s.c, oh, ow, kh * kw)
        a = win.argmax(axis=-1)  # first maximum in row-major window order
        y = np.take_along_axis(win, a[..., None], axis=-1)[..., 0]
        idx = (np.arange(oh)[:, None] * kh + a // kw) * s.w + np.arange(ow)[None, :] * kw + a % kw
        return y, idx.astype(np.int64)

    def bwd(self, dy, idx):
        np, s = self.np, self.s
        dx = np.zeros((s.n * s.c, s.h * s.w), np.float32)
        # windows do not overlap, so every index is unique within its plane: plain assignment
        np.put_along_axis(dx, idx.reshape(s.n * s.c, -1), dy.reshape(s.n * s.c, -1), axis=1)
        return dx.reshape(s.x_shape)
