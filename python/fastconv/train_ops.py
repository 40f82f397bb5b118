"""The layer API's native training ops (fastconv.nn's front door to the compiled module, as ops.py
is for the conv and pool ops): Dense's GEMM, dropout, the Adam step.

    matmul(a, b, trans_a=False, trans_b=False, out=None)   op(a) @ op(b) on fastconv's thread pool
    dropout(x, keep, seed, out=None)                       x * mask / keep, the mask from the seed
    dropout_keep(shape, keep, seed)                        that mask's keep bits (uint8), any device
    adam_update(p, g, m, v, lr_t, beta_1, beta_2, epsilon) one Adam step in place, NumPy's roundings

Inputs are NumPy arrays; matmul and dropout convert them to C-contiguous float32 (adam_update
takes float32 C-contiguous arrays as they are: see nn.optimizers).
"""

from __future__ import annotations

import numpy as np

from . import _C

__all__ = ["adam_update", "dropout", "dropout_keep", "matmul"]


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
