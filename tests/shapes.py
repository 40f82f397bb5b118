"""Named Conv2D and MaxPool2D problems shared by the test suite and the benchmarks.

Each problem names its intent (tails, strides, padding, a real layer from NETWORKS.md, ...), so a
failure or a benchmark line reads as "fails on tails.c19k23" rather than as a list of numbers.
Layout is NCHW: x is (N, C, H, W), w is (K, C/groups, KH, KW).

    CONV_SHAPES / POOL_SHAPES          everything, bench-sized layers included
    CONV_TEST / POOL_TEST              what the test suite runs (small; bench_only ones left out)
    CONV_LAYERS / POOL_LAYERS          the real layers at their training batch size (bench)
    NETWORK_CONV / NETWORK_POOL        the names of those NETWORKS.md itself has (no VGG, AlexNet, ...)
    conv(name) / pool(name)            look one up by name

This module imports only the standard library (no pytest, no numpy, no fastconv) so bench scripts
can load it standalone, e.g. `sys.path.insert(0, "tests"); import shapes`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


@dataclass(frozen=True)
class ConvShape:
    """One conv2d problem; padding is what the public API takes: int, (ph, pw), "same", "valid"."""

    name: str
    n: int
    c: int
    h: int
    w: int
    k: int
    kernel: tuple = (3, 3)
    stride: tuple = (1, 1)
    padding: object = 0
    dilation: tuple = (1, 1)
    groups: int = 1
    bias: bool = True
    bench_only: bool = False  # too big for the test suite's 3-minute budget; benchmarks only

    def __post_init__(self):
        object.__setattr__(self, "kernel", _pair(self.kernel))
        object.__setattr__(self, "stride", _pair(self.stride))
        object.__setattr__(self, "dilation", _pair(self.dilation))
        if not isinstance(self.padding, (int, str)):
            object.__setattr__(self, "padding", tuple(self.padding))

    @property
    def x_shape(self):
        return (self.n, self.c, self.h, self.w)

    @property
    def w_shape(self):
        return (self.k, self.c // self.groups, *self.kernel)

    @property
    def b_shape(self):
        return (self.k,) if self.bias else None

    def pads(self):
        """(top, bottom, left, right); "same" resolved as PyTorch does (extra at bottom/right)."""
        if self.padding == "valid":
            return (0, 0, 0, 0)
        if self.padding == "same":
            th = self.dilation[0] * (self.kernel[0] - 1)
            tw = self.dilation[1] * (self.kernel[1] - 1)
            return (th // 2, th - th // 2, tw // 2, tw - tw // 2)
        ph, pw = _pair(self.padding)
        return (ph, ph, pw, pw)

    @property
    def out_hw(self):
        pt, pb, pl, pr = self.pads()
        (kh, kw), (sh, sw), (dh, dw) = self.kernel, self.stride, self.dilation
        return (
            (self.h + pt + pb - dh * (kh - 1) - 1) // sh + 1,
            (self.w + pl + pr - dw * (kw - 1) - 1) // sw + 1,
        )

    @property
    def y_shape(self):
        return (self.n, self.k, *self.out_hw)

    def kwargs(self):
        """Keyword arguments for fastconv.conv2d / reference.conv2d_fwd (besides the arrays)."""
        return dict(
            stride=self.stride, padding=self.padding, dilation=self.dilation, groups=self.groups
        )

    def flops(self):
        """FLOPs of one pass: 2 * N * K * OH * OW * (C/groups) * KH * KW."""
        oh, ow = self.out_hw
        return (
            2
            * self.n
            * self.k
            * oh
            * ow
            * (self.c // self.groups)
            * self.kernel[0]
            * self.kernel[1]
        )

    def with_batch(self, n):
        return dataclasses.replace(self, name=f"{self.name}@n{n}", n=n, bench_only=False)

    def random_arrays(self, rng):
        """(x, w, b or None, dy) as float32, uniform in [-1, 1): one draw order for the GPU tests
        and the emulated ones, so a shape gives both the same problem."""
        x = rng.uniform(-1, 1, self.x_shape).astype("float32")
        w = rng.uniform(-1, 1, self.w_shape).astype("float32")
        b = rng.uniform(-1, 1, self.k).astype("float32") if self.bias else None
        dy = rng.uniform(-1, 1, self.y_shape).astype("float32")
        return x, w, b, dy

    def __str__(self):
        return self.name


@dataclass(frozen=True)
class PoolShape:
    """One max_pool2d problem. stride None means kernel_size, as in the public API."""

    name: str
    n: int
    c: int
    h: int
    w: int
    kernel: tuple = (2, 2)
    stride: object = None
    padding: object = 0
    bench_only: bool = False

    def __post_init__(self):
        object.__setattr__(self, "kernel", _pair(self.kernel))
        if self.stride is not None:
            object.__setattr__(self, "stride", _pair(self.stride))
        object.__setattr__(self, "padding", _pair(self.padding))

    @property
    def x_shape(self):
        return (self.n, self.c, self.h, self.w)

    @property
    def out_hw(self):
        (kh, kw), (ph, pw) = self.kernel, self.padding
        sh, sw = self.stride or self.kernel
        return ((self.h + 2 * ph - kh) // sh + 1, (self.w + 2 * pw - kw) // sw + 1)

    @property
    def y_shape(self):
        return (self.n, self.c, *self.out_hw)

    def kwargs(self):
        return dict(kernel_size=self.kernel, stride=self.stride, padding=self.padding)

    def with_batch(self, n):
        return dataclasses.replace(self, name=f"{self.name}@n{n}", n=n, bench_only=False)

    def __str__(self):
        return self.name


C = ConvShape
P = PoolShape

# ------------------------------------------------------------------------------------------------
# conv2d

# Channels / widths not a multiple of 8 (AVX2) or 16 (AVX-512): every vector loop's tail path.
CONV_TAILS = [
    C("tails.c1k1", 2, 1, 9, 9, 1),
    C("tails.c3k5", 2, 3, 11, 13, 5),
    C("tails.c7k9", 1, 7, 10, 17, 9),
    C("tails.c19k23", 2, 19, 13, 13, 23),
    C("tails.c8k8", 2, 8, 8, 8, 8),
    C("tails.c16k16", 1, 16, 16, 16, 16),
    C("tails.c17k15", 2, 17, 9, 15, 15),
    C("tails.c33k31.w31", 1, 33, 6, 31, 31),
    C("tails.w1", 2, 4, 12, 1, 6, kernel=(3, 1)),
    C("tails.h1", 2, 4, 1, 12, 6, kernel=(1, 3)),
    C("tails.w7.ow5", 3, 5, 7, 7, 7),
    C("tails.w9.ow7", 2, 6, 9, 9, 10),
    C("tails.w18.ow16", 2, 6, 5, 18, 10),
    C("tails.w19.ow17", 2, 6, 5, 19, 10),
    C("tails.w35.ow33", 1, 3, 4, 35, 17),
]

# Batch 1, odd spatial sizes, the kernel as big as the input (single output pixel), no bias.
CONV_EDGES = [
    C("edges.batch1", 1, 4, 8, 8, 4),
    C("edges.odd", 3, 5, 13, 7, 11, kernel=(3, 3)),
    C("edges.k_eq_h", 2, 3, 5, 5, 4, kernel=(5, 5)),
    C("edges.k_eq_hw_nonsq", 2, 3, 4, 7, 5, kernel=(4, 7)),
    C("edges.out1x1", 2, 6, 3, 3, 8),
    C("edges.nobias", 2, 5, 9, 9, 6, bias=False),
    C("edges.in1x1_k1", 4, 12, 1, 1, 10, kernel=1),
    C("edges.bigbatch", 33, 3, 6, 6, 5),
    C("edges.wide", 1, 3, 3, 1000, 5),
    C("edges.many_k", 1, 300, 5, 5, 257, kernel=1),
    C("edges.many_n_tiny", 64, 2, 4, 4, 3, kernel=2, stride=2),
    C("edges.dil10", 1, 2, 30, 30, 3, dilation=10),
    C("edges.k1_s4", 2, 5, 13, 13, 6, kernel=1, stride=4),
    C("edges.depthwise7_same", 2, 64, 7, 7, 64, kernel=7, padding="same", groups=64),
]

# Kernels 1x1 .. 11x11 and non-square ones.
CONV_KERNELS = [
    C("kernels.1x1", 2, 16, 7, 7, 24, kernel=1),
    C("kernels.2x2", 2, 5, 8, 8, 6, kernel=2),
    C("kernels.3x3", 2, 8, 10, 10, 8, kernel=3),
    C("kernels.4x4", 2, 3, 9, 9, 7, kernel=4),
    C("kernels.5x5", 2, 6, 12, 12, 10, kernel=5),
    C("kernels.7x7", 1, 3, 16, 16, 9, kernel=7),
    C("kernels.9x9", 1, 2, 15, 17, 5, kernel=9),
    C("kernels.11x11", 1, 3, 20, 20, 6, kernel=11),
    C("kernels.1x3", 2, 4, 8, 8, 6, kernel=(1, 3)),
    C("kernels.3x1", 2, 4, 8, 8, 6, kernel=(3, 1)),
    C("kernels.1x7", 1, 5, 9, 14, 4, kernel=(1, 7)),
    C("kernels.7x1", 1, 5, 14, 9, 4, kernel=(7, 1)),
    C("kernels.2x5", 2, 3, 9, 10, 5, kernel=(2, 5)),
]

# Strides 1..4, equal and unequal, some with the last window not reaching the border.
CONV_STRIDES = [
    C("strides.s2", 2, 4, 11, 11, 6, stride=2),
    C("strides.s3", 2, 3, 14, 13, 5, kernel=5, stride=3),
    C("strides.s4", 2, 3, 23, 23, 8, kernel=11, stride=4, padding=2),
    C("strides.s2x1", 2, 5, 10, 9, 7, stride=(2, 1)),
    C("strides.s1x3", 2, 5, 9, 16, 7, stride=(1, 3), padding=1),
    C("strides.s2.k1", 2, 9, 9, 9, 10, kernel=1, stride=2),
    C("strides.s3.k2", 1, 4, 12, 12, 4, kernel=2, stride=3),
]

# Explicit (symmetric), asymmetric (ph != pw), same (odd and even kernels), valid, pad > kernel/2.
CONV_PADDINGS = [
    C("padding.p1", 2, 4, 8, 8, 5, padding=1),
    C("padding.p2.k5", 2, 3, 9, 9, 4, kernel=5, padding=2),
    C("padding.pair1x2", 2, 4, 7, 9, 5, padding=(1, 2)),
    C("padding.pair0x3", 2, 4, 7, 9, 5, kernel=(3, 5), padding=(0, 3)),
    C("padding.same3", 2, 6, 10, 10, 6, padding="same"),
    C("padding.same5", 2, 3, 9, 11, 4, kernel=5, padding="same"),
    C("padding.same_even2", 2, 3, 8, 8, 4, kernel=2, padding="same"),
    C("padding.same_even4x2", 2, 3, 8, 9, 4, kernel=(4, 2), padding="same"),
    C("padding.same_dil2", 2, 3, 9, 9, 4, kernel=(2, 3), dilation=2, padding="same"),
    C("padding.valid", 2, 5, 10, 10, 6, padding="valid"),
    C("padding.big", 2, 3, 5, 5, 4, kernel=3, padding=3),
    C("padding.strided", 2, 4, 10, 10, 5, stride=2, padding=(2, 1)),
]

# Winograd F(2x2, 3x3) tile geometry (3x3, stride 1, even output): a tile row over several lane
# groups with a short last one (70 wide: 35 tiles = 16 + 16 + 3), exactly 16 tiles, blocks of
# several tile rows with a short last block, and asymmetric padding (bwd_data pads 0 and 2).
CONV_WINOGRAD = [
    C("winograd.wide", 1, 5, 12, 70, 17, padding=1),
    C("winograd.row16", 1, 3, 6, 32, 16, padding=1),
    C("winograd.blocks", 2, 18, 30, 10, 40, padding=1),
    C("winograd.pad2x0", 2, 6, 8, 12, 9, padding=(2, 0)),
    C("winograd.pair0x1", 2, 4, 10, 10, 6, padding=(0, 1)),
]

# Dilation, alone and with stride/padding.
CONV_DILATIONS = [
    C("dilation.d2", 2, 4, 11, 11, 5, dilation=2),
    C("dilation.d3.p3", 2, 3, 12, 12, 4, dilation=3, padding=3),
    C("dilation.d2x1", 2, 4, 10, 10, 5, dilation=(2, 1), padding=(2, 1)),
    C("dilation.d2.s2", 2, 4, 13, 13, 5, stride=2, dilation=2, padding=1),
    C("dilation.d4.k1x3", 1, 3, 7, 15, 3, kernel=(1, 3), dilation=4),
]

# Groups, incl. depthwise (groups = C) and depthwise with a channel multiplier (K = 2C).
CONV_GROUPS = [
    C("groups.g2", 2, 8, 9, 9, 6, groups=2),
    C("groups.g3.tails", 2, 9, 8, 8, 15, groups=3, padding=1),
    C("groups.g4.k1", 2, 16, 6, 6, 8, kernel=1, groups=4),
    C("groups.depthwise", 2, 12, 10, 10, 12, groups=12, padding=1),
    C("groups.depthwise17", 2, 17, 9, 9, 17, groups=17, padding=1),
    C("groups.depthwise_x2", 2, 6, 9, 9, 12, groups=6, stride=2),
    C("groups.depthwise_5x5_s2", 1, 32, 12, 12, 32, kernel=5, stride=2, padding=2, groups=32),
    C("groups.g2.dil2.s2", 2, 6, 12, 12, 4, groups=2, stride=2, dilation=2, padding=2),
]

# The real layers from NETWORKS.md at their training batch size (bench); tests run them at batch 2.
CONV_LAYERS = [
    C("cnn1.conv1", 100, 1, 28, 28, 20, kernel=5, padding=2),
    C("cnn1.conv2", 100, 20, 14, 14, 20, kernel=5, padding=2),
    C("keras.conv1", 200, 1, 28, 28, 75, kernel=5, padding="valid"),
    C("keras.conv2", 200, 75, 12, 12, 100, kernel=5, padding="valid"),
    C("fashion.conv1", 32, 1, 28, 28, 32, kernel=3, padding="same"),
    C("fashion.conv2", 32, 32, 14, 14, 64, kernel=3, padding="same"),
    C("lenet.conv1", 100, 1, 28, 28, 6, kernel=5, padding="same"),
    C("lenet.conv2", 100, 6, 14, 14, 16, kernel=5, padding="valid"),
    C("vgg.a", 8, 64, 56, 56, 64, kernel=3, padding=1, bench_only=True),
    C("vgg.b", 8, 128, 28, 28, 128, kernel=3, padding=1, bench_only=True),
    C("alexnet.conv1", 8, 3, 224, 224, 96, kernel=11, stride=4, padding=2, bench_only=True),
    C("alexnet.conv2", 8, 96, 27, 27, 256, kernel=5, padding=2, groups=2, bench_only=True),
    C("inception.1x1", 8, 192, 28, 28, 64, kernel=1, bench_only=True),
    C("inception.5x5", 8, 16, 28, 28, 32, kernel=5, padding=2, bench_only=True),
]

NETWORK_CONV = [s.name for s in CONV_LAYERS if not s.bench_only]

CONV_SHAPES = (
    CONV_TAILS
    + CONV_EDGES
    + CONV_KERNELS
    + CONV_STRIDES
    + CONV_PADDINGS
    + CONV_WINOGRAD
    + CONV_DILATIONS
    + CONV_GROUPS
    + CONV_LAYERS
)

# The test suite's list: the small problems as they are, the MNIST-size real layers at batch 2.
# The bench-only layers (VGG, AlexNet, Inception) are in CONV_BIG_TEST at batch 1 (a few seconds).
CONV_TEST = [s for s in CONV_SHAPES if s not in CONV_LAYERS] + [
    s.with_batch(2) for s in CONV_LAYERS if not s.bench_only
]
CONV_BIG_TEST = [s.with_batch(1) for s in CONV_LAYERS if s.bench_only]

# ------------------------------------------------------------------------------------------------
# max_pool2d

POOL_SHAPES = [
    P("pool.2x2", 2, 3, 8, 8, kernel=2),
    P("pool.2x2.odd", 2, 5, 9, 7, kernel=2),  # last row/column dropped (floor mode)
    P("pool.3x3s2", 2, 4, 13, 13, kernel=3, stride=2),  # overlapping (AlexNet)
    P("pool.3x3s2.p1", 2, 4, 12, 11, kernel=3, stride=2, padding=1),
    P("pool.3x3s1.same", 2, 6, 9, 9, kernel=3, stride=1, padding=1),  # Inception's pool branch
    P("pool.tails.c19", 2, 19, 10, 10, kernel=2),
    P("pool.tails.w35", 1, 3, 6, 35, kernel=2),
    P("pool.tails.c17.w9", 3, 17, 9, 9, kernel=3, stride=2),
    P("pool.nonsq", 2, 3, 12, 10, kernel=(3, 2), stride=(2, 1), padding=(1, 1)),
    P("pool.s_gt_k", 2, 3, 11, 11, kernel=2, stride=3),
    P("pool.k_eq_hw", 2, 5, 6, 6, kernel=6),  # global max pool
    P("pool.k1", 2, 3, 5, 5, kernel=1),
    P("pool.k5.p2", 1, 4, 9, 9, kernel=5, stride=2, padding=2),
    P("pool.batch1", 1, 8, 8, 8, kernel=2),
    P("pool.h1", 2, 4, 1, 9, kernel=(1, 3), stride=(1, 2)),
]

POOL_LAYERS = [
    P("cnn1.pool1", 100, 20, 28, 28, kernel=2, stride=2),
    P("cnn1.pool2", 100, 20, 14, 14, kernel=2, stride=2),
    P("keras.pool1", 200, 75, 24, 24, kernel=2),
    P("keras.pool2", 200, 100, 8, 8, kernel=2),
    P("fashion.pool1", 32, 32, 28, 28, kernel=2, stride=2),
    P("fashion.pool2", 32, 64, 14, 14, kernel=2, stride=2),
    P("lenet.pool1", 100, 6, 28, 28, kernel=2),
    P("lenet.pool2", 100, 16, 10, 10, kernel=2),
    P("vgg.pool", 8, 64, 56, 56, kernel=2, stride=2, bench_only=True),
    P("alexnet.pool1", 8, 96, 55, 55, kernel=3, stride=2, bench_only=True),
]

NETWORK_POOL = [s.name for s in POOL_LAYERS if not s.bench_only]

POOL_TEST = POOL_SHAPES + [s.with_batch(2) for s in POOL_LAYERS if not s.bench_only]
POOL_ALL = POOL_SHAPES + POOL_LAYERS

_BY_NAME = {s.name: s for s in CONV_SHAPES + CONV_TEST + CONV_BIG_TEST + POOL_ALL + POOL_TEST}


def conv(name):
    """The ConvShape called name (KeyError lists nothing; see CONV_SHAPES)."""
    s = _BY_NAME[name]
    assert isinstance(s, ConvShape), name
    return s


def pool(name):
    s = _BY_NAME[name]
    assert isinstance(s, PoolShape), name
    return s


def _check_unique():
    names = [s.name for s in CONV_SHAPES + POOL_ALL]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ValueError(f"duplicate shape names: {sorted(dup)}")


_check_unique()
