"""The max-pool 2x2/2 backward tile writers (cpp/cpu/maxpool2d_bwd_tiles.inl) on every CPU path
that registers them (AVX2 and AVX-512): max_pool2d_backward from int64 indices and
relu_maxpool2d_backward from window codes, bit for bit against the NumPy reference, with the
outputs NaN-poisoned before each call (conftest's autouse debug poison).

The index writer checks that every index lies inside its own 2x2 tile and, when one does not, the
call's planes take the validating zero-fill + scatter instead: a foreign index anywhere (first,
middle or last window of a row, in a vector's tail lanes, first or last plane, odd sizes) must
give the reference's sum, and an index whose low 32 bits look right but whose high bits do not
must raise. The code writer must reject a code >= 8 wherever it sits, the call's last code
included (read byte by byte there).
"""

from __future__ import annotations

import fastconv
import numpy as np
import pytest
from conftest import assert_identical
from fastconv import reference as ref

# Output-row widths: below AVX2's 4 windows per vector, one vector, a vector plus a tail, AVX-512's
# 8 windows, two vectors plus a tail; H and W even or odd (floor-mode remainders).
WIDTHS = [4, 5, 7, 8, 9, 17]


def _shape(ow, odd):
    oh = 2 + ow % 3
    return (2, 3, 2 * oh + odd, 2 * ow + odd)


def _positions(shape):
    """(n, c, oy, ox) of windows to forge: the first and last plane, rows and columns, a middle one."""
    n, c, h, w = shape
    oh, ow = h // 2, w // 2
    return [
        (0, 0, 0, 0),
        (0, 0, 0, ow - 1),
        (n - 1, c - 1, oh - 1, ow - 1),
        (n - 1, c // 2, oh // 2, ow // 2),
        (0, c - 1, oh - 1, (ow - 1) // 2),
    ]


def _pool(rng, shape):
    x = rng.integers(-3, 4, shape).astype(np.float32)
    _, idx = fastconv.max_pool2d(x, 2, return_indices=True)
    dy = rng.uniform(-1, 1, idx.shape).astype(np.float32)
    return dy, idx


def _check(dy, idx, shape, what):
    assert_identical(
        fastconv.max_pool2d_backward(dy, idx, shape),
        ref.maxpool2d_bwd(dy, idx, shape).astype(np.float32),
        what,
    )


def test_tile_writer_is_taken_for_these_shapes(isa):
    want = "scatter" if isa == "portable" else "tiles"
    for ow in WIDTHS:
        for odd in (0, 1):
            assert fastconv.max_pool2d_algo("bwd", _shape(ow, odd), 2) == want, (ow, odd)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("odd", [0, 1])
@pytest.mark.parametrize("ow", WIDTHS)
def test_foreign_index_anywhere_falls_back(isa, rng, restore_threads, ow, odd, threads):
    fastconv.set_num_threads(threads)
    shape = _shape(ow, odd)
    w = shape[3]
    dy, idx = _pool(rng, shape)
    _check(dy, idx, shape, f"dx {shape}")
    for n, c, oy, ox in _positions(shape):
        own = idx[n, c, oy, ox]
        # the same cell of the window to the right (or left), a cell of the row below, and cell 0
        for other in (own + 2 if 2 * ox + 2 < w else own - 2, own + 2 * w, 0):
            if other == own or not 0 <= other < shape[2] * w:
                continue
            forged = idx.copy()
            forged[n, c, oy, ox] = other
            _check(dy, forged, shape, f"dx {shape}, window {(n, c, oy, ox)} -> cell {other}")


@pytest.mark.parametrize("ow", WIDTHS)
def test_index_with_wrong_high_bits_raises(isa, rng, ow):
    shape = _shape(ow, 1)
    dy, idx = _pool(rng, shape)
    for pos in _positions(shape):
        for far in (2**32, -(2**32), 2**62):
            forged = idx.copy()
            forged[pos] += far
            with pytest.raises(ValueError, match="indices"):
                fastconv.max_pool2d_backward(dy, forged, shape)


@pytest.mark.parametrize("odd", [0, 1])
@pytest.mark.parametrize("ow", WIDTHS)
def test_codes_writer_every_width(isa, rng, ow, odd):
    shape = _shape(ow, odd)
    pooled = (shape[0], shape[1], shape[2] // 2, shape[3] // 2)
    dy = rng.uniform(-1, 1, pooled).astype(np.float32)
    codes = rng.integers(0, 8, pooled).astype(np.uint8)
    assert_identical(
        fastconv.relu_maxpool2d_backward(dy, codes, shape),
        ref.relu_maxpool2d_backward(dy, codes, shape).astype(np.float32),
        f"dx {shape}",
    )
    for pos in _positions(shape):
        for bad in (8, 0x80, 0xFF):
            forged = codes.copy()
            forged[pos] = bad
            with pytest.raises(ValueError, match="codes"):
                fastconv.relu_maxpool2d_backward(dy, forged, shape)
