"""Cross-entropy losses, fused with the softmax (numerically stable log-sum-exp).

Both losses take logits z (N, classes) and return (mean loss, dz). When a model ends in a softmax
(Dense(10, activation="softmax") or Softmax()), Sequential hands the loss the pre-softmax values,
so softmax + cross-entropy is always one stable step whose gradient is (softmax(z) - y) / N; a
model without a final softmax is read as producing logits (Keras' from_logits=True).

``loss.with_accuracy(z, y)`` adds the count of rows whose argmax is the target (the training
step's accuracy metric). ``loss.device_sums(z, y)`` gives the same terms without reading anything
back to the host (summed loss and correct count as 0-d arrays of z's array module): the CUDA-graph
training step (nn/cuda_graph.py) accumulates them on the GPU and reads them once per epoch.
On float32 NumPy logits the sparse loss runs all three in one native pass
(fastconv.train_ops.sparse_softmax_xent, log-sum-exp in double); elsewhere NumPy/CuPy in the
logits' dtype.
"""

from __future__ import annotations

import numpy as np

from .. import train_ops
from .backend import get_array_module

__all__ = ["CategoricalCrossentropy", "Loss", "SparseCategoricalCrossentropy", "get"]


def _log_softmax(z, xp):
    m = z.max(axis=1, keepdims=True)
    s = z - m
    s -= xp.log(xp.exp(s).sum(axis=1, keepdims=True))
    return s


def _native(z, y):
    """True where train_ops.sparse_softmax_xent applies: float32 NumPy logits (N > 0, C), integer
    NumPy labels (N,)."""
    return (
        type(z) is np.ndarray
        and z.dtype == np.float32
        and z.ndim == 2
        and len(z) > 0
        and type(y) is np.ndarray
        and y.dtype.kind in "iu"
    )


class Loss:
    name = "loss"

    def __call__(self, z, y):
        """(mean loss as a Python float, dz with z's shape and dtype)."""
        raise NotImplementedError

    def labels(self, y):
        """Integer class labels of the targets y (for the accuracy metric)."""
        raise NotImplementedError

    def with_accuracy(self, z, y):
        """(mean loss, dz, count of rows whose argmax is the label) in one call."""
        loss, dz = self(z, y)
        return loss, dz, int((z.argmax(axis=1) == self.labels(y)).sum())

    def terms(self, z, y):
        """(summed loss as a 0-d array of z's module, dz) in z's dtype: no host read."""
        raise NotImplementedError

    def device_sums(self, z, y):
        """(summed loss, dz, correct count), the sums as 0-d arrays where z lives (no sync)."""
        total, dz = self.terms(z, y)
        return total, dz, (z.argmax(axis=1) == self.labels(y)).sum()

    def check_targets(self, y, n_classes):
        raise NotImplementedError


class SparseCategoricalCrossentropy(Loss):
    """Integer labels y (N,) in [0, classes)."""

    name = "sparse_categorical_crossentropy"

    def __call__(self, z, y):
        if _native(z, y):
            loss, dz, _ = train_ops.sparse_softmax_xent(z, y)
            return loss, dz
        total, dz = self.terms(z, y)
        return float(total) / z.shape[0], dz

    def terms(self, z, y):
        xp = get_array_module(z)
        n = z.shape[0]
        logp = _log_softmax(z, xp)
        rows = xp.arange(n)
        total = -logp[rows, y].sum()
        dz = xp.exp(logp)
        dz[rows, y] -= 1
        dz /= n
        return total, dz.astype(z.dtype, copy=False)

    def labels(self, y):
        return y

    def with_accuracy(self, z, y):
        if _native(z, y):
            return train_ops.sparse_softmax_xent(z, y)
        return super().with_accuracy(z, y)

    def check_targets(self, y, n_classes):
        if y.ndim != 1 or y.dtype.kind not in "iu":
            raise ValueError(
                f"y must be integer class labels (N,) for {self.name}, got {y.dtype} {y.shape}"
            )
        if y.size and (int(y.min()) < 0 or int(y.max()) >= n_classes):
            raise ValueError(
                f"y labels must lie in [0, {n_classes}), got [{int(y.min())}, {int(y.max())}]"
            )


class CategoricalCrossentropy(Loss):
    """One-hot (or soft) targets y (N, classes)."""

    name = "categorical_crossentropy"

    def __call__(self, z, y):
        total, dz = self.terms(z, y)
        return float(total) / z.shape[0], dz

    def terms(self, z, y):
        xp = get_array_module(z)
        n = z.shape[0]
        y = y.astype(z.dtype, copy=False)
        logp = _log_softmax(z, xp)
        total = -(y * logp).sum()
        dz = xp.exp(logp) * y.sum(axis=1, keepdims=True) - y
        dz /= n
        return total, dz.astype(z.dtype, copy=False)

    def labels(self, y):
        return y.argmax(axis=1)

    def check_targets(self, y, n_classes):
        if y.ndim != 2 or y.shape[1] != n_classes:
            raise ValueError(
                f"y must be one-hot (N, {n_classes}) for {self.name}, got shape {y.shape}"
            )


_LOSSES = {c.name: c for c in (SparseCategoricalCrossentropy, CategoricalCrossentropy)}


def get(loss):
    """A Loss from a name ("sparse_categorical_crossentropy", "categorical_crossentropy") or a Loss."""
    if isinstance(loss, Loss):
        return loss
    if isinstance(loss, str) and loss in _LOSSES:
        return _LOSSES[loss]()
    raise ValueError(f"loss must be one of {sorted(_LOSSES)} or a Loss, got {loss!r}")
