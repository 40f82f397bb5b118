"""Sequential: whole-model gradient check (cnn1), fit/evaluate/predict, seeds, weights files, errors."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from fastconv import models
from fastconv.nn import Adam, Conv2D, Dense, Dropout, Flatten, MaxPooling2D, Sequential

DATA = Path(
    os.environ.get("FASTCONV_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data"
)


def _toy(n=240, seed=0):
    """Separable 8x8 images: class k lights up quadrant k."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, size=n)
    x = rng.random((n, 1, 8, 8)).astype(np.float32) * 0.3
    for k in range(4):
        r, c = divmod(k, 2)
        x[y == k, 0, 4 * r : 4 * r + 4, 4 * c : 4 * c + 4] += 1.0
    return x, y


def _small_cnn(seed=0, device="cpu"):
    m = Sequential(
        [
            Conv2D(4, 3, padding="same", activation="relu"),
            MaxPooling2D(2),
            Flatten(),
            Dropout(0.1),
            Dense(4),
        ],
        input_shape=(1, 8, 8),
        seed=seed,
        device=device,
    )
    return m.compile(
        Adam(learning_rate=0.01), "sparse_categorical_crossentropy", metrics=["accuracy"]
    )


def test_cnn1_whole_model_gradient_check():
    rng = np.random.default_rng(3)
    model = models.build("cnn1", seed=0, device="reference")
    x = rng.random((2, 1, 28, 28))
    y = np.array([3, 7])
    model.loss_and_grads(x, y)
    grads = {
        (i, k): np.array(g) for i, layer in enumerate(model.layers) for k, g in layer.grads.items()
    }
    assert len(grads) == 6

    def loss():
        return model.loss_and_grads(x, y)[0]

    eps = 1e-6
    for (i, k), g in grads.items():
        p = model.layers[i].params[k]
        flat = rng.choice(p.size, size=min(8, p.size), replace=False)
        for j in flat:
            idx = np.unravel_index(j, p.shape)
            old = p[idx]
            p[idx] = old + eps
            fp = loss()
            p[idx] = old - eps
            fm = loss()
            p[idx] = old
            num = (fp - fm) / (2 * eps)
            assert abs(num - g[idx]) <= 1e-6 * (1 + abs(num)), (
                f"layer {i} {k}{idx}: {g[idx]} vs {num}"
            )


def test_fit_learns_and_history_keys():
    x, y = _toy()
    model = _small_cnn()
    hist = model.fit(x, y, batch_size=32, epochs=4, validation_split=0.25, seed=1, verbose=0)
    h = hist.history
    assert set(h) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert all(len(v) == 4 for v in h.values())
    assert h["loss"][-1] < h["loss"][0]
    assert h["val_accuracy"][-1] > 0.9
    assert hist.params["samples"] == 180
    assert hist.params["validation_samples"] == 60
    # validation_split holds out the *last* fraction, as Keras
    vl, va = model.evaluate(x[180:], y[180:])
    assert vl == pytest.approx(h["val_loss"][-1], rel=1e-5)
    assert va == h["val_accuracy"][-1]
    assert len(hist.epoch_seconds) == 4
    for layer in model.layers:
        for p in layer.params.values():
            assert p.dtype == np.float32


def test_seed_makes_runs_identical():
    x, y = _toy()
    w = []
    for _ in range(2):
        m = _small_cnn(seed=5)
        m.fit(x, y, batch_size=16, epochs=1, seed=9, verbose=0)
        w.append(m.get_weights())
    for a, b in zip(*w):
        np.testing.assert_array_equal(a, b)
    other = _small_cnn(seed=6).get_weights()
    assert not np.array_equal(other[0], _small_cnn(seed=5).get_weights()[0])


def test_evaluate_predict_and_nchw_input():
    x, y = _toy(64)
    model = Sequential([Flatten(), Dense(4, activation="softmax")], input_shape=(1, 8, 8), seed=0)
    model.compile("sgd", "categorical_crossentropy", metrics=["accuracy"])
    onehot = np.eye(4, dtype=np.float32)[y]
    model.fit(x[:, 0], onehot, batch_size=8, epochs=2, verbose=0)  # (N, H, W) gets the channel axis
    p = model.predict(x)
    assert p.shape == (64, 4)
    assert p.dtype == np.float32
    np.testing.assert_allclose(
        p.sum(axis=1), 1, rtol=1e-5
    )  # the final softmax is applied in predict
    loss, acc = model.evaluate(x, onehot)
    assert 0 <= acc <= 1
    assert loss > 0
    assert acc == pytest.approx(np.mean(p.argmax(1) == y))
    model.compile("adam", "categorical_crossentropy")
    assert isinstance(model.evaluate(x, onehot), float)


def test_save_and_load_weights(tmp_path):
    x, _ = _toy(16)
    a, b = _small_cnn(seed=1), _small_cnn(seed=2)
    path = tmp_path / "w.npz"
    a.save_weights(path)
    b.load_weights(path)
    np.testing.assert_array_equal(a.predict(x), b.predict(x))
    other = Sequential(
        [Conv2D(5, 3, padding="same"), MaxPooling2D(2), Flatten(), Dense(4)], input_shape=(1, 8, 8)
    )
    with pytest.raises(ValueError, match=r"conv2d.*kernel.*\(4, 1, 3, 3\).*\(5, 1, 3, 3\)"):
        other.load_weights(path)
    fewer = Sequential([Flatten(), Dense(4)], input_shape=(1, 8, 8))
    with pytest.raises(ValueError, match=r"no layer for.*conv2d\.bias"):
        fewer.load_weights(path)
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="bad.npz"):
        a.load_weights(tmp_path / "bad.npz")


def test_summary_and_count_params():
    model = _small_cnn()
    lines = []
    model.summary(print_fn=lines.append)
    text = lines[0]
    assert "conv2d (Conv2D)" in text
    assert "(None, 4, 8, 8)" in text
    assert "dense (Dense)" in text
    assert f"Total params: {model.count_params():,}" in text
    assert model.count_params() == (9 + 1) * 4 + 64 * 4 + 4


def test_argument_errors():
    x, y = _toy(32)
    model = _small_cnn()
    with pytest.raises(ValueError, match="batch_size"):
        model.fit(x, y, batch_size=0, verbose=0)
    with pytest.raises(ValueError, match="epochs"):
        model.fit(x, y, epochs=0, verbose=0)
    with pytest.raises(ValueError, match="validation_split"):
        model.fit(x, y, validation_split=1.0, verbose=0)
    with pytest.raises(ValueError, match="x must be"):
        model.fit(np.zeros((4, 3, 8, 8), np.float32), y[:4], verbose=0)
    with pytest.raises(ValueError, match="y"):
        model.fit(x, y[:5], verbose=0)
    with pytest.raises(ValueError, match="labels"):
        model.fit(x, y + 10, verbose=0)
    with pytest.raises(ValueError, match="metrics"):
        model.compile("adam", "sparse_categorical_crossentropy", metrics=["mae"])
    with pytest.raises(TypeError, match="layers"):
        Sequential(["conv"])
    with pytest.raises(ValueError, match="compile"):
        Sequential([Flatten(), Dense(2)], input_shape=(4,)).fit(np.zeros((2, 4)), [0, 1], verbose=0)


@pytest.mark.skipif(not (DATA / "mnist").is_dir(), reason=f"no MNIST copy at {DATA}")
def test_mnist_smoke_cnn1_subset():
    """cnn1 on 2,000 real MNIST images for one epoch: far above chance (10%) on 1,000 test images."""
    from fastconv import datasets

    (x, y), (xt, yt) = datasets.load_mnist(path=DATA)
    model = models.build("cnn1", seed=0)
    model.fit(x[:2000], y[:2000], batch_size=20, epochs=1, seed=0, verbose=0)
    _, acc = model.evaluate(xt[:1000], yt[:1000])
    assert acc > 0.7
