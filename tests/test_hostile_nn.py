"""The layer API under bad input: empty data, bad arguments, labels out of range, NaN/Inf, wrong
shapes, bad layer constructor arguments, compile() never called. Each case raises ValueError or
TypeError naming the argument, and leaves the model's weights as they were."""

from __future__ import annotations

import numpy as np
import pytest
from fastconv.nn import Conv2D, Dense, Dropout, Flatten, MaxPooling2D, Sequential


def _model(seed=0, loss="sparse_categorical_crossentropy"):
    return Sequential(
        [Conv2D(4, 3, padding="same", activation="relu"), MaxPooling2D(2), Flatten(), Dense(4)],
        input_shape=(1, 8, 8),
        seed=seed,
    ).compile("adam", loss, metrics=["accuracy"])


_RNG = np.random.default_rng(0)
X = _RNG.random((12, 1, 8, 8), dtype=np.float32)
Y = np.arange(12) % 4
X0 = np.zeros((0, 1, 8, 8), np.float32)
Y0 = np.zeros(0, np.int64)


def _with(a, index, value):
    a = a.copy()
    a[index] = value
    return a


_FIT_CASES = {
    "empty": (dict(x=X0, y=Y0), ValueError, r"x holds no samples \(shape \(0, 1, 8, 8\)\): fit"),
    "split-leaves-no-validation": (
        dict(x=X[:1], y=Y[:1], validation_split=0.5),
        ValueError,
        "validation_split=0.5 of 1 samples leaves 0 for training",
    ),
    "split-leaves-no-training": (
        dict(x=X[:3], y=Y[:3], validation_split=0.9),
        ValueError,
        "leaves 0 for training and 3 for validation",
    ),
    "split-nan": (dict(validation_split=float("nan")), ValueError, "validation_split"),
    "batch-size-0": (dict(batch_size=0), ValueError, "batch_size must be an int >= 1, got 0"),
    "batch-size-float": (dict(batch_size=2.0), ValueError, "batch_size must be an int"),
    "batch-size-bool": (dict(batch_size=True), ValueError, "batch_size must be an int"),
    "epochs-negative": (dict(epochs=-1), ValueError, "epochs must be an int >= 1, got -1"),
    "seed-negative": (dict(seed=-1), ValueError, "seed must be an int >= 0"),
    "verbose": (dict(verbose=3), ValueError, "verbose must be 0, 1 or 2"),
    "shuffle-str": (dict(shuffle="yes"), TypeError, "shuffle must be a bool"),
    "lengths": (dict(y=Y[:5]), ValueError, r"y must have one target per sample \(12\)"),
    "y-scalar": (dict(y=np.int64(3)), ValueError, "y must have one target per sample"),
    "label-too-big": (dict(y=_with(Y, 3, 4)), ValueError, r"labels must lie in \[0, 4\), got"),
    "label-negative": (dict(y=_with(Y, 0, -1)), ValueError, r"labels must lie in \[0, 4\)"),
    "label-float": (dict(y=Y.astype(float)), ValueError, "integer class labels"),
    "label-2d": (dict(y=Y[:, None]), ValueError, "integer class labels"),
    "x-nan": (dict(x=_with(X, (5, 0, 2, 3), np.nan)), ValueError, r"x holds NaN.*\(5, 0, 2, 3\)"),
    "x-inf": (dict(x=_with(X, (0, 0, 0, 0), -np.inf)), ValueError, "x holds NaN or Inf"),
    "x-shape": (dict(x=X[:, :, :7]), ValueError, r"x must be \(N, 1, 8, 8\) \(NCHW\)"),
    "x-nhwc": (dict(x=X.transpose(0, 2, 3, 1)), ValueError, r"x must be \(N, 1, 8, 8\)"),
    "x-str": (dict(x="images"), TypeError, "x must be a numeric array"),
    "x-complex": (dict(x=X.astype(complex)), TypeError, "x must be a numeric array"),
    "validation-data-empty": (
        dict(validation_data=(X0, Y0)),
        ValueError,
        "validation_data x holds no samples",
    ),
    "validation-data-labels": (
        dict(validation_data=(X, Y + 4)),
        ValueError,
        r"labels must lie in \[0, 4\)",
    ),
    "validation-data-nan": (
        dict(validation_data=(_with(X, 0, np.nan), Y)),
        ValueError,
        "validation_data x holds NaN",
    ),
    "validation-data-shape": (
        dict(validation_data=(X[:, :, :4], Y)),
        ValueError,
        "validation_data x must be",
    ),
    "validation-data-not-pair": (dict(validation_data=X), ValueError, "validation_data"),
}


@pytest.mark.parametrize("case", sorted(_FIT_CASES))
def test_fit_refuses_and_leaves_the_weights(case):
    kw, error, match = _FIT_CASES[case]
    kw = dict(dict(x=X, y=Y, verbose=0), **kw)
    model = _model()
    before = model.get_weights()
    with pytest.raises(error, match=match):
        model.fit(**kw)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


def test_one_hot_targets_checked():
    model = _model(loss="categorical_crossentropy")
    onehot = np.eye(4, dtype=np.float32)[Y]
    with pytest.raises(ValueError, match=r"one-hot \(N, 4\)"):
        model.fit(X, onehot[:, :3], verbose=0)
    with pytest.raises(ValueError, match=r"y holds NaN.*\(2, 1\)"):
        model.fit(X, _with(onehot, (2, 1), np.nan), verbose=0)
    with pytest.raises(ValueError, match="y holds NaN"):
        model.evaluate(X, _with(onehot, (2, 1), np.inf))


@pytest.mark.parametrize(
    ("kw", "error", "match"),
    [
        (dict(x=X0, y=Y0), ValueError, "x holds no samples .*evaluate"),
        (dict(y=Y[:3]), ValueError, "one target per sample"),
        (dict(y=_with(Y, 1, 9)), ValueError, r"labels must lie in \[0, 4\)"),
        (dict(x=_with(X, 1, np.nan)), ValueError, "x holds NaN"),
        (dict(batch_size=0), ValueError, "batch_size"),
    ],
    ids=["empty", "lengths", "label", "nan", "batch-size"],
)
def test_evaluate_refuses(kw, error, match):
    with pytest.raises(error, match=match):
        _model().evaluate(**dict(dict(x=X, y=Y), **kw))


def test_predict_empty_gives_an_empty_result_and_nan_propagates():
    model = _model()
    out = model.predict(X0)
    assert out.shape == (0, 4)
    assert out.dtype == np.float32
    assert model.predict(X[:, 0][:0]).shape == (0, 4)  # (N, H, W) images too
    y = model.predict(_with(X[:2], (1, 0, 0, 0), np.nan))
    assert np.isfinite(y[0]).all()
    assert np.isnan(y[1]).any()
    with pytest.raises(ValueError, match="batch_size"):
        model.predict(X, batch_size=-1)
    with pytest.raises(ValueError, match=r"x must be \(N, 1, 8, 8\)"):
        model.predict(np.zeros(64, np.float32))


def test_compile_never_called():
    model = Sequential([Flatten(), Dense(2)], input_shape=(4,))
    for call in (lambda: model.fit(np.zeros((2, 4)), [0, 1], verbose=0),
                 lambda: model.evaluate(np.zeros((2, 4)), [0, 1])):  # fmt: skip
        with pytest.raises(ValueError, match=r"compile\(\) the model"):
            call()
    assert model.predict(np.zeros((2, 4))).shape == (2, 2)  # predict needs no loss (as Keras)


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: Conv2D(0, 3), ValueError, "filters must be a positive int, got 0"),
        (lambda: Conv2D(2.5, 3), ValueError, "filters must be a positive int"),
        (lambda: Conv2D(2, -1), ValueError, "kernel_size must be a positive int, got -1"),
        (lambda: Conv2D(2, (3, 3, 3)), ValueError, "kernel_size must be an int or a pair"),
        (lambda: Conv2D(2, 3, strides=0), ValueError, "strides must be a positive int"),
        (lambda: Conv2D(2, 3, padding=-1), ValueError, "padding must be"),
        (lambda: Conv2D(2, 3, padding=1.5), ValueError, "padding must be"),
        (lambda: Conv2D(2, 3, padding=(1, "a")), ValueError, "padding must be"),
        (lambda: Conv2D(2, 3, padding="full"), ValueError, "padding must be"),
        (lambda: Conv2D(2, 3, padding="same", strides=2), ValueError, "needs strides=1"),
        (lambda: Conv2D(3, 3, groups=2), ValueError, "divisible by groups"),
        (lambda: Conv2D(2, 3, activation="tanh"), ValueError, "activation must be one of"),
        (lambda: Conv2D(2, 3, use_bias="yes"), TypeError, "use_bias must be a bool"),
        (lambda: Dense(0), ValueError, "units must be a positive int, got 0"),
        (lambda: Dense(-3), ValueError, "units must be a positive int"),
        (lambda: Dense(3, activation="sigmoid"), ValueError, "activation must be one of"),
        (lambda: Dropout(1.5), ValueError, r"rate must be a float in \[0, 1\), got 1.5"),
        (lambda: Dropout(1.0), ValueError, "rate must be a float"),
        (lambda: Dropout(float("nan")), ValueError, "rate must be a float"),
        (lambda: Dropout("0.5"), ValueError, "rate must be a float"),
        (lambda: MaxPooling2D(0), ValueError, "pool_size must be a positive int, got 0"),
        (lambda: MaxPooling2D(2, strides=-1), ValueError, "strides must be a positive int"),
        (lambda: MaxPooling2D(2, padding="full"), ValueError, "padding must be"),
        (lambda: Flatten(name=3), TypeError, "name must be a str"),
    ],
)
def test_layer_constructors_refuse(make, error, match):
    with pytest.raises(error, match=match):
        make()


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: _model().compile("rmsprop"), ValueError, "optimizer must be 'adam', 'sgd'"),
        (lambda: _model().compile("adam", "mse"), ValueError, "loss must be one of"),
        (lambda: _model().compile("adam", metrics=["mae"]), ValueError, "metrics may only"),
        (lambda: Sequential(["conv"]), TypeError, "layers must be fastconv.nn layers"),
        (lambda: Sequential(seed=-1), ValueError, "seed must be an int >= 0"),
        (lambda: Sequential([Dense(2)], input_shape=(0,)), ValueError, "input_shape"),
        (lambda: Sequential([Dense(2)], input_shape=(8.5,)), ValueError, "input_shape"),
        (lambda: Sequential([Dense(2)]).build((8.5,)), ValueError, "input_shape"),
        (lambda: Sequential([Dense(2)]).build((-1,)), ValueError, "input_shape"),
        (lambda: Sequential([Dense(2)]).build(()), ValueError, "input_shape"),
        (lambda: Sequential([Dense(2)]).build(4), ValueError, "input_shape"),
        (lambda: Sequential([], input_shape=(4,)).build(), ValueError, "no layers"),
        (lambda: Sequential([Dense(2)], input_shape=(1, 8, 8)), ValueError, "put a Flatten"),
        (
            lambda: Sequential([Conv2D(2, 9)], input_shape=(1, 8, 8)),
            ValueError,
            "does not fit input",
        ),
        (lambda: Sequential([Dense(2)], device="tpu"), ValueError, "tpu"),
    ],
)
def test_model_construction_refuses(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_valid_calls_unchanged_by_the_checks():
    """The checks only read: two identical runs give identical weights, and fit's inputs are
    left as they were."""
    x, y = X.copy(), Y.copy()
    a, b = _model(3), _model(3)
    a.fit(x, y, batch_size=4, epochs=2, validation_split=0.25, seed=1, verbose=0)
    b.fit(X, Y, batch_size=4, epochs=2, validation_split=0.25, seed=1, verbose=0)
    assert all(np.array_equal(p, q) for p, q in zip(a.get_weights(), b.get_weights()))
    assert np.array_equal(x, X)
    assert np.array_equal(y, Y)


def test_low_level_entry_points_refuse():
    model = _model()
    with pytest.raises(ValueError, match="x holds no samples .*loss_and_grads"):
        model.loss_and_grads(X0, Y0)
    xb = X[:4]
    for x, y, match in (
        (X0, Y0, "at least one sample"),
        (xb, Y[:3], "one target per sample"),
        (xb, np.int64(1), "one target per sample"),
        (xb, np.array([0, 1, 2, 4]), r"labels must lie in \[0, 4\)"),
        (xb, np.array([0, -1, 2, 3]), r"labels must lie in \[0, 4\)"),
    ):
        with pytest.raises(ValueError, match=match):
            model.train_on_batch(x, y)
    with pytest.raises(ValueError, match="compile"):
        Sequential([Flatten(), Dense(2)], input_shape=(4,)).train_on_batch(X[:2, 0, 0, :4], Y[:2])
    with pytest.raises(ValueError, match=r"backward\(\) needs a forward\(\) first"):
        Dense(3).backward(np.zeros((2, 3), np.float32))


def test_a_layer_too_large_for_memory_is_named():
    with pytest.raises(MemoryError, match=r"layer 'dense' \(Dense\) on input \(64,\)"):
        Sequential([Flatten(), Dense(2**31 - 1)], input_shape=(1, 8, 8))
