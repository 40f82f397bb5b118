"""max_pool2d's dilation and ceil_mode (PyTorch's meaning; CPU kernels, every CPU path).

Values and indices exactly equal to the float64 reference (and the reference to PyTorch where it
is installed), the backward through those indices, the output-size rule of ceil_mode (the last
window must start inside the input or its top/left padding), and the refusals: padding="same"
with either, a dilated window that misses the input entirely, a non-bool ceil_mode.
"""

from __future__ import annotations

import fastconv
import numpy as np
import pytest
from conftest import assert_identical
from fastconv import reference as ref

# (name, x_shape, kernel, stride, padding, dilation, ceil_mode)
CASES = [
    ("ceil_k2s2_odd", (2, 3, 7, 9), 2, 2, 0, 1, True),
    ("ceil_k3s2p1", (1, 2, 8, 8), 3, 2, 1, 1, True),
    ("ceil_last_window_dropped", (1, 1, 5, 5), 2, 3, 1, 1, True),
    ("dil2_k3", (2, 2, 9, 11), 3, 1, 0, 2, False),
    ("dil_rect_pad", (1, 3, 10, 12), (3, 2), (2, 1), (1, 1), (2, 3), False),
    ("dil3_ceil", (2, 2, 11, 13), 3, 2, 1, 3, True),
    ("dil2_k2s2_not_the_fast_path", (1, 4, 12, 12), 2, 2, 0, 2, False),
    ("window_larger_than_input_ceil", (1, 1, 5, 6), 3, 3, 0, 3, True),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_forward_and_backward_match_reference(case, rng, isa):
    _, xs, k, s, p, d, ceil = case
    x = rng.standard_normal(xs).astype(np.float32)
    x.flat[:: max(1, x.size // 7)] = np.nan  # NaN wins, the first one
    x.reshape(-1)[3::5] = 0.5  # ties: the first in row-major window order wins
    y, idx = fastconv.max_pool2d(x, k, s, p, True, dilation=d, ceil_mode=ceil)
    want_y, want_idx = ref.maxpool2d_fwd(x, k, s, p, d, ceil)
    assert_identical(y, want_y.astype(np.float32), "output")
    assert_identical(idx, want_idx, "indices")
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = fastconv.max_pool2d_backward(dy, idx, x.shape)
    np.testing.assert_allclose(dx, ref.maxpool2d_bwd(dy, idx, x.shape), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_reference_matches_torch(case, rng):
    torch = pytest.importorskip("torch", reason="cross-check against PyTorch needs torch")
    _, xs, k, s, p, d, ceil = case
    x = rng.standard_normal(xs)
    y, idx = ref.maxpool2d_fwd(x, k, s, p, d, ceil)
    want = torch.nn.functional.max_pool2d(
        torch.from_numpy(x), k, s, p, d, ceil_mode=ceil, return_indices=True
    )
    assert_identical(y, want[0].numpy(), "output")
    assert_identical(idx, want[1].numpy(), "indices")


def test_ceil_mode_output_size():
    assert ref.maxpool2d_out_size((7, 9), 2, ceil_mode=True) == (4, 5)
    assert ref.maxpool2d_out_size((5, 5), 2, 3, 1, ceil_mode=True) == (
        2,
        2,
    )  # 3rd would start in pad
    assert ref.maxpool2d_out_size((9, 11), 3, 1, 0, 2) == (5, 7)
    x = np.zeros((1, 1, 7, 9), np.float32)
    assert fastconv.max_pool2d(x, 2, ceil_mode=True).shape == (1, 1, 4, 5)


def test_refusals():
    x = np.zeros((1, 1, 8, 8), np.float32)
    with pytest.raises(ValueError, match="dilation and ceil_mode need explicit"):
        fastconv.max_pool2d(x, 3, 1, "same", dilation=2)
    with pytest.raises(ValueError, match="dilation and ceil_mode need explicit"):
        fastconv.max_pool2d(x, 3, 2, "same", ceil_mode=True)
    with pytest.raises(ValueError, match="dilation"):
        fastconv.max_pool2d(x, 3, dilation=0)
    with pytest.raises(TypeError, match="ceil_mode"):
        fastconv.max_pool2d(x, 2, ceil_mode="yes")
    with pytest.raises(ValueError, match="larger than the padded input"):
        fastconv.max_pool2d(x, 3, dilation=4)  # span 9 > 8
    with pytest.raises(ValueError, match="without any input cell"):
        fastconv.max_pool2d(np.zeros((1, 1, 2, 9), np.float32), 2, 1, 1, dilation=3)


def pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


@pytest.mark.gpu
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_cuda_matches_cpu_bit_for_bit(case, rng):
    """The CUDA max-pool's dilation and ceil_mode: values, indices and the gather backward (given
    the geometry) equal the CPU's bit for bit; the atomic scatter (without it) within 1e-6."""
    cp = pytest.importorskip("cupy", reason="the GPU path needs CuPy")
    from fastconv import _cuda_ops

    _, xs, k, s, p, d, ceil = case
    x = rng.standard_normal(xs).astype(np.float32)
    x.flat[:: max(1, x.size // 7)] = np.nan
    x.reshape(-1)[3::5] = 0.5
    y, idx = fastconv.max_pool2d(x, k, s, p, True, dilation=d, ceil_mode=ceil)
    gy, gidx = fastconv.max_pool2d(cp.asarray(x), k, s, p, True, dilation=d, ceil_mode=ceil)
    assert_identical(cp.asnumpy(gy), y, "output")
    assert_identical(cp.asnumpy(gidx), idx, "indices")
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = fastconv.max_pool2d_backward(dy, idx, x.shape)
    gather = _cuda_ops.maxpool2d_bwd(
        cp.asarray(dy), gidx, x.shape, kernel=pair(k), stride=pair(s), pad_mode="explicit",
        pad=pair(p), dilation=pair(d), ceil_mode=ceil,
    )  # fmt: skip
    assert_identical(cp.asnumpy(gather), dx, "dx (gather: bit-identical to the CPU)")
    scatter = fastconv.max_pool2d_backward(cp.asarray(dy), gidx, x.shape)
    np.testing.assert_allclose(cp.asnumpy(scatter), dx, rtol=1e-6, atol=1e-6)
