"""Cross-entropy losses, fused with the softmax (numerically stable log-sum-exp).

Both losses take logits z (N, classes) and return (mean loss, dz). When a model ends in a softmax
(Dense(10, activation="softmax") or Softmax()), Sequential hands the loss the pre-softmax values,
so softmax + cross-entropy is always one stable step whose gradient is (softmax(z) - y) / N; a
model without a final softmax is read as producing logits (Keras' from_logits=True).
"""

from __future__ import annotations

from .backend import get_array_module

__all__ = ["CategoricalCrossentropy", "Loss", "SparseCategoricalCrossentropy", "get"]


def _log_softmax(z, xp):
    m = z.max(axis=1, keepdims=True)
    s = z - m
    s -= xp.log(xp.exp(s).sum(axis=1, keepdims=True))
    return s


class Loss:
    name = "loss"

    def __call__(self, z, y):
        """(mean loss as a Python float, dz with z's shape and dtype)."""
        raise NotImplementedError

    def labels(self, y):
        """Integer class labels of the targets y (for the accuracy metric)."""
        raise NotImplementedError

    def check_targets(self, y, n_classes):
        raise NotImplementedError


class SparseCategoricalCrossentropy(Loss):
    """Integer labels y (N,) in [0, classes)."""

    name = "sparse_categorical_crossentropy"

    def __call__(self, z, y):
        xp = get_array_module(z)
        n = z.shape[0]
        logp = _log_softmax(z, xp)
        rows = xp.arange(n)
        loss = -float(logp[rows, y].sum()) / n
        dz = xp.exp(logp)
        dz[rows, y] -= 1
        dz /= n
        return loss, dz.astype(z.dtype, copy=False)

    def labels(self, y):
        return y

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
        xp = get_array_module(z)
        n = z.shape[0]
        y = y.astype(z.dtype, copy=False)
        logp = _log_softmax(z, xp)
        loss = -float((y * logp).sum()) / n
        dz = xp.exp(logp) * y.sum(axis=1, keepdims=True) - y
        dz /= n
        return loss, dz.astype(z.dtype, copy=False)

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
