"""A simulated GPU for CPU tests of fit(cuda_graph=True) and the GPU epoch bench.

install(monkeypatch) registers device "cuda" as the CPU's kernels behind a CuPy-like module
(NumPy arrays; the cuda names - Device, Stream with its capture calls, Graph, MemoryPool,
using_allocator - are tests/fake_cupy.py's, the one stand-in for CuPy's names; .set() with CuPy's
checks) and replaces _C.cuda's
graph-step entries (adam_update, dropout_mask) with the CPU kernels they share their formulas
with, reading the step's lr_t and seed from the device tables at the step counter by address,
as the CUDA kernels do. GraphTrainer._capture keeps the real call sequence (the private
pool's allocator, begin_capture / end_capture on the trainer's stream, which fake_cupy refuses on
the legacy stream as CuPy does) but records nothing: the graph's launch reruns the step (capturing
needs a GPU). Returns the fake kernels, which count their calls.
"""

from __future__ import annotations

import ctypes
import types

import fake_cupy
import numpy as np
from fastconv import _C, ops
from fastconv.nn import backend as nn_backend
from fastconv.nn import cuda_graph
from fastconv.nn.backend_type import Backend


class _DeviceArray(np.ndarray):
    """The few CuPy ndarray members GraphTrainer uses beyond NumPy's: set() and data.ptr."""

    def set(self, arr, stream=None):
        fake_cupy.check_set(self.shape, self.dtype, arr)
        self[...] = arr

    @property
    def data(self):
        return types.SimpleNamespace(ptr=self.ctypes.data)


def _fake_cupy():
    def made(fn):
        return lambda *a, **k: fn(*a, **k).view(_DeviceArray)

    module = types.SimpleNamespace(
        cuda=fake_cupy.cuda,
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


def install(monkeypatch):
    """device "cuda" = the CPU kernels behind a CuPy-like module; _C.cuda = _FakeKernels."""
    fake_cupy.reset()
    fake = _fake_cupy()
    kernels = _FakeKernels()
    monkeypatch.setitem(
        nn_backend._FACTORIES, "cuda", lambda: Backend("cuda", fake, np.float32, ops)
    )
    monkeypatch.delitem(nn_backend._CACHE, "cuda", raising=False)
    monkeypatch.setattr(_C, "cuda", kernels, raising=False)
    monkeypatch.setattr(cuda_graph, "_ptr", lambda a: a.ctypes.data)

    def capture(self):  # GraphTrainer._capture's calls; a replay reruns the step
        with fake.cuda.using_allocator(self.pool.malloc):
            self.stream.begin_capture()
            graph = self.stream.end_capture()
        graph.replay = lambda: self._step(self.x_buf, self.y_buf)
        self.graph = graph

    monkeypatch.setattr(cuda_graph.GraphTrainer, "_capture", capture)
    return kernels, fake
