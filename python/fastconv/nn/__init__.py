"""fastconv.nn: a Keras-like layer API (NCHW, channels first) over fastconv's native kernels.

    from fastconv.nn import Sequential, Conv2D, MaxPooling2D, Flatten, Dense
    model = Sequential([Conv2D(20, 5, padding="same", activation="relu"), MaxPooling2D(2),
                        Flatten(), Dense(10)], input_shape=(1, 28, 28))
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])

Modules: layers (Conv2D, MaxPooling2D, AveragePooling2D, Dense, Flatten, Dropout, ReLU, Activation,
Softmax), losses (fused softmax cross-entropy), optimizers (Adam, SGD), model (Sequential, History),
backend (where arrays and kernels come from: "cpu", "reference", "cuda" (CuPy + fastconv's CUDA
kernels, fastconv.nn.cuda; model.to("cuda") or device="cuda"), or a registered one).
"""

from . import losses, optimizers
from .backend import Backend, available_backends, get_array_module, get_backend, register_backend
from .history import History
from .layers import (
    Activation,
    AveragePooling2D,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    Layer,
    MaxPool2D,
    MaxPooling2D,
    ReLU,
    Softmax,
)
from .losses import CategoricalCrossentropy, SparseCategoricalCrossentropy
from .model import Sequential
from .optimizers import SGD, Adam

__all__ = [
    "SGD",
    "Activation",
    "Adam",
    "AveragePooling2D",
    "Backend",
    "CategoricalCrossentropy",
    "Conv2D",
    "Dense",
    "Dropout",
    "Flatten",
    "History",
    "Layer",
    "MaxPool2D",
    "MaxPooling2D",
    "ReLU",
    "Sequential",
    "Softmax",
    "SparseCategoricalCrossentropy",
    "available_backends",
    "get_array_module",
    "get_backend",
    "losses",
    "optimizers",
    "register_backend",
]
