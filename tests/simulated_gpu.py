"""A simulated GPU for CPU tests of fit(cuda_graph=True) and the GPU epoch bench.

install(monkeypatch) registers device "cuda" as the CPU's kernels behind a CuPy-like module
(NumPy arrays; streams, pools, .set(), Graph.launch as no-ops or reruns) and replaces _C.cuda's
graph-step entries (adam_update, dropout_mask) with the CPU kernels they share their formulas
with, reading the step's lr_t and seed from the device tables at the step counter by address,
as the CUDA kernels do. GraphTrainer._capture becomes "a replay reruns the step" (capturing
needs a GPU). Returns the fake kernels, which count their calls.
"""

from __future__ import annotations

import contextlib
import ctypes
import types

import numpy as np
from fastconv import _C, ops
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
        Device=lambda: types.SimpleNamespace(id=0, synchronize=lambda: None),
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


def install(monkeypatch):
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
    return kernels, fake
