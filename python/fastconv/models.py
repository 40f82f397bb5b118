"""The networks of NETWORKS.md, built with fastconv.nn (NCHW), and the schedules they were trained with.

    model = fastconv.models.build("cnn1", seed=0)      # a compiled Sequential, input (1, 28, 28)
    cfg = fastconv.models.DEFAULTS["cnn1"]             # epochs, batch_size, optimizer, loss, dataset, ...

build() compiles each model with its documented optimizer and loss (Adam, softmax cross-entropy)
and metrics=["accuracy"]. Every ReLU follows the layer it is written after; "same" keeps H x W.
"""

from __future__ import annotations

from .nn import Conv2D, Dense, Dropout, Flatten, MaxPooling2D, Sequential, optimizers

__all__ = ["DEFAULTS", "NAMES", "PARAMS", "build", "layers"]


def _mlp(hidden):
    return lambda: [Flatten(), Dense(hidden, activation="relu"), Dense(10)]


def _cnn(extra):
    def make():
        return [
            Conv2D(20, 5, padding="same", activation="relu"),
            MaxPooling2D(2, strides=2),
            Conv2D(20, 5, padding="same", activation="relu"),
            MaxPooling2D(2, strides=2),
            Flatten(),
            *extra(),
        ]

    return make


_LAYERS = {
    "softmax": lambda: [Flatten(), Dense(10)],
    "mlp128": _mlp(128),
    "mlp256": _mlp(256),
    "mlp512": _mlp(512),
    "mlp1024": _mlp(1024),
    "mlp2048": _mlp(2048),
    "cnn1": _cnn(lambda: [Dense(10)]),
    "cnn2": _cnn(lambda: [Dense(100, activation="relu"), Dense(10)]),
    "keras_cnn": lambda: [
        Conv2D(75, 5, padding="valid", activation="relu"),
        MaxPooling2D(2),
        Dropout(0.2),
        Conv2D(100, 5, padding="valid", activation="relu"),
        MaxPooling2D(2),
        Dropout(0.2),
        Flatten(),
        Dense(500, activation="relu"),
        Dropout(0.5),
        Dense(10, activation="softmax"),
    ],
    "lenet5": lambda: [
        Conv2D(6, 5, padding="same", activation="relu"),
        MaxPooling2D(2),
        Conv2D(16, 5, padding="valid", activation="relu"),
        MaxPooling2D(2),
        Flatten(),
        Dense(120, activation="relu"),
        Dense(84, activation="relu"),
        Dense(10),
    ],
    "fashion_dense": lambda: [
        Flatten(),
        Dense(128, activation="relu"),
        Dense(10, activation="softmax"),
    ],
    "fashion_cnn": lambda: [
        Conv2D(32, 3, padding="same", activation="relu"),
        MaxPooling2D(2, strides=2),
        Conv2D(64, 3, padding="same", activation="relu"),
        MaxPooling2D(2, strides=2),
        Flatten(),
        Dense(128, activation="relu"),
        Dense(10, activation="softmax"),
    ],
}

NAMES = tuple(_LAYERS)

#: Parameter counts from NETWORKS.md.
PARAMS = {
    "softmax": 7850,
    "mlp128": 101770,
    "mlp256": 203530,
    "mlp512": 407050,
    "mlp1024": 814090,
    "mlp2048": 1628170,
    "cnn1": 20350,
    "cnn2": 109650,
    "keras_cnn": 995060,
    "lenet5": 61706,
    "fashion_dense": 101770,
    "fashion_cnn": 421642,
}

# Keras's defaults as the documents use them: Adam 1e-3, integer labels, no hold-out, no seed.
_ADAM = dict(
    optimizer="adam",
    learning_rate=1e-3,
    loss="sparse_categorical_crossentropy",
    validation_split=0.0,
    seed=None,
)

_STUDY = dict(
    _ADAM,
    dataset="mnist",
    epochs=30,
    batch_size=100,
    validation_split=5000 / 60000,
    source="NETWORKS.md A: 30 epochs, Adam, batch 100, 10 runs, trained on 55,000 images",
)

#: Training schedule per model (NETWORKS.md), plus the published test accuracy (None if none).
DEFAULTS = {
    "softmax": dict(_STUDY, published=0.9292),
    "mlp128": dict(_STUDY, published=0.9800),
    "mlp256": dict(_STUDY, published=0.9823),
    "mlp512": dict(_STUDY, published=0.9840),
    "mlp1024": dict(_STUDY, published=0.9850),
    "mlp2048": dict(_STUDY, published=0.9854),
    "cnn1": dict(_STUDY, published=0.9913),
    "cnn2": dict(_STUDY, published=0.9932),
    "keras_cnn": dict(
        dataset="mnist",
        epochs=10,
        batch_size=200,
        optimizer="adam",
        learning_rate=1e-3,
        loss="categorical_crossentropy",
        validation_split=0.2,
        seed=42,
        published=0.9941,
        source="NETWORKS.md B: Adam, categorical cross-entropy, batch 200, 10 epochs, "
        "validation_split 0.2, seed 42",
    ),
    "lenet5": dict(
        _ADAM,
        dataset="mnist",
        epochs=10,
        batch_size=100,
        published=0.99,
        source="NETWORKS.md D: no published schedule; classic result about 99%",
    ),
    "fashion_dense": dict(
        _ADAM,
        dataset="fashion",
        epochs=5,
        batch_size=32,
        published=0.878,
        source="NETWORKS.md C: 5 epochs, batch 32, shuffled",
    ),
    "fashion_cnn": dict(
        _ADAM,
        dataset="fashion",
        epochs=10,
        batch_size=32,
        published=0.91,
        source="NETWORKS.md C: 10 epochs, batch 32; about 91% test",
    ),
}


def layers(name):
    """Fresh (unbuilt) layers of the named network."""
    if name not in _LAYERS:
        raise ValueError(f"name must be one of {', '.join(NAMES)}; got {name!r}")
    return _LAYERS[name]()


def build(name, seed=None, device="cpu", compile=True, learning_rate=None):  # noqa: A002
    """The named network as a Sequential with input (1, 28, 28), NCHW, compiled with its
    documented optimizer and loss and metrics=["accuracy"] unless compile=False."""
    cfg = DEFAULTS.get(name)
    model = Sequential(layers(name), input_shape=(1, 28, 28), seed=seed, device=device, name=name)
    if compile:
        lr = cfg["learning_rate"] if learning_rate is None else learning_rate
        model.compile(optimizers.get(cfg["optimizer"], lr), cfg["loss"], metrics=["accuracy"])
    return model
