"""Optimizers over layer parameters: Adam (Keras defaults) and SGD (momentum, Nesterov, weight decay).

step(pairs) takes a list of (key, param, grad) and updates each param in place, in its own dtype
(float32 stays float32). The state (moments, velocities) is kept per key, created on first use
with the array module of the parameter, so it lives wherever the parameters live. Adam on float32
C-contiguous NumPy arrays runs fastconv.train_ops.adam_update: the same formula and float32 roundings in
one threaded pass.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from .. import train_ops

__all__ = ["SGD", "Adam", "Optimizer", "get"]


def _number(value, name, low=0.0, high=None, low_open=False):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r}")
    v = float(value)
    if (
        not math.isfinite(v)
        or v < low
        or (low_open and v == low)
        or (high is not None and v >= high)
    ):
        raise ValueError(f"{name} out of range, got {name}={value!r}")
    return v


class Optimizer:
    def __init__(self):
        self.state = {}
        self.iterations = 0

    def step(self, pairs):
        self.iterations += 1
        for key, p, g in pairs:
            if g is not None:
                self._update(key, p, g)

    def _update(self, key, p, g):
        raise NotImplementedError

    def reset(self):
        """Forget the state (moments, velocities) and the step count."""
        self.state = {}
        self.iterations = 0

    def move_state(self, convert):
        """Apply convert to every state array (Sequential.to: move the moments along with the
        parameters, so training continues where it stopped on the other device)."""
        self.state = {
            k: tuple(convert(a) for a in st) if isinstance(st, tuple) else convert(st)
            for k, st in self.state.items()
        }


class Adam(Optimizer):
    """Adam as Keras computes it: lr_t = lr * sqrt(1 - b2^t) / (1 - b1^t);
    p -= lr_t * m / (sqrt(v) + epsilon). Defaults are Keras': 1e-3, 0.9, 0.999, 1e-7."""

    def __init__(self, learning_rate=1e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
        super().__init__()
        self.learning_rate = _number(learning_rate, "learning_rate", low_open=True)
        self.beta_1 = _number(beta_1, "beta_1", high=1.0)
        self.beta_2 = _number(beta_2, "beta_2", high=1.0)
        self.epsilon = _number(epsilon, "epsilon")

    def lr_at(self, t):
        """The bias-corrected step size lr_t of step t (1-based), in double: the one formula for
        step() and for the CUDA-graph step's per-epoch table (nn/cuda_graph.py)."""
        return self.learning_rate * math.sqrt(1.0 - self.beta_2**t) / (1.0 - self.beta_1**t)

    def step(self, pairs):
        self._lr_t = self.lr_at(self.iterations + 1)
        super().step(pairs)

    def _update(self, key, p, g):
        st = self.state.get(key)
        if st is None:
            st = self.state[key] = (p * 0, p * 0)
        m, v = st
        if _native_f32(p, g, m, v):  # one threaded pass instead of ~8 NumPy passes, same bits
            train_ops.adam_update(p, g, m, v, self._lr_t, self.beta_1, self.beta_2, self.epsilon)
            return
        t = p.dtype.type
        m *= t(self.beta_1)
        m += t(1.0 - self.beta_1) * g
        v *= t(self.beta_2)
        v += t(1.0 - self.beta_2) * (g * g)
        p -= t(self._lr_t) * m / (v**0.5 + t(self.epsilon))


def _native_f32(*arrays):
    """True when every array is a float32 C-contiguous NumPy array (what train_ops.adam_update takes)."""
    return all(
        type(a) is np.ndarray and a.dtype == np.float32 and a.flags.c_contiguous for a in arrays
    )


class SGD(Optimizer):
    """SGD with optional momentum (Keras form: v = momentum*v - lr*g; p += v), Nesterov
    (p += momentum*v - lr*g) and weight decay (L2: g += weight_decay * p, on every parameter)."""

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, weight_decay=0.0, lr=None):
        super().__init__()
        if lr is not None:
            learning_rate = lr
        self.learning_rate = _number(learning_rate, "learning_rate", low_open=True)
        self.momentum = _number(momentum, "momentum", high=1.0)
        if not isinstance(nesterov, bool):
            raise TypeError(f"nesterov must be a bool, got {nesterov!r}")
        self.nesterov = nesterov
        self.weight_decay = _number(weight_decay, "weight_decay")

    def _update(self, key, p, g):
        t = p.dtype.type
        lr = t(self.learning_rate)
        if self.weight_decay:
            g = g + t(self.weight_decay) * p
        if not self.momentum:
            p -= lr * g
            return
        v = self.state.get(key)
        if v is None:
            v = self.state[key] = p * 0
        v *= t(self.momentum)
        v -= lr * g
        if self.nesterov:
            p += t(self.momentum) * v - lr * g
        else:
            p += v


def get(optimizer, learning_rate=None):
    """An Optimizer from "adam"/"sgd" (with an optional learning_rate) or an Optimizer."""
    if isinstance(optimizer, Optimizer):
        return optimizer
    kw = {} if learning_rate is None else {"learning_rate": learning_rate}
    if optimizer == "adam":
        return Adam(**kw)
    if optimizer == "sgd":
        return SGD(**kw)
    raise ValueError(f"optimizer must be 'adam', 'sgd' or an Optimizer, got {optimizer!r}")
