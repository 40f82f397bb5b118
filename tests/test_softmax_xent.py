"""The native sparse softmax cross-entropy (_C.sparse_softmax_xent) and the loss's choice of it.

It must give the float64 formula's loss and gradient (to float32 rounding), NumPy's argmax rule for
the accuracy count (first maximum; a NaN wins), NaN/inf as NumPy propagates them, and refuse bad
labels and shapes with ValueError; the loss uses it only for float32 NumPy logits and integer
labels, so the other backends keep the NumPy formula.
"""

from __future__ import annotations

import numpy as np
import pytest
from fastconv import train_ops
from fastconv.nn import losses


def _reference(z, y):
    z = z.astype(np.float64)
    s = z - z.max(axis=1, keepdims=True)
    logp = s - np.log(np.exp(s).sum(axis=1, keepdims=True))
    rows = np.arange(len(z))
    dz = np.exp(logp)
    dz[rows, y] -= 1
    return -logp[rows, y].mean(), dz / len(z), int((z.argmax(axis=1) == y).sum())


@pytest.mark.parametrize(("n", "c", "scale"), [(1, 1, 1.0), (100, 10, 4.0), (37, 3, 30.0)])
@pytest.mark.parametrize("label_dtype", [np.int64, np.int32, np.uint8])
def test_matches_float64_reference(rng, n, c, scale, label_dtype):
    z = rng.standard_normal((n, c), dtype=np.float32) * np.float32(scale)
    y = rng.integers(0, c, n).astype(label_dtype)
    loss, dz, correct = train_ops.sparse_softmax_xent(z, y)
    ref_loss, ref_dz, ref_correct = _reference(z, y.astype(np.int64))
    assert loss == pytest.approx(ref_loss, rel=1e-12, abs=1e-12)
    assert dz.dtype == np.float32
    assert dz.shape == z.shape
    np.testing.assert_allclose(dz, ref_dz, rtol=1e-6, atol=1e-9)
    assert correct == ref_correct


def test_argmax_rule_and_nonfinite():
    nan, inf = np.nan, np.inf
    z = np.array(
        [[1, 3, 3], [2, nan, 5], [nan, nan, 0], [0, -inf, -1], [inf, 0, 0], [-inf, -inf, -inf]],
        dtype=np.float32,
    )
    y = np.array([2, 1, 0, 0, 0, 0])
    loss, dz, correct = train_ops.sparse_softmax_xent(z, y)
    # argmax: the first of the equal maxima (row 0: 1, not the label 2); the first NaN (rows 1, 2)
    assert correct == int((z.argmax(axis=1) == y).sum()) == 5
    assert np.isnan(loss)  # NaN rows, an inf logit and an all -inf row give NaN, as NumPy
    assert np.all(np.isnan(dz[[1, 2, 4, 5]]))
    # a finite row is unaffected by the others (its gradient is / N = 6)
    np.testing.assert_allclose(dz[3], _reference(z[3:4], y[3:4])[1][0] / 6, rtol=1e-6)


def test_out_and_views(rng):
    z = rng.standard_normal((20, 12), dtype=np.float32)[:, ::2]  # a strided view: copied in
    y = rng.integers(0, 6, 20)
    out = np.full(z.shape, np.nan, np.float32)
    loss, dz, _ = train_ops.sparse_softmax_xent(z, y, out=out)
    assert dz is out
    np.testing.assert_allclose(out, _reference(z, y)[1], rtol=1e-6, atol=1e-9)
    assert loss == pytest.approx(_reference(z, y)[0], rel=1e-12)


def test_refuses_bad_arguments(rng):
    z = rng.standard_normal((4, 3), dtype=np.float32)
    with pytest.raises(ValueError, match=r"y labels must lie in \[0, 3\), got 3 at row 1"):
        train_ops.sparse_softmax_xent(z, np.array([0, 3, 1, 2]))
    with pytest.raises(ValueError, match=r"got -1 at row 0"):
        train_ops.sparse_softmax_xent(z, np.array([-1, 0, 1, 2]))
    with pytest.raises(ValueError, match="y must be 1-D with z's 4 rows"):
        train_ops.sparse_softmax_xent(z, np.array([0, 1]))
    with pytest.raises(ValueError, match="z must be 2-D"):
        train_ops.sparse_softmax_xent(z[0], np.array([0]))
    with pytest.raises(TypeError, match="z must be a float32 array"):
        train_ops.sparse_softmax_xent(z.astype(np.float64), np.arange(4) % 3)
    with pytest.raises(ValueError, match="out must have shape"):
        train_ops.sparse_softmax_xent(z, np.arange(4) % 3, out=np.empty((3, 4), np.float32))
    with pytest.raises(ValueError, match="out must not share memory"):
        train_ops.sparse_softmax_xent(z, np.arange(4) % 3, out=z)


def test_loss_uses_native_only_for_float32_numpy(rng, monkeypatch):
    z = rng.standard_normal((8, 5), dtype=np.float32)
    y = rng.integers(0, 5, 8)
    loss_fn = losses.get("sparse_categorical_crossentropy")
    native = loss_fn.with_accuracy(z, y)
    calls = []
    monkeypatch.setattr(
        train_ops, "sparse_softmax_xent", lambda *a: calls.append(1) or native, raising=True
    )
    loss_fn(z, y)
    loss_fn.with_accuracy(z, y)
    assert len(calls) == 2
    z64 = z.astype(np.float64)  # the reference backend's dtype: NumPy formula, float64 throughout
    loss64, dz64, correct64 = loss_fn.with_accuracy(z64, y)
    assert len(calls) == 2
    assert dz64.dtype == np.float64
    assert loss64 == pytest.approx(native[0], rel=1e-6)
    np.testing.assert_allclose(dz64, native[1], rtol=1e-5, atol=1e-8)
    assert correct64 == native[2]
