"""out= buffers of the functional API, and the layers' reuse of them inside a training step.

An out= array is written in place and returned; it must give bit-identical results to a fresh
result (NaN-filled first, so an unwritten element shows), and every way it can be wrong (shape,
dtype, order, read-only, overlapping an input, not an array) is refused before anything runs.
"""

from __future__ import annotations

import fastconv
import numpy as np
import pytest
from conftest import assert_identical
from fastconv import models
from fastconv.nn import backend as nn_backend

# (x shape, w shape, conv kwargs): a direct-kernel, a GEMM-path (stride 2) and a grouped layer
CONVS = [
    ((3, 4, 11, 9), (6, 4, 3, 3), dict(padding=1)),
    ((2, 5, 13, 12), (7, 5, 3, 2), dict(stride=2, padding=(1, 0))),
    ((1, 6, 10, 10), (6, 2, 5, 5), dict(padding="same", groups=3)),
]


def _poisoned(shape, dtype=np.float32):
    a = np.empty(shape, dtype)
    a.fill(np.nan if dtype == np.float32 else -7)
    return a


@pytest.mark.parametrize("case", range(len(CONVS)))
def test_conv_out_bit_identical(isa, rng, case):
    xs, ws, kw = CONVS[case]
    x = rng.standard_normal(xs, dtype=np.float32)
    w = rng.standard_normal(ws, dtype=np.float32)
    b = rng.standard_normal(ws[0], dtype=np.float32)
    y = fastconv.conv2d(x, w, b, activation="relu", **kw)
    out = _poisoned(y.shape)
    assert fastconv.conv2d(x, w, b, activation="relu", out=out, **kw) is out
    assert_identical(out, y, "conv2d out=")

    dy = rng.standard_normal(y.shape, dtype=np.float32)
    dx = fastconv.conv2d_bwd_data(dy, w, xs, **kw)
    out = _poisoned(xs)
    assert fastconv.conv2d_bwd_data(dy, w, xs, out=out, **kw) is out
    assert_identical(out, dx, "conv2d_bwd_data out=")

    dw, db = fastconv.conv2d_bwd_weights(dy, x, ws, **kw)
    ow, ob = _poisoned(ws), _poisoned(ws[0])
    rw, rb = fastconv.conv2d_bwd_weights(dy, x, ws, out=(ow, ob), **kw)
    assert rw is ow
    assert rb is ob
    assert_identical(ow, dw, "grad_weight out=")
    assert_identical(ob, db, "grad_bias out=")
    # either buffer may be left to the function
    rw, rb = fastconv.conv2d_bwd_weights(dy, x, ws, out=(None, _poisoned(ws[0])), **kw)
    assert_identical(rw, dw, "grad_weight fresh")
    assert_identical(rb, db, "grad_bias out= alone")


@pytest.mark.parametrize(
    "geometry", [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1)]
)
def test_pool_out_bit_identical(isa, rng, geometry):
    x = rng.standard_normal((3, 4, 12, 11), dtype=np.float32)
    y, idx = fastconv.max_pool2d(x, return_indices=True, **geometry)
    oy, oi = _poisoned(y.shape), _poisoned(y.shape, np.int64)
    ry, ri = fastconv.max_pool2d(x, return_indices=True, out=(oy, oi), **geometry)
    assert ry is oy
    assert ri is oi
    assert_identical(oy, y, "max_pool2d out=")
    assert_identical(oi, idx, "max_pool2d indices out=")
    assert_identical(
        fastconv.max_pool2d(x, out=(_poisoned(y.shape), None), **geometry), y, "y only"
    )

    dy = rng.standard_normal(y.shape, dtype=np.float32)
    dx = fastconv.max_pool2d_backward(dy, idx, x.shape)
    out = _poisoned(x.shape)
    assert fastconv.max_pool2d_backward(dy, idx, x.shape, out=out) is out
    assert_identical(out, dx, "max_pool2d_backward out=")


def test_zero_batch_out(isa):
    x = np.zeros((0, 2, 6, 6), np.float32)
    w = np.ones((3, 2, 3, 3), np.float32)
    out = np.empty((0, 3, 4, 4), np.float32)
    assert fastconv.conv2d(x, w, out=out) is out
    ow, ob = _poisoned(w.shape), _poisoned(3)
    fastconv.conv2d_bwd_weights(out, x, w.shape, out=(ow, ob))
    assert not ow.any()
    assert not ob.any()


def _conv_args(rng):
    x = rng.standard_normal((2, 3, 8, 8), dtype=np.float32)
    w = rng.standard_normal((4, 3, 3, 3), dtype=np.float32)
    return x, w


@pytest.mark.parametrize(
    ("bad", "exc", "match"),
    [
        (
            lambda: np.empty((2, 4, 6, 5), np.float32),
            ValueError,
            r"out must have shape \(2, 4, 6, 6\)",
        ),
        (lambda: np.empty((2, 4, 6, 6), np.float64), TypeError, "out must be a float32 array"),
        (lambda: np.empty((2, 4, 6, 12), np.float32)[..., ::2], ValueError, "C-contiguous"),
        (lambda: np.empty((2, 4, 6, 6), np.float32).tolist(), TypeError, "NumPy array or None"),
    ],
)
def test_bad_out_refused(rng, bad, exc, match):
    x, w = _conv_args(rng)
    with pytest.raises(exc, match=match):
        fastconv.conv2d(x, w, out=bad())


def test_read_only_and_overlapping_out_refused(rng):
    x, w = _conv_args(rng)
    ro = np.empty((2, 4, 6, 6), np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="out must be writeable"):
        fastconv.conv2d(x, w, out=ro)
    # an out that shares memory with an input would be read while written
    buf = rng.standard_normal(x.size, dtype=np.float32)
    before = buf.copy()
    dy = buf[: 2 * 4 * 6 * 6].reshape(2, 4, 6, 6)
    with pytest.raises(ValueError, match="out must not share memory with an input"):
        fastconv.conv2d_bwd_data(dy, w, x.shape, out=buf.reshape(x.shape))
    assert_identical(buf, before, "input left unmodified")


def test_out_pairs_checked(rng):
    x, w = _conv_args(rng)
    y, idx = fastconv.max_pool2d(x, 2, return_indices=True)
    with pytest.raises(TypeError, match=r"out\[1\] \(indices\) must be a int64 array"):
        fastconv.max_pool2d(x, 2, out=(np.empty_like(y), np.empty(idx.shape, np.int32)))
    with pytest.raises(TypeError, match=r"out must be a \(output, indices\) tuple"):
        fastconv.max_pool2d(x, 2, out=np.empty_like(y))
    dy = np.ones((2, 4, 6, 6), np.float32)
    with pytest.raises(ValueError, match=r"out\[1\] \(grad_bias\) must have shape \(4\)"):
        fastconv.conv2d_bwd_weights(dy, x, w.shape, out=(None, np.empty(5, np.float32)))
    with pytest.raises(ValueError, match="with_bias is False"):
        fastconv.conv2d_bwd_weights(
            dy, x, w.shape, with_bias=False, out=(None, np.empty(4, np.float32))
        )


# ---- the layers ---------------------------------------------------------------------------------


def _fit(name, rng_seed, reuse, monkeypatch):
    monkeypatch.setattr(nn_backend.get_backend("cpu"), "out_buffers", reuse)
    rng = np.random.default_rng(rng_seed)
    x = rng.random((64, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, 64)
    model = models.build(name, seed=3)
    if model.loss.name == "categorical_crossentropy":
        y = np.eye(10, dtype=np.float32)[y]
    hist = model.fit(x, y, batch_size=16, epochs=2, seed=4, verbose=0)
    return model, hist, x


@pytest.mark.parametrize("name", ["cnn1", "keras_cnn", "lenet5"])
def test_fit_with_reused_buffers_is_bit_identical(name, monkeypatch):
    """Reusing the layers' arrays between steps changes no bit of the training run."""
    fresh, h_fresh, _ = _fit(name, 0, False, monkeypatch)
    reused, h_reused, x = _fit(name, 0, True, monkeypatch)
    assert h_reused.history["loss"] == h_fresh.history["loss"]
    for a, b in zip(reused.get_weights(), fresh.get_weights()):
        assert_identical(a, b, f"{name} weights")
    # buffers exist after fit, and nothing the user gets back aliases them
    bufs = [a for layer in reused.layers for a in layer._buffers.values()]
    assert bufs, "fit did not use out= buffers"
    assert all(not layer.reuse_buffers for layer in reused.layers)
    p = reused.predict(x[:16])
    loss, logits = reused.loss_and_grads(
        x[:16],
        np.zeros(16, np.int64)
        if name != "keras_cnn"
        else np.eye(10, dtype=np.float32)[np.zeros(16, int)],
    )
    for a in bufs:
        assert not np.shares_memory(a, p)
        assert not np.shares_memory(a, logits)
