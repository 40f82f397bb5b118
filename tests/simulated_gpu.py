"""A simulated GPU for CPU tests of fit(cuda_graph=True) and the GPU epoch bench.

install(monkeypatch) registers device "cuda" as the CPU's kernels behind a CuPy-like module
(NumPy arrays; the cuda names - Device, Stream with its capture calls, Graph, MemoryPool,
using_allocator - are tests/fake_cupy.py's, the one stand-in for CuPy's names; .set() with CuPy's
checks) and replaces _C.cuda's
graph-step entries (adam_update, dropout_mask) with the CPU kernels they share their formulas
with, reading the step's lr_t and seed from the device tables at the step counter by address,
as the CUDA kernels do, and on CuPy's current stream (asserted). GraphTrainer._capture runs as it
is (the private pool's allocator, begin_capture / end_capture on the trainer's stream, which
fake_cupy refuses on the legacy stream as CuPy does); the step inside it runs on the CPU with every
read to the host refused as CuPy refuses it on a capturing stream, and stands for the launch that
follows; later launches rerun the step (recording needs a GPU). Returns the fake kernels, which
count their calls.
"""

from __future__ import annotations

import ctypes
import functools
import types

import fake_cupy
import numpy as np
from fastconv import _C, ops
from fastconv.nn import backend as nn_backend
from fastconv.nn import cuda_graph
from fastconv.nn.backend_type import Backend


def _refuse_while_capturing():
    """CuPy refuses a device-to-host read on a capturing stream (its message); so does the
    simulated device, so a host sync inside the captured step fails the CPU tests."""
    if fake_cupy.cuda.get_current_stream().is_capturing():
        raise RuntimeError(
            "the current stream is capturing, so synchronous API calls are disallowed"
        )


class _DeviceArray(np.ndarray):
    """The few CuPy ndarray members GraphTrainer uses beyond NumPy's: set() and data.ptr; the
    reads to the host (float, int, bool, item, get) refused while the stream captures."""

    def set(self, arr, stream=None):
        fake_cupy.check_set(self.shape, self.dtype, arr)
        self[...] = arr

    def __array_wrap__(self, arr, context=None, return_scalar=False):
        # a reduction gives a 0-d device array, as in CuPy, not a host scalar
        return super().__array_wrap__(arr, context, False)

    def get(self, stream=None):
        _refuse_while_capturing()
        return np.array(self)

    def item(self, *args):
        _refuse_while_capturing()
        return super().item(*args)

    def __float__(self):
        _refuse_while_capturing()
        return super().__float__()

    def __int__(self):
        _refuse_while_capturing()
        return super().__int__()

    def __bool__(self):
        _refuse_while_capturing()
        return super().__bool__()

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


def _on_device(a):
    return a.view(_DeviceArray) if isinstance(a, np.ndarray) else a


def _device_ops():
    """fastconv.ops with device results: the CPU kernels, their outputs as _DeviceArray (so what
    the step computes is "on the device", and reading it back while capturing is refused)."""

    def wrap(fn):
        @functools.wraps(fn)  # the signature stays readable: Backend inspects it
        def call(*args, **kwargs):
            out = fn(*args, **kwargs)
            return tuple(map(_on_device, out)) if isinstance(out, tuple) else _on_device(out)

        return call

    names = ("conv2d", "conv2d_bwd_data", "conv2d_bwd_weights", "max_pool2d")
    return types.SimpleNamespace(
        **{n: wrap(getattr(ops, n)) for n in (*names, "max_pool2d_backward")}
    )


def _at(address, n, ctype, dtype):
    return np.ctypeslib.as_array((ctype * n).from_address(address)).view(dtype)


class _FakeKernels:
    """_C.cuda's graph-step entries on the CPU, reading their per-step values by address."""

    def __init__(self):
        self.calls = {"adam_update": 0, "dropout_mask": 0}

    @staticmethod
    def _on_current_stream(stream):
        """The kernels queue where the step's CuPy kernels do: CuPy's current stream."""
        current = fake_cupy.cuda.get_current_stream().ptr
        assert stream == current, f"launched on stream {stream:#x}, the current one is {current:#x}"

    def adam_update(self, device, stream, p, m, v, g, n, lr, step, b1, b2, eps):
        self._on_current_stream(stream)
        self.calls["adam_update"] += 1
        t = int(_at(step, 1, ctypes.c_int32, np.int32)[0])
        lr_t = float(_at(lr, t + 1, ctypes.c_float, np.float32)[t])
        arrays = [_at(a, n, ctypes.c_float, np.float32) for a in (p, g, m, v)]
        _C.adam_update(*arrays, lr_t, b1, b2, eps)

    def dropout_mask(self, device, stream, mask, n, keep, seeds, step):
        self._on_current_stream(stream)
        self.calls["dropout_mask"] += 1
        t = int(_at(step, 1, ctypes.c_int32, np.int32)[0])
        seed = int(_at(seeds, t + 1, ctypes.c_uint64, np.uint64)[t])
        _at(mask, n, ctypes.c_float, np.float32)[:] = _C._dropout_mask_lanes((n,), keep, seed)


def install(monkeypatch):
    """device "cuda" = the CPU kernels behind a CuPy-like module; _C.cuda = _FakeKernels."""
    fake_cupy.reset()
    fake = _fake_cupy()
    kernels = _FakeKernels()
    device_ops = _device_ops()
    monkeypatch.setitem(
        nn_backend._FACTORIES, "cuda", lambda: Backend("cuda", fake, np.float32, device_ops)
    )
    monkeypatch.setattr(cuda_graph, "ops", device_ops)  # graph_matmul's conv2d
    monkeypatch.delitem(nn_backend._CACHE, "cuda", raising=False)
    monkeypatch.setattr(_C, "cuda", kernels, raising=False)
    monkeypatch.setattr(cuda_graph, "_ptr", lambda a: a.ctypes.data)

    real_capture = cuda_graph.GraphTrainer._capture

    def capture(self):
        """The real _capture (private pool, begin_capture, the step, end_capture), but the step
        runs on the CPU as it is "captured", host reads refused; that run stands for the launch
        train() makes right after the capture, and every later launch reruns the step."""
        real_capture(self)
        pending = [True]

        def replay():
            if pending:
                pending.clear()
                return
            self._step(self.x_buf, self.y_buf)

        self.graph.replay = replay

    monkeypatch.setattr(cuda_graph.GraphTrainer, "_capture", capture)
    return kernels, fake
