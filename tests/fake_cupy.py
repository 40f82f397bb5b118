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
- ``cuda.Device(i)`` (context manager), ``cuda.Stream`` (CuPy 14's argument order; ``with
  stream:`` makes it current; ``begin_capture`` / ``end_capture`` / ``is_capturing``, refused on
  the legacy stream as CuPy refuses it; a capture records nothing: ``end_capture`` returns a
  ``cuda.Graph`` whose ``launch`` runs its ``replay``, which a test double sets),
  ``cuda.get_current_stream().ptr``, ``cuda.runtime.getDevice()``, ``cuda.alloc(nbytes)``,
  ``cuda.MemoryPool`` and ``cuda.using_allocator`` (``alloc`` then draws from the pool);
- ``ndarray.set(host, stream=None)`` with CuPy's checks (a NumPy array of the same dtype and
  shape, else TypeError / ValueError: CuPy neither casts nor broadcasts there), shared with
  tests/simulated_gpu.py (``check_set``);
- ``ndarray(shape, dtype)`` only: ``memptr=`` / ``strides=`` / ``order='F'`` raise
  NotImplementedError rather than being silently ignored;
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
    allocator = None  # set by using_allocator (thread-local in CuPy; one thread here)


def reset() -> None:
    """Device 0 current, null streams, the default allocator, call counts cleared."""
    _State.device = 0
    _State.streams = {}
    _State.allocator = None
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
    """cupy.cuda.Stream(null=False, non_blocking=False, ptds=False, priority=None), CuPy 14's
    order: a fresh handle (0 for the null stream, 2 for the per-thread one); `with stream:` makes
    it the current device's stream. Capture as CuPy's: begin_capture refuses the legacy stream
    (RuntimeError, CuPy's message) and a stream already capturing, end_capture one that is not
    (CUDA's cudaErrorIllegalState, a RuntimeError in CuPy); a capture records nothing."""

    def __init__(self, null=False, non_blocking=False, ptds=False, priority=None):
        self.ptr = 0 if null else 2 if ptds else next(_stream_ptrs)
        self.non_blocking = bool(non_blocking)
        self.capturing = False  # what is_capturing() reports (a test may set it)
        self._previous = []

    def is_capturing(self):
        return self.capturing

    def begin_capture(self, mode=None):
        if self.ptr in (0, 1):
            raise RuntimeError("cannot capture on the default (legacy) stream")
        if self.capturing:
            raise RuntimeError("cudaErrorIllegalState: the stream is already capturing")
        self.capturing = True

    def end_capture(self):
        if not self.capturing:
            raise RuntimeError("cudaErrorIllegalState: the stream is not capturing")
        self.capturing = False
        return Graph()

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


class Graph:
    """cupy.cuda.Graph as end_capture returns it (CuPy offers no constructor). Nothing was
    recorded, so launch(stream=None) counts the launch and runs `replay` when a test double has
    set one (tests/simulated_gpu.py: the captured step, run again)."""

    def __init__(self, replay=None):
        self.replay = replay
        self.launches = 0

    def launch(self, stream=None):
        self.launches += 1
        if self.replay is not None:
            self.replay()

    def upload(self, stream=None):
        pass


class MemoryPool:
    """cupy.cuda.MemoryPool: malloc(size) -> MemoryPointer, free_all_blocks(stream=None)."""

    def __init__(self, allocator=None):
        self.allocated = 0  # bytes handed out (a test can see that a capture drew from it)

    def malloc(self, size):
        CALLS["MemoryPool.malloc"] += 1
        self.allocated += int(size)
        return MemoryPointer(np.empty(int(size), np.uint8), _State.device)

    def free_all_blocks(self, stream=None):
        pass


class using_allocator:  # noqa: N801 - CuPy's name
    """cupy.cuda.using_allocator(allocator=None): alloc() draws from `allocator` inside."""

    def __init__(self, allocator=None):
        self.allocator = allocator

    def __enter__(self):
        self._previous = _State.allocator
        _State.allocator = self.allocator
        return self

    def __exit__(self, *exc):
        _State.allocator = self._previous


_NULL_STREAM = Stream(null=True)


def _get_current_stream(device_id=-1):
    CALLS["get_current_stream"] += 1
    return _State.streams.get(_State.device if device_id < 0 else device_id, _NULL_STREAM)


def _get_device():
    CALLS["runtime.getDevice"] += 1
    return _State.device


def _get_device_count():
    return DEVICE_COUNT


def _alloc(nbytes):
    CALLS["alloc"] += 1
    if _State.allocator is not None:
        return _State.allocator(nbytes)
    return MemoryPointer(np.empty(int(nbytes), np.uint8), _State.device)


def check_set(shape, dtype, arr) -> None:
    """CuPy's ndarray.set(arr) checks on a (shape, dtype) destination: arr must be a NumPy
    array of exactly that dtype and shape (no cast, no broadcast)."""
    if not isinstance(arr, np.ndarray):
        raise TypeError("Only numpy.ndarray can be set to cupy.ndarray")
    if np.dtype(dtype) != arr.dtype:
        raise TypeError(f"{arr.dtype} array cannot be set to {np.dtype(dtype)} array")
    if tuple(shape) != arr.shape:
        raise ValueError(f"Shape mismatch. Old shape: {tuple(shape)}, new shape: {arr.shape}")


cuda = types.SimpleNamespace(
    Device=Device,
    Stream=Stream,
    Graph=Graph,
    MemoryPool=MemoryPool,
    using_allocator=using_allocator,
    MemoryPointer=MemoryPointer,
    get_current_stream=_get_current_stream,
    alloc=_alloc,
    runtime=types.SimpleNamespace(getDevice=_get_device, getDeviceCount=_get_device_count),
)


class ndarray:  # noqa: N801 - CuPy's name
    """A device array: a NumPy array (host memory) plus the device it was made on."""

    __slots__ = ("_a", "_dev", "_mp")

    def __init__(self, shape, dtype=float, memptr=None, strides=None, order="C"):
        if memptr is not None or strides is not None or order != "C":
            raise NotImplementedError("fake_cupy.ndarray: only ndarray(shape, dtype)")
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

    def get(self, stream=None):
        return self._a.copy()

    def set(self, arr, stream=None):
        check_set(self._a.shape, self._a.dtype, arr)
        self._a[...] = arr


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
