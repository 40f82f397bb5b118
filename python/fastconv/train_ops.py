"""The layer API's native training ops (fastconv.nn's front door to the compiled module, as ops.py
is for the conv and pool ops): Dense's GEMM, dropout, the Adam step, the loss.

    matmul(a, b, trans_a=False, trans_b=False, out=None)   op(a) @ op(b) on fastconv's thread pool
    dropout(x, keep, seed, out=None)                       x * mask / keep, the mask from the seed
    dropout_keep(shape, keep, seed)                        that mask's keep bits (uint8), any device
    adam_update(p, g, m, v, lr_t, beta_1, beta_2, epsilon) one Adam step in place, NumPy's roundings
    sparse_softmax_xent(z, y, out=None)                    (mean loss, dz, correct) of softmax
                                                           cross-entropy on integer labels, one pass

Inputs are NumPy arrays; matmul and dropout convert them to C-contiguous float32 (adam_update
takes float32 C-contiguous arrays as they are: see nn.optimizers).
"""

from __future__ import annotations

import numpy as np

from . import _C

__all__ = ["adam_update", "dropout", "dropout_keep", "matmul", "sparse_softmax_xent"]


def matmul(a, b, trans_a=False, trans_b=False, out=None):
    a = np.ascontiguousarray(a, dtype=np.float32)
    b = np.ascontiguousarray(b, dtype=np.float32)
    return _C.matmul(a, b, trans_a, trans_b, out)


def dropout(x, keep, seed, out=None):
    return _C.dropout(np.ascontiguousarray(x, dtype=np.float32), keep, seed, out)


def dropout_keep(shape, keep, seed):
    return _C.dropout_keep(tuple(shape), keep, seed)


def adam_update(p, g, m, v, lr_t, beta_1, beta_2, epsilon):
    _C.adam_update(p, g, m, v, lr_t, beta_1, beta_2, epsilon)


def sparse_softmax_xent(z, y, out=None):
    """(mean loss, dz, correct) for float32 logits z (N, C) and integer labels y (N,) in [0, C):
    dz = (softmax(z) - onehot(y)) / N, correct = rows whose argmax is y (losses.py's fast path)."""
    return _C.sparse_softmax_xent(z, np.asarray(y, dtype=np.int64), out)
