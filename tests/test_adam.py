"""The fused native Adam step (_C.adam_update) and Adam's choice between it and NumPy.

The native step must give the NumPy float32 formula's bits (same operations, same roundings, no
fused multiply-adds), at any thread count; Adam must use it only for float32 C-contiguous NumPy
arrays and fall back to NumPy otherwise; bad arrays are refused before anything is written.
"""

from __future__ import annotations

import fastconv
import numpy as np
import pytest
from conftest import assert_close, assert_identical
from fastconv import _C
from fastconv.nn import optimizers
from fastconv.nn.optimizers import Adam

SHAPES = [(1,), (7,), (75, 1, 5, 5), (1600, 500), (16384 * 2 + 3,)]
HYPER = dict(lr_t=3e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-7)


def _numpy_adam(p, g, m, v, lr_t, beta_1, beta_2, epsilon):
    """optimizers.Adam._update's NumPy formula, in float32."""
    t = np.float32
    m *= t(beta_1)
    m += t(1.0 - beta_1) * g
    v *= t(beta_2)
    v += t(1.0 - beta_2) * (g * g)
    p -= t(lr_t) * m / (v**0.5 + t(epsilon))


def _state(rng, shape):
    p = rng.standard_normal(shape, dtype=np.float32)
    m = rng.standard_normal(shape, dtype=np.float32) * np.float32(0.1)
    v = np.abs(rng.standard_normal(shape, dtype=np.float32)) * np.float32(0.01)
    v.reshape(-1)[:1] = 0  # sqrt(0) + epsilon
    return p, m, v


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_matches_numpy_formula(rng, shape):
    p, m, v = _state(rng, shape)
    ref = [a.copy() for a in (p, m, v)]
    for step in range(3):
        g = rng.standard_normal(shape, dtype=np.float32) * np.float32(10.0**-step)
        g0 = g.copy()
        _C.adam_update(p, g, m, v, **HYPER)
        _numpy_adam(*ref[:1], g, *ref[1:], **HYPER)
        assert_identical(g, g0, "g after the update")
        for name, a, r in zip("pmv", (p, m, v), ref):
            assert_close(a, r, 0.0, 1e-6, f"{name} after step {step}")
            assert_identical(a, r, f"{name} after step {step} (same roundings as NumPy)")


def test_independent_of_thread_count(rng):
    before = fastconv.get_num_threads()
    shape = (3 * 16384 + 5,)
    g = rng.standard_normal(shape, dtype=np.float32)
    init = _state(rng, shape)
    outs = []
    try:
        for t in (1, 2, 3):
            fastconv.set_num_threads(t)
            p, m, v = (a.copy() for a in init)
            _C.adam_update(p, g, m, v, **HYPER)
            outs.append((p, m, v))
    finally:
        fastconv.set_num_threads(before)
    for out in outs[1:]:
        for a, b in zip(out, outs[0]):
            assert_identical(a, b)


def test_optimizer_native_and_numpy_paths_agree(rng, monkeypatch):
    """Adam.step on float32 arrays (native) and on the same values where NumPy must run."""
    shapes = [(20, 1, 5, 5), (20,), (320, 10)]
    params = [rng.standard_normal(s, dtype=np.float32) for s in shapes]
    grads = [[rng.standard_normal(s, dtype=np.float32) for s in shapes] for _ in range(4)]
    calls = []
    monkeypatch.setattr(optimizers, "train_ops", _Spy(calls))
    native, numpy_ = Adam(learning_rate=0.01), Adam(learning_rate=0.01)
    p_native = [p.copy() for p in params]
    # non-contiguous views of the same values: Adam falls back to its NumPy code for them
    p_views = [np.repeat(p[..., None], 2, axis=-1)[..., 0] for p in params]
    g_views = [[np.repeat(g[..., None], 2, axis=-1)[..., 0] for g in gs] for gs in grads]
    for step in range(4):
        native.step([(i, p, g) for i, (p, g) in enumerate(zip(p_native, grads[step]))])
        n_native = len(calls)
        numpy_.step([(i, p, g) for i, (p, g) in enumerate(zip(p_views, g_views[step]))])
        assert len(calls) == n_native, "the NumPy path called the native update"
    assert len(calls) == 4 * len(shapes)
    for a, b in zip(p_native, p_views):
        assert_identical(a, b, "native vs NumPy Adam")


class _Spy:
    def __init__(self, calls):
        self.calls = calls

    def adam_update(self, *args):
        self.calls.append(args)
        return _C.adam_update(*args)


def test_float64_parameters_use_numpy(rng):
    p = rng.standard_normal(10)
    g = rng.standard_normal(10)
    opt = Adam()
    opt.step([("k", p, g)])
    assert opt.state["k"][0].dtype == np.float64  # moments follow the parameter


def _args(rng, n=12):
    p, m, v = _state(rng, (n,))
    return dict(p=p, g=rng.standard_normal(n, dtype=np.float32), m=m, v=v)


@pytest.mark.parametrize(
    ("change", "exc", "match"),
    [
        (lambda a: a.update(p=a["p"].astype(np.float64)), ValueError, "p must be a float32"),
        (lambda a: a.update(m=a["m"].astype(np.float64)), ValueError, "m must be a float32"),
        (lambda a: a.update(g=a["g"].astype(np.float64)), TypeError, "g must be a float32"),
        (lambda a: a.update(g=a["g"][:6]), ValueError, r"g must have p's shape \(12,\)"),
        (lambda a: a.update(v=a["v"].reshape(3, 4)), ValueError, r"v must have shape \(12\)"),
        (lambda a: a.update(m=np.empty(24, np.float32)[::2]), ValueError, "m must be C-contiguous"),
        (lambda a: a.update(m=a["p"]), ValueError, "m must not share memory"),
        (lambda a: a.update(v=a["g"]), ValueError, "v must not share memory"),
        (lambda a: a.update(p=a["g"]), ValueError, "p must not share memory"),
        (lambda a: a["v"].setflags(write=False), ValueError, "v must be writeable"),
        (lambda a: a.update(beta_1=1.0), ValueError, "beta_1"),
        (lambda a: a.update(beta_2=-0.1), ValueError, "beta_2"),
        (lambda a: a.update(epsilon=-1e-7), ValueError, "epsilon"),
        (lambda a: a.update(lr_t=float("nan")), ValueError, "lr_t"),
    ],
)
def test_bad_arguments_refused_before_writing(rng, change, exc, match):
    a = _args(rng) | HYPER
    change(a)
    before = {k: np.array(v, copy=True) for k, v in a.items() if isinstance(v, np.ndarray)}
    with pytest.raises(exc, match=match):
        _C.adam_update(**a)
    for k, v in before.items():
        assert_identical(a[k], v, f"{k} after a refused call")
