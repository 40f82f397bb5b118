"""The layer API's fused Conv2D(relu) + MaxPooling2D(2) pair (Sequential.build, Conv2D.call).

On the CPU backend the pair runs as conv2d_relu_maxpool2d and its backward ops; these tests check
that it changes nothing a user can see: the same weights after training, bit for bit, as the
two-layer path (the backend's conv_relu_pool switched off), the same gradients as the float64
reference backend within float32 tolerance, and that only the geometry it handles is paired.
"""

from __future__ import annotations

import numpy as np
import pytest
from fastconv import models
from fastconv.nn import (
    Adam,
    Conv2D,
    Dense,
    Flatten,
    MaxPooling2D,
    Sequential,
)
from fastconv.nn import (
    backend as nn_backend,
)


@pytest.fixture
def unfused_cpu():
    """A context switch: inside `with unfused_cpu():` the CPU backend runs the two-layer path."""
    be = nn_backend.get_backend("cpu")
    saved = be.conv_relu_pool

    class _Off:
        def __enter__(self):
            be.conv_relu_pool = None

        def __exit__(self, *exc):
            be.conv_relu_pool = saved

    yield _Off
    be.conv_relu_pool = saved


def _train(name, x, y, steps=3, batch=16):
    m = models.build(name, seed=0)
    if m.loss.name == "categorical_crossentropy":
        y = np.eye(10, dtype=np.float32)[y]
    m.fit(
        x[: steps * batch], y[: steps * batch], batch_size=batch, epochs=1, verbose=0, shuffle=False
    )
    return [w.copy() for w in m.get_weights()], m.predict(x[:8])


@pytest.mark.parametrize("name", ["cnn1", "keras_cnn", "lenet5", "fashion_cnn"])
def test_fused_pair_trains_bit_identically(name, unfused_cpu):
    rng = np.random.default_rng(0)
    x = rng.random((48, 1, 28, 28)).astype(np.float32)
    x[x < 0.5] = 0.0  # MNIST-like: many exact zeros, so many all-zero (tied) windows after ReLU
    y = rng.integers(0, 10, 48)
    fused_w, fused_p = _train(name, x, y)
    with unfused_cpu():
        plain_w, plain_p = _train(name, x, y)
    assert len(fused_w) == len(plain_w)
    for a, b in zip(fused_w, plain_w):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(fused_p, plain_p)


def _pair_model(pool, conv_act="relu", device="cpu", padding="same", hw=9):
    return Sequential(
        [Conv2D(3, 3, padding=padding, activation=conv_act), pool, Flatten(), Dense(5)],
        input_shape=(2, hw, hw),
        seed=1,
        device=device,
    ).compile(Adam(), "sparse_categorical_crossentropy")


def test_pairing_rules():
    assert _pair_model(MaxPooling2D(2)).layers[0].pool_partner is not None
    assert _pair_model(MaxPooling2D((2, 2), strides=2)).layers[0].pool_partner is not None
    assert _pair_model(MaxPooling2D(2, strides=1)).layers[0].pool_partner is None
    assert _pair_model(MaxPooling2D(3)).layers[0].pool_partner is None
    assert _pair_model(MaxPooling2D(2, padding="same")).layers[0].pool_partner is None
    assert _pair_model(MaxPooling2D(2), conv_act=None).layers[0].pool_partner is None


@pytest.mark.parametrize("hw", [8, 9])  # 9: the conv output is odd, the pool floors it
def test_fused_pair_gradients_match_reference(hw):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 2, hw, hw))
    y = np.array([0, 3, 4])
    grads = {}
    for device in ("cpu", "reference"):
        m = _pair_model(MaxPooling2D(2), device=device, hw=hw)
        m.layers[0].need_input_grad = True  # also run the unpool + bwd_data branch
        m.loss_and_grads(x, y)
        grads[device] = [np.array(g) for layer in m.layers for g in layer.grads.values()]
    for g32, g64 in zip(grads["cpu"], grads["reference"]):
        np.testing.assert_allclose(g32, g64, rtol=2e-4, atol=2e-5)


def test_first_layer_takes_fused_weight_gradient(monkeypatch):
    from fastconv import ops  # the CPU backend's front door to the native ops

    calls = []
    orig = ops.conv2d_relu_maxpool2d_bwd_weights

    def spy(*a, **k):
        calls.append(1)
        return orig(*a, **k)

    monkeypatch.setattr(ops, "conv2d_relu_maxpool2d_bwd_weights", spy)
    m = _pair_model(MaxPooling2D(2))
    m.loss_and_grads(np.random.default_rng(0).random((2, 2, 9, 9)), np.array([1, 2]))
    assert calls == [1]


def test_pool_layer_alone_still_pools():
    """The pool layer passes through only the array its partner produced."""
    m = _pair_model(MaxPooling2D(2))
    x = np.random.default_rng(0).random((2, 2, 9, 9)).astype(np.float32)
    m.predict(x)
    pool = m.layers[1]
    z = np.random.default_rng(1).random((2, 3, 8, 8)).astype(np.float32)
    out = pool.forward(z)
    assert out.shape == (2, 3, 4, 4)
    np.testing.assert_array_equal(out, z.reshape(2, 3, 4, 2, 4, 2).max(axis=(3, 5)))


def test_other_backends_keep_the_two_layer_path():
    m = _pair_model(MaxPooling2D(2), device="reference")
    assert m.backend.conv_relu_pool is None
    out = m.predict(np.random.default_rng(0).random((2, 2, 9, 9)))
    assert out.shape == (2, 5)
