"""A CPU stand-in for the part of CuPy that fastconv._cuda_ops uses, backed by NumPy memory.

For the always-run tests of fastconv's CUDA glue (test_cuda_glue.py) and for
bench/cuda_host_overhead.py --fake: no GPU and no CuPy needed. Install it as ``sys.modules["cupy"]``
(``install(monkeypatch)`` in fake_cuda_native.py does that and the native stub).

What it imitates, because _cuda_ops relies on it:
- ``ndarray`` with shape / dtype / strides / size / ndim / flags.c_contiguous, ``data.ptr`` and
  ``data.device_id`` (a MemoryPointer), ``device.id``, ``astype``, ``copy``, ``min``/``max``,
  ``transpose``, slicing; ``ndarray(shape, dtype)`` allocates without initialising (as CuPy's
  pool does), and ``__cuda_array_interface__`` is a property that builds a new dict on each access
  (CuPy's does, which is why fastconv avoids touching it on the hot path);
- "devices" are labels: an array belongs to the device that was current when it was made, so the
  device checks can be tested with as many devices as DEVICE_COUNT says; memory is host memory,
  so fake_cuda_native can run fastconv's CPU kernels on the pointers it is handed;
- ``cuda.Device(i)`` (context manager), ``cuda.Stream`` (``with stream:`` makes it current),
  ``cuda.get_current_stream().ptr``, ``cuda.runtime.getDevice()``, ``cuda.alloc(nbytes)``;
- ``empty``, ``asarray`` (host arrays are copied; another library's GPU array, ``ForeignArray``,
  is wrapped without a copy, as CuPy does through ``__cuda_array_interface__``),
  ``ascontiguousarray``, ``asnumpy``.
Like CuPy, an ndarray refuses implicit conversion to NumPy (``np.asarray(a)`` raises TypeError),
so a host round trip in the code under test fails loudly. CALLS counts the entry points above
that allocate, copy or query the runtime, per name.
"""

from __future__ import annotations

import collections
import ctypes
import itertools
import types

import numpy as np

float16, float32, float64 = np.float16, np.float32, np.float64
int8, int32, int64, uint8 = np.int8, np.int32, np.int64, np.uint8
complex64, bool_ = np.complex64, np.bool_

DEVICE_COUNT = 2
CALLS: collections.Counter = collections.Counter()

_stream_ptrs = itertools.count(0x5000)


class _State:
    device = 0
    streams: dict = {}  # device -> current Stream (absent: the null stream)


def reset() -> None:
    """Device 0 current, null streams, call counts cleared."""
    _State.device = 0
    _State.streams = {}
    CALLS.clear()


class MemoryPointer:
    """ptr and device_id, as cupy.cuda.MemoryPointer; `mem` keeps the host buffer alive."""

    __slots__ = ("ptr", "device_id", "mem")

    def __init__(self, mem, device_id):
        self.mem = mem
        self.ptr = _address(mem)
        self.device_id = device_id


def _address(a: np.ndarray) -> int:
    """The address of a's first element (0 when empty); the ctypes route is 4x quicker than
    __array_interface__, which keeps the fake's allocation cost near CuPy's pool."""
    if not a.size:
        return 0
    try:
        return ctypes.addressof(ctypes.c_char.from_buffer(a))
    except (TypeError, ValueError, BufferError):  # read-only or non-contiguous views
        return a.__array_interface__["data"][0]


class _Flags:
    __slots__ = ("c_contiguous", "f_contiguous", "owndata")

    def __init__(self, a):
        self.c_contiguous = a.flags.c_contiguous
        self.f_contiguous = a.flags.f_contiguous
        self.owndata = a.flags.owndata


class Device:
    """cupy.cuda.Device: .id; `with Device(i):` makes i current and restores the previous."""

    def __init__(self, device=None):
        self.id = _State.device if device is None else int(device)
        self._previous = []

    def __enter__(self):
        CALLS["Device.__enter__"] += 1
        self._previous.append(_State.device)
        _State.device = self.id
        return self

    def __exit__(self, *exc):
        _State.device = self._previous.pop()

    def use(self):
        _State.device = self.id

    def synchronize(self):
        pass


class Stream:
    """cupy.cuda.Stream: a fresh handle; `with stream:` makes it the current device's stream."""

    def __init__(self, non_blocking=False, null=False):
        self.ptr = 0 if null else next(_stream_ptrs)
        self.capturing = False  # set by a test: is_capturing() as during CUDA-graph capture
        self._previous = []

    def is_capturing(self):
        return self.capturing

    def __enter__(self):
        self._previous.append(_State.streams.get(_State.device))
        _State.streams[_State.device] = self
        return self

    def __exit__(self, *exc):
        previous = self._previous.pop()
        if previous is None:
            _State.streams.pop(_State.device, None)
        else:
            _State.streams[_State.device] = previous

    def synchronize(self):
        pass


_NULL_STREAM = Stream(null=True)


def _get_current_stream():
    CALLS["get_current_stream"] += 1
    return _State.streams.get(_State.device, _NULL_STREAM)


def _get_device():
    CALLS["runtime.getDevice"] += 1
    return _State.device


def _get_device_count():
    return DEVICE_COUNT


def _alloc(nbytes):
    CALLS["alloc"] += 1
    return MemoryPointer(np.empty(int(nbytes), np.uint8), _State.device)


cuda = types.SimpleNamespace(
    Device=Device,
    Stream=Stream,
    MemoryPointer=MemoryPointer,
    get_current_stream=_get_current_stream,
    alloc=_alloc,
    runtime=types.SimpleNamespace(getDevice=_get_device, getDeviceCount=_get_device_count),
)


class ndarray:  # noqa: N801 - CuPy's name
    """A device array: a NumPy array (host memory) plus the device it was made on."""

    __slots__ = ("_a", "_dev", "_mp")

    def __init__(self, shape, dtype=float, memptr=None, strides=None, order="C"):
        CALLS["ndarray"] += 1
        self._a = np.empty(shape, dtype)
        self._dev = _State.device
        self._mp = MemoryPointer(self._a, self._dev)

    @classmethod
    def _wrap(cls, host, device):
        a = cls.__new__(cls)
        a._a, a._dev, a._mp = host, device, MemoryPointer(host, device)
        return a

    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    strides = property(lambda self: self._a.strides)
    nbytes = property(lambda self: self._a.nbytes)
    flags = property(lambda self: _Flags(self._a))
    device = property(lambda self: Device(self._dev))
    T = property(lambda self: self.transpose())

    data = property(lambda self: self._mp)

    @property
    def __cuda_array_interface__(self):
        contiguous = self._a.flags.c_contiguous
        return {
            "shape": self._a.shape,
            "typestr": self._a.dtype.str,
            "descr": self._a.dtype.descr,
            "data": (self.data.ptr, False),
            "strides": None if contiguous else self._a.strides,
            "version": 3,
            "stream": _get_current_stream().ptr or 1,
        }

    def __array__(self, *args, **kwargs):
        raise TypeError("Implicit conversion to a NumPy array is not allowed (fake CuPy)")

    def __len__(self):
        return len(self._a)

    def __repr__(self):
        return f"fake_cupy.ndarray({self._a!r}, device={self._dev})"

    def __getitem__(self, key):
        return ndarray._wrap(self._a[key], self._dev)

    def __setitem__(self, key, value):
        self._a[key] = value._a if isinstance(value, ndarray) else value

    def astype(self, dtype, copy=True):
        CALLS["astype"] += 1
        return ndarray._wrap(self._a.astype(dtype, copy=copy), self._dev)

    def copy(self):
        CALLS["copy"] += 1
        return ndarray._wrap(self._a.copy(), self._dev)

    def transpose(self, *axes):
        return ndarray._wrap(self._a.transpose(*axes), self._dev)

    def reshape(self, *shape):
        return ndarray._wrap(self._a.reshape(*shape), self._dev)

    def min(self):
        CALLS["reduction"] += 1  # a kernel and a sync on a GPU
        return ndarray._wrap(np.asarray(self._a.min()), self._dev)

    def max(self):
        CALLS["reduction"] += 1
        return ndarray._wrap(np.asarray(self._a.max()), self._dev)

    def __int__(self):
        return int(self._a)

    def get(self):
        return self._a.copy()


class ForeignArray:
    """Another library's GPU array (a torch CUDA tensor, a Numba array): only
    __cuda_array_interface__, which cupy.asarray reads without copying."""

    def __init__(self, host, device=0):
        self._a = np.asarray(host)
        self._dev = device

    @property
    def __cuda_array_interface__(self):
        return ndarray._wrap(self._a, self._dev).__cuda_array_interface__

    shape = property(lambda self: self._a.shape)


def empty(shape, dtype=float, order="C"):
    CALLS["empty"] += 1
    return ndarray(shape, dtype)


def asarray(a, dtype=None):
    CALLS["asarray"] += 1
    if isinstance(a, ndarray):
        return a if dtype is None or a.dtype == dtype else a.astype(dtype)
    if isinstance(a, ForeignArray):  # shares the memory, on the array's own device
        wrapped = ndarray._wrap(a._a, a._dev)
        return wrapped if dtype is None else asarray(wrapped, dtype)
    return ndarray._wrap(np.array(a, dtype=dtype), _State.device)  # host -> device copy


def ascontiguousarray(a, dtype=None):
    CALLS["ascontiguousarray"] += 1
    a = asarray(a, dtype)
    if a._a.flags.c_contiguous:
        return a
    return ndarray._wrap(np.ascontiguousarray(a._a), a._dev)


def asnumpy(a):
    return a._a.copy() if isinstance(a, ndarray) else np.asarray(a)
