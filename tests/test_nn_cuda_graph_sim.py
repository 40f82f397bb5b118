"""fit(cuda_graph=True)'s host-side flow on the CPU, through a simulated device.

No GPU runs the graph mode here, so this drives GraphTrainer (nn/cuda_graph.py) over a stand-in:
a "cuda" backend whose array module is NumPy behind CuPy's names (streams, pools, .set(),
Graph.launch), whose conv/pool ops are the CPU's, and whose two device-state kernels
(_C.cuda.adam_update, _C.cuda.dropout_mask) are emulated with the CPU kernels they share their
formulas with, reading the step's lr_t and seed from the tables at the step counter by address,
as the CUDA kernels do. A "graph launch" reruns the step (the capture itself needs a GPU).

What it checks: per-epoch tables (lr_t from Adam.lr_at at the right step, dropout seeds in eager
order), the step counter's reset and advance, the warm-up and the shorter last batch, the
iteration count, the totals read once per epoch, validation, and the model restored afterwards;
the result is compared with the plain CPU fit from the same seed (other Dense and loss kernels,
so close rather than identical; a step-size or seed-order mistake would be far off).
"""

from __future__ import annotations

import contextlib
import ctypes
import types

import numpy as np
import pytest
from fastconv import _C, models, ops
from fastconv.nn import backend as nn_backend
from fastconv.nn import cuda_graph
from fastconv.nn.backend_type import Backend


class _DeviceArray(np.ndarray):
    """The few CuPy ndarray members GraphTrainer uses beyond NumPy's: set() and data.ptr."""

    def set(self, arr, stream=None):
        self[...] = arr

    @property
    def data(self):
        return types.SimpleNamespace(ptr=self.ctypes.data)


def _fake_cupy():
    def made(fn):
        return lambda *a, **k: fn(*a, **k).view(_DeviceArray)

    class Stream:
        ptr = 1

        def __init__(self, non_blocking=False):
            self.non_blocking = non_blocking

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def synchronize(self):
            pass

        def begin_capture(self, mode=None):  # GraphTrainer._capture is replaced (fixture)
            raise AssertionError("no capture on the simulated device")

        end_capture = begin_capture

    class Graph:
        def __init__(self, replay):
            self.replay = replay

        def launch(self, stream=None):
            self.replay()

    class MemoryPool:
        malloc = None

        def free_all_blocks(self):
            pass

    cuda = types.SimpleNamespace(
        Device=lambda: types.SimpleNamespace(id=0),
        Stream=Stream,
        Graph=Graph,
        MemoryPool=MemoryPool,
        using_allocator=lambda allocator=None: contextlib.nullcontext(),
    )
    module = types.SimpleNamespace(
        cuda=cuda,
        __version__="sim",
        zeros=made(np.zeros),
        empty=made(np.empty),
        empty_like=made(np.empty_like),
    )
    return types.SimpleNamespace(
        **{k: getattr(np, k) for k in dir(np) if not k.startswith("_") and k not in vars(module)},
        **vars(module),
    )


def _at(address, n, ctype, dtype):
    return np.ctypeslib.as_array((ctype * n).from_address(address)).view(dtype)


class _FakeKernels:
    """_C.cuda's graph-step entries on the CPU, reading their per-step values by address."""

    def __init__(self):
        self.calls = {"adam_update": 0, "dropout_mask": 0}

    def adam_update(self, device, stream, p, m, v, g, n, lr, step, b1, b2, eps):
        self.calls["adam_update"] += 1
        t = int(_at(step, 1, ctypes.c_int32, np.int32)[0])
        lr_t = float(_at(lr, t + 1, ctypes.c_float, np.float32)[t])
        arrays = [_at(a, n, ctypes.c_float, np.float32) for a in (p, g, m, v)]
        _C.adam_update(*arrays, lr_t, b1, b2, eps)

    def dropout_mask(self, device, stream, mask, n, keep, seeds, step):
        self.calls["dropout_mask"] += 1
        t = int(_at(step, 1, ctypes.c_int32, np.int32)[0])
        seed = int(_at(seeds, t + 1, ctypes.c_uint64, np.uint64)[t])
        _at(mask, n, ctypes.c_float, np.float32)[:] = _C._dropout_mask_lanes((n,), keep, seed)


@pytest.fixture
def simulated_gpu(monkeypatch):
    """device "cuda" = the CPU kernels behind a CuPy-like module; _C.cuda = _FakeKernels."""
    fake = _fake_cupy()
    kernels = _FakeKernels()
    monkeypatch.setitem(
        nn_backend._FACTORIES, "cuda", lambda: Backend("cuda", fake, np.float32, ops)
    )
    monkeypatch.delitem(nn_backend._CACHE, "cuda", raising=False)
    monkeypatch.setattr(_C, "cuda", kernels, raising=False)
    monkeypatch.setattr(cuda_graph, "_ptr", lambda a: a.ctypes.data)

    def capture(self):  # a replay reruns the step: the capture proper needs a GPU
        self.graph = fake.cuda.Graph(lambda: self._step(self.x_buf, self.y_buf))

    monkeypatch.setattr(cuda_graph.GraphTrainer, "_capture", capture)
    return kernels


def _data(rng, name, n):
    x = rng.random((n, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, size=n)
    return x, (np.eye(10, dtype=np.float32)[y] if name == "keras_cnn" else y)


@pytest.mark.parametrize(("name", "batch"), [("cnn1", 20), ("keras_cnn", 24)])
def test_graph_mode_flow_matches_the_cpu_fit(rng, simulated_gpu, name, batch):
    x, y = _data(rng, name, 3 * batch + batch // 2)  # three full batches and a shorter one
    cpu = models.build(name, seed=3)
    sim = models.build(name, seed=3, device="cuda")
    for layer in sim.layers:
        if hasattr(layer, "rate") and layer.rate > 0:  # keras_cnn: masks from the seed tables
            assert layer.mask_source is None
    hc = cpu.fit(x, y, batch_size=batch, epochs=2, seed=4, verbose=0, validation_split=0.1)
    hs = sim.fit(
        x, y, batch_size=batch, epochs=2, seed=4, verbose=0, validation_split=0.1, cuda_graph=True
    )
    steps = 2 * -(-int(len(x) * 0.9) // batch)
    assert sim.optimizer.iterations == cpu.optimizer.iterations == steps
    n_params = len(sim.get_weights())
    assert simulated_gpu.calls["adam_update"] == steps * n_params
    n_drop = sum(1 for layer in sim.layers if getattr(layer, "rate", 0) > 0)
    assert simulated_gpu.calls["dropout_mask"] == steps * n_drop
    np.testing.assert_allclose(hs.history["loss"], hc.history["loss"], rtol=1e-4)
    np.testing.assert_allclose(hs.history["val_loss"], hc.history["val_loss"], rtol=1e-4)
    np.testing.assert_allclose(hs.history["accuracy"], hc.history["accuracy"], atol=0.02)
    for a, b in zip(sim.get_weights(), cpu.get_weights()):
        # other Dense and loss kernels: float32 rounding apart. A wrong lr_t step or seed would
        # move most weights by ~1e-4 or more.
        diff = np.abs(a - b)
        assert np.mean(diff > 2e-5) < 0.01, f"{np.mean(diff > 2e-5):.2%} beyond 2e-5"
    # the model is as before the graph fit: its own backend on every layer, no dropout hook
    assert all(layer.backend is sim.backend for layer in sim.layers)
    assert all(getattr(layer, "mask_source", None) is None for layer in sim.layers)


def test_every_step_uncaptured_gives_the_same_run(rng, simulated_gpu, monkeypatch):
    x, y = _data(rng, "keras_cnn", 50)
    runs = []
    for capture in (True, False):
        monkeypatch.setattr(cuda_graph.GraphTrainer, "capture_enabled", capture)
        model = models.build("keras_cnn", seed=5, device="cuda")
        h = model.fit(x, y, batch_size=16, epochs=2, seed=6, verbose=0, cuda_graph=True)
        runs.append((h.history, model.get_weights()))
    assert runs[0][0] == runs[1][0]
    for a, b in zip(runs[0][1], runs[1][1]):
        np.testing.assert_array_equal(a, b)


def test_an_error_in_a_step_restores_the_model(rng, simulated_gpu, monkeypatch):
    model = models.build("keras_cnn", seed=1, device="cuda")
    x, y = _data(rng, "keras_cnn", 40)

    def broken(*args):
        raise RuntimeError("simulated kernel failure")

    monkeypatch.setattr(simulated_gpu, "adam_update", broken)
    with pytest.raises(RuntimeError, match="simulated kernel failure"):
        model.fit(x, y, batch_size=16, epochs=1, verbose=0, cuda_graph=True)
    assert all(layer.backend is model.backend for layer in model.layers)
    assert all(getattr(layer, "mask_source", None) is None for layer in model.layers)
